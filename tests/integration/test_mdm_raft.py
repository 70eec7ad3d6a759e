"""Three MDMs on Raft under the faults of docs/raft.md E, rows 7, 8 and 9,
each under a stream of changes as fast as the leader takes them (three
connections of the raw protocol, at a snapshot every 16 entries, so that
appends and snapshots are always in flight):

* row 9 (C5): the leader, then a follower, stopped with SIGTERM: each
  closes Raft with appends and snapshots in flight and exits 0, under ASan;
* row 7 (C2): every MDM killed with -9 at once, and all started again, four
  times: every one starts (libraft loads its log and snapshot), a leader is
  elected, and the changes go on;
* row 8 (C3, C4, A5): twenty leadership transfers in a row, and a transfer
  to an MDM paused with SIGSTOP: each either hands over or is refused with
  a clear message, and leaves one leader;
* row 6 (C1): a follower that lags past the leader's log gets the state as
  a snapshot of about 1 MB, and the leader is killed with -9 during its
  catch-up (twice as the snapshot lands on the follower's disk, before
  the follower loads it; once at once and once 0.3 s after the follower
  answers): the two left elect a leader between them, the changes go on,
  and the old leader rejoins.

At the end every change the leader answered "done" is in every MDM's own
state, and all three agree.
"""
import glob
import os
import random
import signal
import threading
import time

import pytest

from cairnproto import FT_MGMT, Conn
from cluster import wait_for
from test_mdm_cluster import Mdms
from test_mdm_history import OP_FAULT_SET_ADD, fault_set_list, mgmt, outcome


class Load:
    """Fault sets added as fast as the leader takes them; those answered
    done are kept."""

    def __init__(self, mdms, threads=3):
        self.mdms, self.stop, self.acked = mdms, threading.Event(), set()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(t,)) for t in range(threads)]

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for th in self.threads:
            th.join(timeout=60)
        assert not any(th.is_alive() for th in self.threads)

    def run(self, t):
        cred = self.mdms.c.credential("admin", "admin")
        conn, n = None, 0
        while not self.stop.is_set():
            try:
                if conn is None:
                    lead = self.mdms.leader()
                    if not lead:
                        continue
                    conn = Conn(self.mdms.addr[lead], cred)
                n += 1
                name = f"l{t}-{n}"
                st, _ = outcome(conn.request(FT_MGMT, mgmt(OP_FAULT_SET_ADD, random.getrandbits(62) | 1,
                                                            fault_set=name)))
                if st == 0:
                    with self.lock:
                        self.acked.add(name)
                else:  # not the leader (any more): find it again
                    conn.close()
                    conn = None
            except Exception:  # noqa: BLE001 (any broken link: find the leader again)
                if conn:
                    conn.close()
                conn = None

    def count(self):
        with self.lock:
            return len(self.acked)

    def wait_more(self, what, k=50):
        """Wait until k more changes are answered done (the cluster works)."""
        start = self.count()
        wait_for(what, lambda: self.count() >= start + k, timeout=60, interval=0.1)


@pytest.fixture(scope="module")
def mdms(tmp_path_factory):
    m = Mdms(tmp_path_factory.mktemp("raftrows"))
    try:
        m.form()
        yield m
    finally:
        m.stop_all()


def check_all_agree(mdms, acked):
    def agree():
        return len({mdms.status_of(i)["map_version"] for i in mdms.addr}) == 1
    wait_for("the MDMs to agree", agree, timeout=60)
    ref = set(fault_set_list(mdms, 1))
    for i in mdms.addr:
        st = set(fault_set_list(mdms, i))
        assert st == ref, f"MDM {i} differs from MDM 1"
        lost = acked - st
        assert not lost, f"MDM {i} lacks {len(lost)} changes answered done, e.g. {sorted(lost)[:5]}"


def test_graceful_close_in_flight(mdms):
    with Load(mdms) as load:
        for role in ("leader", "follower", "leader", "follower"):
            load.wait_more("changes before the stop")
            lead = wait_for("a leader", mdms.leader, timeout=60)
            i = lead if role == "leader" else next(j for j in mdms.addr if j != lead)
            mdms.daemons[i].stop(signal.SIGTERM)  # requires exit 0
            load.wait_more(f"changes with the {role} stopped")
            mdms.start(i, join=False)
    check_all_agree(mdms, load.acked)
    for d in mdms.daemons.values():
        d.check_log()


def test_every_mdm_killed_at_once(mdms):
    with Load(mdms) as load:
        for _ in range(4):
            load.wait_more("changes before the kill")
            for d in mdms.daemons.values():
                d.proc.send_signal(signal.SIGKILL)
            for d in mdms.daemons.values():
                d.proc.wait()
            for i in sorted(mdms.addr):
                mdms.start(i, join=False)  # waits until it answers: raft_start worked
            wait_for("a leader", mdms.leader, timeout=60)
            load.wait_more("changes after the restart")
    check_all_agree(mdms, load.acked)


