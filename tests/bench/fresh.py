#!/usr/bin/python3
"""First writes, two builds side by side: 4 KiB random writes at QD1 into a
never-written volume against the same on written space (FRESH.md).

Each build gets a fresh cluster (one MDM, three SDSs of --dev-gib GiB each,
two copies, 1024 PGs, 1 MiB extents), all up at once, each on device files
of its own. The files are written full of zeroes first, so that neither
build pays the file system for allocating its blocks (a sparse file's first
writes would measure that instead); their first 8 MiB (superblock and extent
table) are zeroed before the SDSs start, so they format them afresh. Per
round, on new volumes of --size MiB, jobs in this order, each on one build
then the others (the first build rotating by round), each after the
machine was idle (under 15% busy over a second, or 60 s waited):

  fresh      fio randwrite 4 KiB QD1 for --runtime s on a never-written volume
             (no ramp: the first seconds are what is measured)
  fresh-ext  fio 4 KiB writes QD1, one at the start of every extent of
             another never-written volume (rw=write:1020k): every write is
             the first one to its extent
  written    the `fresh` volume written whole (1 MiB, QD8), then the `fresh`
             job again

Per job, build and round: I/Os, IOPS, mean, p99 and max latency (fio's total
latency); then per job and build over the rounds: the mean of the means and
of the p99s, and the largest max.

With --defer, a third cluster runs --build's SDSs with --defer-first-writes
("this-defer": a first write's bits wait for the next flush).

usage: fresh.py --build DIR [--baseline-build DIR] [--defer] [--runtime S]
                [--size MIB] [--rounds N] [--dev-gib N]
(builds without sanitizers: cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo)"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
sys.path.insert(0, os.path.join(TOP, "tests/integration"))
import cluster as C  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30


def fio(c, vol, args):
    cmd = ["fio", "--name=fresh", "--ioengine=nbd", f"--uri={c.unix_uri(vol)}",
           "--output-format=json", "--lat_percentiles=1", "--percentile_list=50:99"] + args
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"fio failed: {p.stderr.strip()[-500:]}")
    w = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]["write"]
    lat = w["lat_ns"]
    return dict(ios=w["total_ios"], iops=w["iops"], mean=lat["mean"] / 1000,
                p99=lat["percentile"]["99.000000"] / 1000, max=lat["max"] / 1000)


def randwrite(c, vol, size, runtime):
    return fio(c, vol, ["--rw=randwrite", "--bs=4k", "--iodepth=1", "--randrepeat=0",
                        "--norandommap", f"--size={size}", "--time_based",
                        f"--runtime={runtime}"])


def busy_over_a_second():
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:8]]
        return v[0] + v[1] + v[2] + v[5] + v[6], sum(v)
    b0, a0 = snap()
    time.sleep(1.0)
    b1, a1 = snap()
    return (b1 - b0) / max(a1 - a0, 1)


def wait_idle(limit=0.15, max_wait=60):
    t0 = time.monotonic()
    while True:
        busy = busy_over_a_second()
        if busy <= limit or time.monotonic() - t0 > max_wait:
            return busy
        time.sleep(1)


def prepare_devices(work, n, size):
    devs = []
    for i in range(n):
        path = os.path.join(work, f"dev{i + 1}.img")
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64M",
                        f"count={size // (64 * MiB)}", "oflag=direct", "status=none"],
                       check=True)
        with open(path, "r+b") as f:
            f.write(bytes(8 * MiB))
            os.fsync(f.fileno())
        devs.append(path)
    return devs


JOBS = ("fresh", "fresh-ext", "written")


def run_job(c, job, r, size, runtime):
    if job == "fresh":
        return randwrite(c, f"f{r}", size, runtime)
    if job == "fresh-ext":
        return fio(c, f"e{r}", ["--rw=write:1020k", "--bs=4k", "--iodepth=1", f"--size={size}",
                                f"--number_ios={size // MiB}"])
    fio(c, f"f{r}", ["--rw=write", "--bs=1m", "--iodepth=8", f"--size={size}"])
    return randwrite(c, f"f{r}", size, runtime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--baseline-build")
    ap.add_argument("--defer", action="store_true", help="also --build with --defer-first-writes")
    ap.add_argument("--runtime", type=int, default=10, help="seconds of the random jobs")
    ap.add_argument("--size", type=int, default=1024, help="MiB per volume")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dev-gib", type=int, default=4, help="GiB per SDS device file")
    a = ap.parse_args()
    builds = [("baseline", a.baseline_build)] if a.baseline_build else []
    builds.append(("this", a.build))
    if a.defer:
        builds.append(("this-defer", a.build))
    work = tempfile.mkdtemp(prefix="cairn-fresh-", dir="/var/tmp")
    clusters = {}
    rows = []  # (round, job, build, result, busy before)
    try:
        for name, b in builds:
            os.makedirs(os.path.join(work, name))
            devs = prepare_devices(os.path.join(work, name), 3, a.dev_gib * GiB)
            c = C.Cluster(os.path.join(work, name, "c"), sds_sizes=(a.dev_gib * GiB,) * 3,
                          pgs=1024, build=os.path.abspath(b), devices=dict(enumerate(devs)),
                          sds_args=["--defer-first-writes"] if name == "this-defer" else [])
            clusters[name] = c
            c.start()
        for r in range(a.rounds):
            for name, c in clusters.items():
                c.create_volume(f"f{r}", a.size * MiB)
                c.create_volume(f"e{r}", a.size * MiB)
            order = list(clusters)[r % len(clusters):] + list(clusters)[:r % len(clusters)]
            for job in JOBS:
                for name in order:
                    busy = wait_idle()
                    print(f"fresh: round {r + 1} {job} on {name} (machine {busy * 100:.0f}% busy)",
                          file=sys.stderr, flush=True)
                    rows.append((r, job, name, run_job(clusters[name], job, r, a.size * MiB,
                                                       a.runtime), busy))
        for c in clusters.values():
            c.shutdown()
    except BaseException:
        for c in clusters.values():
            c.abort()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| round | job | build | I/Os | IOPS | mean µs | p99 µs | max µs | busy before |")
    print("|--:|---|---|--:|--:|--:|--:|--:|--:|")
    for r, job, name, x, busy in rows:
        print(f"| {r + 1} | {job} | {name} | {x['ios']:,} | {x['iops']:,.0f} | {x['mean']:,.1f} | "
              f"{x['p99']:,.1f} | {x['max']:,.1f} | {busy * 100:.0f}% |")
    print("\n| job | build | mean µs | p99 µs | max µs | mean / written |")
    print("|---|---|--:|--:|--:|--:|")
    summ = {}
    for job in JOBS:
        for name, _ in builds:
            xs = [x for _, j, n, x, _ in rows if j == job and n == name]
            summ[job, name] = (sum(x["mean"] for x in xs) / len(xs),
                               sum(x["p99"] for x in xs) / len(xs), max(x["max"] for x in xs))
    for job in JOBS:
        for name, _ in builds:
            m, p, mx = summ[job, name]
            print(f"| {job} | {name} | {m:,.1f} | {p:,.1f} | {mx:,.1f} | "
                  f"{m / summ['written', name][0]:.2f}x |")
    print("\n" + json.dumps([dict(round=r + 1, job=j, build=n, busy=b, **x)
                             for r, j, n, x, b in rows]))


if __name__ == "__main__":
    main()
