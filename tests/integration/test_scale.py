"""Scale out and in under load (issue 4): SDSs of unequal sizes, each in a
network namespace of its own; a verifying load runs throughout while a fourth
and a fifth SDS are added and one of the first three is drained and removed.
Every acknowledged write must read back, no I/O may fail, each rebalance may
move at most 1.2x the minimum, and at the end every device's fill is within 5
points of the pool's mean fill. Prints the figures for each step."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from cluster import NetCluster, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tools"))
from cairn_verify import Verifier  # noqa: E402

MiB = 1 << 20
VOL = 384 * MiB     # 384 extents over 128 PGs: 3 extents in every PG
SIZES = (256 * MiB, 384 * MiB, 512 * MiB, 384 * MiB, 256 * MiB)
EXTRA = 128 * MiB   # a second device on sds2: SDSs differ in devices too


def devices(st):
    """(sds, path, capacity, used extents, total extents) of every device."""
    out = []
    for s in st["sds"]:
        for d in s["devices"]:
            out.append((s["name"], d["path"], d["capacity"], d["used_extents"],
                        d["total_extents"]))
    return out


def settled(c):
    st = c.status()
    pool = st["pools"][0]
    return (pool["pgs_moving"] == 0 and pool["pgs_rebuilding"] == 0
            and pool["pgs_fully_protected"] == pool["pg_count"]
            and st["rebuild"]["pg_copies_left"] == 0
            and all(s["state"] == "up" and s["connected"] for s in st["sds"])) and st


def received(st):
    return {s["name"]: s["rebuild_bytes_received"] for s in st["sds"]}


class Rate:
    """Samples the load's completed operations to give IOPS over a window."""

    def __init__(self, v):
        self.v, self.samples = v, []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self.v.ops))
            self.stop.wait(0.25)  # the sampling period

    def iops(self, t0, t1):
        pts = [(t, n) for t, n in self.samples if t0 <= t <= t1]
        if len(pts) < 2:
            return 0.0
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])