def test_transfers_in_a_row(mdms):
    with Load(mdms) as load:
        for k in range(20):
            lead = wait_for("a leader", mdms.leader, timeout=60)
            to = random.Random(k).choice([i for i in mdms.addr if i != lead])
            r = mdms.cairn("mdm", "transfer-leadership", str(to), check=False)
            assert r.returncode == 0 and f"MDM {to} leads" in r.stdout, (r.stdout, r.stderr)
        load.wait_more("changes after the transfers")
        # to an MDM that is paused: it cannot take over
        lead = wait_for("a leader", mdms.leader, timeout=60)
        to = next(i for i in mdms.addr if i != lead)
        pid = mdms.daemons[to].proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            r = mdms.cairn("mdm", "transfer-leadership", str(to), check=False)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert r.returncode != 0, r.stdout
        assert r.stderr.strip(), "a refused transfer says why"
        print(f"transfer to a paused MDM: {r.stderr.strip()}")
        wait_for("one leader", mdms.leader, timeout=60)
        load.wait_more("changes after the refused transfer")
    check_all_agree(mdms, load.acked)
    for d in mdms.daemons.values():
        d.check_log()


# ---- row 6: a snapshot install cut short by the leader's death ----

BULK = 12000  # fault sets of 64-character names: a snapshot of about 1 MB


def bulk_fault_sets(mdms, n, prefix):
    """n fault sets added to the leader, 500 at a time down one connection
    (pipelined: the leader takes them as fast as Raft commits them)."""
    lead = wait_for("a leader", mdms.leader, timeout=60)
    conn = Conn(mdms.addr[lead], mdms.c.credential("admin", "admin"))
    try:
        for k in range(0, n, 500):
            rids, frames = [], []
            for j in range(k, min(n, k + 500)):
                name = f"{prefix}-{j:07d}-".ljust(64, "x")
                rids.append(conn.req)
                frames.append(conn.frame_bytes(FT_MGMT, mgmt(OP_FAULT_SET_ADD, random.getrandbits(62) | 1,
                                                             fault_set=name), b"", conn.req))
                conn.req += 1
            conn.send_raw(b"".join(frames))
            for r in rids:
                st, err = outcome(conn.recv_reply(r))
                assert st == 0, err
    finally:
        conn.close()


def snapshots_of(mdms, i):
    """The index of MDM i's newest snapshot on its disk (0: none)."""
    idx = [int(os.path.basename(f).split("-")[2])
           for f in glob.glob(f"{mdms.dir}/mdm{i}/snapshot-*-*-*") if not f.endswith(".meta")]
    return max(idx, default=0)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    m = Mdms(tmp_path_factory.mktemp("raftbig"))
    m.threshold = 256  # keeps 128 entries behind a snapshot: a follower 600 behind needs one
    try:
        m.form()
        bulk_fault_sets(m, BULK, "bulk")
        yield m
    finally:
        m.stop_all()


def test_leader_killed_during_a_snapshot_install(big):
    size = os.path.getsize(max(glob.glob(f"{big.dir}/mdm1/snapshot-*-*-*[0-9]"),
                               key=os.path.getmtime))
    print(f"a snapshot of {size} bytes")
    assert size > 800_000, size
    with Load(big) as load:
        # when the leader dies: as the installed snapshot lands on the
        # follower's disk (libraft has written it; the follower has yet to
        # load it), or a fixed time after the follower answers
        for k, when in enumerate(("landed", 0.0, "landed", 0.3)):
            lead = wait_for("a leader", big.leader, timeout=60)
            f = next(i for i in sorted(big.addr) if i != lead)
            big.daemons[f].proc.send_signal(signal.SIGKILL)
            big.daemons[f].proc.wait()
            before = snapshots_of(big, f)
            bulk_fault_sets(big, 600, f"lag{k}")  # past what the leader's log keeps
            big.start(f, join=False)  # it answers; the leader finds it behind
            if when == "landed":
                wait_for(f"a snapshot from MDM {lead} on MDM {f}'s disk",
                         lambda: snapshots_of(big, f) > before, timeout=60, interval=0.002)
            else:
                time.sleep(when)  # the point of the catch-up at which the leader dies
            big.daemons[lead].proc.send_signal(signal.SIGKILL)
            big.daemons[lead].proc.wait()
            got = snapshots_of(big, f)
            print(f"round {k}: MDM {lead} killed ({when}) in MDM {f}'s catch-up; "
                  f"its newest snapshot {'is a new one' if got > before else 'is still the old one'}")
            wait_for("a leader of the two left", big.leader, timeout=60)
            load.wait_more(f"changes after round {k}")
            big.start(lead, join=False)
            load.wait_more(f"changes with MDM {lead} back")
    check_all_agree(big, load.acked)
    for d in big.daemons.values():
        d.check_log()
