"""Request ids on a cluster of three MDMs, and a Jepsen-style check of the
MDMs' history under faults.

First the same change sent twice with one request id, through the raw
protocol: the repeat is not applied again and gets the first outcome (a
pool create repeated is answered ok, not "already exists"; a refusal
repeated is the same refusal even after the state changed); a new id is a
new change. Sent twice at once, both copies reach the Raft log, and the
state machine applies the second as a repeat.

Then the history: client threads run CLI changes with unique names while a
nemesis kills the leader with -9 (and restarts it), pauses it with SIGSTOP
(and resumes it), and hands leadership over. Every op is recorded as ok
(exit 0), failed (a refusal: the CLI's error names no unknown outcome) or
unknown (the CLI says the outcome is unknown, or it did not return). At the
end, with every MDM up, each MDM's own state (--local) is checked:

* every ok op's effect is there: catches an acknowledged change lost in a
  failover (answered before it was committed, or truncated from the log);
* no failed op's effect is there: catches a refusal that was in fact
  applied, and a change applied twice: its repeat is refused ("already
  exists", "no fault set named") and the op reads as failed while its
  effect is there (a fault set that was added, or that was removed);
* no name appears twice in a list, every unknown op's object at most once:
  catches the state machine applying one change twice past its checks;
* every MDM holds the same fault sets, pools and map version: catches
  replicas that diverge (a snapshot without the request ids, an apply that
  is not deterministic).

Last, a follower paused or killed under a fast stream of changes, again
and again: it catches up through entries and snapshot installs at once,
the window in which libraft 0.22.1 crashes (docs/raft.md, C6). No MDM may
die, and all three must agree.
"""
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from cairnproto import FT_MGMT, Conn, _field, _parse
from cluster import wait_for
from test_mdm_cluster import Mdms

OP_POOL_CREATE, OP_VOLUME_CREATE, OP_FAULT_SET_ADD = 2, 5, 20
EEXIST, ENOENT = 17, 2
CLIENTS = 4
NEMESIS_SECONDS = 45


@pytest.fixture(scope="module")
def mdms(tmp_path_factory):
    m = Mdms(tmp_path_factory.mktemp("history"))
    try:
        m.form()
        yield m
    finally:
        m.stop_all()


def mgmt(op, request_id, **kw):
    fields = {"fault_set": 4, "size": 6, "pool": 8, "volume": 9, "pg_count": 13}
    msg = _field(1, op)
    for k, v in kw.items():
        msg += _field(fields[k], v.encode() if isinstance(v, str) else v)
    return msg + (_field(28, request_id) if request_id else b"")


def outcome(reply):
    """(status, error text) of a MgmtReply."""
    status, m, _ = reply
    return status, _parse(m).get(1, b"").decode()


def leader_conn(mdms):
    lead = wait_for("a leader", mdms.leader)
    return lead, Conn(mdms.addr[lead], mdms.c.credential("admin", "admin"))


def test_repeat_with_one_request_id(mdms):
    lead, c = leader_conn(mdms)
    try:
        rid = random.getrandbits(63) | 1
        create = mgmt(OP_POOL_CREATE, rid, pool="dup-pool", pg_count=8)
        assert outcome(c.request(FT_MGMT, create)) == (0, "")
        # the repeat is answered with the first outcome: ok, not "already exists"
        assert outcome(c.request(FT_MGMT, create)) == (0, "")
        # a new id is a new change, refused as it would be
        st, err = outcome(c.request(FT_MGMT, mgmt(OP_POOL_CREATE, rid + 1, pool="dup-pool")))
        assert st == -EEXIST and "a pool named 'dup-pool' already exists" in err, (st, err)
        # and so is a change without an id (older clients)
        st, err = outcome(c.request(FT_MGMT, mgmt(OP_POOL_CREATE, 0, pool="dup-pool")))
        assert st == -EEXIST, (st, err)
        # a refusal is an outcome too: repeated after the pool it lacked is
        # made, it is the same refusal (not a volume made later)
        vol = mgmt(OP_VOLUME_CREATE, rid + 2, volume="dup-vol", pool="later", size=1 << 20)
        st, first = outcome(c.request(FT_MGMT, vol))
        assert st == -ENOENT and "no storage pool named 'later'" in first, (st, first)
        assert outcome(c.request(FT_MGMT, mgmt(OP_POOL_CREATE, rid + 3, pool="later")))[0] == 0
        assert outcome(c.request(FT_MGMT, vol)) == (-ENOENT, first)
        # an id that was another change's is refused
        st, err = outcome(c.request(FT_MGMT, mgmt(OP_FAULT_SET_ADD, rid, fault_set="x")))
        assert st == -22 and "used before by another change (POOL_CREATE)" in err, (st, err)
        # sent twice at once: both copies are proposed (the first is not
        # applied yet when the second comes), the state machine applies one
        add = mgmt(OP_FAULT_SET_ADD, rid + 4, fault_set="dup-twice")
        r1, r2 = c.req, c.req + 1
        c.req += 2
        c.send_raw(c.frame_bytes(FT_MGMT, add, rid=r1) + c.frame_bytes(FT_MGMT, add, rid=r2))
        assert outcome(c.recv_reply(r1)) == (0, "")
        assert outcome(c.recv_reply(r2)) == (0, "")
    finally:
        c.close()
    with open(os.path.join(mdms.dir, f"mdm{lead}.log"), errors="replace") as f:
        log = f.read()
    assert f"raft: request {rid + 4:016x} (FAULT_SET_ADD) was applied before" in log
    for i in mdms.addr:
        wait_for(f"mdm{i} to apply them", lambda: "dup-twice" in mdms.fault_sets_of(i))
        assert [p for p in pools_of(mdms, i) if p == "dup-pool"] == ["dup-pool"]
    assert "x" not in mdms.fault_sets_of(lead)


