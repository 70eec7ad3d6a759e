#!/usr/bin/python3
"""What snapshots cost, in one run on one cluster (SNAPSHOT.md).

docs/snapshots.md promises that taking a snapshot costs one Raft entry and one
map push whatever the volume's size, and that writes after a snapshot go to a
new head layer, granule by granule (4 KiB in 1 MiB extents), so that a
volume with snapshots writes and reads about as fast as one without. This
measures those three claims, side by side:

1. create   wall time of the `cairn snapshot create` CLI (process start to
            exit) on volumes of each --create-sizes GiB, each volume written
            full first (fio, 1 MiB sequential writes, QD8); --creates
            snapshots one after another per volume, reported as the first
            (the only one whose head layer holds the data), the median, min
            and max. The floor is `cairn status` timed the same way (a CLI
            that asks the MDM one thing). Then the same on each volume with a
            verifying load running (two libnbd threads writing 4 KiB blocks
            at QD1 to the volume's first 64 MiB, each write tagged with its
            thread, sequence number and block): per create the longest write
            that overlapped it, and afterwards each snapshot, mapped as
            VOL@NAME, is checked to be a cut of the writers' record (every
            write acknowledged before the CLI started is in it, none issued
            after it returned, no write without its predecessor) and the
            volume to hold every block's last write. --no-load skips it.
2. write    fio randwrite 4 KiB QD1, --runtime s, no ramp, randrepeat=0 and
            norandommap (offsets drawn anew, so most fall on granules not
            written since the snapshot), over a --size MiB volume written
            full: (a) a volume that never had a snapshot, (b) another volume
            right after a snapshot, (c) the same volume once the region has
            diverged (rewritten whole after the snapshot), then (a) again
            (a2), which shows how far the host drifted meanwhile. For (b)
            fio's I/O log gives the fraction of writes that were the first
            to their granule since the snapshot. The target: (b) at most
            1.5x (a)'s mean latency, (c) equal to (a) (at most 1.1x).
3. read     fio randread 4 KiB QD1, --runtime s, over the same region of:
            the volume without snapshots (a), the snapshot export VOL@snap
            of (b)'s volume (its data, the snapshot's own layer), (b)'s
            volume itself (its head holds every granule by then), and a
            volume with 3 snapshots in its chain (written full, then three
            times: a snapshot, then one 4 KiB write at the start of every
            extent, at a new offset each time; so its head and its two newer
            snapshots hold a slot for every extent with one granule each,
            and nearly every read walks all four layers to the oldest), and
            a clone of (b)'s snapshot, never written (every read goes
            through its empty head to the snapshot's layer), right after
            (a)'s volume; then (a)'s volume and the clone again, for the
            drift. The target: the clone within 10% of (a).

Per fio job: I/Os, mean, p99 and max total latency, the machine's busy share
in the second before it (jobs wait up to 30 s for under 15%) and the CPU that
processes other than the cluster and fio used during it, in cores
("others"). The machine may be shared: a job during which the others used
over 0.2 cores is run once more and the less disturbed run kept (marked
"disturbed" if both were; for (b) the second run's first writes leave out
the granules the first run wrote).

The cluster: one MDM, three SDSs on device files of --dev-gib GiB, two
copies, 1024 PGs, 1 MiB extents, the SDSs' default settings. The first
--zero-gib GiB of each file are written with zeroes beforehand and the rest
left sparse: the extent store hands out low slots first, and the write jobs
run first, so their slots (the volumes of (a) and (b) and (b)'s head layer)
sit on blocks the file system has already allocated and none of them pays
ext4 for allocating a sparse file's blocks; the 8 MiB at the start of each
file are zeroed so the SDSs format them afresh.

usage: snapshot.py --build DIR [--runtime S] [--size MIB] [--create-sizes GIB,...]
                   [--creates N] [--no-load] [--dev-gib N] [--zero-gib N]
(a build without sanitizers: cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF)"""
import argparse
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import nbd

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
sys.path.insert(0, os.path.join(TOP, "tests/integration"))
import cluster as C  # noqa: E402

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
BLOCK = 4 * KiB
CLK = os.sysconf("SC_CLK_TCK")


T0 = time.monotonic()


