"""Safe multi-host attach through the REST API (docs/attach.md, "Over the
REST API"): POST /api/v1/mappings takes access and takeover as the CLI's
`volume map --access/--takeover` do, with the same guarantee: a takeover
answers success only once every SDS the MDM is connected to holds the new
writer generation, so nothing the old writer sends after the answer lands
(the write loop of test_attach.py's takeover test, driven over REST here);
when an SDS does not get there in time the answer is an error naming it,
not a success. Mappings and volumes carry access, writer and
writer_generation; bad requests get a 4xx with the CLI's words. Every
answer is checked against docs/openapi.yaml."""
import json
import signal
import threading
import time

import nbd
import pytest

from cluster import Cluster, wait_for
from rest_client import OpenApi, RestClient
from test_attach import BLOCK, check_fenced, exported, open_rw, pattern, takeover_under_writes

API = "/api/v1"


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    # an SDS stopped on purpose stays up (and its session connected) for
    # the 10 s of a takeover's wait: no failover in the middle of a test
    c = Cluster(tmp_path_factory.mktemp("rest-attach"), http=True,
                mdm_args=["--sds-timeout", "30"])
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def sdcb(rc):
    """A second SDC, 'sdcb': its NBD port."""
    return rc.add_sdc("sdcb")


class Api:
    """The admin's REST client; every answer checked against the document."""

    def __init__(self, rc):
        self.client = RestClient(rc.http_url, rc.http_admin_token)
        self.spec = OpenApi.load()

    def call(self, method, template, expect, body=None, **params):
        r = self.client.request(method, API + template.format(**params), body=body)
        assert r.status == expect, (method, template, body, r)
        self.spec.validate(method, template, r)
        return r.json

    def map(self, expect=201, **body):
        return self.call("POST", "/mappings", expect, body=body)

    def volume(self, name):
        return self.call("GET", "/volumes/{name}", 200, name=name)


@pytest.fixture(scope="module")
def api(rc):
    a = Api(rc)
    wait_for("the REST API", lambda: a.client.get(API + "/status").status == 200)
    return a


def make_volume(api, vol, sdcs, ports, size=64 << 20, **mapping):
    """Create vol and map it to each SDC over REST, with mapping's fields;
    wait until each serves it."""
    api.call("POST", "/volumes", 201, body={"name": vol, "size": size})
    for sdc, port in zip(sdcs, ports):
        m = api.map(volume=vol, sdc=sdc, **mapping)
        assert (m["volume"], m["sdc"]) == (vol, sdc)
        wait_for(f"{vol} exported by {sdc}", lambda p=port: exported(p, vol))


def cli_error(rc, *args):
    r = rc.cairn(*args, check=False)
    assert r.returncode != 0 and r.stderr.startswith("cairn: "), (args, r.stdout, r.stderr)
    return r.stderr.strip()[len("cairn: "):]


