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
  a clear message, and leaves one leader.

At the end every change the leader answered "done" is in every MDM's own
state, and all three agree.
"""
import os
import random
import signal
import threading

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
