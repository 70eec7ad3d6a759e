#!/usr/bin/python3
"""Randomized fault soak: a real cluster (4 SDSs, each in a network namespace
of its own; with --mdms 3, three MDMs, each in a namespace of its own too)
under a verifying load, hit by one fault per cycle, chosen at random:

  SDS (one at random)  kill9, sigstop, cut, restart
  SDC                  sdc-kill9
  MDM, --mdms 1        mdm-kill9 (the one MDM, started again 2 s later)
  MDMs, --mdms 3       mdm-leader-kill9 (restarted after the hold),
                       mdm-leader-sigstop (SIGCONT after the hold: it must
                       step down), mdm-leader-cut (its link cut for the
                       hold, then restored), mdm-follower-kill9

A fault is held for 6 s (well past the MDM's 2 s --sds-timeout). For every
MDM fault the soak measures the time to a working CLI: from the fault, a
real change (a fresh volume created, every MDM's address, --mdm-timeout 4
per try) tried again and again until one is made; and with several MDMs
what the fault's end costs it (the MDM rejoining may force an election):
the longest gap between changes made, tried 0.2 s apart, from the fault's
end to 1 s past the recovery (tests/soak_faults.py).
After each fault it waits for every SDS to be up and every PG fully
protected and, after an MDM fault, for every MDM to be back with one leader
that has been elected after the fault (for a fault of the leader) and
every MDM caught up with it; and for the load to go on. It records the
longest client I/O during the cycle (the stall, a failed request and its
reconnect included) and the recovery time (from the fault, its hold
included). Ends with a full read-back, a copy check, a table per fault kind
and a verdict: a daemon that dies, a cycle that does not recover, a client
I/O error, a lost or stale write, or copies that differ fail it.

    tests/soak.sh --cycles 30 [--mdms 3] [--seed S]     (or --minutes 20)
    (--faults a,b: only those kinds, to try one out)

Not part of the default test run. Needs root (namespaces) and a build.
"""
import argparse
import os
import random
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "integration"))
sys.path.insert(0, os.path.join(HERE, "tools"))
from cairn_verify import Verifier  # noqa: E402
from cluster import NetCluster, wait_for  # noqa: E402
import soak_faults as sf  # noqa: E402


def restart_dead(c):
    """Start again whatever died (after reporting it), so the soak goes on."""
    for name in sf.dead_daemons(c):
        if name == "sdc":
            c.start_sdc()
        elif name.startswith("sds"):
            c.start_sds(int(name[3:]) - 1)
        else:
            sf.start_again(c, next(i for i in range(1, c.n_mdms + 1) if c.mdm_name(i) == name))


def load_goes_on(v, ops=20, timeout=60):
    n = v.ops
    try:
        wait_for("the load to go on", lambda: v.ops >= n + ops, timeout=timeout, interval=0.1)
        return True
    except TimeoutError:
        return False


def fmt(x):
    return "-" if x is None else f"{x:.1f}"


def med_max(xs):
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), max(xs)) if xs else (None, None)


def summary_table(rows, kinds):
    """Per fault kind: count, stall, recovery and (MDM faults) time to a
    working CLI, each median / max, in seconds."""
    out = [f"{'fault':20s} {'n':>3s} {'stall med':>9s} {'max':>6s} {'recov med':>9s} {'max':>6s}"
           f" {'cli med':>7s} {'max':>6s} {'end gap med':>11s} {'max':>6s} {'cli tries':>9s}"]
    for k in kinds:
        rs = [r for r in rows if r["fault"] == k]
        if not rs:
            continue
        sm, sx = med_max(r["stall"] for r in rs)
        rm, rx = med_max(r["recovered"] for r in rs)
        line = f"{k:20s} {len(rs):3d} {fmt(sm):>9s} {fmt(sx):>6s} {fmt(rm):>9s} {fmt(rx):>6s}"
        if sf.is_mdm_fault(k):
            cm, cx = med_max(r["cli"] for r in rs)
            gm, gx = med_max(r["gap"] for r in rs)
            tries = sum(r["tries"] for r in rs)
            line += f" {fmt(cm):>7s} {fmt(cx):>6s} {fmt(gm):>11s} {fmt(gx):>6s} {tries:9d}"
        out.append(line)
    nr = sum(1 for r in rows if r["recovered"] is None)
    nc = sum(1 for r in rows if sf.is_mdm_fault(r["fault"]) and r["cli"] is None)
    out.append(f"(seconds; stall: the longest client I/O; recovery: from the fault, its hold "
               f"included; cli: from the fault to the first change made; end gap: the longest "
               f"time between changes made (tried {sf.WATCH_PACE} s apart) from the fault's end "
               f"to 1 s after recovery; {nr} cycle(s) not recovered, {nc} MDM fault(s) with no "
               f"working CLI within {sf.PROBE_LIMIT} s)")
    return "\n".join(out)