def pools_of(mdms, i):
    import json
    out = mdms.cairn("--local", "pool", "list", mdm=mdms.addr[i], json_out=True).stdout
    return [p["name"] for p in json.loads(out)]


def fault_set_list(mdms, i):
    import json
    out = mdms.cairn("--local", "fault-set", "list", mdm=mdms.addr[i], json_out=True).stdout
    return [f["name"] for f in json.loads(out)]


# ---- the history ----

class History:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = []  # (thread, kind, name, result, detail)

    def add(self, *op):
        with self.lock:
            self.ops.append(op)


def run_cli(mdms, *args):
    """ok | failed | unknown, and the CLI's words."""
    try:
        r = mdms.cairn(*args, check=False)
    except subprocess.TimeoutExpired:
        return "unknown", "the CLI did not return"
    if r.returncode == 0:
        return "ok", ""
    return ("unknown" if "is unknown" in r.stderr else "failed"), r.stderr.strip()


def client(mdms, t, hist, stop):
    rng = random.Random(t)
    added = []  # fault sets this thread added (ok), not yet removed
    n = 0
    while not stop.is_set():
        n += 1
        roll = rng.random()
        if roll < 0.25 and added:
            name = added.pop(rng.randrange(len(added)))
            kind, args = "fs-remove", ("fault-set", "remove", name)
        elif roll < 0.45:
            name = f"p{t}-{n}"
            kind, args = "pool-create", ("pool", "create", name, "--pgs", "8")
        else:
            name = f"f{t}-{n}"
            kind, args = "fs-add", ("fault-set", "add", name)
        res, why = run_cli(mdms, *args)
        hist.add(t, kind, name, res, why)
        if kind == "fs-add" and res == "ok":
            added.append(name)


def nemesis(mdms, stop, log):
    rng = random.Random(7)
    deadline = time.monotonic() + NEMESIS_SECONDS
    while time.monotonic() < deadline:
        lead = wait_for("a leader", mdms.leader, timeout=60)
        what = rng.choice(["kill", "pause", "transfer"])
        log.append((what, lead))
        if what == "kill":
            mdms.daemons[lead].stop(signal.SIGKILL)
            wait_for("a new leader", lambda: mdms.leader() not in (None, lead), timeout=60)
            time.sleep(rng.uniform(0.5, 2))  # the cluster runs on two for a while
            mdms.start(lead, join=False)
        elif what == "pause":
            pid = mdms.daemons[lead].proc.pid
            os.kill(pid, signal.SIGSTOP)
            time.sleep(rng.uniform(0.8, 2.5))  # long enough for an election
            os.kill(pid, signal.SIGCONT)
        else:
            mdms.cairn("mdm", "transfer-leadership", check=False)
        time.sleep(rng.uniform(0.5, 1.5))  # the pace of the faults
    stop.set()


