"""Snapshots (docs/snapshots.md), through real NBD clients.

A snapshot taken under a verifying load is a valid cut: the writers record
when each write was issued and acknowledged, and the snapshot, read back over
NBD as VOL@SNAP, must hold every write acknowledged before `cairn snapshot
create` started, none issued after it returned, and no write whose
predecessor (acknowledged before it was issued) is missing. The same for a
group snapshot of two volumes; then revert, removal (space comes back, the
data of the other layers does not change), and snapshot data through a
kill -9 of an SDS and the rebuild of its copies.
"""
import json
import os
import random
import signal
import struct
import subprocess
import threading
import time

import nbd
import pytest

from cluster import Cluster, wait_for

BLOCK = 4096
MB = 1 << 20


class SlowCluster(Cluster):
    """Two of the four SDSs (which share some PGs) install every map that
    adds or drops a snapshot 300 ms late (CAIRN_TEST_SNAPSHOT_MAP_DELAY_MS),
    as if slow to hear of it. Without the pause of the cut, writes to their
    PGs would land in the snapshot's layer while the other SDSs already put
    later writes in the new one, and the cut checks below would fail: with
    the pause, those SDSs take no change to the volumes until they know."""

    def _daemon(self, name, argv):
        d = super()._daemon(name, argv)
        if name in ("sds1", "sds2"):
            d.env = dict(d.env or {}, CAIRN_TEST_SNAPSHOT_MAP_DELAY_MS="300")
        return d


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # sds5 joins in the rebalance test
    c = SlowCluster(tmp_path_factory.mktemp("snap"), sds_sizes=(2 << 30,) * 5, pgs=64, initial=4)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


def content(vol_tag, thread, seq, block):
    head = struct.pack("<4sIQQ", vol_tag, thread, seq, block)
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