def run_cycle(c, v, cycle, fault, i, rng):
    """One fault and the wait for the cluster to be whole. Returns the row
    and the list of problems (empty: the cycle passed)."""
    problems = []
    v.lat_log.clear()
    v.fail_log.clear()
    v.window_max = 0.0
    t0 = time.monotonic()
    try:
        target, probe, watch, before = sf.inject(c, fault, i, rng, cycle)
    except Exception as e:  # noqa: BLE001 - e.g. a daemon that did not start again
        target, probe, watch, before = "?", None, None, None
        problems.append(f"the fault's injection failed: {e!r}")
    why, settled = sf.settle(c, sf.is_mdm_fault(fault))
    recovered = None if why else time.monotonic() - t0
    if why:
        problems.append(why)
    row = {"cycle": cycle, "fault": fault, "target": target, "recovered": recovered,
           "cli": None, "tries": 0, "leader": None, "gap": None}
    if watch:
        if not why:
            time.sleep(1)  # the watch's window: 1 s past the settling
        row["gap"] = watch.finish()
        row["tries"] += watch.tries
    if probe:
        probe.join(max(0, sf.PROBE_LIMIT - (time.monotonic() - t0)) + 40)
        row["cli"] = probe.took
        row["tries"] += probe.tries
        if probe.took is None:
            problems.append(f"no working CLI within {sf.PROBE_LIMIT} s; last: "
                            f"{probe.failures[-1:]}")
    if settled and settled.leader:
        row["leader"] = settled.leader
        if fault.startswith("mdm-leader-") and before and not settled.leader[1] > before[1]:
            problems.append(f"leader {settled.leader} after the fault of leader {before}: "
                            f"no election in a later term")
    if not why and not load_goes_on(v):
        problems.append("the load is stuck")
    row["stall"] = max([v.window_max] + [lat for (_, lat) in v.fail_log])
    if not why:
        try:
            sf.remove_probes(c)
        except AssertionError as e:
            problems.append(f"probe volumes not removed: {e}")
    return row, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=0, help="run until this many minutes instead")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--mdms", type=int, default=1, help="MDMs in the cluster (1, or 3 or 5)")
    ap.add_argument("--faults", help="only these fault kinds (comma-separated)")
    ap.add_argument("--dir", default="/tmp/cairn-soak")
    a = ap.parse_args()
    print(f"soak: seed {a.seed}, {a.mdms} MDM(s), "
          f"{f'{a.minutes} minutes' if a.minutes else f'{a.cycles} cycles'}", flush=True)
    rng = random.Random(a.seed)
    kinds = sf.fault_kinds(a.mdms)
    if a.faults:
        unknown = set(a.faults.split(",")) - set(kinds)
        if unknown:
            ap.error(f"no fault {', '.join(sorted(unknown))} with --mdms {a.mdms}: {kinds}")
        kinds = a.faults.split(",")
    os.system(f"rm -rf {a.dir}")
    c = NetCluster(a.dir, mdms=a.mdms, sds_sizes=(2 << 30,) * 4, pgs=64)
    verdict = True
    rows, failures = [], []
    try:
        c.start()
        c.create_volume("soak", 512 << 20)
        v = Verifier(c.uri("soak"), 256 << 20, seed=a.seed)
        t = threading.Thread(target=v.run, daemon=True)
        t.start()
        if not load_goes_on(v, ops=200):
            raise RuntimeError("the load did not start")
        start = time.time()
        cycle = 0
        while (cycle < a.cycles) if not a.minutes else (time.time() - start < a.minutes * 60):
            cycle += 1
            fault = rng.choice(kinds)
            i = rng.randrange(len(c.sds_addrs))
            row, problems = run_cycle(c, v, cycle, fault, i, rng)
            rows.append(row)
            lead = f", leader {row['leader'][0]} (term {row['leader'][1]})" if row["leader"] else ""
            cli = (f", working CLI after {fmt(row['cli'])} s" if sf.is_mdm_fault(fault) else "")
            if row["gap"] is not None:
                cli += f", after its end the longest gap {fmt(row['gap'])} s"
            if sf.is_mdm_fault(fault):
                cli += f" ({row['tries']} tries)"
            print(f"cycle {cycle:3d}: {fault:18s} {row['target']:5s} longest client op "
                  f"{row['stall']:5.1f} s, recovered in {fmt(row['recovered'])} s{cli}{lead}, "
                  f"errors so far {len(v.errors)}", flush=True)
            if v.errors:
                verdict = False
            if problems:
                verdict = False
                failures.append((cycle, fault, problems))
                print(f"  FAILED: {'; '.join(problems)}", flush=True)
                for name in sf.dead_daemons(c):
                    print(f"  --- last lines of {c.daemons[name].log} ---\n{sf.log_tail(c, name)}")
                restart_dead(c)
                why, _ = sf.settle(c, True)
                if why:
                    print(f"  the cluster did not become whole again ({why}): soak stopped")
                    break
        v.stop.set()
        t.join(120)
        bad = v.final_check()
        r = c.cairn("volume", "check-copies", "soak", check=False)
        print()
        print(summary_table(rows, kinds))
        print()
        print(v.summary())
        print(f"final read-back: {bad} block(s) wrong")
        print(r.stdout.strip() or r.stderr.strip())
        for e in v.errors[:20]:
            print("  " + e)
        for cy, f, ps in failures:
            print(f"  cycle {cy} ({f}) failed: {'; '.join(ps)}")
        verdict = verdict and not bad and not v.errors and r.returncode == 0
    finally:
        c.shutdown()
    print("VERDICT:", "PASS" if verdict else "FAIL")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
