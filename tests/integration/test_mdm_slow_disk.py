"""MDMs whose data directories are on a slow disk (docs/raft.md, E rows 3
and 4), under a stream of changes as fast as the leader takes them.

Each MDM's data directory is a slowfs mount (tests/tools/slowfs.py): a FUSE
passthrough whose writes, fsyncs, fdatasyncs and flushes sleep for a delay
the test sets at any time (or its fsyncs and fdatasyncs only: a disk whose
writes land in the page cache and whose flushes are slow). libraft appends
from its thread pool there (FUSE allows O_DIRECT but no RWF_NOWAIT: an
io_submit with RWF_DSYNC, which FUSE makes a write and an fdatasync), and
it stores its term and vote with pwrite, fdatasync and close on the MDM's
own loop. The first test
checks, on one MDM, that the delay reaches Raft's persistence: a change
takes at least two delays with every write and sync delayed, at least one
with syncs only (it prints the latencies).

Row 3 (A2 in libraft 0.15: a follower acknowledged indexes it never checked
against the leader, so entries could be committed on a minority and lost):
the leader's syncs are made slow (0.3 s), one follower is paused with
SIGSTOP, so the leader's entries go to the other follower while they wait
for the leader's own disk, and the leader is killed with -9 with those
entries in flight. The paused follower resumes, a new leader takes the
stream of changes, and the old leader comes back from its own disk, healed.
Three rounds, a different leader each time. At the end every change
answered "done" is in every MDM's own state, and all three agree.

Row 4 (A4: elections on unpersisted state, two leaders in one term; B1: a
configuration rolled back or adopted wrongly around a membership change):
one follower's syncs take 0.2 s each, and in a loop a fourth MDM is added,
the leader is paused with SIGSTOP until another MDM leads, the fourth MDM
is removed, and the leader is killed with -9 and started again. All along,
every MDM's `cairn mdm list --json` is sampled in a thread and each MDM's
own (id, role, term) kept. At the end: no two MDMs ever claimed to lead in
the same term, no MDM died (each is still running and exits 0 on SIGTERM,
with no sanitizer report), every change answered "done" is everywhere, and
all agree.

Why 0.2 s and not the ~1 s of docs/raft.md: a voter persists its term and
its vote with a sync each, on its loop, before it answers a candidate. Once
that takes longer than the 500 ms election timeout (from about 0.25 s a
sync), no candidate ever gets its vote in time: each times out and starts
a new term, which the slow voter must persist again. If the slow voter is
needed for a majority, no leader is elected for as long as the disk stays
slow, unless --election-timeout is raised past four syncs (docs/raft.md C9;
the last two tests: the MDM's warning, and a leader elected with 3 s).
Row 3's leader is slowed in its syncs only for
the same reason: with every write delayed, its audit log (written on its
loop) and then its votes stall it, and with one follower paused the other
two livelock the same way.
"""
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time

import pytest

from cairnproto import FT_MGMT, Conn
from cluster import free_ports, wait_for
from test_mdm_cluster import Mdms
from test_mdm_history import OP_FAULT_SET_ADD, mgmt, outcome
from test_mdm_raft import Load, check_all_agree

SLOWFS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "slowfs.py")