def test_scale_out_and_in(tmp_path):
    extra = str(tmp_path / "dev2b.img")
    os.makedirs(tmp_path, exist_ok=True)
    with open(extra, "wb") as f:
        f.truncate(EXTRA)
    c = NetCluster(tmp_path, sds_sizes=SIZES, pgs=128, initial=3, extra_devices={1: [extra]})
    figures = []
    try:
        c.start()
        c.create_volume("vol", VOL)
        # written full first, from a file we keep to compare with at the end
        src = tmp_path / "src.img"
        with open(src, "wb") as f:
            f.write(os.urandom(VOL))
        subprocess.run(["nbdcopy", str(src), c.uri("vol")], check=True, timeout=600)
        wait_for("the first placement settled", lambda: settled(c), timeout=60)

        with open(src, "rb") as f:
            original = f.read()
        v = Verifier(c.uri("vol"), VOL, seed=4, write_pct=60,
                     initial=lambda b: original[b * 4096:(b + 1) * 4096])
        load = threading.Thread(target=v.run, daemon=True)
        load.start()
        rate = Rate(v)
        quiet = {"since": time.monotonic()}  # the load has run undisturbed since then

        def measured_quiet_load():
            """Enough undisturbed load since the last step to measure its IOPS."""
            ops0 = v.ops
            wait_for("a measure of the undisturbed load", lambda: v.ops >= ops0 + 400
                     and len([t for t, _ in rate.samples if t >= quiet["since"]]) >= 8,
                     timeout=120)

        def step(name, action, min_bytes):
            measured_quiet_load()
            before = received(c.status())
            t0 = time.monotonic()
            action()
            st = wait_for(f"the rebalance after '{name}' to finish", lambda: settled(c),
                          timeout=600, interval=0.25)
            t1 = time.monotonic()
            # the SDSs' byte counters arrive with their heartbeats: take them
            # from heartbeats sent after the rebalance was over
            st = c.status_after(t1)
            after = received(st)
            moved = sum(after[n] - before.get(n, 0) for n in after)
            slow = [lat for t, lat in v.lat_log if t0 <= t <= t1 + 0.1]
            figures.append((name, moved, min_bytes(), t1 - t0, rate.iops(quiet["since"], t0),
                            rate.iops(t0, t1), max(slow, default=0)))
            quiet["since"] = time.monotonic()
            return st

        def used_raw(st):
            return sum(d[3] for d in devices(st)) * MiB

        def share_of(sds):
            def f():
                st = c.status()
                caps = {d[1]: d[2] for d in devices(st)}
                mine = sum(d[2] for d in devices(st) if d[0] == sds)
                return used_raw(st) * mine / sum(caps.values())
            return f

        # adding an SDS makes its capacity usable at once
        usable0 = c.status()["pools"][0]["usable_capacity"]
        step("add sds4", lambda: c.add_sds(3), share_of("sds4"))
        assert c.status()["pools"][0]["usable_capacity"] > usable0
        step("add sds5", lambda: c.add_sds(4), share_of("sds5"))

        st = c.status()
        on_sds1 = sum(d[3] for d in devices(st) if d[0] == "sds1") * MiB

        def remove():
            c.cairn("sds", "remove", "sds1")
        st = step("remove sds1", remove, lambda: on_sds1)
        assert "sds1" not in {s["name"] for s in st["sds"]}
        c.forget_sds(0)

        v.stop.set()
        load.join(120)
        rate.stop.set()
        print(f"\nload: {v.summary()}")
        assert not v.errors, v.errors[:5]
        assert v.retries == 0, "the client saw I/O errors or lost its connection"
        assert v.final_check() == 0, "acknowledged writes did not read back"
        # and everything else is still what nbdcopy wrote
        touched = set(v.acked) | set(v.uncertain)
        for blk in range(0, VOL // 4096, 256):
            want = original[blk * 4096:(blk + 256) * 4096]
            got = v.h.pread(len(want), blk * 4096)
            for k in range(256):
                if blk + k not in touched:
                    assert got[k * 4096:(k + 1) * 4096] == want[k * 4096:(k + 1) * 4096], \
                        f"block {blk + k} changed"
        c.cairn("volume", "check-copies", "vol")

        st = c.status()
        devs = devices(st)
        mean = sum(d[3] for d in devs) / sum(d[4] for d in devs)
        print(f"final fill (mean {mean * 100:.1f}%):")
        worst = 0
        for d in devs:
            fill = d[3] / d[4]
            worst = max(worst, abs(fill - mean))
            print(f"  {d[0]:6} {os.path.basename(d[1]):12} {d[2] // MiB:5} MiB "
                  f"{d[3]:4}/{d[4]:4} extents {fill * 100:5.1f}%")
        print(f"\n{'step':14} {'moved':>9} {'minimum':>9} {'ratio':>6} {'time':>7} "
              f"{'IOPS before':>12} {'IOPS during':>12} {'longest op':>11}")
        for name, moved, need, secs, before, during, slow in figures:
            print(f"{name:14} {moved / MiB:7.0f} M {need / MiB:7.0f} M {moved / need:6.2f} "
                  f"{secs:6.1f}s {before:12.0f} {during:12.0f} {slow:10.2f}s")
        assert worst <= 0.05, f"a device is {worst * 100:.1f} points off the mean fill"
        for name, moved, need, *_ in figures:
            assert moved <= 1.2 * need, f"{name}: moved {moved} bytes, minimum {need}"
            assert moved >= 0.8 * need, f"{name}: moved {moved} bytes, less than it should"
    finally:
        c.shutdown()


def test_fault_sets_and_forced_removal(tmp_path):
    """Declared fault sets hold one copy of a PG at most; a removal that
    would break the copies policy or run out of room is refused; a dead SDS
    is removed by force and its copies are rebuilt from the others."""
    c = NetCluster(tmp_path, sds_sizes=(256 * MiB,) * 5, pgs=64, copies=2, initial=0)
    try:
        c.start()
        r = c.cairn("sds", "add", "--name", "x", "--addr", "10.0.0.1:1", "--device", "/x",
                    "--fault-set", "rack1", check=False)
        assert r.returncode != 0 and "fault-set add rack1" in r.stderr, r.stderr
        c.cairn("fault-set", "add", "rack1")
        c.cairn("fault-set", "add", "rack2")
        for i, fs in enumerate(("rack1", "rack1", "rack2", "rack2")):
            c.add_sds(i, fault_set=fs)
        listing = c.cairn("fault-set", "list").stdout
        assert "sds1, sds2" in listing and "sds3, sds4" in listing, listing
        c.create_volume("vol", 192 * MiB)
        src = tmp_path / "src.img"
        with open(src, "wb") as f:
            f.write(os.urandom(192 * MiB))
        subprocess.run(["nbdcopy", str(src), c.uri("vol")], check=True, timeout=600)
        wait_for("placement settled", lambda: settled(c), timeout=60)
        st = c.status()
        rack = {s["name"]: s["fault_set"] for s in st["sds"]}
        for off in range(0, 192 * MiB, 3 * MiB):
            loc = c.cairn("volume", "locate", "vol", "--offset", str(off), json_out=True).stdout
            holders = [rack[cp["sds"]] for cp in json.loads(loc)["copies"]]
            assert len(set(holders)) == len(holders) == 2, loc

        # rack2 without sds3 and sds4 would leave one fault set for two copies
        c.cairn("sds", "remove", "sds3")
        r = c.cairn("sds", "remove", "sds4", check=False)
        assert r.returncode != 0 and "fault set" in r.stderr, r.stderr
        wait_for("sds3 drained and forgotten", lambda: settled(c) and "sds3" not in
                 {s["name"] for s in c.status()["sds"]}, timeout=300)
        c.forget_sds(2)
        # sds4 alone is rack2 now: it holds a copy of every PG, 192 MiB of 256
        c.add_sds(4, fault_set="rack1")
        wait_for("rebalanced", lambda: settled(c), timeout=300)

        # a dead SDS: drain refused (nothing to drain from), forced removal rebuilds
        c.daemons["sds2"].stop(signal.SIGKILL)
        wait_for("sds2 marked down", lambda: any(s["name"] == "sds2" and s["state"] == "down"
                                                for s in c.status()["sds"]), timeout=30)
        r = c.cairn("sds", "remove", "sds2", check=False)
        assert r.returncode != 0 and "--force" in r.stderr, r.stderr
        c.cairn("sds", "remove", "sds2", "--force")
        c.members.discard(1)
        wait_for("rebuilt without sds2", lambda: settled(c), timeout=300)
        assert "sds2" not in {s["name"] for s in c.status()["sds"]}
        got = subprocess.run(["nbdcopy", c.uri("vol"), "-"], capture_output=True, check=True,
                             timeout=600).stdout
        with open(src, "rb") as f:
            assert got == f.read(), "data changed through drain, rebalance and forced removal"
        c.cairn("volume", "check-copies", "vol")
    finally:
        c.shutdown()