def log(*a):
    print(f"snapshot: {time.monotonic() - T0:5.0f} s:", *a, file=sys.stderr, flush=True)


# ---- the machine ----

def proc_cpu(pid):
    """utime + stime of a process (all its threads), in seconds; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def system_cpu():
    """(busy seconds, all seconds) over all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK, sum(v) / CLK


def wait_idle(limit=0.15, max_wait=30):
    """Wait until the CPUs are at most `limit` busy over a second (or
    max_wait s went by); returns the busy share of the last second."""
    t0 = time.monotonic()
    while True:
        b0, a0 = system_cpu()
        time.sleep(1.0)
        b1, a1 = system_cpu()
        busy = (b1 - b0) / max(a1 - a0, 1e-9)
        if busy <= limit or time.monotonic() - t0 > max_wait:
            return busy
        time.sleep(1)


# ---- fio ----

def fio(c, vol, args):
    cmd = ["fio", "--name=snap", "--ioengine=nbd", f"--uri={c.unix_uri(vol)}",
           "--output-format=json", "--lat_percentiles=1", "--percentile_list=50:99"] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"fio {' '.join(args)} on {vol} failed: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]


def fill(c, vol, size):
    """vol written whole: 1 MiB sequential writes at QD8, then a FLUSH, so
    that the job after it does not pay for the fill's device syncs (written
    without FUA, a gigabyte waits in the devices' caches until a sync)."""
    fio(c, vol, ["--rw=write", "--bs=1m", "--iodepth=8", f"--size={size}", "--end_fsync=1"])


def first_write_share(iolog, seen):
    """Of the writes in a fio I/O log, the share that were the first to
    their 4 KiB block (= granule: every write here is one aligned block)
    since seen (a set of blocks, which this adds to) was empty."""
    n = first = 0
    with open(iolog) as f:
        for line in f:
            p = line.split()
            # version 2: "file action offset length"; version 3 starts with a time
            if len(p) >= 4 and p[-3] == "write":
                n += 1
                b = int(p[-2]) // BLOCK
                if b not in seen:
                    seen.add(b)
                    first += 1
    return first / n if n else 0.0, n


def qd1_job(c, vol, rw, size, runtime, pids, iolog=None):
    """fio 4 KiB QD1 random rw over size bytes of vol for runtime s: its
    figures, the machine's busy share before, and the others' CPU during it
    (in cores). A job during which the others used over 0.2 cores is run
    once more, and the less disturbed run kept. With iolog, the share of
    writes that were the first to their granule (over both runs: the second
    run's count leaves out the blocks the first wrote)."""
    seen, best = set(), None
    for attempt in (1, 2):
        busy = wait_idle()
        args = [f"--rw={rw}", "--bs=4k", "--iodepth=1", "--randrepeat=0", "--norandommap",
                f"--size={size}", "--time_based", f"--runtime={runtime}"]
        if iolog:
            args.append(f"--write_iolog={iolog}")
        c0 = sum(proc_cpu(p) for p in pids)
        s0, _ = system_cpu()
        ru0 = os.times()
        t0 = time.monotonic()
        j = fio(c, vol, args)
        wall = time.monotonic() - t0
        ru1 = os.times()
        s1, _ = system_cpu()
        c1 = sum(proc_cpu(p) for p in pids)
        fio_cpu = ((ru1.children_user - ru0.children_user)
                   + (ru1.children_system - ru0.children_system))
        side = j["read" if rw == "randread" else "write"]
        lat = side["lat_ns"]
        x = dict(ios=side["total_ios"], iops=side["iops"], mean=lat["mean"] / 1000,
                 p99=lat["percentile"]["99.000000"] / 1000, max=lat["max"] / 1000, busy=busy,
                 others=max(0.0, (s1 - s0) - (c1 - c0) - fio_cpu) / wall, attempts=attempt)
        if iolog:
            x["first"], n = first_write_share(iolog, seen)
            if n != x["ios"]:
                log(f"  the I/O log has {n} writes, fio counted {x['ios']}")
        if best is None or x["others"] < best["others"]:
            best = x
        best["attempts"] = attempt
        if x["others"] <= 0.2:
            break
        log(f"  disturbed (others used {x['others']:.2f} cores)" +
            ("; again" if attempt == 1 else ""))
    return best