def test_history_under_leader_faults(mdms):
    hist, stop, faults = History(), threading.Event(), []
    logs = {i: os.path.join(mdms.dir, f"mdm{i}.log") for i in mdms.addr}
    log_from = {i: os.path.getsize(p) for i, p in logs.items()}
    threads = [threading.Thread(target=client, args=(mdms, t, hist, stop)) for t in range(CLIENTS)]
    for th in threads:
        th.start()
    try:
        nemesis(mdms, stop, faults)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    for i, d in mdms.daemons.items():
        if not d.alive():
            mdms.start(i, join=False)
    # every MDM has applied everything: the same map version everywhere
    def settled():
        vs = {mdms.status_of(i)["map_version"] for i in mdms.addr}
        return len(vs) == 1 and mdms.leader()
    wait_for("the MDMs to agree", settled, timeout=60)
    states = {i: (fault_set_list(mdms, i), pools_of(mdms, i)) for i in mdms.addr}

    counts = {}
    for _, kind, _, res, _ in hist.ops:
        counts[res] = counts.get(res, 0) + 1
    print(f"history: {len(hist.ops)} ops: {counts.get('ok', 0)} ok, "
          f"{counts.get('failed', 0)} failed, {counts.get('unknown', 0)} unknown; "
          f"faults: {', '.join(f'{w} {i}' for w, i in faults)}")
    for why in sorted({why for _, _, _, res, why in hist.ops if res != "ok"}):
        print(f"  not ok: {why}")
    repeats = 0
    for i, p in logs.items():
        with open(p, errors="replace") as f:
            f.seek(log_from[i])
            repeats += sum("was applied before" in line for line in f)
    print(f"  changes sent again after a lost reply and answered as repeats: {repeats}")

    ref = states[1]
    for i, st in states.items():
        assert sorted(st[0]) == sorted(ref[0]) and sorted(st[1]) == sorted(ref[1]), \
            f"MDM {i} differs from MDM 1"
    fsets, pools = ref
    for what, names in (("fault set", fsets), ("pool", pools)):
        twice = {n for n in names if names.count(n) > 1}
        assert not twice, f"{what}s listed twice: {twice}"
    fsets, pools = set(fsets), set(pools)
    removed = {name: res for _, kind, name, res, _ in hist.ops if kind == "fs-remove"}
    bad = []
    for t, kind, name, res, why in hist.ops:
        if kind == "pool-create":
            present = name in pools
            want = {"ok": True, "failed": False}.get(res)
        elif kind == "fs-add":
            present = name in fsets
            rm = removed.get(name)
            if rm == "unknown":
                want = None if res != "failed" else False
            elif rm == "ok":
                want = False
            else:  # not removed, or its removal refused
                want = {"ok": True, "failed": False}.get(res)
        else:  # fs-remove (of a fault set whose add was ok)
            present = name not in fsets
            want = {"ok": True, "failed": False}.get(res)
        if want is not None and present != want:
            bad.append(f"client {t}: {kind} {name} was {res} ({why}) but its effect is "
                       f"{'there' if present else 'not there'}")
    assert not bad, "\n".join(bad)
    assert counts.get("ok", 0) > 20, counts


# ---- a follower catching up while it writes a snapshot ----

CATCH_UP_ROUNDS = 16


def test_follower_catching_up_while_it_snapshots(mdms):
    """libraft 0.22.1 crashes a follower that gets an InstallSnapshot while
    it writes a snapshot of its own (docs/raft.md, C6): a follower paused or
    killed under a fast stream of changes comes back behind the leader's
    trailing entries, catches up through entries (taking a snapshot every
    16) and through installs at once. Without the MDM's guard one follower
    in about seven such rounds died; with it none may, and the MDMs agree."""
    stop, done = threading.Event(), [0]
    cred = mdms.c.credential("admin", "admin")

    def load(t):
        conn, n = None, 0
        while not stop.is_set():
            try:
                if conn is None:
                    lead = mdms.leader()
                    if not lead:
                        continue
                    conn = Conn(mdms.addr[lead], cred)
                n += 1
                conn.request(FT_MGMT, mgmt(OP_FAULT_SET_ADD, random.getrandbits(62) | 1,
                                           fault_set=f"c{t}-{n}"))
                done[0] += 1
            except Exception:  # noqa: BLE001 (any broken link: find the leader again)
                if conn:
                    conn.close()
                conn = None

    logs = {i: os.path.join(mdms.dir, f"mdm{i}.log") for i in mdms.addr}
    log_from = {i: os.path.getsize(p) for i, p in logs.items()}
    threads = [threading.Thread(target=load, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    rng, died = random.Random(11), []
    try:
        for k in range(CATCH_UP_ROUNDS):
            lead = wait_for("a leader", mdms.leader, timeout=60)
            f = rng.choice([i for i in mdms.addr if i != lead])
            if k % 2:
                pid = mdms.daemons[f].proc.pid
                os.kill(pid, signal.SIGSTOP)
                time.sleep(rng.uniform(0.3, 1.5))  # the fault: it falls behind
                os.kill(pid, signal.SIGCONT)
            else:
                mdms.daemons[f].stop(signal.SIGKILL)
                time.sleep(rng.uniform(0.3, 1.5))
                mdms.start(f, join=False)
            # it catches up: every MDM applies what the leader did before
            target = mdms.status_of(lead)["map_version"]
            def caught_up():
                for i, d in mdms.daemons.items():
                    if not d.alive():
                        died.append((k, i, d.proc.returncode))
                        mdms.start(i, join=False)
                return all(mdms.status_of(i)["map_version"] >= target for i in mdms.addr)
            wait_for("the follower to catch up", caught_up, timeout=60, interval=0.2)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=60)
    drops = 0
    for i, p in logs.items():
        with open(p, errors="replace") as fh:
            fh.seek(log_from[i])
            drops += fh.read().count("dropped, for the leader to send again")
    print(f"catch-up: {CATCH_UP_ROUNDS} rounds, {done[0]} changes, {drops} installs held back")
    assert not died, f"MDMs died while catching up (round, MDM, exit): {died}"
    assert done[0] > 100
    def agree():
        return len({mdms.status_of(i)["map_version"] for i in mdms.addr}) == 1
    wait_for("the MDMs to agree", agree, timeout=60)
    ref = sorted(fault_set_list(mdms, 1))
    for i in mdms.addr:
        assert sorted(fault_set_list(mdms, i)) == ref, f"MDM {i} differs from MDM 1"
