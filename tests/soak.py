#!/usr/bin/python3
"""Randomized fault soak: a real cluster (4 SDSs, each in a network namespace
of its own) under a verifying load, hit by one fault per cycle: kill -9,
SIGSTOP, a cut link, a restart of an SDS, a kill -9 of the SDC or the MDM.
After each fault it waits for every SDS to be up and every PG fully
protected, and records how long client I/O stalled. Ends with a full
read-back, a copy check and a verdict.

    tests/soak.sh --cycles 30        (or --minutes 20)

Not part of the default test run. Needs root (namespaces) and a build.
"""
import argparse
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))
sys.path.insert(0, os.path.join(HERE, "tools"))
from cairn_verify import Verifier  # noqa: E402
from cluster import NetCluster, wait_for  # noqa: E402

FAULTS = ["kill9", "sigstop", "cut", "restart", "sdc-kill9", "mdm-kill9"]
HOLD = 6.0  # seconds a fault lasts: past the MDM's 4 s timeout


def healthy(c):
    st = c.status()
    p = st["pools"][0]
    return (all(s["state"] == "up" and s["connected"] for s in st["sds"])
            and p["pgs_fully_protected"] == p["pg_count"] and p["pgs_rebuilding"] == 0)


def inject(c, fault, i):
    name = f"sds{i + 1}"
    if fault == "kill9":
        c.daemons[name].stop(signal.SIGKILL)
        time.sleep(HOLD)
        c.start_sds(i)
    elif fault == "sigstop":
        c.daemons[name].proc.send_signal(signal.SIGSTOP)
        time.sleep(HOLD)
        c.daemons[name].proc.send_signal(signal.SIGCONT)
    elif fault == "cut":
        c.cut(i)
        time.sleep(HOLD)
        c.restore(i)
    elif fault == "restart":
        c.daemons[name].stop(signal.SIGTERM)
        c.start_sds(i)
    elif fault == "sdc-kill9":
        c.daemons["sdc"].stop(signal.SIGKILL)
        c.start_sdc()
    elif fault == "mdm-kill9":
        c.daemons["mdm"].stop(signal.SIGKILL)
        time.sleep(2)
        c.start_mdm()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=0, help="run until this many minutes instead")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--dir", default="/tmp/cairn-soak")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.system(f"rm -rf {a.dir}")
    c = NetCluster(a.dir, sds_sizes=(2 << 30,) * 4, pgs=64)
    verdict = True
    rows = []
    try:
        c.start()
        c.create_volume("soak", 512 << 20)
        v = Verifier(c.uri("soak"), 256 << 20, seed=a.seed)
        t = threading.Thread(target=v.run, daemon=True)
        t.start()
        time.sleep(3)
        start = time.time()
        cycle = 0
        while (cycle < a.cycles) if not a.minutes else (time.time() - start < a.minutes * 60):
            cycle += 1
            fault = rng.choice(FAULTS)
            i = rng.randrange(len(c.sds_addrs))
            v.lat_log.clear()
            t0 = time.monotonic()
            inject(c, fault, i)
            try:
                wait_for("recovery", lambda: healthy(c), timeout=180, interval=0.5)
                recovered = time.monotonic() - t0
            except TimeoutError:
                recovered = None
                verdict = False
            stall = max([lat for (_, lat) in v.lat_log], default=0.0)
            target = f"sds{i + 1}" if fault in ("kill9", "sigstop", "cut", "restart") else "-"
            rows.append((cycle, fault, target, stall, recovered, len(v.errors)))
            print(f"cycle {cycle:3d}: {fault:9s} {target:5s} longest client op {stall:5.1f} s, "
                  f"recovered in {recovered if recovered is None else round(recovered, 1)} s, "
                  f"errors so far {len(v.errors)}", flush=True)
            if v.errors:
                verdict = False
        v.stop.set()
        t.join(120)
        bad = v.final_check()
        r = c.cairn("volume", "check-copies", "soak", check=False)
        print(v.summary())
        print(r.stdout.strip())
        for e in v.errors[:20]:
            print("  " + e)
        verdict = verdict and not bad and not v.errors and r.returncode == 0
        stalls = sorted(x[3] for x in rows)
        if stalls:
            print(f"stall per fault: median {stalls[len(stalls) // 2]:.1f} s, max {stalls[-1]:.1f} s "
                  f"over {len(rows)} cycles")
    finally:
        c.shutdown()
    print("VERDICT:", "PASS" if verdict else "FAIL")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