# ---- the CLI, timed ----

def timed_cli(c, *args):
    """Wall seconds of one CLI run, and its result."""
    t0 = time.monotonic()
    r = c.cairn(*args, check=False)
    return time.monotonic() - t0, r


# ---- a verifying load (part 1) ----

LOAD_SPAN = 64 * MiB


def content(thread, seq, block):
    head = struct.pack("<4sIQQ", b"load", thread, seq, block)
    return (head * (BLOCK // len(head) + 1))[:BLOCK]


class Load:
    """Threads writing 4 KiB blocks of vol's first LOAD_SPAN at QD1, each its
    own blocks (block % threads == thread) over its own NBD connection,
    recording (block, seq, issued, acked) per write in monotonic ns."""

    def __init__(self, c, vol, threads=2):
        self.c, self.vol, self.n = c, vol, threads
        self.log = [[] for _ in range(threads)]
        self.errors = []
        self.stop = threading.Event()
        self.ts = [threading.Thread(target=self.run, args=(t,)) for t in range(threads)]

    def run(self, t):
        h = nbd.NBD()
        h.connect_uri(self.c.unix_uri(self.vol))
        rnd = random.Random(t * 7919 + 17)
        seq = 0
        try:
            while not self.stop.is_set():
                b = rnd.randrange(LOAD_SPAN // BLOCK // self.n) * self.n + t
                seq += 1
                issued = time.monotonic_ns()
                h.pwrite(content(t, seq, b), b * BLOCK)
                self.log[t].append((b, seq, issued, time.monotonic_ns()))
        except Exception as e:  # noqa: BLE001 - reported with the figures
            self.errors.append(repr(e))
        finally:
            h.shutdown()

    def count(self):
        return sum(len(x) for x in self.log)

    def __enter__(self):
        for th in self.ts:
            th.start()
        C.wait_for("the load under way", lambda: self.count() > 200 or self.errors, timeout=60)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.ts:
            th.join(timeout=60)

    def longest_write_over(self, t0, t1):
        """The longest write (ms) whose [issued, acked] overlapped [t0, t1]."""
        return max((a - i for lg in self.log for (_, _, i, a) in lg if i <= t1 and a >= t0),
                   default=0) / 1e6


def read_span(c, name):
    h = nbd.NBD()
    h.connect_uri(c.unix_uri(name))
    out = bytearray()
    for off in range(0, LOAD_SPAN, 4 * MiB):
        out += h.pread(4 * MiB, off)
    h.shutdown()
    return bytes(out)


def check_cut(load, image, started, returned):
    """Whether image (a snapshot's first LOAD_SPAN) is a cut of load's record
    between started and returned (ns): '' if so, else what is wrong; and how
    many writes are in it."""
    by_block = {}
    for t, lg in enumerate(load.log):
        for (b, seq, issued, acked) in lg:
            by_block.setdefault(b, []).append((t, seq, issued, acked))
    inc, exc = [], []
    for b, writes in by_block.items():
        got = image[b * BLOCK:(b + 1) * BLOCK]
        upto = 0
        if got[:4] == b"load":
            tag, t, seq, blk = struct.unpack("<4sIQQ", got[:24])
            if blk != b or got != content(t, seq, blk):
                return f"block {b} holds another block's data or is torn", 0
            hit = [i for i, x in enumerate(writes) if x[0] == t and x[1] == seq]
            if not hit:
                return f"block {b} holds a write never acknowledged", 0
            upto = hit[0] + 1
        for i, (_, _, issued, acked) in enumerate(writes):
            (inc if i < upto else exc).append((issued, acked))
    if any(i > returned for i, _ in inc):
        return "a write issued after the CLI returned is in the snapshot", len(inc)
    if any(a < started for _, a in exc):
        return "a write acknowledged before the CLI started is missing", len(inc)
    if inc and exc and min(a for _, a in exc) < max(i for i, _ in inc):
        return "not a cut: a write is in whose predecessor is not", len(inc)
    return "", len(inc)


def check_volume(load, image):
    last = {}
    for t, lg in enumerate(load.log):
        for (b, seq, _, _) in lg:
            last[b] = (t, seq)
    bad = [b for b, (t, seq) in last.items()
           if image[b * BLOCK:(b + 1) * BLOCK] != content(t, seq, b)]
    return f"{len(bad)} blocks do not hold their last write" if bad else ""


# ---- the parts ----

def part_write(c, a, pids, work):
    """(a), (b), (c), (a2) of part 2; leaves snapshot 'snap' of volume 'wb'."""
    size = a.size * MiB
    rows = {}
    for v in ("wa", "wb"):
        c.create_volume(v, size)
        fill(c, v, size)
    log("write (a): no snapshot")
    rows["a"] = qd1_job(c, "wa", "randwrite", size, a.runtime, pids)
    log("write (b): right after a snapshot")
    t, r = timed_cli(c, "snapshot", "create", "wb", "snap")
    if r.returncode != 0:
        raise RuntimeError(f"snapshot create wb snap: {r.stderr.strip()}")
    iolog = os.path.join(work, "b.iolog")
    rows["b"] = qd1_job(c, "wb", "randwrite", size, a.runtime, pids, iolog=iolog)
    log("write (c): diverged")
    fill(c, "wb", size)
    rows["c"] = qd1_job(c, "wb", "randwrite", size, a.runtime, pids)
    log("write (a2): no snapshot, again")
    rows["a2"] = qd1_job(c, "wa", "randwrite", size, a.runtime, pids)
    return rows


def part_read(c, a, pids):
    size = a.size * MiB
    c.create_volume("r3", size)
    fill(c, "r3", size)
    for k in (1, 2, 3):
        t, r = timed_cli(c, "snapshot", "create", "r3", f"s{k}")
        if r.returncode != 0:
            raise RuntimeError(f"snapshot create r3 s{k}: {r.stderr.strip()}")
        fio(c, "r3", ["--rw=write:1020k", "--bs=4k", "--iodepth=1", f"--size={size}",
                      f"--offset={k * 64 * KiB}", f"--number_ios={size // MiB}"])
    c.cairn("volume", "map", "wb@snap", "--sdc", c.sdc_name)
    c.wait_export("wb@snap")
    c.cairn("volume", "clone", "wb@snap", "wclone")
    c.cairn("volume", "map", "wclone", "--sdc", c.sdc_name)
    c.wait_export("wclone")
    rows = {}
    for key, vol, what in (("plain", "wa", "volume, no snapshot ((a)'s)"),
                           ("clone", "wclone", "clone of wb@snap (its head empty)"),
                           ("snap", "wb@snap", "snapshot export VOL@snap ((b)'s snapshot)"),
                           ("vol1", "wb", "its volume (1 snapshot, head holds all)"),
                           ("vol3", "r3", "volume with 3 snapshots in its chain"),
                           ("plain2", "wa", "volume, no snapshot, again (drift)"),
                           ("clone2", "wclone", "the clone again")):
        log(f"read: {what}")
        rows[key] = dict(what=what, **qd1_job(c, vol, "randread", size, a.runtime, pids))
    return rows


def part_create(c, a):
    rows = {}
    floor = [timed_cli(c, "status")[0] for _ in range(a.creates)]
    rows["floor"] = floor
    for g in a.create_sizes:
        v = f"c{g}"
        c.create_volume(v, g * GiB)
        log(f"create: {g} GiB volume written full")
        fill(c, v, g * GiB)
        wait_idle()
        times, errs = [], []
        for k in range(a.creates):
            t, r = timed_cli(c, "snapshot", "create", v, f"n{k}")
            (times if r.returncode == 0 else errs).append(t if r.returncode == 0 else
                                                          r.stderr.strip())
        rows[g] = dict(idle=times, idle_errors=errs)
        if a.no_load:
            continue
        log(f"create: {g} GiB volume under a verifying load")
        times, errs, longest, cuts, marks = [], [], [], [], []
        with Load(c, v) as load:
            for k in range(a.creates):
                time.sleep(1.0)
                t0 = time.monotonic_ns()
                t, r = timed_cli(c, "snapshot", "create", v, f"l{k}")
                t1 = time.monotonic_ns()
                marks.append((k, t0, t1, r.returncode == 0))
                if r.returncode == 0:
                    times.append(t)
                else:
                    errs.append(r.stderr.strip())
                time.sleep(0.5)
        for k, t0, t1, ok in marks:
            longest.append(load.longest_write_over(t0, t1))
            if not ok:
                continue
            name = f"{v}@l{k}"
            c.cairn("volume", "map", name, "--sdc", c.sdc_name)
            c.wait_export(name)
            cuts.append(check_cut(load, read_span(c, name), t0, t1))
            c.cairn("volume", "unmap", name, "--sdc", c.sdc_name)
        rows[g].update(load=times, load_errors=errs + load.errors, longest=longest, cuts=cuts,
                       volume=check_volume(load, read_span(c, v)), writes=load.count())
    return rows


# ---- the report ----

def fmt_job(label, x, extra=""):
    mark = " disturbed" if x["others"] > 0.2 else ""
    mark += f" (run {x['attempts']})" if x["attempts"] > 1 else ""
    return (f"| {label} | {x['ios']:,} | {x['mean']:,.1f} | {x['p99']:,.1f} | {x['max']:,.1f} | "
            f"{x['busy'] * 100:.0f}% | {x['others']:.2f}{mark} |{extra}")


def report(a, cr, wr, rd):
    ms = lambda xs: f"{statistics.median(xs) * 1000:,.0f}" if xs else "-"  # noqa: E731
    print("## 1. Snapshot create, wall time of the CLI (ms)\n")
    print(f"`cairn status` (the CLI's floor): median {ms(cr['floor'])} ms\n")
    print("| volume | load | creates | first | median | min | max | longest write over a "
          "create (ms) | cut check |")
    print("|---|---|--:|--:|--:|--:|--:|--:|---|")
    for g in a.create_sizes:
        r = cr[g]
        xs = r["idle"]
        fails = f" ({len(r['idle_errors'])} failed)" if r["idle_errors"] else ""
        print(f"| {g} GiB written full | none | {len(xs)}{fails} | "
              f"{xs[0] * 1000 if xs else 0:,.0f} | {ms(xs)} | {min(xs) * 1000:,.0f} | "
              f"{max(xs) * 1000:,.0f} | - | - |")
        if "load" in r:
            xs = r["load"]
            fails = f" ({len(r['load_errors'])} failed)" if r["load_errors"] else ""
            bad = [e for e, _ in r["cuts"] if e] + ([r["volume"]] if r["volume"] else [])
            check = "; ".join(bad) if bad else (f"{len(r['cuts'])} cuts and the volume ok "
                                                f"({r['writes']:,} writes)")
            print(f"| {g} GiB written full | 2 writers QD1 | {len(xs)}{fails} | "
                  f"{xs[0] * 1000 if xs else 0:,.0f} | {ms(xs)} | "
                  f"{min(xs, default=0) * 1000:,.0f} | {max(xs, default=0) * 1000:,.0f} | "
                  f"{max(r['longest'], default=0):,.1f} | {check} |")
    sizes = a.create_sizes
    if len(sizes) >= 2 and cr[sizes[0]]["idle"] and cr[sizes[-1]]["idle"]:
        q = statistics.median(cr[sizes[-1]]["idle"]) / statistics.median(cr[sizes[0]]["idle"])
        print(f"\nmedian {sizes[-1]} GiB / {sizes[0]} GiB: {q:.2f}x "
              f"({'does not grow' if q <= 1.25 else 'GROWS'} with the size; bound 1.25x)")
    for g in sizes:
        for e in cr[g]["idle_errors"] + cr[g].get("load_errors", []):
            print(f"\n{g} GiB: error: {e}")
    print(f"\n## 2. 4 KiB random writes, QD1, {a.runtime} s, {a.size} MiB written full (µs)\n")
    print("| case | I/Os | mean | p99 | max | busy before | others (cores) | first writes |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    labels = {"a": "(a) no snapshot", "b": "(b) right after a snapshot",
              "c": "(c) diverged", "a2": "(a2) no snapshot, again"}
    for k in ("a", "b", "c", "a2"):
        x = wr[k]
        print(fmt_job(labels[k], x, f" {x['first'] * 100:.1f}% |" if "first" in x else " - |"))
    A = wr["a"]
    print("\n| check | ratio | bound | | p99 ratio | max ratio |")
    print("|---|--:|--:|---|--:|--:|")
    for k, bound, ok in (("b", "<= 1.5", lambda q: q <= 1.5),
                         ("c", "<= 1.1 (equal)", lambda q: q <= 1.1),
                         ("a2", "(drift)", None)):
        q = wr[k]["mean"] / A["mean"]
        verdict = "" if ok is None else ("pass" if ok(q) else "SHORT")
        print(f"| {labels[k]} mean / (a) | {q:.2f}x | {bound} | {verdict} | "
              f"{wr[k]['p99'] / A['p99']:.2f}x | {wr[k]['max'] / A['max']:.2f}x |")
    print(f"\n## 3. 4 KiB random reads, QD1, {a.runtime} s, {a.size} MiB (µs)\n")
    print("| target | I/Os | mean | p99 | max | busy before | others (cores) | mean / plain |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for k in ("plain", "clone", "snap", "vol1", "vol3", "plain2", "clone2"):
        x = rd[k]
        print(fmt_job(x["what"], x, f" {x['mean'] / rd['plain']['mean']:.2f}x |"))
    print("\n" + json.dumps(dict(create={str(k): v for k, v in cr.items()}, write=wr, read=rd)))


def prepare_devices(work, n, size, zero):
    devs = []
    for i in range(n):
        path = os.path.join(work, f"dev{i + 1}.img")
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64M",
                        f"count={zero // (64 * MiB)}", "oflag=direct", "status=none"],
                       check=True)
        with open(path, "r+b") as f:
            f.write(bytes(8 * MiB))
            f.truncate(size)
            os.fsync(f.fileno())
        devs.append(path)
    return devs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--runtime", type=int, default=10, help="seconds of each fio job")
    ap.add_argument("--size", type=int, default=1024, help="MiB of the write and read volumes")
    ap.add_argument("--create-sizes", default="1,8", help="GiB of the create volumes")
    ap.add_argument("--creates", type=int, default=5, help="snapshots per volume and case")
    ap.add_argument("--no-load", action="store_true", help="no creates under a load")
    ap.add_argument("--dev-gib", type=int, default=16, help="GiB per SDS device file")
    ap.add_argument("--zero-gib", type=int, default=3,
                    help="GiB at the start of each device file written with zeroes")
    a = ap.parse_args()
    a.create_sizes = [int(x) for x in a.create_sizes.split(",")]
    need = 2 * (7 * a.size * MiB + sum(a.create_sizes) * GiB + 2 * LOAD_SPAN) / 3
    if need > 0.85 * a.dev_gib * GiB:
        sys.exit(f"--dev-gib {a.dev_gib} is too small: each SDS needs about "
                 f"{need / GiB:.1f} GiB of slots")
    t_start = time.monotonic()
    work = tempfile.mkdtemp(prefix="cairn-snapbench-", dir="/var/tmp")
    c = None
    try:
        log(f"device files ({a.zero_gib} GiB of zeroes each, {a.dev_gib} GiB in all)")
        devs = prepare_devices(work, 3, a.dev_gib * GiB, a.zero_gib * GiB)
        c = C.Cluster(os.path.join(work, "c"), sds_sizes=(a.dev_gib * GiB,) * 3, pgs=1024,
                      build=os.path.abspath(a.build), devices=dict(enumerate(devs)))
        c.start()
        pids = [d.proc.pid for d in c.daemons.values()]
        wr = part_write(c, a, pids, work)
        rd = part_read(c, a, pids)
        cr = part_create(c, a)
        c.shutdown()
        c = None
    except BaseException:
        if c:
            c.abort()
            for i in range(3):  # the logs stay, for what went wrong
                try:
                    os.unlink(os.path.join(work, f"dev{i + 1}.img"))
                except OSError:
                    pass
            log(f"failed; the cluster's logs are in {c.dir} (kept)")
            work = None
        raise
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
    log(f"done in {time.monotonic() - t_start:.0f} s")
    report(a, cr, wr, rd)


if __name__ == "__main__":
    main()
