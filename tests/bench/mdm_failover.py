#!/usr/bin/python3
"""MDM cluster on Raft: what a leader failover costs, and what a change costs
with 1, 3 and 5 MDMs (issue 12's closing figures).

1. Leader failover (--kills N, default 10). A cluster of 3 MDMs, 3 SDSs and
   an SDC; a verifying write load (tests/tools/cairn_verify.py) runs on a
   mapped volume through NBD the whole time. For each kill:
     - the leader (by the MDMs' own word) is killed with -9;
     - elect: the time from the kill until a survivor answers, from its own
       Raft state (`--local` status over a connection opened before the
       kill, polled every 10 ms), that it leads in a term above the old one;
     - create: right after the kill a `cairn volume create` is started with
       every MDM's address (the CLI finds the leader itself and waits out the
       election); the time from the kill until it exits 0, and how long that
       one CLI call took;
     - healthy: the time until the cluster is whole again on two MDMs: the
       new leader has every SDS and the SDC connected, every SDS up, every PG
       fully protected;
     - longest client I/O: the longest op of the load that ended in (or was
       still running at the end of) the window from the kill until healthy,
       timed around each op, reconnects included;
   then the killed MDM is started again from its data directory and the
   harness waits until it follows in the new term and has applied the
   leader's commit index (catch-up) before the next kill. At the end the load
   stops, every block written is read back, the volume's copies are compared
   and every MDM, asked alone, must name the same cluster: the verdict.

2. Cost of a change (--creates M, default 50; --rounds R, default 3). For
   N = 1, 3, 5 MDMs, a fresh cluster per round (2 SDSs, a pool, an SDC; the
   MDMs at their default snapshot threshold; the first N rotating): M
   sequential `cairn volume create` processes, end to end (the CLI's start,
   its authenticated connection, the change, its exit); then M volume
   creates and M fault-set adds over one authenticated connection to the
   leader (tests/integration/cairnproto.py), timed from the request's send to
   its reply: the MDM-side latency (the leader's append and fsync, the round
   trip to a majority, the apply); and as baselines without Raft, M status
   queries over that connection and the disk's 4 KiB write + fdatasync in
   the MDMs' directory. Median and p90 of each, per round and over all; and
   the CPU that other work on the machine used while they were timed.

    tests/bench/mdm_failover.py --build build-plain [--kills 10] [--creates 50]
                                [--rounds 3] [--only failover|cost] [--work DIR]
                                [--json FILE] [--keep]

Build without sanitizers (cmake -DCMAKE_BUILD_TYPE=RelWithDebInfo). One
cluster at a time; scratch under --work (removed at the end). Not part of
the test suite.
"""
import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(TOP, "tests/integration"))
sys.path.insert(0, os.path.join(TOP, "tests/tools"))
sys.path.insert(0, HERE)
import cairnproto as P  # noqa: E402
from cairn_verify import Verifier  # noqa: E402
from bench import proc_cpu, system_cpu  # noqa: E402
from cluster import Cluster, wait_for  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
OP_STATUS, OP_VOLUME_CREATE, OP_FAULT_SET_ADD = 1, 5, 20
TARGET_S = 3.0  # issue 12: leader kill -9 to a successful volume create
SLOW = 0.1  # client ops slower than this are placed in the phase they ended in


def log(*a):
    print(*a, flush=True)


# ---- protobuf, the little these replies need ----

