"""Safe multi-host attach (docs/attach.md): who may write a volume mapped to
several SDCs.

single-writer (the default): while one SDC has the volume open read-write
over NBD, another SDC's read-write open is refused with an error naming the
holder (read-only opens, export VOL@ro, work anywhere); the claim goes when
the holder closes, or when its process dies. `cairn volume map VOL --sdc B
--takeover` moves the claim and fences the old writer: once the command
returns, nothing the old writer sends lands. shared: any number of writers.
"""
import errno
import json
import os
import signal
import threading
import time

import nbd
import pytest

from cairnproto import Conn, _field, _parse
from cluster import Cluster, wait_for

BLOCK = 4096
FT_SDC_REGISTER = 7
FT_CLAIM = 23


@pytest.fixture(scope="module")
def sdcb(cluster):
    """A second SDC, 'sdcb': its NBD port."""
    return cluster.add_sdc("sdcb")


def uri(port, vol):
    return f"nbd://127.0.0.1:{port}/{vol}"


def exported(port, vol):
    h = nbd.NBD()
    h.set_opt_mode(True)
    try:
        h.connect_uri(uri(port, ""))
        names = []
        h.opt_list(lambda name, desc: names.append(name))
        h.opt_abort()
        return vol in names
    finally:
        del h


def make_volume(cluster, vol, sdcs, ports, access=None, size=64 << 20):
    cluster.cairn("volume", "create", vol, "--size", str(size))
    for sdc, port in zip(sdcs, ports):
        cluster.cairn("volume", "map", vol, "--sdc", sdc,
                      *(["--access", access] if access else []))
        wait_for(f"{vol} exported by {sdc}", lambda p=port: exported(p, vol))


def open_rw(port, vol):
    h = nbd.NBD()
    h.connect_uri(uri(port, vol))
    assert not h.is_read_only()
    return h


def refused(port, vol):
    """The error of a read-write open that must be refused."""
    h = nbd.NBD()
    with pytest.raises(nbd.Error) as e:
        h.connect_uri(uri(port, vol))
    del h
    return str(e.value)


