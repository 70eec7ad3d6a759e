"""The REST API and the dashboard served by every MDM of a 3-MDM cluster
(each MDM a host of its own, a network namespace on the bridge), not only
by the leader: a follower checks the token itself and carries the request
to the leader over the MDMs' request API (mgmt/rest_calls.c).

What users rely on: a volume created over REST on a follower exists (the
CLI and another MDM's REST API see it) and, mapped, carries data through
the SDC's NBD export; reads on a follower are the leader's answer and say
so (Cairn-Answered-By); a monitor token on a follower still changes
nothing (403); the leader's audit log names the HTTP client of a forwarded
change; with the leader killed -9, a change on a follower is answered
within a few seconds (503 "no leader yet; retry", with Retry-After) and
made, once, as soon as a new leader is elected; the dashboard loaded from a
follower shows the live cluster, its MDM list included, and goes on
through that MDM after the leader is killed; with no majority left, reads
and changes get that 503 within a few seconds; with the leader cut off the
network (silence, no reset), a change under way to it is made by the next
leader."""
import json
import os
import re
import signal
import time

import nbd
import pytest

from cluster import NetCluster, wait_for
from rest_client import OpenApi, RestClient

API = "/api/v1"
N = 3
# what one REST request may take while no MDM leads: the API's wait for a
# leader (4 s), plus a margin for a loaded machine (ASan, 2 shared cores)
ELECTION_ANSWER_S = 4 + 3


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    c = NetCluster(tmp_path_factory.mktemp("restcluster"), sds_sizes=(2 << 30,) * 3, pgs=64,
                   mdms=N, http=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


def api(c, i, token=None):
    """A REST client of MDM i (1..N), with the admin token unless told."""
    return RestClient(c.http_urls[i - 1], token or c.http_admin_token, timeout=30)


def followers(c, lead):
    return [i for i in range(1, N + 1) if i != lead]


def cli_json(c, *args):
    return json.loads(c.cairn(*args, json_out=True).stdout)


def audit(c, i):
    with open(os.path.join(c.dir, c.mdm_name(i), "audit.log")) as f:
        return [json.loads(ln) for ln in f]


@pytest.fixture(scope="module")
def lead(c):
    """The leader at the start, with every MDM's REST API up."""
    lead = wait_for("a leader", c.mdm_leader)
    for i in range(1, N + 1):
        wait_for(f"MDM {i}'s REST API", lambda i=i: api(c, i).get(API + "/status").status == 200)
    return lead


def test_follower_serves_reads_and_changes(c, lead):
    f, other = followers(c, lead)
    spec = OpenApi.load()
    lead_addr = c.mdm_addrs[lead - 1]
    # a read on a follower: the leader's answer, and said to be
    r = spec.validate("GET", "/status", api(c, f).get(API + "/status"))
    assert r.status == 200, r
    assert r.headers["Cairn-Answered-By"] == lead_addr, dict(r.headers)
    st = r.json
    assert st["answered_by"] == lead_addr
    assert {m["id"]: m["role"] for m in st["mdms"]}[lead] == "leader", st["mdms"]
    # "self" is the MDM serving the client, not the leader that answered
    assert [m["id"] for m in st["mdms"] if m["self"]] == [f], st["mdms"]
    assert {s["name"] for s in st["sds"]} == {"sds1", "sds2", "sds3"}

    # a change on a follower: made by the leader
    r = spec.validate("POST", "/volumes", api(c, f).post(API + "/volumes",
                                                         {"name": "fwd-vol", "size": "64M"}))
    assert r.status == 201, r
    assert r.json["name"] == "fwd-vol" and r.json["size"] == 64 << 20, r.json
    assert r.headers["Cairn-Answered-By"] == lead_addr
    assert {v["name"]: v["size"] for v in cli_json(c, "volume", "list")}["fwd-vol"] == 64 << 20
    r = api(c, other).get(API + "/volumes/fwd-vol")
    assert r.status == 200 and r.json["size"] == 64 << 20, r
    # its errors are the leader's, status and words
    r = api(c, f).post(API + "/volumes", {"name": "fwd-vol", "size": "64M"})
    assert r.status == 409 and "already exists" in r.json["error"], r

    # mapped on a follower, the data goes through the SDC
    r = api(c, other).post(API + "/mappings", {"volume": "fwd-vol", "sdc": c.sdc_name})
    assert r.status == 201, r
    c.wait_export("fwd-vol")
    h = nbd.NBD()
    h.connect_uri(c.uri("fwd-vol"))
    data = os.urandom(1 << 20)
    h.pwrite(data, 8 << 20)
    h.flush()
    assert h.pread(len(data), 8 << 20) == data
    h.shutdown()
    # a takeover on a follower: the change and the statuses of its wait for
    # the SDSs (docs/attach.md) go to the leader; the answer is the mapping
    gen = api(c, f).get(API + "/volumes/fwd-vol").json["writer_generation"]
    r = spec.validate("POST", "/mappings", api(c, f).post(
        API + "/mappings", {"volume": "fwd-vol", "sdc": c.sdc_name, "takeover": True}))
    assert r.status == 201 and r.headers["Cairn-Answered-By"] == lead_addr, r
    assert r.json["writer"] == c.sdc_name and r.json["writer_generation"] > gen, r.json

    # the leader's audit log names the HTTP client (this host, on the
    # bridge) and the follower that carried the change
    mine = [e for e in audit(c, lead)
            if e["op"] == "volume_create" and e["request"].get("volume") == "fwd-vol"]
    assert [e["result"] for e in mine] == ["ok", "error"], mine
    e = mine[0]
    assert (e["who"]["role"], e["who"]["name"]) == ("mdm", f"mdm{f}"), e  # its credential
    assert re.fullmatch(r"REST API, admin token, from %s\.1:\d+" % re.escape(c.net),
                        e["who"]["via"]), e
    assert e["request"]["request_id"], e  # applied once, even if sent again


def test_monitor_token_on_a_follower(c, lead):
    f = followers(c, lead)[0]
    mon = api(c, f, c.http_monitor_token)
    r = mon.get(API + "/volumes")
    assert r.status == 200, r
    r = mon.post(API + "/volumes", {"name": "mon-vol", "size": "16M"})
    assert r.status == 403 and "monitor token" in r.json["error"], r
    r = mon.delete(API + "/volumes/fwd-vol")
    assert r.status == 403, r
    names = {v["name"] for v in cli_json(c, "volume", "list")}
    assert "mon-vol" not in names and "fwd-vol" in names
    # refused by the follower itself: nothing reached the leader
    assert not [e for e in audit(c, lead) if e["request"].get("volume") == "mon-vol"]


def test_dashboard_from_a_follower_after_the_leader_is_killed(c, lead):
    """The dashboard loaded from a follower shows the live cluster and its
    MDMs; the leader killed -9, a change on the follower waits no longer
    than a few seconds for an answer and is made once, by the new leader,
    and the page carries on through the MDM it was loaded from."""
    pytest.importorskip("selenium")
    from test_dashboard import Browser

    f = followers(c, lead)[0]
    url = c.http_urls[f - 1]
    b = Browser(url)
    try:
        b.d.get(url + "/")
        b.sign_in(c.http_admin_token)
        b.tab("volumes")
        b.wait("fwd-vol listed", lambda: "fwd-vol" in b.volume_rows())
        b.tab("mdms")

        def mdm_rows():
            return b.js("return [...document.querySelectorAll('#mdm-list tr[data-mdm]')].map(r =>"
                        " [Number(r.dataset.mdm), r.cells[1].textContent.trim(),"
                        " r.cells[0].textContent.includes('serving this page')])")
        b.wait("the MDMs, the leader and the one serving the page", lambda: sorted(mdm_rows()) == [
            [i, "leader" if i == lead else "follower", i == f] for i in range(1, N + 1)])

        c.daemons[c.mdm_name(lead)].stop(signal.SIGKILL)
        t0 = time.monotonic()
        key = {"Idempotency-Key": "after-kill-1"}
        answers = []

        def made():
            t = time.monotonic()
            r = api(c, f).post(API + "/volumes", {"name": "after-kill", "size": "16M"},
                               headers=key)
            answers.append((r.status, time.monotonic() - t, r))
            return r.status == 201
        wait_for("the change made by a new leader", made, timeout=60, interval=0.2)
        print(f"leader kill -9 to a volume created over REST: {time.monotonic() - t0:.2f} s, "
              f"{len(answers)} tries")
        for status, took, r in answers:
            assert took < ELECTION_ANSWER_S, (took, r)
            assert status in (201, 503), r
            if status == 503:
                assert r.headers["Retry-After"], dict(r.headers)
                assert r.json["error"].startswith("no leader yet; retry"), r
        new = wait_for("the new leader", lambda: c.mdm_leader())
        assert new != lead
        assert r.headers["Cairn-Answered-By"] == c.mdm_addrs[new - 1]
        # made once: the same key is the same change (its first outcome
        # again, not "already exists"), and one volume of that name
        r = api(c, f).post(API + "/volumes", {"name": "after-kill", "size": "16M"}, headers=key)
        assert r.status == 201, r
        r = api(c, f).post(API + "/volumes", {"name": "after-kill", "size": "16M"})
        assert r.status == 409, r
        assert [v["name"] for v in cli_json(c, "volume", "list")].count("after-kill") == 1
        entries = [e for e in audit(c, new) if e["op"] == "volume_create"
                   and e["request"].get("volume") == "after-kill"]
        assert [e["result"] for e in entries].count("ok") <= 2, entries  # the first and its repeat

        # the page, still on the follower, shows the new leader and the new volume
        b.wait("the new leader in the page", lambda: (
            [i for i, role, _ in mdm_rows() if role == "leader"] == [new]
            and [i for i, _, me in mdm_rows() if me] == [f]), timeout=30)
        b.tab("volumes")
        b.wait("after-kill listed", lambda: "after-kill" in b.volume_rows(), timeout=30)
        errors = [e for e in b.d.get_log("browser") if e["level"] == "SEVERE"
                  and "/api/v1/" not in e["message"]]
        assert not errors, errors
    finally:
        b.d.quit()


def test_no_leader_answers_503_in_bounded_time(c, lead):
    """Two MDMs of three gone: the one left never leads, and its REST API
    says so within a few seconds, for a read and for a change (never made),
    rather than hanging; with them back, it serves again."""
    new = wait_for("a leader", c.mdm_leader)
    left = next(i for i in range(1, N + 1) if i not in (lead, new))
    c.daemons[c.mdm_name(new)].stop(signal.SIGKILL)
    for method, body in (("GET", None), ("POST", {"name": "no-quorum", "size": "16M"})):
        t = time.monotonic()
        r = api(c, left).request(method, API + ("/status" if method == "GET" else "/volumes"),
                                 body=body)
        took = time.monotonic() - t
        assert r.status == 503, r
        assert took < ELECTION_ANSWER_S, (took, r)
        assert r.json["error"].startswith("no leader yet; retry"), r
        assert int(r.headers["Retry-After"]) >= 1, dict(r.headers)
    for i in (lead, new):
        if i == 1:
            c.start_mdm()
        else:
            c.start_peer_mdm(i, join=False)
    wait_for("the REST API served again", lambda: api(c, left).get(API + "/status").status == 200,
             timeout=60, interval=0.2)
    assert "no-quorum" not in {v["name"] for v in cli_json(c, "volume", "list")}


def test_change_on_a_follower_while_the_leader_is_cut_off(c, lead):
    """The leader cut off the network (silent: no reset) with the
    follower's call on its way to it: the follower sends it again, with its
    request id, to the leader elected without the old one, instead of
    waiting for the call's timeout."""
    old = wait_for("a leader", c.mdm_leader, timeout=60)
    f = followers(c, old)[0]
    assert api(c, f).get(API + "/status").status == 200  # its link to the leader is up
    c.cut_mdm(old)
    try:
        key = {"Idempotency-Key": "while-cut-1"}
        answers = []

        def made():
            t = time.monotonic()
            r = api(c, f).post(API + "/volumes", {"name": "while-cut", "size": "16M"},
                               headers=key)
            answers.append((r.status, time.monotonic() - t, r))
            return r.status == 201
        t0 = time.monotonic()
        wait_for("the change made by a new leader", made, timeout=60, interval=0.2)
        print(f"leader cut off to a volume created over REST: {time.monotonic() - t0:.2f} s, "
              f"{len(answers)} tries")
        for status, took, r in answers:
            assert took < ELECTION_ANSWER_S, (took, r)
            assert status in (201, 503), r
        assert answers[-1][2].headers["Cairn-Answered-By"] != c.mdm_addrs[old - 1]
    finally:
        c.restore_mdm(old)

    def all_back():
        ms = json.loads(c.cairn("mdm", "list", json_out=True).stdout)
        return (len([m for m in ms if m["role"] == "leader"]) == 1
                and all(m["reachable"] for m in ms))
    wait_for("every MDM back", all_back, timeout=60, interval=0.2)
    assert [v["name"] for v in cli_json(c, "volume", "list")].count("while-cut") == 1