def test_takeover_over_rest_fences_the_old_writer(rc, api, sdcb):
    """A writes fresh blocks in a loop; the REST takeover to B answers 201;
    every write A issued after that answer fails, and none of their data is
    on the volume."""
    a_port = rc.nbd_port
    make_volume(api, "rtk", [rc.sdc_name, "sdcb"], [a_port, sdcb], size=1 << 30)
    a = open_rw(a_port, "rtk")
    a.pwrite(pattern("A", 0), 0)
    before = api.volume("rtk")
    assert before["writer"] == rc.sdc_name, before
    answer = {}

    def take_over():
        answer.update(api.map(volume="rtk", sdc="sdcb", takeover=True))
    log, t0, t_ret = takeover_under_writes(a, take_over, (1 << 30) // BLOCK)
    assert answer["writer"] == "sdcb" and answer["access"] == "single-writer", answer
    assert answer["writer_generation"] > before["writer_generation"], (answer, before)
    assert not answer["read_only"] and "warning" not in answer, answer
    v = api.volume("rtk")
    assert (v["writer"], v["writer_generation"]) == (answer["writer"],
                                                      answer["writer_generation"])
    cli = json.loads(rc.cairn("volume", "show", "rtk", json_out=True).stdout)
    assert (cli["writer"], cli["writer_generation"]) == (v["writer"], v["writer_generation"])
    check_fenced(a, a_port, sdcb, "rtk", log, t0, t_ret)


def test_access_modes_and_writer_over_rest(rc, api, sdcb):
    # shared: two writers at once; no writer to name
    make_volume(api, "rsh", [rc.sdc_name, "sdcb"], [rc.nbd_port, sdcb], access="shared")
    m = api.call("GET", "/mappings/{volume}/{sdc}", 200, volume="rsh", sdc="sdcb")
    assert m == {"volume": "rsh", "sdc": "sdcb", "read_only": False, "access": "shared",
                 "writer": "", "writer_generation": 0}, m
    v = api.volume("rsh")
    assert [x["access"] for x in v["mapped_to"]] == ["shared", "shared"], v
    a, b = open_rw(rc.nbd_port, "rsh"), open_rw(sdcb, "rsh")
    a.pwrite(pattern("A", 0), 0)
    b.pwrite(pattern("B", 1), BLOCK)
    assert a.pread(2 * BLOCK, 0) == pattern("A", 0) + pattern("B", 1)
    a.shutdown()
    b.shutdown()
    assert api.volume("rsh")["writer"] == ""  # shared writers claim nothing

    # single-writer, and read-only: the writer is the SDC whose open claimed it
    make_volume(api, "rsw", [rc.sdc_name], [rc.nbd_port])
    ro = api.map(volume="rsw", sdc="sdcb", read_only=True)
    assert (ro["read_only"], ro["access"], ro["writer"]) == (True, "single-writer", ""), ro
    a = open_rw(rc.nbd_port, "rsw")
    a.pwrite(pattern("A", 0), 0)
    for sdc in (rc.sdc_name, "sdcb"):
        m = api.call("GET", "/mappings/{volume}/{sdc}", 200, volume="rsw", sdc=sdc)
        assert (m["writer"], m["writer_generation"]) == (rc.sdc_name, 1), m
    listed = [x for x in api.call("GET", "/mappings", 200) if x["volume"] == "rsw"]
    assert {(x["sdc"], x["read_only"]) for x in listed} == {(rc.sdc_name, False), ("sdcb", True)}
    cli = json.loads(rc.cairn("volume", "show", "rsw", json_out=True).stdout)
    v = api.volume("rsw")
    assert (v["mapped_to"], v["writer"]) == (cli["mapped_to"], cli["writer"]) and \
        v["writer"] == rc.sdc_name, (v, cli)
    a.shutdown()


def test_bad_mapping_requests(rc, api, sdcb):
    """Each a 4xx with the CLI's message for the same mistake; nothing
    changes, and the MDM stays up."""
    make_volume(api, "rbad", [rc.sdc_name], [rc.nbd_port], access="shared")
    before = api.volume("rbad")
    cases = [
        ({"access": "exclusive"}, ["--access", "exclusive"], "single-writer or shared"),
        ({"access": "shared", "takeover": True}, ["--access", "shared", "--takeover"],
         "no single writer"),
        ({"read_only": True, "takeover": True}, ["--read-only", "--takeover"], "read-only"),
        ({}, [], "same access mode"),  # single-writer among shared mappings
    ]
    for body, flags, words in cases:
        err = api.map(expect=400, volume="rbad", sdc="sdcb", **body)["error"]
        assert words in err, (body, err)
        assert err == cli_error(rc, "volume", "map", "rbad", "--sdc", "sdcb", *flags), body
    # the shape of the fields, checked before anything is sent
    for body, words in (({"takeover": "yes"}, "field 'takeover' must be true or false"),
                        ({"access": 1}, "field 'access' must be a string"),
                        ({"access": "shared", "exclusive": True}, "unknown field 'exclusive'")):
        err = api.map(expect=400, volume="rbad", sdc="sdcb", **body)["error"]
        assert words in err, (body, err)
    # a takeover of what does not exist: the CLI's 404
    err = api.map(expect=404, volume="nosuch", sdc="sdcb", takeover=True)["error"]
    assert err == cli_error(rc, "volume", "map", "nosuch", "--sdc", "sdcb", "--takeover")
    err = api.map(expect=404, volume="rbad", sdc="nosdc", takeover=True)["error"]
    assert err == cli_error(rc, "volume", "map", "rbad", "--sdc", "nosdc", "--takeover")
    assert api.volume("rbad") == before
    assert rc.daemons["mdm"].alive()


def answered_after_a_pause(sds, what, call):
    """call()'s answer, made while sds is paused (SIGSTOP) for a second;
    asserts that it came only after the SDS was resumed."""
    resumed = []

    def resume():
        resumed.append(time.monotonic())
        sds.send_signal(signal.SIGCONT)
    timer = threading.Timer(1.0, resume)
    sds.send_signal(signal.SIGSTOP)
    timer.start()
    try:
        answer = call()
        answered = time.monotonic()
    finally:
        timer.join()
    assert resumed and answered > resumed[0], \
        f"{what} answered {resumed[0] - answered:.2f} s before the paused SDS was back"
    return answer


def test_takeover_waits_for_a_paused_sds(rc, api, sdcb):
    """An SDS that does not answer for a second (SIGSTOP, then SIGCONT)
    holds the old map meanwhile: the takeover answers success only after it
    is back and has the new one, never before."""
    make_volume(api, "rps", [rc.sdc_name, "sdcb"], [rc.nbd_port, sdcb])
    m = answered_after_a_pause(rc.daemons["sds2"].proc, "the takeover",
                               lambda: api.map(volume="rps", sdc="sdcb", takeover=True))
    assert m["writer"] == "sdcb" and "warning" not in m, m


def test_takeover_fences_writes_through_a_paused_sds(rc, api, sdcb):
    """The old writer's SDC is stopped (it cannot learn the new map, so it
    does not refuse its writes itself) and so is an SDS, for a second; the
    takeover answers; A's writes issued after that, spread over the PGs,
    go out with the old writer generation once A's SDC resumes: every one
    fails, and none lands, whichever SDS they reach."""
    make_volume(api, "rpq", [rc.sdc_name, "sdcb"], [rc.nbd_port, sdcb], size=256 << 20)
    a = open_rw(rc.nbd_port, "rpq")
    a.pwrite(pattern("A", 0), 0)
    sdc, sds = rc.daemons["sdc"].proc, rc.daemons["sds2"].proc
    results = {}

    def completion(i):
        def cb(err):
            results[i] = getattr(err, "value", err)  # 0, or the errno
            return 1
        return cb
    spread = [k * (4 << 20) // BLOCK + k for k in range(1, 33)]  # 32 blocks, 4 MiB apart
    bufs = {i: nbd.Buffer.from_bytearray(bytearray(pattern("A", i))) for i in spread}
    timer = threading.Timer(1.0, lambda: sds.send_signal(signal.SIGCONT))
    sdc.send_signal(signal.SIGSTOP)
    sds.send_signal(signal.SIGSTOP)
    timer.start()
    try:
        m = api.map(volume="rpq", sdc="sdcb", takeover=True)
        for i in spread:
            a.aio_pwrite(bufs[i], i * BLOCK, completion=completion(i))
    finally:
        sdc.send_signal(signal.SIGCONT)
        timer.join()
        sds.send_signal(signal.SIGCONT)
    assert m["writer"] == "sdcb", m

    def answered():
        a.poll(1)
        return len(results) == len(spread)
    wait_for("A's writes answered", answered, timeout=60)
    assert all(v != 0 for v in results.values()), results
    b = open_rw(sdcb, "rpq")
    for i in spread:
        assert b.pread(BLOCK, i * BLOCK) == b"\0" * BLOCK, f"block {i}: A's write landed"
    assert b.pread(BLOCK, 0) == pattern("A", 0)
    b.shutdown()
    a.shutdown()


def test_takeover_that_cannot_fence_is_an_error(rc, api, sdcb):
    """An SDS that does not answer (SIGSTOP: connected, with the old map)
    keeps the takeover from being in force: after the wait, a 504 that
    names it, never a success; the CLI's takeover exits 1 with the same
    words. The takeover is made all the same; once the SDS is back, taking
    over again succeeds."""
    make_volume(api, "rst", [rc.sdc_name, "sdcb"], [rc.nbd_port, sdcb])
    gen = api.volume("rst")["writer_generation"]
    sds = rc.daemons["sds3"].proc
    sds.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        err = api.map(expect=504, volume="rst", sdc="sdcb", takeover=True)["error"]
        took = time.monotonic() - t0
        # the CLI's takeover is the same wait, and an error too (exit 1)
        cli = rc.cairn("volume", "map", "rst", "--sdc", rc.sdc_name, "--takeover", check=False)
    finally:
        sds.send_signal(signal.SIGCONT)
    assert cli.returncode == 1 and "old writer is not known to be fenced" in cli.stderr \
        and "SDS 'sds3' still holds map version" in cli.stderr, (cli.returncode, cli.stderr)
    assert "volume 'rst' is taken over, but the old writer is not known to be fenced" in err, err
    assert "SDS 'sds3' still holds map version" in err, err
    assert took >= 9, f"answered after {took:.1f} s, before the wait's 10 s"
    v = api.volume("rst")
    # both takeovers are made: REST's to sdcb, then the CLI's back
    assert v["writer"] == rc.sdc_name and v["writer_generation"] >= gen + 2, v

    def back():
        st = api.call("GET", "/status", 200)
        return all(s["state"] == "up" and s["connected"] for s in st["sds"])
    wait_for("sds3 up and connected again", back, timeout=60)
    m = api.map(volume="rst", sdc="sdcb", takeover=True)
    assert m["writer"] == "sdcb" and m["writer_generation"] > v["writer_generation"], m



def test_shutdown_answers_a_takeover_waiting_for_the_sdss(tmp_path):
    """A takeover waiting for an SDS (stopped) when the MDM shuts down is
    answered 503, not a success, and the MDM still stops cleanly (its wait
    between two statuses is on a timer the shutdown closes)."""
    c = Cluster(tmp_path, http=True, mdm_args=["--sds-timeout", "30"])
    c.start()
    sds = c.daemons["sds1"].proc
    try:
        a = Api(c)
        wait_for("the REST API", lambda: a.client.get(API + "/status").status == 200)
        c.add_sdc("sdcb")
        c.create_volume("rsd", 64 << 20)
        c.cairn("volume", "map", "rsd", "--sdc", "sdcb")
        sds.send_signal(signal.SIGSTOP)
        answer = []
        th = threading.Thread(target=lambda: answer.append(a.client.post(
            API + "/mappings", body={"volume": "rsd", "sdc": "sdcb", "takeover": True})))
        th.start()
        wait_for("the takeover made, its answer waiting",
                 lambda: a.volume("rsd")["writer"] == "sdcb", interval=0.05)
        time.sleep(0.5)  # a few of its statuses, so that it waits between two
        assert th.is_alive() and not answer
        c.daemons["mdm"].stop()  # SIGTERM: a clean exit is required
        th.join(30)
        assert answer and answer[0].status == 503, answer
        assert answer[0].json == {"error": "the MDM is shutting down"}, answer
    finally:
        sds.send_signal(signal.SIGCONT)
        c.shutdown()


@pytest.mark.parametrize("change", ["unmap", "read-only"])
def test_unmap_and_read_only_wait_for_a_paused_sds(rc, api, sdcb, change):
    """An unmap, or a mapping made read-only, over REST answers only once
    every SDS holds its map (as the CLI's do), so that the SDC's writes are
    refused when it answers: with an SDS paused for a second, the answer
    comes after it is back, without a warning. Then the SDC can write
    nothing more: a write through its export fails."""
    vol = "rwu" if change == "unmap" else "rwr"
    make_volume(api, vol, ["sdcb"], [sdcb])
    h = open_rw(sdcb, vol)
    h.pwrite(pattern("w", 0), 0)
    if change == "unmap":
        call = lambda: api.call("DELETE", "/mappings/{volume}/{sdc}", 200, volume=vol, sdc="sdcb")
    else:
        call = lambda: api.map(volume=vol, sdc="sdcb", read_only=True)
    a = answered_after_a_pause(rc.daemons["sds1"].proc, f"the {change}", call)
    assert "warning" not in a, a
    with pytest.raises(nbd.Error):
        for i in range(16):  # one per extent: every primary refuses it
            h.pwrite(pattern("x", i), i * (1 << 20))