def pb_all(buf):
    """Every field of a protobuf message: number -> list of values (varints
    as ints, length-delimited as bytes)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = P._read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = P._read_varint(buf, i)
        elif wt == 2:
            n, i = P._read_varint(buf, i)
            v, i = bytes(buf[i:i + n]), i + n
        elif wt == 1:
            v, i = bytes(buf[i:i + 8]), i + 8
        elif wt == 5:
            v, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def one(f, num, default=None):
    return f[num][-1] if num in f else default


class Mgmt:
    """One authenticated connection to one MDM, for requests the harness
    times or polls without starting a CLI each time."""

    def __init__(self, c, addr, timeout=10):
        self.addr = addr
        self.conn = P.Conn(addr, c.credential("admin", "admin"), timeout=timeout)

    def call(self, msg):
        st, m, _ = self.conn.request(P.FT_MGMT, msg)
        return st, pb_all(m)

    def local_status(self):
        """(role, term, commit index, applied index) of this MDM, by its own word."""
        st, f = self.call(P._field(1, OP_STATUS) + P._field(27, 1))
        if st != 0:
            raise RuntimeError(f"status from {self.addr}: {st}")
        for raw in f.get(7, []):
            m = pb_all(raw)
            if one(m, 7, 0):
                return (one(m, 3, b"").decode(), one(m, 4, 0), one(m, 5, 0), one(m, 6, 0))
        raise RuntimeError(f"{self.addr} did not describe itself")

    def status(self):
        """The leader's status: ([(sds connected, state)], [sdc connected])."""
        st, f = self.call(P._field(1, OP_STATUS))
        if st != 0:
            raise RuntimeError(f"status from {self.addr}: {st}")
        sds = [(one(pb_all(r), 2, 0), one(pb_all(r), 7, b"").decode()) for r in f.get(3, [])]
        sdcs = [one(pb_all(r), 2, 0) for r in f.get(5, [])]
        return sds, sdcs

    def volume_create(self, name, size):
        st, f = self.call(P._field(1, OP_VOLUME_CREATE) + P._field(6, size)
                          + P._field(9, name.encode()))
        if st != 0:
            raise RuntimeError(f"volume create {name}: {st} {one(f, 1, b'').decode()}")

    def fault_set_add(self, name):
        st, f = self.call(P._field(1, OP_FAULT_SET_ADD) + P._field(4, name.encode()))
        if st != 0:
            raise RuntimeError(f"fault-set add {name}: {st} {one(f, 1, b'').decode()}")

    def close(self):
        self.conn.close()


def try_local_status(c, addr, conns):
    """A survivor's own view, reconnecting if its connection broke; None if
    it does not answer."""
    try:
        if addr not in conns:
            conns[addr] = Mgmt(c, addr, timeout=2)
        return conns[addr].local_status()
    except (OSError, RuntimeError, AssertionError):
        conns.pop(addr, None)
        return None


# ---- the load ----