class Writers:
    """Threads writing 4 KiB blocks at QD1 each, every thread its own blocks
    (block % threads == thread) of its own NBD connection, recording for
    every write (block, seq, issued, acked) in monotonic ns."""

    def __init__(self, cluster, vol, tag, blocks, threads=4):
        self.cluster, self.vol, self.tag = cluster, vol, tag
        self.blocks, self.threads = blocks, threads
        self.log = [[] for _ in range(threads)]  # per thread: (block, seq, issued, acked)
        self.errors = []
        self.stop = threading.Event()
        self.ts = [threading.Thread(target=self.run, args=(t,)) for t in range(threads)]

    def run(self, t):
        h = nbd.NBD()
        h.connect_uri(self.cluster.uri(self.vol))
        rnd = random.Random(t * 7919 + hash(self.tag))
        seq = 0
        try:
            while not self.stop.is_set():
                b = rnd.randrange(self.blocks // self.threads) * self.threads + t
                seq += 1
                data = content(self.tag, t, seq, b)
                issued = time.monotonic_ns()
                h.pwrite(data, b * BLOCK)
                acked = time.monotonic_ns()
                self.log[t].append((b, seq, issued, acked))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            h.shutdown()

    def start(self):
        for th in self.ts:
            th.start()

    def finish(self):
        self.stop.set()
        for th in self.ts:
            th.join(timeout=60)
        assert not self.errors, f"writes failed under the snapshot: {self.errors[:3]}"

    def count(self):
        return sum(len(x) for x in self.log)


def pwrite_all(h, data, off=0):
    for k in range(0, len(data), 4 * MB):
        h.pwrite(bytes(data[k:k + 4 * MB]), off + k)


def pread_all(h, size):
    out = bytearray()
    for off in range(0, size, 4 * MB):
        out += h.pread(min(4 * MB, size - off), off)
    return bytes(out)


def read_export(cluster, name, size):
    h = nbd.NBD()
    h.connect_uri(cluster.uri(name))
    assert h.is_read_only(), f"{name} is exported writable"
    out = pread_all(h, size)
    h.shutdown()
    return out


def cut_of(w, image):
    """For each block of image (w's volume read back), the writes it holds:
    returns (included, excluded) lists of (issued, acked) over every write
    of w, after checking each block holds one of its own writes (or zeroes)."""
    included, excluded = [], []
    by_block = {}
    for t, log in enumerate(w.log):
        for (b, seq, issued, acked) in log:
            by_block.setdefault(b, []).append((t, seq, issued, acked))
    for b, writes in by_block.items():
        got = image[b * BLOCK:(b + 1) * BLOCK]
        if got == bytes(BLOCK):
            upto = 0
        else:
            tag, t, seq, blk = struct.unpack("<4sIQQ", got[:24])
            assert tag == w.tag and blk == b, f"block {b} holds another block's data"
            assert got == content(tag, t, seq, blk), f"block {b} is torn"
            upto = [i for i, x in enumerate(writes) if x[0] == t and x[1] == seq]
            assert upto, f"block {b} holds a write that was never acknowledged"
            upto = upto[0] + 1
        for i, (_, _, issued, acked) in enumerate(writes):
            (included if i < upto else excluded).append((issued, acked))
    return included, excluded


def check_cut(parts, started, returned):
    """parts: (included, excluded) per volume. The promise of docs/snapshots.md."""
    inc = [x for p in parts for x in p[0]]
    exc = [x for p in parts for x in p[1]]
    late = [x for x in inc if x[0] > returned]
    assert not late, f"{len(late)} writes issued after the command returned are in the snapshot"
    lost = [x for x in exc if x[1] < started]
    assert not lost, f"{len(lost)} writes acknowledged before the command are missing"
    if inc and exc:
        first_missing_ack = min(a for _, a in exc)
        last_included_issue = max(i for i, _ in inc)
        assert first_missing_ack >= last_included_issue, (
            "not a cut: a write issued after another was acknowledged is in the snapshot, "
            "and that other one is not")
    return len(inc), len(exc)


def snapshot_under_load(cluster, vols, group=None):
    writers = [Writers(cluster, v, tag, (64 * MB) // BLOCK) for v, tag in vols]
    for w in writers:
        w.start()
    wait_for("writes under way", lambda: all(w.count() > 200 for w in writers), timeout=60)
    started = time.monotonic_ns()
    if group:
        cluster.cairn("snapshot", "create", "--group", group, *[v for v, _ in vols])
    else:
        cluster.cairn("snapshot", "create", vols[0][0], "cut")
    returned = time.monotonic_ns()
    before = [w.count() for w in writers]
    wait_for("writes after the snapshot", lambda: all(
        w.count() > b + 200 for w, b in zip(writers, before)), timeout=60)
    for w in writers:
        w.finish()
    return writers, started, returned


def map_snapshot(cluster, spec):
    cluster.cairn("volume", "map", spec, "--sdc", cluster.sdc_name)
    cluster.wait_export(spec)


def test_snapshot_under_load_is_a_cut(cluster):
    cluster.create_volume("cut1", 64 * MB)
    (w,), started, returned = snapshot_under_load(cluster, [("cut1", b"cut1")])
    map_snapshot(cluster, "cut1@cut")
    inc, exc = check_cut([cut_of(w, read_export(cluster, "cut1@cut", 64 * MB))],
                         started, returned)
    print(f"snapshot cut: {inc} writes in, {exc} out, of {w.count()}")
    assert inc > 0 and exc > 0
    # the volume itself holds the last write of every block
    cur = read_export(cluster, "cut1@ro", 64 * MB)
    for t, log in enumerate(w.log):
        last = {}
        for (b, seq, _, _) in log:
            last[b] = seq
        for b, seq in last.items():
            assert cur[b * BLOCK:(b + 1) * BLOCK] == content(b"cut1", t, seq, b)


def test_group_snapshot_is_one_cut(cluster):
    cluster.create_volume("ga", 64 * MB)
    cluster.create_volume("gb", 64 * MB)
    writers, started, returned = snapshot_under_load(cluster, [("ga", b"ga__"), ("gb", b"gb__")],
                                                     group="g1")
    parts = []
    for w, v in zip(writers, ("ga", "gb")):
        map_snapshot(cluster, f"{v}@g1")
        parts.append(cut_of(w, read_export(cluster, f"{v}@g1", 64 * MB)))
    inc, exc = check_cut(parts, started, returned)
    print(f"group snapshot cut: {inc} writes in, {exc} out")
    listed = cluster.cairn("--json", "snapshot", "list").stdout
    groups = {(s["volume"], s["name"]): s["group"] for s in json.loads(listed)}
    assert groups[("ga", "g1")] == "g1" and groups[("gb", "g1")] == "g1"


def nbd_map(cluster, name):
    r = subprocess.run(["nbdinfo", "--map", "--json", cluster.uri(name)], capture_output=True,
                       text=True, timeout=60, check=True)
    return json.loads(r.stdout)


def test_snapshot_reads_holes_revert_and_remove(cluster):
    """Data through two snapshots; BLOCK_STATUS shows a snapshot's holes;
    revert; removing snapshots keeps every other layer's data and gives
    the space back."""
    vol = "lay"
    cluster.create_volume(vol, 64 * MB)
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    model = bytearray(64 * MB)

    def w(off, n):
        data = os.urandom(n)
        h.pwrite(data, off)
        model[off:off + n] = data

    def used():
        return cluster.status()["pools"][0]["used"]

    base_used = used()
    w(0, 8 * MB)
    h.flush()
    cluster.cairn("snapshot", "create", vol, "s1")
    s1 = bytes(model)
    w(MB, 2 * MB)
    w(5 * MB + 100, 3000)  # part of a granule over the snapshot's data
    w(20 * MB, MB)
    h.flush()
    cluster.cairn("snapshot", "create", vol, "s2")
    s2 = bytes(model)
    w(2 * MB + 512, 10000)
    w(30 * MB, 4096)
    h.flush()
    assert pread_all(h, 64 * MB) == bytes(model)
    map_snapshot(cluster, f"{vol}@s1")
    map_snapshot(cluster, f"{vol}@s2")
    assert read_export(cluster, f"{vol}@s1", 64 * MB) == s1
    assert read_export(cluster, f"{vol}@s2", 64 * MB) == s2
    # s1 holds data in its first 8 MiB only: BLOCK_STATUS says the rest is a hole
    extents = nbd_map(cluster, f"{vol}@s1")
    data = [(e["offset"], e["length"]) for e in extents if not e["type"] & 1]
    assert data and data[0][0] == 0 and sum(n for _, n in data) == 8 * MB, data
    # sizes: s1's own bytes are what s2 wrote over it (2 MiB and two granules)
    def own():
        snaps = {s["name"]: s for s in json.loads(
            cluster.cairn("--json", "snapshot", "list", vol).stdout)}
        return snaps["s1"]["own"]
    wait_for("s1's own bytes reported", lambda: own() >= 2 * MB, timeout=30)
    assert own() < 3 * MB

    # revert to s2 (refused while mapped read-write), then back to the model
    r = cluster.cairn("volume", "revert", vol, "--to", "s2", check=False)
    assert r.returncode != 0 and "read-write" in r.stderr
    h.shutdown()
    cluster.cairn("volume", "unmap", vol, "--sdc", cluster.sdc_name)
    cluster.cairn("volume", "revert", vol, "--to", "s2")
    cluster.cairn("volume", "map", vol, "--sdc", cluster.sdc_name)
    cluster.wait_export(vol)
    assert read_export(cluster, f"{vol}@ro", 64 * MB) == s2
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    model = bytearray(s2)
    w(3 * MB, 4096)

    # remove s1 (merged into s2): s2 and the volume keep their data
    cluster.cairn("volume", "unmap", f"{vol}@s1", "--sdc", cluster.sdc_name)
    cluster.cairn("snapshot", "remove", f"{vol}@s1")
    assert read_export(cluster, f"{vol}@s2", 64 * MB) == s2
    assert pread_all(h, 64 * MB) == bytes(model)
    cluster.cairn("volume", "unmap", f"{vol}@s2", "--sdc", cluster.sdc_name)
    r = cluster.cairn("snapshot", "remove", f"{vol}@s2")
    assert pread_all(h, 64 * MB) == bytes(model)
    # every removed layer merged or dropped: the volume's data only, once per copy
    wait_for("the snapshots' space back", lambda: used() - base_used == 9 * MB, timeout=60)
    listed = json.loads(cluster.cairn("--json", "snapshot", "list", vol).stdout)
    assert listed == []
    copies_equal(cluster, vol, [])
    h.shutdown()


def copies_equal(cluster, vol, snapshots):
    """check-copies: every copy of the volume and of each of its snapshots
    (read through its layers at each copy) holds the same bytes."""
    r = json.loads(cluster.cairn("--json", "volume", "check-copies", vol).stdout)
    assert r["mismatches"] == 0 and r["errors"] == 0, r
    assert sorted(x["name"] for x in r["snapshots"]) == sorted(snapshots), r
    for x in r["snapshots"]:
        assert x["mismatches"] == 0 and x["errors"] == 0, r
    return r


def wait_protected(cluster, timeout=180):
    def ok():
        p = cluster.status()["pools"][0]
        return p["pgs_fully_protected"] == p["pg_count"] and p["pgs_rebuilding"] == 0
    wait_for("every PG fully protected", ok, timeout=timeout)


def test_snapshot_survives_kill9_and_rebuild(cluster):
    vol = "kr"
    cluster.create_volume(vol, 64 * MB)
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    snap = os.urandom(32 * MB)
    pwrite_all(h, snap)
    h.flush()
    cluster.cairn("snapshot", "create", vol, "k1")
    over = os.urandom(4 * MB)
    h.pwrite(over, 6 * MB)
    h.pwrite(b"x" * 100, 20 * MB + 1000)
    h.flush()
    cur = bytearray(snap)
    cur[6 * MB:10 * MB] = over
    cur[20 * MB + 1000:20 * MB + 1100] = b"x" * 100
    cluster.daemons["sds2"].stop(signal.SIGKILL)
    wait_for("sds2 down", lambda: any(s["name"] == "sds2" and s["state"] == "down"
                                      for s in cluster.status()["sds"]), timeout=60)
    wait_protected(cluster)
    map_snapshot(cluster, f"{vol}@k1")
    assert read_export(cluster, f"{vol}@k1", 64 * MB)[:32 * MB] == snap
    assert pread_all(h, 32 * MB) == bytes(cur)
    h.shutdown()
    copies_equal(cluster, vol, ["k1"])
    cluster.start_sds(1)
    wait_protected(cluster)
    copies_equal(cluster, vol, ["k1"])


def test_snapshots_move_with_rebalance_and_drain(cluster):
    """A new SDS takes its share of the copies, snapshots' layers with them;
    a drained SDS gives all of its up; both under writes to the volume."""
    vol = "mv"
    cluster.create_volume(vol, 64 * MB)
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    s1 = os.urandom(48 * MB)
    pwrite_all(h, s1)
    h.flush()
    cluster.cairn("snapshot", "create", vol, "m1")
    cur = bytearray(s1)
    for i in range(0, 48, 3):
        data = os.urandom(8192)
        h.pwrite(data, i * MB + 4096 * i)
        cur[i * MB + 4096 * i:i * MB + 4096 * i + 8192] = data
    h.flush()
    map_snapshot(cluster, f"{vol}@m1")
    cluster.add_sds(4)
    cluster.cairn("rebalance", "wait", "--timeout", "300")
    wait_protected(cluster)
    assert read_export(cluster, f"{vol}@m1", 64 * MB)[:48 * MB] == s1
    assert pread_all(h, 48 * MB) == bytes(cur)
    copies_equal(cluster, vol, ["m1"])
    cluster.cairn("sds", "remove", "sds1")
    wait_for("sds1 drained and forgotten", lambda: "sds1" not in {
        s["name"] for s in cluster.status()["sds"]}, timeout=300)
    cluster.forget_sds(0)
    wait_protected(cluster)
    assert read_export(cluster, f"{vol}@m1", 64 * MB)[:48 * MB] == s1
    assert pread_all(h, 48 * MB) == bytes(cur)
    copies_equal(cluster, vol, ["m1"])
    h.shutdown()


def test_full_pool_with_a_snapshot_fails_writes_loses_nothing(tmp_path):
    """A thin pool that fills up while a snapshot holds the old data: the
    writes that need a new slot fail with ENOSPC, the snapshot and every
    acknowledged write read back, the CLI says the pool is out of space;
    removing the snapshot (a merge, which needs no new slot) gives the
    space back and the writes go through again."""
    import errno
    c = Cluster(tmp_path, sds_sizes=(80 << 20,) * 3, pgs=32)
    try:
        c.start()
        c.create_volume("full", 256 * MB)
        h = nbd.NBD()
        h.connect_uri(c.uri("full"))
        base = {}
        for i in range(48):  # 48 extents of the ~112 the pool holds (two copies)
            base[i] = os.urandom(64 << 10)
            h.pwrite(base[i], i * MB)
        h.flush()
        c.cairn("snapshot", "create", "full", "old")
        cur, failed = dict(base), 0
        for i in range(48):  # the same extents again: each needs a new slot in the head
            data = os.urandom(64 << 10)
            try:
                h.pwrite(data, i * MB)
                cur[i] = data
            except nbd.Error as e:
                assert e.errnum == errno.ENOSPC, e
                failed += 1
        for i in range(48, 120):  # and new extents, until the pool is full
            data = os.urandom(64 << 10)
            try:
                h.pwrite(data, i * MB)
                cur[i] = data
            except nbd.Error as e:
                assert e.errnum == errno.ENOSPC, e
                failed += 1
        assert failed > 0, "the pool never filled"
        h.flush()
        for i, data in cur.items():
            assert h.pread(len(data), i * MB) == data
        map_snapshot(c, "full@old")
        s = nbd.NBD()
        s.connect_uri(c.uri("full@old"))
        for i, data in base.items():
            assert s.pread(len(data), i * MB) == data
        s.shutdown()

        def full():
            p = c.status()["pools"][0]
            return p["enospc_errors"] > 0 and "OUT OF SPACE" in p["health"]
        wait_for("the CLI to report the full pool", full)
        used_full = c.status()["pools"][0]["used"]
        c.cairn("volume", "unmap", "full@old", "--sdc", c.sdc_name)
        c.cairn("snapshot", "remove", "full@old")
        wait_for("the snapshot's space back",
                 lambda: c.status()["pools"][0]["used"] < used_full, timeout=60)
        for i, data in cur.items():
            assert h.pread(len(data), i * MB) == data
        # room again: a write that failed for space now lands
        gone = [i for i in range(120) if i not in cur]
        assert gone
        data = os.urandom(64 << 10)
        wait_for("a write to land again", lambda: h.pwrite(data, gone[0] * MB) is None, timeout=30)
        assert h.pread(len(data), gone[0] * MB) == data
        h.shutdown()
        copies_equal(c, "full", [])
    finally:
        c.shutdown()


def test_clone_write_flatten_under_load(cluster):
    """A clone is writable at once and reads the snapshot's data; the
    snapshot cannot go while the clone shares it; a flatten under a
    verifying load on the clone (throttled, with progress) leaves the clone
    whole, after which the snapshot, and the source, can go."""
    src = "src"
    cluster.create_volume(src, 64 * MB)
    h = nbd.NBD()
    h.connect_uri(cluster.uri(src))
    base = bytearray(os.urandom(32 * MB)) + bytearray(32 * MB)
    pwrite_all(h, base[:32 * MB])
    h.flush()
    cluster.cairn("snapshot", "create", src, "base")
    srcdata = bytearray(base)
    srcnew = os.urandom(4 * MB)
    h.pwrite(srcnew, 8 * MB)
    srcdata[8 * MB:12 * MB] = srcnew
    h.flush()

    cluster.cairn("volume", "clone", f"{src}@base", "cl")
    cluster.cairn("volume", "map", "cl", "--sdc", cluster.sdc_name)
    cluster.wait_export("cl")
    c = nbd.NBD()
    c.connect_uri(cluster.uri("cl"))
    assert pread_all(c, 64 * MB) == bytes(base)
    model = bytearray(base)
    for off, n in ((100, 5000), (3 * MB, 2 * MB), (40 * MB + 7, 300)):
        data = os.urandom(n)
        c.pwrite(data, off)
        model[off:off + n] = data
    c.flush()
    assert pread_all(c, 64 * MB) == bytes(model)
    c.shutdown()
    r = cluster.cairn("snapshot", "remove", f"{src}@base", check=False)
    assert r.returncode != 0 and "clone" in r.stderr and "flatten" in r.stderr, r.stderr
    cluster.cairn("volume", "unmap", src, "--sdc", cluster.sdc_name)
    r = cluster.cairn("volume", "remove", src, check=False)
    assert r.returncode != 0 and "clone" in r.stderr, r.stderr
    cluster.cairn("volume", "map", src, "--sdc", cluster.sdc_name)
    cluster.wait_export(src)

    w = Writers(cluster, "cl", b"cl__", (64 * MB) // BLOCK, threads=2)
    w.start()
    wait_for("writes under way", lambda: w.count() > 100, timeout=60)
    cluster.cairn("volume", "flatten", "cl", "--rate", "4")
    shown = json.loads(cluster.cairn("--json", "volume", "show", "cl").stdout)
    assert shown["clone_of"] == f"{src}@base" and shown["flattening"], shown
    assert "flattening:" in cluster.cairn("volume", "show", "cl").stdout
    r = cluster.cairn("volume", "flatten", "cl", "--rate", "4", "--wait", timeout=300)
    assert "100%" in r.stderr, r.stderr
    shown = json.loads(cluster.cairn("--json", "volume", "show", "cl").stdout)
    assert not shown.get("clone_of") and not shown.get("flattening"), shown
    n = w.count()
    wait_for("writes after the flatten", lambda: w.count() > n + 100, timeout=60)
    w.finish()
    for t, log in enumerate(w.log):
        for (b, seq, _, _) in log:
            model[b * BLOCK:(b + 1) * BLOCK] = content(b"cl__", t, seq, b)
    # the snapshot and then the source go: the clone stands alone
    cluster.cairn("snapshot", "remove", f"{src}@base")
    assert read_export(cluster, "cl@ro", 64 * MB) == bytes(model)
    assert pread_all(h, 64 * MB) == bytes(srcdata)
    h.shutdown()
    copies_equal(cluster, "cl", [])
    copies_equal(cluster, src, [])
    cluster.cairn("volume", "unmap", src, "--sdc", cluster.sdc_name)
    cluster.cairn("volume", "remove", src)
    assert read_export(cluster, "cl@ro", 64 * MB) == bytes(model)
    copies_equal(cluster, "cl", [])


def test_server_side_copy(cluster):
    """volume copy: the SDSs copy the data (no client in the path), of the
    source as it was when the command began; the temporary snapshot goes."""
    cluster.create_volume("cps", 64 * MB)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("cps"))
    data = os.urandom(24 * MB)
    pwrite_all(h, data)
    h.flush()
    r = cluster.cairn("volume", "copy", "cps", "cpd", "--wait", timeout=300)
    assert "100%" in r.stderr
    h.pwrite(b"n" * 8192, MB)  # the source changes after: the copy does not
    h.flush()
    cluster.cairn("volume", "map", "cpd", "--sdc", cluster.sdc_name)
    cluster.wait_export("cpd")
    got = read_export(cluster, "cpd@ro", 64 * MB)
    assert got[:24 * MB] == data and got[24 * MB:] == bytes(40 * MB)
    assert json.loads(cluster.cairn("--json", "snapshot", "list", "cps").stdout) == []
    v = json.loads(cluster.cairn("--json", "volume", "show", "cpd").stdout)
    assert v["size"] == 64 * MB
    copies_equal(cluster, "cpd", [])
    h.shutdown()


def test_maintenance_catch_up_with_snapshot_changes_and_grow(cluster):
    """An SDS away for maintenance misses writes, a snapshot, the removal
    (merge) of another and a grow: its catch-up leaves every copy of the
    volume and of each snapshot equal, and the data as written."""
    vol = "mt"
    cluster.create_volume(vol, 64 * MB)
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    model = bytearray(64 * MB)

    def w(off, n):
        data = os.urandom(n)
        pwrite_all(h, data, off)
        model[off:off + n] = data

    w(0, 16 * MB)
    h.flush()
    cluster.cairn("snapshot", "create", vol, "a")
    for i in range(0, 16, 2):
        w(i * MB + 4096, 8192)
    h.flush()
    cluster.cairn("snapshot", "create", vol, "b")
    snap_b = bytes(model)
    away = next(s["name"] for s in cluster.status()["sds"] if s["state"] == "up")
    idx = int(away[3:]) - 1
    cluster.cairn("sds", "maintenance", "enter", away)
    cluster.daemons[away].stop(signal.SIGTERM)
    for i in range(1, 16, 2):
        w(i * MB + 100, 5000)
    h.flush()
    cluster.cairn("snapshot", "create", vol, "c")
    snap_c = bytes(model)
    cluster.cairn("snapshot", "remove", f"{vol}@a")  # merged into b while it is away
    h.shutdown()
    cluster.cairn("volume", "grow", vol, "--size", str(96 * MB))
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    assert h.get_size() == 96 * MB
    model += bytearray(32 * MB)
    w(80 * MB, 3 * MB)
    h.flush()
    cluster.start_sds(idx)
    wait_for(f"{away} connected", lambda: next(
        s for s in cluster.status()["sds"] if s["name"] == away)["connected"], timeout=30)
    cluster.cairn("sds", "maintenance", "exit", away)
    wait_protected(cluster)
    assert pread_all(h, 96 * MB) == bytes(model)
    for name, want in (("b", snap_b), ("c", snap_c)):
        map_snapshot(cluster, f"{vol}@{name}")
        assert read_export(cluster, f"{vol}@{name}", 64 * MB) == want
    copies_equal(cluster, vol, ["b", "c"])
    h.shutdown()