class SlowDir:
    """A slowfs mount of its own: BASE/NAME.mnt over BASE/NAME.backing, its
    delay in BASE/NAME.delay. The MDM's data directory is DATA, inside it."""

    def __init__(self, base, name):
        self.mnt, self.backing = f"{base}/{name}.mnt", f"{base}/{name}.backing"
        self.control, self.log = f"{base}/{name}.delay", f"{base}/{name}.slowfs.log"
        self.data = f"{self.mnt}/data"
        os.makedirs(self.mnt)
        os.makedirs(self.backing)
        self.set_delay(0)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["/usr/bin/python3", SLOWFS, self.backing, self.mnt,
                                          self.control], stdout=log, stderr=subprocess.STDOUT)
        wait_for(f"{name} to be mounted",
                 lambda: os.path.ismount(self.mnt) or self.proc.poll() is not None)
        assert self.proc.poll() is None, f"slowfs exited {self.proc.returncode}; see {self.log}"

    def set_delay(self, seconds, sync_only=False):
        tmp = self.control + ".new"
        with open(tmp, "w") as f:
            f.write(f"{seconds}{' sync' if sync_only else ''}\n")
        os.replace(tmp, self.control)  # a new inode: slowfs reads it again

    def close(self):
        if subprocess.run(["umount", self.mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with open(self.log, errors="replace") as f:
            text = f.read()
        # an operation slowfs got wrong (a Python error, not an errno) is a broken disk
        assert "Uncaught exception" not in text, f"slowfs failed an operation; see {self.log}"


@pytest.fixture
def slow(tmp_path):
    """make(n): an Mdms (not started) whose MDMs 1..n each have a slowfs
    data directory (m.slow[i]). Teardown stops every MDM, then unmounts."""
    made = []

    def make(n):
        m = Mdms(tmp_path)
        m.slow, m.retired = {}, []
        made.append(m)
        for i in range(1, n + 1):
            m.slow[i] = SlowDir(str(tmp_path), f"disk{i}")
            m.data_dirs[i] = m.slow[i].data
        return m
    yield make
    for m in made:
        try:
            for s in m.slow.values():
                s.set_delay(0)  # a clean stop does not wait on the disk
            m.stop_all()
            for d in m.retired:
                d.check_log()
        finally:
            for s in m.slow.values():
                s.close()


def change_latency(conn, name):
    t0 = time.monotonic()
    st, err = outcome(conn.request(FT_MGMT, mgmt(OP_FAULT_SET_ADD, random.getrandbits(62) | 1,
                                                 fault_set=name)))
    assert st == 0, (st, err)
    return time.monotonic() - t0


def test_the_delay_reaches_raft(slow):
    """One MDM on slowfs: ten changes one after another with no delay, ten
    with 0.2 s for each write and sync, and ten with 0.2 s for each sync
    only. A change is answered once Raft has written and synced it (and the
    audit log, which is written but not synced, has its line), so no change
    can take under two delays in the first case, or under one in the
    second; if libraft's appends went around the file system's write and
    sync, they would."""
    m = slow(1)
    m.start(1, join=False)
    conn = Conn(m.addr[1], m.c.credential("admin", "admin"))
    delay, runs = 0.2, {}
    try:
        for what, d, sync_only in (("no delay", 0, False), ("write and sync", delay, False),
                                   ("sync only", delay, True)):
            m.slow[1].set_delay(d, sync_only)
            runs[what] = [change_latency(conn, f"{what[:2]}{k}") for k in range(10)]
        m.slow[1].set_delay(0)
    finally:
        conn.close()
    print("a change on one MDM, median (min): " + ", ".join(
        f"{w} {statistics.median(t) * 1000:.1f} ms ({min(t) * 1000:.1f})" for w, t in runs.items())
        + f"; delay {delay * 1000:.0f} ms")
    assert min(runs["write and sync"]) >= 2 * delay, runs
    assert min(runs["sync only"]) >= delay, runs


def form_slow(slow):
    m = slow(3)
    m.form()
    wait_for("three voters", lambda: sorted(x["id"] for x in m.members() if x["member"] == "voter")
             == [1, 2, 3], timeout=60)
    return m


def others_lead(m, old):
    """The id of an MDM other than old that leads, by the word of those
    others (old may be paused), or None."""
    addrs = ",".join(m.addr[j] for j in m.addr if j != old)
    rows = m.members(mdm=addrs)
    ls = [r["id"] for r in rows if r["role"] == "leader" and r["id"] != old]
    return ls[0] if len(ls) == 1 else None


def role_of(m, i):
    return next(x for x in m.members(mdm=m.addr[i]) if x["id"] == i)["role"]


def test_leader_disk_slow_entries_on_one_follower(slow):
    """Row 3: entries that reached only one follower while the leader's own
    disk held them (0.3 s a sync), the leader killed then; no change
    answered done is lost."""
    m = form_slow(slow)
    with Load(m) as load:
        load.wait_more("changes before the faults")
        for r in range(3):
            a = wait_for("a leader", m.leader, timeout=60)
            b, c = sorted(j for j in m.addr if j != a)
            if r % 2:
                b, c = c, b
            m.slow[a].set_delay(0.3, sync_only=True)
            load.wait_more("changes on the slow leader's disk", k=5)
            os.kill(m.daemons[c].proc.pid, signal.SIGSTOP)
            try:
                # committed by the leader and b alone; the next entries are
                # sent to b while the leader's write of them is still waiting
                load.wait_more(f"changes with MDM {c} paused", k=5)
                m.daemons[a].stop(signal.SIGKILL)
            finally:
                os.kill(m.daemons[c].proc.pid, signal.SIGCONT)
            m.slow[a].set_delay(0)
            wait_for("a new leader", lambda: others_lead(m, a), timeout=90)
            load.wait_more("changes on the new leader")
            m.start(a, join=False)
            wait_for(f"MDM {a} to follow", lambda: role_of(m, a) == "follower", timeout=60)
        load.wait_more("changes after every heal")
    print(f"row 3: {load.count()} changes answered done")
    check_all_agree(m, load.acked)
    for i, d in m.daemons.items():
        assert d.alive(), f"mdm{i} died ({d.proc.returncode}); see {d.log}"
        d.check_log()


class LeaderClaims:
    """Samples every MDM's `cairn mdm list --json` in a thread, and keeps
    each MDM's own word on its role and term: {term: {ids that led}}."""

    def __init__(self, m):
        self.m, self.stop = m, threading.Event()
        self.claims, self.samples, self.lock = {}, 0, threading.Lock()
        self.th = threading.Thread(target=self.run)

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.th.join(timeout=60)
        assert not self.th.is_alive()

    def sample(self, addr):
        argv = [f"{self.m.c.build}/mgmt/cairn", "--mdm", addr, "--credentials",
                self.m.c.credential("admin", "admin"), "--json", "mdm", "list"]
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=15)
        except subprocess.TimeoutExpired:
            return
        if r.returncode != 0:
            return
        with self.lock:
            self.samples += 1
            for row in json.loads(r.stdout):
                if row.get("reachable") and row["role"] == "leader":
                    self.claims.setdefault(row["term"], set()).add(row["id"])

    def run(self):
        while not self.stop.is_set():
            for i in list(self.m.addr):
                addr = self.m.addr.get(i)
                if addr and not self.stop.is_set():
                    self.sample(addr)
                self.stop.wait(0.1)  # pace the CLI runs; the machine is shared

    def check(self):
        with self.lock:
            twice = {t: ids for t, ids in self.claims.items() if len(ids) > 1}
            assert self.samples > 0 and self.claims, "no leader was ever seen"
            assert not twice, f"two leaders in one term: {twice}"
            return self.samples, sorted(self.claims)


def voters_seen(m):
    """{id: member} in the leader's own configuration."""
    lead = wait_for("a leader", m.leader, timeout=90)
    return {x["id"]: x["member"] for x in m.members(mdm=m.addr[lead])}


def add_fourth(m, addr, raft):
    """Start MDM 4 on an empty data directory with --join and add it; a
    change that was not confirmed (an election cut it) is looked at again
    in the leader's configuration, and an add left half-way (MDM 4 a spare,
    not yet a voter) is undone and made again."""
    shutil.rmtree(f"{m.dir}/mdm4", ignore_errors=True)
    m.addr[4], m.raft[4] = addr, raft
    m.start(4, join=True)

    def step():
        st = voters_seen(m).get(4)
        if st == "voter":
            return True
        if st is None:
            m.cairn("mdm", "add", "--id", "4", "--addr", addr, "--raft-addr", raft, check=False)
        else:
            m.cairn("mdm", "remove", "4", check=False)
        return False
    wait_for("MDM 4 to be a voter", step, timeout=120, interval=0.5)


def remove_fourth(m):
    """Remove MDM 4 (handing leadership away from it first if it leads),
    then stop it: it must exit 0."""
    def step():
        if 4 not in voters_seen(m):
            return True
        if m.leader() == 4:
            m.cairn("mdm", "transfer-leadership", check=False)
        else:
            m.cairn("mdm", "remove", "4", check=False)
        return False
    wait_for("MDM 4 to be removed", step, timeout=120, interval=0.5)
    d = m.daemons.pop(4)
    del m.addr[4], m.raft[4]
    d.stop()  # SIGTERM: exit 0 required
    m.retired.append(d)


def pause_leader_past_election(m):
    lead = wait_for("a leader", m.leader, timeout=90)
    pid = m.daemons[lead].proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        new = wait_for("another MDM to lead", lambda: others_lead(m, lead), timeout=90)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"MDM {lead} paused, {new} led"


def kill_leader(m):
    lead = wait_for("a leader", m.leader, timeout=90)
    m.daemons[lead].stop(signal.SIGKILL)
    new = wait_for("a new leader", lambda: others_lead(m, lead), timeout=90)
    m.start(lead, join=False)
    return f"MDM {lead} killed, {new} led"


def test_slow_follower_partitions_and_membership(slow):
    """Row 4: a follower whose every sync takes 0.2 s, leaders paused past
    an election and killed, a fourth MDM added and removed in a loop; one
    leader per term, no MDM dies, nothing answered done is lost."""
    m = form_slow(slow)
    lead = wait_for("a leader", m.leader, timeout=60)
    f = max(j for j in m.addr if j != lead)
    m.slow[f].set_delay(0.2, sync_only=True)
    p = free_ports(2)
    addr4, raft4 = f"127.0.0.1:{p[0]}", f"127.0.0.1:{p[1]}"
    events = [f"MDM {f} slow"]
    with LeaderClaims(m) as claims, Load(m) as load:
        load.wait_more("changes with the slow follower", k=20)
        for _ in range(3):
            add_fourth(m, addr4, raft4)
            events.append("4 added")
            events.append(pause_leader_past_election(m))
            load.wait_more("changes after the pause", k=20)
            remove_fourth(m)
            events.append("4 removed")
            events.append(kill_leader(m))
            load.wait_more("changes after the kill", k=20)
        m.slow[f].set_delay(0)
        load.wait_more("changes after the heal", k=20)
    samples, terms = claims.check()
    print(f"row 4: {', '.join(events)}; {load.count()} changes answered done; "
          f"{samples} samples of mdm list, leaders seen in terms {terms}")
    for i, d in m.daemons.items():
        assert d.alive(), f"mdm{i} died ({d.proc.returncode}); see {d.log}"
        d.check_log()
    check_all_agree(m, load.acked)


def slow_store_warnings(m, i):
    with open(m.daemons[i].log, errors="replace") as f:
        return re.findall(r"give every MDM --election-timeout (\d+) or more", f.read())


def test_a_voter_slower_than_the_election_timeout_says_so(slow):
    """A follower's syncs take 0.5 s and the leader is killed with -9: the
    slow MDM stores each new term and its vote (a sync each) before it
    answers, which takes longer than the 500 ms election timeout, so the
    candidate gives up first and stands again; while the disk stays that
    slow no election it is needed for may finish (docs/raft.md C9). The
    MDM says so in its log, and names an --election-timeout that would do
    (four of its stores or more)."""
    m = form_slow(slow)
    a = wait_for("a leader", m.leader, timeout=60)
    f = max(j for j in m.addr if j != a)
    m.slow[f].set_delay(0.5, sync_only=True)
    m.daemons[a].stop(signal.SIGKILL)
    got = wait_for("the slow MDM to warn of its slow stores", lambda: slow_store_warnings(m, f),
                   timeout=60, interval=0.2)
    print(f"MDM {f} suggests --election-timeout {got[0]}")
    assert int(got[0]) >= 2000, got


def test_a_voter_slower_than_the_election_timeout_with_a_longer_timeout(slow):
    """The same fault with --election-timeout 3000 on every MDM: the two MDMs
    left elect one of themselves, a change is made, and the slow MDM has
    nothing to warn of (a store of 0.5 s is under a quarter of 3 s)."""
    m = slow(3)
    m.args = ["--election-timeout", "3000"]
    m.form()
    wait_for("three voters", lambda: sorted(x["id"] for x in m.members() if x["member"] == "voter")
             == [1, 2, 3], timeout=60)
    a = wait_for("a leader", m.leader, timeout=60)
    f = max(j for j in m.addr if j != a)
    m.slow[f].set_delay(0.5, sync_only=True)
    m.daemons[a].stop(signal.SIGKILL)
    t0 = time.monotonic()
    new = wait_for("a new leader", lambda: others_lead(m, a), timeout=60, interval=0.2)
    print(f"MDM {new} leads {time.monotonic() - t0:.1f} s after the kill")
    m.cairn("--mdm-timeout", "30", "fault-set", "add", "after-slow-election")
    assert "after-slow-election" in m.fault_sets_of(new)
    assert not slow_store_warnings(m, f), slow_store_warnings(m, f)