class TimedVerifier(Verifier):
    """The verifier, with every op timed from outside (a failed op's
    reconnect included) and the longest of a window kept."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.win_max = 0.0
        self.cur_start = None
        self.slow = []  # (end, latency) of every op over SLOW s

    def one(self):
        t0 = time.monotonic()
        self.cur_start = t0
        super().one()
        self.cur_start = None
        t1 = time.monotonic()
        self.win_max = max(self.win_max, t1 - t0)
        if t1 - t0 > SLOW:
            self.slow.append((t1, t1 - t0))

    def window_start(self):
        self.win_max = 0.0

    def window_end(self):
        """The longest op since window_start, counting one still running."""
        s = self.cur_start
        running = time.monotonic() - s if s is not None else 0.0
        return max(self.win_max, running)


# ---- stats ----

def pct(xs, p):
    """The p-th percentile (nearest rank) of xs."""
    s = sorted(xs)
    if not s:
        return None
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def median(xs):
    s = sorted(xs)
    if not s:
        return None
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def f3(v):
    return "-" if v is None else f"{v:.3f}"


# ---- 1. leader failover ----

def cli_argv(c, *args):
    return ([f"{c.build}/mgmt/cairn", "--mdm", c.mdm_list,
             "--credentials", c.credential("admin", "admin")] + list(args))


def start_mdm(c, i):
    """MDM i again, from its data directory (as a follower of the cluster)."""
    if i == 1:
        c.start_mdm()
    else:
        c.start_peer_mdm(i, join=False)


def leader_mgmt(c, lead):
    return Mgmt(c, c.mdm_addrs[lead - 1])


def healthy(c, m, pgs):
    """The new leader has every SDS and the SDC connected, every SDS up and
    every PG fully protected (the pool's figures from `cairn status`)."""
    sds, sdcs = m.status()
    if len(sds) != len(c.members) or not all(conn and st == "up" for conn, st in sds):
        return False
    if not sdcs or not all(sdcs):
        return False
    st = json.loads(c.cairn("status", json_out=True).stdout)
    p = st["pools"][0]
    return p["pgs_fully_protected"] == pgs and p["pgs_rebuilding"] == 0


def failover_bench(work, build, kills, vol_mib, load_mib):
    pgs = 64
    c = Cluster(os.path.join(work, "failover"), sds_sizes=(2 * GiB,) * 3, pgs=pgs, mdms=3,
                build=build)
    rows = []
    windows = []  # (start, end, phase) of each failover and restart
    res = {"rows": rows}
    conns = {}
    try:
        c.start()
        c.create_volume("load", vol_mib * MiB)
        v = TimedVerifier(c.unix_uri("load"), load_mib * MiB, seed=12)
        t = threading.Thread(target=v.run, daemon=True)
        t.start()
        wait_for("the load under way", lambda: v.ops >= 200, timeout=60)
        log(f"  load running on a {vol_mib} MiB volume ({load_mib} MiB used), 3 MDMs, 3 SDSs")
        log("  kill  old new terms   elect   create  cli call  healthy  longest I/O  catch-up"
            "  longest I/O")
        log(f"  {'':70}(restart)")
        for k in range(1, kills + 1):
            lead = wait_for("one leader", c.mdm_leader, timeout=30)
            m = leader_mgmt(c, lead)
            term0 = m.local_status()[1]
            m.close()
            survivors = [c.mdm_addrs[i - 1] for i in range(1, c.n_mdms + 1) if i != lead]
            old_conn = conns.pop(c.mdm_addrs[lead - 1], None)
            if old_conn:
                old_conn.close()
            for a in survivors:  # connected before the kill: nothing to open after it
                wait_for(f"a connection to {a}", lambda a=a: try_local_status(c, a, conns))
            v.window_start()
            t_kill = time.monotonic()
            c.daemons[c.mdm_name(lead)].stop(signal.SIGKILL)
            t_cli0 = time.monotonic()
            cli = subprocess.Popen(cli_argv(c, "volume", "create", f"after-kill-{k}", "--size",
                                            "16M"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            cli_done = {}

            def reap(p=cli, d=cli_done):
                out, err = p.communicate(timeout=120)
                d["t"], d["rc"], d["err"] = time.monotonic(), p.returncode, err
            reaper = threading.Thread(target=reap)
            reaper.start()
            t_elect, new, term1 = None, None, None
            deadline = t_kill + 30
            while t_elect is None and time.monotonic() < deadline:
                for a in survivors:
                    s = try_local_status(c, a, conns)
                    if s and s[0] == "leader" and s[1] > term0:
                        t_elect = time.monotonic()
                        new, term1 = c.mdm_addrs.index(a) + 1, s[1]
                        break
                else:
                    time.sleep(0.01)
            reaper.join(130)
            attempts, t_create = 1, cli_done.get("t")
            cli_call = t_create - t_cli0 if t_create else None
            errs = []
            if cli_done.get("rc") != 0:
                errs.append(f"first volume create failed ({cli_done.get('rc')}): "
                            f"{(cli_done.get('err') or '').strip()}")
                t_create = None
                while t_create is None and time.monotonic() < t_kill + 60:
                    attempts += 1
                    r = c.cairn("volume", "create", f"after-kill-{k}", "--size", "16M",
                                check=False)
                    if r.returncode == 0 or "already exists" in r.stderr:
                        t_create = time.monotonic()
            if new is None:
                new = wait_for("a new leader", c.mdm_leader, timeout=30)
            nm = leader_mgmt(c, new)
            try:
                wait_for("the cluster healthy again", lambda: healthy(c, nm, pgs),
                         timeout=120, interval=0.05)
            finally:
                nm.close()
            t_healthy = time.monotonic()
            longest = v.window_end()
            # the killed MDM comes back and catches up before the next kill
            v.window_start()
            t_restart = time.monotonic()
            start_mdm(c, lead)
            back = {}

            def caught_up():
                lm = try_local_status(c, c.mdm_addrs[new - 1], conns)
                me = try_local_status(c, c.mdm_addrs[lead - 1], back)
                return (lm and me and lm[0] == "leader" and me[0] == "follower"
                        and me[1] == lm[1] and me[3] >= lm[2])
            wait_for(f"MDM {lead} to catch up", caught_up, timeout=60, interval=0.02)
            t_caught = time.monotonic()
            longest_restart = v.window_end()
            windows.append((t_kill, t_healthy, "failover"))
            windows.append((t_restart, t_caught, "restart"))
            for x in back.values():
                x.close()
            row = {"kill": k, "old": lead, "new": new, "terms": (term1 or 0) - term0,
                   "elect_s": t_elect - t_kill if t_elect else None,
                   "create_s": t_create - t_kill if t_create else None,
                   "cli_call_s": cli_call, "cli_attempts": attempts,
                   "healthy_s": t_healthy - t_kill, "longest_io_s": longest,
                   "longest_io_restart_s": longest_restart,
                   "catchup_s": t_caught - t_restart, "errors": errs,
                   "verifier_errors": len(v.errors)}
            rows.append(row)
            over = " OVER 3 s" if row["create_s"] is None or row["create_s"] > TARGET_S else ""
            log(f"  {k:4d} {lead:3d} {new:3d} {row['terms']:5d} {f3(row['elect_s']):>7} "
                f"{f3(row['create_s']):>8} {f3(cli_call):>9} {f3(row['healthy_s']):>8} "
                f"{f3(longest):>12} {f3(row['catchup_s']):>9} {f3(longest_restart):>12}{over}"
                + (f"  ({attempts} CLI calls)" if attempts > 1 else ""))
            for e in errs:
                log(f"       {e}")
        v.stop.set()
        t.join(120)
        res["slow_ops"] = {}
        for end, lat in v.slow:
            ph = next((w[2] for w in windows if w[0] <= end <= w[1]), "between")
            n, mx = res["slow_ops"].get(ph, (0, 0.0))
            res["slow_ops"][ph] = (n + 1, max(mx, lat))
        bad = v.final_check()
        res["summary"] = v.summary()
        res["verifier_errors"] = v.errors[:20]
        res["readback_bad"] = bad
        r = c.cairn("volume", "check-copies", "load", check=False)
        res["check_copies"] = (r.returncode, r.stdout.strip().splitlines()[-1:] or [""])
        # every MDM, asked alone, names the same cluster
        res["cluster_ids"] = {i: json.loads(c.cairn("--local", "status", json_out=True,
                                                    mdm=c.mdm_addrs[i - 1]).stdout)["cluster_id"]
                              for i in range(1, c.n_mdms + 1)}
        res["pass"] = (not v.errors and not bad and r.returncode == 0
                       and len(set(res["cluster_ids"].values())) == 1
                       and all(x["create_s"] is not None and not x["errors"] for x in rows))
    finally:
        for x in conns.values():
            x.close()
        c.shutdown()
    return res


def print_failover(res):
    rows = res["rows"]
    log("")
    log("  figure (s)                           median      max")
    for key, label in (("elect_s", "kill -9 -> a new leader"),
                       ("create_s", "kill -9 -> volume create done"),
                       ("cli_call_s", "that CLI call itself"),
                       ("healthy_s", "kill -9 -> cluster healthy"),
                       ("longest_io_s", "longest client I/O in the window"),
                       ("catchup_s", "restarted MDM caught up"),
                       ("longest_io_restart_s", "longest client I/O, restart")):
        xs = [r[key] for r in rows if r[key] is not None]
        log(f"  {label:34} {f3(median(xs)):>8} {f3(max(xs) if xs else None):>8}")
    over = [r["kill"] for r in rows if r["create_s"] is None or r["create_s"] > TARGET_S]
    log(f"  kills over the {TARGET_S:.0f} s target: {len(over)} of {len(rows)} {over or ''}")
    log(f"  load: {res['summary']}; read back: {res['readback_bad']} bad blocks")
    log(f"  client ops over {SLOW} s, by the phase they ended in: "
        + (", ".join(f"{ph} {n} (longest {mx:.3f} s)" for ph, (n, mx)
                     in sorted(res["slow_ops"].items())) or "none"))
    for e in res["verifier_errors"]:
        log(f"    {e}")
    log(f"  check-copies: rc {res['check_copies'][0]} {res['check_copies'][1][0]}")
    ids = res["cluster_ids"]
    log(f"  cluster id by each MDM's own word: "
        + ("all the same" if len(set(ids.values())) == 1 else f"DIFFER {ids}"))
    jumps = sorted({r["terms"] for r in rows})
    log(f"  terms passed per failover (1: the first candidate won): "
        + ", ".join(f"{j}: {sum(r['terms'] == j for r in rows)}x" for j in jumps))
    log(f"  VERDICT: {'PASS' if res['pass'] else 'FAIL'}")


# ---- 2. what a change costs ----

def disk_sync_latency(path, n):
    """4 KiB write + fdatasync at the same offset of a file in path, n times."""
    f = os.path.join(path, "fsync-probe")
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o600)
    out = []
    try:
        buf = os.urandom(4096)
        os.pwrite(fd, buf, 0)
        os.fsync(fd)
        for _ in range(n):
            t0 = time.monotonic()
            os.pwrite(fd, buf, 0)
            os.fdatasync(fd)
            out.append(time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(f)
    return out


KINDS = (("cli", "CLI volume create"), ("conn", "volume create, one connection"),
         ("fsadd", "fault-set add, one connection"), ("status", "status query, one connection"),
         ("fsync", "disk: 4 KiB write + fdatasync"))


def cluster_cpu(c):
    return sum(proc_cpu(d.proc.pid) for d in c.daemons.values() if d.alive())


def one_cost(d, build, n, m):
    """One fresh cluster of n MDMs: m changes timed each way (seconds), and
    the cores that other work on the machine used meanwhile."""
    # the daemons' default snapshot threshold (the harness's 64 would
    # snapshot in the middle of the run)
    c = Cluster(d, sds_sizes=(2 * GiB,) * 2, pgs=64, mdms=n, build=build,
                mdm_args=["--snapshot-threshold", "1024"])
    r = {k: [] for k, _ in KINDS}
    try:
        c.start()
        lead = c.mdm_leader()
        for i in range(3):  # warm-up, not counted
            c.cairn("volume", "create", f"warm-{i}", "--size", "4M")
        b0, a0, _ = system_cpu()
        own0, cl0, w0 = os.times(), cluster_cpu(c), time.monotonic()
        for i in range(m):
            t0 = time.monotonic()
            c.cairn("volume", "create", f"cli-{i}", "--size", "4M")
            r["cli"].append(time.monotonic() - t0)
        mg = leader_mgmt(c, lead)
        try:
            for i in range(m):
                t0 = time.monotonic()
                mg.volume_create(f"conn-{i}", 4 * MiB)
                r["conn"].append(time.monotonic() - t0)
            for i in range(m):
                t0 = time.monotonic()
                mg.fault_set_add(f"fs-{i}")
                r["fsadd"].append(time.monotonic() - t0)
            for i in range(m):
                t0 = time.monotonic()
                mg.local_status()
                r["status"].append(time.monotonic() - t0)
        finally:
            mg.close()
        b1, a1, _ = system_cpu()
        own1, cl1, w1 = os.times(), cluster_cpu(c), time.monotonic()
        own = (own1.user + own1.system + own1.children_user + own1.children_system
               - own0.user - own0.system - own0.children_user - own0.children_system)
        r["others_cores"] = max(0.0, (b1 - b0) - (cl1 - cl0) - own) / (w1 - w0)
        r["fsync"] = disk_sync_latency(d, m)
        r["leader"] = lead
    finally:
        c.shutdown()
        shutil.rmtree(d, ignore_errors=True)
    return r


def cost_bench(work, build, ns, m, rounds):
    """rounds rounds, each a fresh cluster per N, the first N rotating."""
    res = {n: {"rounds": [], **{k: [] for k, _ in KINDS}} for n in ns}
    for rd in range(rounds):
        for j in range(len(ns)):
            n = ns[(rd + j) % len(ns)]
            r = one_cost(os.path.join(work, f"cost-{n}-{rd}"), build, n, m)
            for k, _ in KINDS:
                res[n][k] += r[k]
            res[n]["rounds"].append({"others_cores": r["others_cores"],
                                     **{k: median(r[k]) for k, _ in KINDS}})
            log(f"  round {rd + 1}, {n} MDM{'s' if n > 1 else ' '}: medians (ms) "
                + ", ".join(f"{k} {median(r[k]) * 1e3:.2f}" for k, _ in KINDS)
                + f"; other work on the machine {r['others_cores']:.2f} cores")
    return res


def print_cost(res):
    ns = list(res)
    log("")
    log(f"  {'ms, over every round':34}"
        + "".join(f"{f'{n} MDM' + ('s' if n > 1 else ''):>22}" for n in ns))
    log(f"  {'':34}" + "".join(f"{'median   p90':>22}" for n in ns))
    for k, label in KINDS:
        log(f"  {label:34}" + "".join(
            f"{median(res[n][k]) * 1e3:>13.2f}{pct(res[n][k], 90) * 1e3:>9.2f}" for n in ns))
    for k in ("conn", "fsadd"):
        per = [" / ".join(f"{x[k] * 1e3:.2f}" for x in res[n]["rounds"]) for n in ns]
        log(f"  {'per-round medians, ' + k:34}" + "".join(f"{p:>22}" for p in per))
    per = [" / ".join(f"{x['others_cores']:.2f}" for x in res[n]["rounds"]) for n in ns]
    log(f"  {'other work, cores, per round':34}" + "".join(f"{p:>22}" for p in per))
    for a, b in ((1, 3), (3, 5)):
        if a in res and b in res:
            for k in ("conn", "fsadd"):
                dd = median(res[b][k]) - median(res[a][k])
                log(f"  {b} MDMs - {a} MDM{'s' if a > 1 else ''}, {dict(KINDS)[k]}: "
                    f"{dd * 1e3:+.2f} ms (medians)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="Cairn build directory (no sanitizers)")
    ap.add_argument("--kills", type=int, default=10, help="leader kills (default 10)")
    ap.add_argument("--creates", type=int, default=50,
                    help="volume creates per N and per way of timing (default 50)")
    ap.add_argument("--mdms", default="1,3,5", help="cluster sizes for the cost of a change")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of the cost of a change, each a fresh cluster per size, the "
                         "first size rotating (default 3)")
    ap.add_argument("--only", choices=("failover", "cost"), default=None)
    ap.add_argument("--volume-mib", type=int, default=256, help="the load's volume")
    ap.add_argument("--load-mib", type=int, default=128, help="the part of it the load uses")
    ap.add_argument("--work", default="/tmp/cairn-mdm-failover")
    ap.add_argument("--json", default=None, help="also write the raw figures here")
    ap.add_argument("--keep", action="store_true", help="keep --work (the daemons' logs)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    if not os.path.exists(f"{build}/mgmt/cairn-mdm"):
        ap.error(f"no cairn-mdm in {build}")
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    rev = subprocess.run(["git", "-C", TOP, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    log(f"== {time.strftime('%Y-%m-%d %H:%M')}, commit {rev}, build {build}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    out = {"commit": rev, "date": time.strftime("%Y-%m-%d %H:%M")}
    ok = True
    if a.only in (None, "failover"):
        log(f"== leader failover, {a.kills} kills")
        fo = failover_bench(a.work, build, a.kills, a.volume_mib, a.load_mib)
        print_failover(fo)
        out["failover"] = fo
        ok = fo["pass"]
    if a.only in (None, "cost"):
        log(f"== cost of a change: {a.creates} changes of each kind per cluster, {a.rounds} "
            "rounds")
        co = cost_bench(a.work, build, [int(x) for x in a.mdms.split(",")], a.creates,
                        a.rounds)
        print_cost(co)
        out["cost"] = co
    log(f"== load average at the end {os.getloadavg()[0]:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if not a.keep:
        shutil.rmtree(a.work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