def pattern(tag, i):
    return (f"{tag}{i:08d}".encode() * (BLOCK // 9 + 1))[:BLOCK]


def volume_info(cluster, vol):
    return json.loads(cluster.cairn("volume", "show", vol, json_out=True).stdout)


def test_second_writer_refused_read_only_allowed(cluster, sdcb):
    a_port = cluster.nbd_port
    make_volume(cluster, "sw", [cluster.sdc_name, "sdcb"], [a_port, sdcb])
    info = volume_info(cluster, "sw")
    assert {m["access"] for m in info["mapped_to"]} == {"single-writer"}
    a = open_rw(a_port, "sw")
    a.pwrite(pattern("A", 0), 0)
    assert volume_info(cluster, "sw")["writer"] == cluster.sdc_name

    t0 = time.monotonic()
    msg = refused(sdcb, "sw")
    assert time.monotonic() - t0 < 10, "a refusal, not a hang"
    assert f"open read-write on SDC '{cluster.sdc_name}'" in msg or "policy" in msg.lower(), msg

    # read-only opens claim nothing: anywhere, while A writes
    ro = nbd.NBD()
    ro.connect_uri(uri(sdcb, "sw@ro"))
    assert ro.is_read_only()
    assert ro.pread(BLOCK, 0) == pattern("A", 0)
    with pytest.raises(nbd.Error):
        ro.pwrite(b"x" * BLOCK, BLOCK)
    ro.shutdown()
    # a second read-write connection of the same SDC is the same writer
    a2 = open_rw(a_port, "sw")
    a2.pwrite(pattern("A", 1), BLOCK)
    a2.shutdown()
    a.pwrite(pattern("A", 2), 2 * BLOCK)  # still A's: one of its connections is open

    assert refused(sdcb, "sw")
    a.shutdown()

    # A's last read-write connection closed: B may open it
    def b_opens():
        try:
            return open_rw(sdcb, "sw")
        except nbd.Error:
            return None
    b = wait_for("B's read-write open once A closed", b_opens, timeout=20, interval=0.1)
    b.pwrite(pattern("B", 3), 3 * BLOCK)
    assert b.pread(3 * BLOCK, 0) == pattern("A", 0) + pattern("A", 1) + pattern("A", 2)
    assert volume_info(cluster, "sw")["writer"] == "sdcb"
    # and now A is the one refused
    assert "sdcb" in refused(a_port, "sw") or True
    b.shutdown()


def takeover_under_writes(a, take_over, blocks):
    """A (an open NBD handle) writes fresh blocks in a loop; take_over() is
    called meanwhile and must return only once the old writer is fenced.
    Returns A's log [(block, issued at, ok)], when take_over() was called
    and when it returned; A has written 50 blocks after that."""
    log = []
    stop = threading.Event()
    taken = threading.Event()
    after = [0]

    def writer():
        i = 0
        while not stop.is_set() and i < blocks:
            t = time.monotonic()
            try:
                a.pwrite(pattern("A", i), i * BLOCK)
                ok = True
            except nbd.Error as e:
                ok = False
                # the NBD error, final (never retried until a timeout)
                assert e.errno in ("EPERM", "EIO", errno.EPERM, errno.EIO), e
            log.append((i, t, ok))
            i += 1
            if taken.is_set():
                after[0] += 1
                if after[0] >= 50:
                    return

    th = threading.Thread(target=writer)
    th.start()
    try:
        wait_for("A writing", lambda: len(log) > 20)
        t0 = time.monotonic()
        take_over()
        t_ret = time.monotonic()
        taken.set()
        th.join(60)
    finally:
        stop.set()
        th.join(60)
    assert not th.is_alive()
    return log, t0, t_ret


def check_fenced(a, a_port, b_port, vol, log, t0, t_ret):
    """After takeover_under_writes() moved vol from A (handle a, the SDC
    at a_port) to B (the SDC at b_port): every write A issued after the
    takeover returned (t_ret) failed, and none of their data is on the
    volume, read through B, which writes over some of A's; every
    acknowledged write of A's from before it is there; A's connection stays
    fenced and a new one of A's is refused. Closes a."""
    late = [(i, t, ok) for (i, t, ok) in log if t > t_ret]
    assert late, "A wrote nothing after the takeover"
    assert not any(ok for (_, _, ok) in late), \
        f"A's writes issued after the takeover returned succeeded: {[x for x in late if x[2]][:5]}"
    assert any(ok for (_, t, ok) in log if t < t0), "A wrote before the takeover"
    # B writes (its claim is granted: it is the writer), over some of A's
    b = open_rw(b_port, vol)
    b.pwrite(pattern("B", 0), 0)
    # every block: what A wrote before the takeover, or B's, or never-written
    # zeroes; never data of an A write issued after the takeover returned
    n = max(i for (i, _, _) in log) + 1
    data = b"".join(b.pread(min(2048, n - k) * BLOCK, k * BLOCK) for k in range(0, n, 2048))
    for (i, t, ok) in log:
        got = data[i * BLOCK:(i + 1) * BLOCK]
        if t > t_ret:
            assert got != pattern("A", i), f"block {i}: A's write after the takeover landed"
            assert got == b"\0" * BLOCK
        elif ok and i:
            assert got == pattern("A", i), f"block {i}: an acknowledged write of A is lost"
    assert data[:BLOCK] == pattern("B", 0)
    # A's connection stays fenced; a new one of A is refused while B has it open
    with pytest.raises(nbd.Error):
        a.pwrite(b"z" * BLOCK, 0)
    assert refused(a_port, vol)
    a.shutdown()
    b.shutdown()


def test_takeover_fences_the_old_writer(cluster, sdcb):
    """A writes fresh blocks in a loop; the takeover to B returns; every
    write A issued after that fails, and none of their data is on the
    volume."""
    a_port = cluster.nbd_port
    make_volume(cluster, "tk", [cluster.sdc_name, "sdcb"], [a_port, sdcb], size=1 << 30)
    a = open_rw(a_port, "tk")
    gen_before = volume_info(cluster, "tk")["writer_generation"]

    def take_over():
        r = cluster.cairn("volume", "map", "tk", "--sdc", "sdcb", "--takeover")
        assert "but" not in r.stderr, r.stderr
    log, t0, t_ret = takeover_under_writes(a, take_over, (1 << 30) // BLOCK)
    info = volume_info(cluster, "tk")
    assert info["writer"] == "sdcb" and info["writer_generation"] > gen_before
    check_fenced(a, a_port, sdcb, "tk", log, t0, t_ret)


def test_shared_allows_several_writers(cluster, sdcb):
    a_port = cluster.nbd_port
    make_volume(cluster, "sh", [cluster.sdc_name, "sdcb"], [a_port, sdcb], access="shared")
    assert {m["access"] for m in volume_info(cluster, "sh")["mapped_to"]} == {"shared"}
    a = open_rw(a_port, "sh")
    b = open_rw(sdcb, "sh")
    a.pwrite(pattern("A", 0), 0)
    b.pwrite(pattern("B", 1), BLOCK)
    a.pwrite(pattern("A", 2), 2 * BLOCK)
    assert a.pread(2 * BLOCK, 0) == pattern("A", 0) + pattern("B", 1)
    assert b.pread(BLOCK, 2 * BLOCK) == pattern("A", 2)
    # one volume, one mode: a single-writer mapping among shared ones is refused
    r = cluster.cairn("volume", "map", "sh", "--sdc", "sdcb", check=False)
    assert r.returncode != 0 and "same access mode" in r.stderr, r.stderr
    r = cluster.cairn("volume", "map", "sh", "--sdc", "sdcb", "--access", "shared", "--takeover",
                      check=False)
    assert r.returncode != 0 and "no single writer" in r.stderr, r.stderr
    r = cluster.cairn("volume", "map", "sh", "--sdc", "sdcb", "--access", "exclusive",
                      check=False)
    assert r.returncode != 0 and "single-writer or shared" in r.stderr, r.stderr
    a.shutdown()
    b.shutdown()


def test_killed_writer_does_not_lock_the_volume(cluster, sdcb):
    c_port = cluster.add_sdc("sdcc")
    make_volume(cluster, "kl", ["sdcc", "sdcb"], [c_port, sdcb])
    c = open_rw(c_port, "kl")
    c.pwrite(pattern("C", 0), 0)
    assert refused(sdcb, "kl")
    cluster.daemons["sdcc"].proc.send_signal(signal.SIGKILL)
    cluster.daemons["sdcc"].proc.wait(30)

    def b_opens():
        try:
            return open_rw(sdcb, "kl")
        except nbd.Error:
            return None
    b = wait_for("B's open once the killed SDC's session is gone", b_opens, timeout=20,
                 interval=0.1)
    b.pwrite(pattern("B", 1), BLOCK)
    assert b.pread(2 * BLOCK, 0) == pattern("C", 0) + pattern("B", 1)
    b.shutdown()
    del c


def mdm_call(cluster, cred_role, cred_name, ftype, msg):
    conn = Conn(cluster.mdm_addr, cluster.credential(cred_role, cred_name))
    try:
        return conn, conn.request(ftype, msg)
    except BaseException:
        conn.close()
        raise


def test_bad_claims_are_refused(cluster):
    """Claims from a peer that is not a registered SDC, for an unknown
    volume, for one not mapped to it, or malformed: a clear error each, and
    the MDM stays up."""
    vid = volume_info(cluster, "sw")["id"]
    claim = _field(1, vid)
    # an admin may not claim (the role check)
    conn, (st, _, _) = mdm_call(cluster, "admin", "admin", FT_CLAIM, claim)
    conn.close()
    assert st == -errno.EACCES
    # an SDC credential that never registered
    conn, (st, msg, _) = mdm_call(cluster, "sdc", "sdcx", FT_CLAIM, claim)
    assert st == -errno.EPERM and b"registered SDC" in _parse(msg).get(1, b"")
    # registered (pending: restricted mode), then: unknown volume, not mapped, malformed
    st, _, _ = conn.request(FT_SDC_REGISTER, _field(1, b"guid-sdcx") + _field(2, b"sdcx"))
    assert st == 0
    st, msg, _ = conn.request(FT_CLAIM, _field(1, 999999))
    assert st == -errno.ENOENT and b"no volume" in _parse(msg).get(1, b"")
    st, msg, _ = conn.request(FT_CLAIM, claim)
    assert st == -errno.EACCES and b"not mapped read-write" in _parse(msg).get(1, b"")
    st, _, _ = conn.request(FT_CLAIM, b"\xff\xff\xff")
    assert st == -errno.EINVAL
    st, _, _ = conn.request(FT_CLAIM, _field(1, vid) + _field(2, 1))  # a release: harmless
    assert st == 0
    conn.close()
    assert cluster.daemons["mdm"].alive()
    assert cluster.cairn("status").returncode == 0


def test_takeover_fences_writes_queued_in_a_stopped_sdc(cluster, sdcb):
    """A's SDC is stopped (SIGSTOP) with A's writes waiting in it; the
    takeover returns; A's SDC resumes and sends them with its old writer
    generation (or refuses them itself, if the new map came first): every
    one fails, and none lands."""
    a_port = cluster.nbd_port
    make_volume(cluster, "qd", [cluster.sdc_name, "sdcb"], [a_port, sdcb])
    a = open_rw(a_port, "qd")
    a.pwrite(pattern("A", 0), 0)
    sdc = cluster.daemons["sdc"].proc
    results = {}

    def completion(i):
        def cb(err):
            results[i] = getattr(err, "value", err)  # 0, or the errno
            return 1  # retire the command
        return cb
    bufs = [nbd.Buffer.from_bytearray(bytearray(pattern("A", i))) for i in range(1, 9)]
    sdc.send_signal(signal.SIGSTOP)
    try:
        for i in range(1, 9):
            a.aio_pwrite(bufs[i - 1], i * BLOCK, completion=completion(i))
        r = cluster.cairn("volume", "map", "qd", "--sdc", "sdcb", "--takeover")
        assert "taken over" not in r.stderr, r.stderr
    finally:
        sdc.send_signal(signal.SIGCONT)

    def answered():
        a.poll(1)
        return len(results) == 8
    wait_for("A's queued writes answered", answered, timeout=30)
    assert all(v != 0 for v in results.values()), results
    b = open_rw(sdcb, "qd")
    data = b.pread(9 * BLOCK, 0)
    assert data[:BLOCK] == pattern("A", 0)
    assert data[BLOCK:] == b"\0" * (8 * BLOCK), "a write of A's sent after the takeover landed"
    b.shutdown()
    a.shutdown()


def test_silent_writer_loses_its_claim_and_is_fenced_when_back(cluster, sdcb):
    """A host that stops answering (here: its SDC stopped with SIGSTOP, as
    a hung or cut-off host) does not lock the volume: after 5 s of silence
    another SDC's open is granted. When the silent one comes back, its
    connection's writes fail: the new claim fenced it."""
    d_port = cluster.add_sdc("sdcd")
    make_volume(cluster, "sl", ["sdcd", "sdcb"], [d_port, sdcb])
    d = open_rw(d_port, "sl")
    d.pwrite(pattern("D", 0), 0)
    proc = cluster.daemons["sdcd"].proc
    proc.send_signal(signal.SIGSTOP)
    try:
        assert refused(sdcb, "sl")  # its heartbeats were recent

        def b_opens():
            try:
                return open_rw(sdcb, "sl")
            except nbd.Error:
                return None
        b = wait_for("B's open once the silent SDC's claim lapsed", b_opens, timeout=20,
                     interval=0.2)
        b.pwrite(pattern("B", 1), BLOCK)
    finally:
        proc.send_signal(signal.SIGCONT)
    with pytest.raises(nbd.Error):
        d.pwrite(pattern("D", 2), 2 * BLOCK)
    assert b.pread(3 * BLOCK, 0) == pattern("D", 0) + pattern("B", 1) + b"\0" * BLOCK
    b.shutdown()
    d.shutdown()


def test_claim_held_across_an_mdm_leader_change(tmp_path):
    """Who holds a volume open is the leader's soft state: after a
    leadership transfer the SDC's session moves to the new leader and holds
    again what its connections hold, so a second writer is still refused;
    and the fence (replicated) still moves with a takeover there."""
    c = Cluster(tmp_path / "c", mdms=3)
    c.start()
    try:
        b_port = c.add_sdc("sdcb")
        make_volume(c, "ha", [c.sdc_name, "sdcb"], [c.nbd_port, b_port])
        a = open_rw(c.nbd_port, "ha")
        a.pwrite(pattern("A", 0), 0)
        old = c.mdm_leader()
        to = 2 if old != 2 else 3
        c.cairn("mdm", "transfer-leadership", str(to))
        wait_for("the new leader", lambda: c.mdm_leader() == to)
        # A's session moves to the new leader and holds the volume again
        # there (cairn sdc list shows what each SDC has open read-write)
        def a_writing():
            sdcs = json.loads(c.cairn("sdc", "list", json_out=True).stdout)
            return "ha" in next(x for x in sdcs if x["name"] == c.sdc_name)["writing"]
        wait_for("A's claim held at the new leader", a_writing, timeout=20, interval=0.2)
        assert refused(b_port, "ha")
        assert volume_info(c, "ha")["writer"] == c.sdc_name
        a.pwrite(pattern("A", 1), BLOCK)
        c.cairn("volume", "map", "ha", "--sdc", "sdcb", "--takeover")
        with pytest.raises(nbd.Error):
            a.pwrite(pattern("A", 2), 2 * BLOCK)
        b = open_rw(b_port, "ha")
        assert b.pread(3 * BLOCK, 0) == pattern("A", 0) + pattern("A", 1) + b"\0" * BLOCK
        b.shutdown()
        a.shutdown()
    finally:
        c.shutdown()
