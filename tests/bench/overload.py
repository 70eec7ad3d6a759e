#!/usr/bin/python3
"""Overload, two builds side by side: what clients that pipeline without end
cost each daemon in memory and whether every request is answered.

Each build gets a fresh quick-start-shaped cluster (one MDM, three SDSs, two
copies) with its daemons' default settings, and the same scenarios:

  reads    300,000 pipelined 1 KiB reads, all sent before any reply is read
  writes   300,000 pipelined 1 KiB writes, the same way (a sample read back)
  qdN      fio, nbd engine, 1 KiB random writes at iodepth N for --runtime s

Per scenario and build: replies (or fio's I/Os), errors, seconds, I/Os per
second, each daemon's peak resident memory (VmHWM, reset before the
scenario), the SDC's resident memory once idle again, and how often the MDM
marked an SDS down. Every scenario starts on a fresh cluster. A guard kills the cluster if any daemon passes --guard
GiB, so a build without bounds cannot take the machine with it; the row then
says so.

usage: overload.py --build DIR [--baseline-build DIR] [--runtime S]
                   [--guard GIB] [--only reads,writes,qd256,...]
(builds without sanitizers: tests/bench/run.sh makes build-bench/, or cmake
with -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF)"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
sys.path.insert(0, os.path.join(TOP, "tests/integration"))
sys.path.insert(0, os.path.join(TOP, "tests/tools"))
import cluster as C  # noqa: E402
import nbd_pipeline as P  # noqa: E402

MiB = 1 << 20
N = 300_000
SCENARIOS = ("reads", "writes", "qd256", "qd4096", "qd16384")


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def reset_peaks(c):
    for d in c.daemons.values():
        with open(f"/proc/{d.proc.pid}/clear_refs", "w") as f:
            f.write("5")  # VmHWM := the current RSS (proc(5))


class Guard(threading.Thread):
    """Kills every daemon of the cluster if one grows past limit bytes."""

    def __init__(self, c, limit):
        super().__init__(daemon=True)
        self.c, self.limit, self.tripped, self.done = c, limit, None, threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            for name, d in self.c.daemons.items():
                if d.alive() and status_kib(d.proc.pid, "VmRSS") > self.limit:
                    self.tripped = name
                    self.c.abort()
                    return


def downs(c):
    with open(c.daemons["mdm"].log, errors="replace") as f:
        return sum("marking it down" in line for line in f)


def wait_quiet(c, seconds=2.0, timeout=60):
    """The SDC's RSS once its work is done: until it has not moved for a while."""
    pid, last, since = c.daemons["sdc"].proc.pid, -1, time.monotonic()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = status_kib(pid, "VmRSS")
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            break
        time.sleep(0.2)
    return last


def prewrite(c, vol, size):
    path = os.path.join(c.dir, f"{vol}.img")
    with open(path, "wb") as f:
        for _ in range(size // (16 * MiB)):
            f.write(os.urandom(16 * MiB))
    subprocess.run(["nbdcopy", path, c.unix_uri(vol)], check=True, timeout=900)
    os.unlink(path)


def pipelined(c, cmd):
    addr = f"unix:{c.dir}/sdc/nbd.sock"
    t = time.monotonic()
    res = P.run_batch(addr, "pipe", [(cmd, b, 1 if cmd == P.CMD_READ else 2) for b in range(N)],
                      timeout=900)
    row = dict(ios=res.replies, errors=res.errors + res.mismatches + len(res.problems),
               seconds=time.monotonic() - t)
    if cmd == P.CMD_WRITE and res.replies == N:
        back = P.run_batch(addr, "pipe", [(P.CMD_READ, b, 2) for b in range(0, N, 7)],
                           timeout=900)
        row["errors"] += len(range(0, N, 7)) - back.replies + back.errors + back.mismatches
    if res.problems:
        row["problem"] = res.problems[0]
    return row


def fio(c, depth, runtime):
    t = time.monotonic()
    p = subprocess.run(
        ["fio", "--name=qd", "--ioengine=nbd", f"--uri={c.unix_uri('fio')}", "--rw=randwrite",
         "--bs=1k", f"--iodepth={depth}", f"--iodepth_batch_submit={min(depth, 256)}",
         "--time_based", f"--runtime={runtime}", "--size=256m", "--output-format=json"],
        capture_output=True, text=True, timeout=runtime + 600)
    row = dict(ios=0, errors=0, seconds=time.monotonic() - t)
    try:
        job = json.loads(p.stdout[p.stdout.index("{"):])["jobs"][0]
        row["ios"] = job["write"]["total_ios"]
        row["errors"] = job["error"]
        row["seconds"] = job["job_runtime"] / 1000 or row["seconds"]
    except (ValueError, KeyError, IndexError):
        row["errors"] = 1
        row["problem"] = (p.stderr.strip().splitlines() or ["fio printed no result"])[-1]
    return row


def run_scenario(build, sc, runtime, guard_gib):
    """One scenario on a fresh cluster: a build that dies in one is still
    measured in the next."""
    work = tempfile.mkdtemp(prefix="cairn-overload-")
    c = C.Cluster(os.path.join(work, "c"), build=build)
    guard = Guard(c, guard_gib << 30)
    try:
        c.start()
        if sc in ("reads", "writes"):
            c.create_volume("pipe", 512 * MiB)
            if sc == "reads":
                P.fill(c.unix_uri("pipe"), N, 1, os.path.join(c.dir, "pipe.img"))
        else:
            # written once first: the first writes into the SDSs' sparse
            # device files cost the file system an allocation each, and
            # would measure that instead
            c.create_volume("fio", 256 * MiB)
            prewrite(c, "fio", 256 * MiB)
        reset_peaks(c)
        guard.start()
        try:
            if sc == "reads":
                row = pipelined(c, P.CMD_READ)
            elif sc == "writes":
                row = pipelined(c, P.CMD_WRITE)
            else:
                row = fio(c, int(sc[2:]), runtime)
        except Exception as e:  # a dead cluster: the row says so
            row = dict(ios=0, errors=1, seconds=0, problem=str(e).splitlines()[0])
        if guard.tripped:
            row["problem"] = f"killed: {guard.tripped} passed {guard_gib} GiB"
            return row
        peaks = {n: status_kib(d.proc.pid, "VmHWM") for n, d in c.daemons.items()}
        row.update(sdc=peaks["sdc"], sds=max(v for n, v in peaks.items() if n.startswith("sds")),
                   mdm=peaks["mdm"], idle=wait_quiet(c), downs=downs(c))
        return row
    finally:
        guard.done.set()
        c.abort()
        shutil.rmtree(work, ignore_errors=True)


def mb(v):
    return f"{v / MiB:,.0f}" if v else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--baseline-build")
    ap.add_argument("--runtime", type=int, default=20, help="seconds per fio scenario")
    ap.add_argument("--guard", type=int, default=4, help="GiB a daemon may reach")
    ap.add_argument("--only", default=",".join(SCENARIOS))
    a = ap.parse_args()
    only = a.only.split(",")
    for sc in only:
        if sc not in ("reads", "writes") and not (sc.startswith("qd") and sc[2:].isdigit()):
            ap.error(f"unknown scenario {sc}")
    builds = [("baseline", a.baseline_build)] if a.baseline_build else []
    builds.append(("this", a.build))
    results = {name: {sc: run_scenario(b, sc, a.runtime, a.guard) for sc in only}
               for name, b in builds}
    print("| scenario | build | I/Os answered | errors | s | IOPS | SDC peak MiB | SDS peak MiB "
          "| MDM peak MiB | SDC idle MiB | SDS marked down |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for sc in only:
        for name, _ in builds:
            r = results[name][sc]
            iops = r.get("ios", 0) / r["seconds"] if r.get("seconds") else 0
            print(f"| {sc} | {name} | {r.get('ios', 0):,} | {r.get('errors', '-')} | "
                  f"{r.get('seconds', 0):.1f} | {iops:,.0f} | {mb(r.get('sdc'))} | "
                  f"{mb(r.get('sds'))} | {mb(r.get('mdm'))} | {mb(r.get('idle'))} | "
                  f"{r.get('downs', '-')} |")
            if "problem" in r:
                print(f"|  | ({name}: {r['problem']}) | | | | | | | | | |")


if __name__ == "__main__":
    main()
