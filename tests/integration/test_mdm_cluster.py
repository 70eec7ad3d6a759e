"""A cluster of three MDMs on Raft: formed with `cairn mdm add`, a leader
killed with -9 and one paused with SIGSTOP, a membership change refused
when it would lose quorum, an MDM with a lost data directory replaced,
leadership handed over. The CLI is given every MDM's address and finds the
leader itself. Then a whole cluster on three MDMs (its SDSs and SDC given
every MDM's address too): the leader and an SDS killed with -9 at once
under a verifying write load, and a follower replaced under load.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import nbd
import pytest

from cluster import Cluster, Daemon, free_ports, wait_for
from test_faults import fio_job, fio_result, wait_load_landing, wait_protected

N = 3


class Mdms:
    def __init__(self, workdir):
        self.c = Cluster(workdir)  # for its CA, credentials and build only
        self.dir = str(workdir)
        ports = free_ports(2 * N)
        self.addr = {i: f"127.0.0.1:{ports[2 * (i - 1)]}" for i in range(1, N + 1)}
        self.raft = {i: f"127.0.0.1:{ports[2 * (i - 1) + 1]}" for i in range(1, N + 1)}
        self.daemons = {}
        self.threshold = 16  # --snapshot-threshold: a snapshot every 16 entries
        self.data_dirs = {}  # MDM i's data directory if not DIR/mdmI
        self.args = []  # more flags for every MDM

    def start(self, i, join):
        d = Daemon(f"mdm{i}", [
            f"{self.c.build}/mgmt/cairn-mdm", "--data-dir", self.data_dirs.get(i, f"{self.dir}/mdm{i}"),
            "--id", str(i),
            "--listen", self.addr[i], "--raft-addr", self.raft[i], "--snapshot-threshold", str(self.threshold),
            "--credentials", self.c.credential("mdm", f"mdm{i}")] + self.args + (["--join"] if join else []),
            os.path.join(self.dir, f"mdm{i}.log"))
        d.start()
        self.daemons[i] = d
        wait_for(f"mdm{i} to answer", lambda: self.cairn("--local", "status", mdm=self.addr[i],
                                                         check=False).returncode == 0)

    def all_addrs(self):
        return ",".join(self.addr[i] for i in sorted(self.addr))

    def cairn(self, *args, mdm=None, check=True, json_out=False):
        argv = [f"{self.c.build}/mgmt/cairn", "--mdm", mdm or self.all_addrs(),
                "--credentials", self.c.credential("admin", "admin")]
        argv += (["--json"] if json_out else []) + list(args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
        if check and r.returncode != 0:
            raise AssertionError(f"cairn {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def members(self, mdm=None):
        return json.loads(self.cairn("mdm", "list", mdm=mdm, json_out=True).stdout)

    def leader(self):
        ls = [m for m in self.members() if m["role"] == "leader"]
        return ls[0]["id"] if len(ls) == 1 else None

    def status_of(self, i):
        return json.loads(self.cairn("--local", "status", mdm=self.addr[i], json_out=True).stdout)

    def fault_sets_of(self, i):
        # the fault sets in MDM i's own state (it answers a query itself)
        out = self.cairn("--local", "fault-set", "list", mdm=self.addr[i], json_out=True).stdout
        return {f["name"] for f in json.loads(out)}

    def form(self):
        """The first MDM starts a cluster; `cairn mdm add` adds the others."""
        self.start(1, join=False)
        for i in range(2, N + 1):
            self.start(i, join=True)
            self.cairn("mdm", "add", "--id", str(i), "--addr", self.addr[i], "--raft-addr", self.raft[i])

    def stop_all(self):
        for d in self.daemons.values():
            if d.alive():
                try:
                    os.kill(d.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                d.stop()
            d.check_log()


@pytest.fixture(scope="module")
def mdms(tmp_path_factory):
    m = Mdms(tmp_path_factory.mktemp("mdms"))
    try:
        m.start(1, join=False)
        for i in range(2, N + 1):
            m.start(i, join=True)
        yield m
    finally:
        m.stop_all()


def test_form_a_cluster_of_three(mdms):
    one = mdms.members(mdm=mdms.addr[1])
    assert [(x["id"], x["member"], x["role"]) for x in one] == [(1, "voter", "leader")]
    # a joining MDM is in no cluster: it leads nothing and takes no change
    r = mdms.cairn("fault-set", "add", "early", mdm=mdms.addr[2], check=False)
    assert r.returncode != 0 and "no leader is known yet" in r.stderr, r.stderr
    for i in range(2, N + 1):
        out = mdms.cairn("mdm", "add", "--id", str(i), "--addr", mdms.addr[i],
                         "--raft-addr", mdms.raft[i]).stdout
        assert f"MDM {i} is a voter: {i} voters" in out, out
    r = mdms.cairn("mdm", "add", "--id", "2", "--addr", mdms.addr[2], "--raft-addr",
                   mdms.raft[2], check=False)
    assert r.returncode != 0 and "MDM 2 is already a member" in r.stderr, r.stderr
    ms = mdms.members()
    assert sorted((x["id"], x["member"], x["addr"]) for x in ms) == [
        (i, "voter", mdms.addr[i]) for i in range(1, N + 1)]
    assert [x["id"] for x in ms if x["role"] == "leader"] == [1]
    # a change made through any MDM's address reaches every MDM, and they
    # agree on the cluster's id (a joining MDM had none of its own)
    mdms.cairn("fault-set", "add", "rack1", mdm=mdms.addr[3])
    for i in range(1, N + 1):
        wait_for(f"mdm{i} to apply it", lambda: "rack1" in mdms.fault_sets_of(i))
    ids = {mdms.status_of(i)["cluster_id"] for i in range(1, N + 1)}
    assert len(ids) == 1 and "" not in ids, ids


def test_leader_killed_with_9(mdms):
    old = mdms.leader()
    assert old
    mdms.daemons[old].stop(signal.SIGKILL)
    t0 = time.monotonic()
    # the CLI finds the new leader itself, and the change is made once
    mdms.cairn("fault-set", "add", "after-kill")
    took = time.monotonic() - t0
    print(f"leader kill -9 to a change made: {took:.2f} s")
    new = mdms.leader()
    assert new and new != old
    r = mdms.cairn("fault-set", "add", "after-kill", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr, r.stderr
    # it comes back from its own data directory and catches up as a follower
    mdms.start(old, join=False)
    wait_for("the old leader to catch up",
             lambda: "after-kill" in mdms.fault_sets_of(old), timeout=30)
    wait_for("the old leader to follow", lambda: next(
        x for x in mdms.members(mdm=mdms.addr[old]) if x["id"] == old)["role"] == "follower")
    assert mdms.leader() == new


def test_restarted_joined_mdm_makes_up_no_cluster_id(mdms):
    """An MDM that joined, restarted without --join, learns the cluster's id
    from the log again: it must not write one of its own (the first MDM's
    start would), which it would show until it applied the log's."""
    lead = mdms.leader()
    agreed = mdms.status_of(lead)["cluster_id"]
    j = next(i for i in range(2, N + 1) if i != lead)  # joined, a follower
    mdms.daemons[j].stop()
    mdms.start(j, join=False)
    assert not os.path.exists(os.path.join(mdms.dir, f"mdm{j}", "cluster_id"))
    assert mdms.status_of(j)["cluster_id"] in ("", agreed)
    wait_for(f"mdm{j} to apply the cluster id",
             lambda: mdms.status_of(j)["cluster_id"] == agreed, timeout=30)


def test_paused_leader_steps_down(mdms):
    old = mdms.leader()
    os.kill(mdms.daemons[old].proc.pid, signal.SIGSTOP)
    try:
        others = ",".join(mdms.addr[i] for i in mdms.addr if i != old)
        mdms.cairn("fault-set", "add", "while-paused", mdm=others)
    finally:
        os.kill(mdms.daemons[old].proc.pid, signal.SIGCONT)
    # resumed, it learns of the new term and follows; the change made while
    # it slept is in its state, from the new leader
    wait_for("the paused leader to follow", lambda: next(
        x for x in mdms.members(mdm=mdms.addr[old]) if x["id"] == old)["role"] == "follower")
    wait_for("it to apply the change", lambda: "while-paused" in mdms.fault_sets_of(old))
    assert mdms.leader() != old
    # a change sent to it alone is sent on to the leader, not made by it
    mdms.cairn("fault-set", "add", "via-old", mdm=mdms.addr[old])
    for i in mdms.addr:
        wait_for(f"mdm{i} to apply it", lambda: "via-old" in mdms.fault_sets_of(i))


def test_remove_refused_without_quorum_then_replace(mdms):
    lead = mdms.leader()
    f1, f2 = [i for i in sorted(mdms.addr) if i != lead]
    mdms.daemons[f1].stop(signal.SIGKILL)
    # the leader sees its stream reset: it has not heard it since
    def gone():
        row = next(x for x in mdms.members() if x["id"] == f1)
        return row["leader_heard_ms_ago"] if "leader_heard_ms_ago" in row else "gone"
    assert wait_for("the leader to miss it", lambda: gone() == "gone")
    # without f2 only the leader would be left answering of {lead, f1}
    r = mdms.cairn("mdm", "remove", str(f2), check=False)
    assert r.returncode != 0 and (
        f"removing MDM {f2} would lose quorum: of the 2 voters left, only 1 is answering, "
        "and 2 are needed") in r.stderr, r.stderr
    r = mdms.cairn("mdm", "remove", str(lead), check=False)
    assert r.returncode != 0 and "is the leader: hand leadership over first" in r.stderr
    r = mdms.cairn("mdm", "remove", "99", check=False)
    assert r.returncode != 0 and "no MDM 99 in the cluster" in r.stderr, r.stderr
    # the dead one can go: two voters are left, both answering
    assert "removed: 2 voters" in mdms.cairn("mdm", "remove", str(f1)).stdout
    # its data directory is lost; a fresh MDM takes its place
    shutil.rmtree(f"{mdms.dir}/mdm{f1}")
    mdms.start(f1, join=True)
    out = mdms.cairn("mdm", "add", "--id", str(f1), "--addr", mdms.addr[f1], "--raft-addr",
                     mdms.raft[f1]).stdout
    assert "3 voters" in out, out
    wait_for("the replacement to catch up", lambda: {"rack1", "after-kill", "via-old"}
             <= mdms.fault_sets_of(f1), timeout=30)


def test_transfer_leadership(mdms):
    lead = mdms.leader()
    to = max(i for i in mdms.addr if i != lead)
    out = mdms.cairn("mdm", "transfer-leadership", str(to)).stdout
    assert f"MDM {to} leads" in out, out
    wait_for("the new leader", lambda: mdms.leader() == to)
    r = mdms.cairn("mdm", "transfer-leadership", str(to), check=False)
    assert r.returncode != 0 and f"MDM {to} is not another voter" in r.stderr, r.stderr
    mdms.cairn("fault-set", "add", "after-transfer")


# ---- a whole cluster on three MDMs: the data path does not go through them ----

@pytest.fixture(scope="module")
def full(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("mdmfull"), sds_sizes=(2 << 30,) * 4, pgs=64, mdms=3)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


def sds_state(c, name):
    return next(s for s in c.status()["sds"] if s["name"] == name)


def test_leader_and_an_sds_killed_under_load(full):
    c = full
    c.create_volume("ha", 192 << 20)
    fio = fio_job(c, "ha", "--size=96M", "--rate_iops=2000")
    wait_load_landing(c, "ha", fio)
    lead = c.mdm_leader()
    assert lead
    # an SDS dies at the same moment as the leader: the new leader must
    # still find it down and rebuild its copies
    c.daemons[c.mdm_name(lead)].stop(signal.SIGKILL)
    c.daemons["sds2"].stop(signal.SIGKILL)
    t0 = time.monotonic()
    c.cairn("volume", "create", "after-failover", "--size", "16M")
    print(f"leader kill -9 to a volume created: {time.monotonic() - t0:.2f} s")
    job = fio_result(fio)  # no I/O error, and every block verifies
    print(f"longest write across both failures: {job['write']['clat_ns']['max'] / 1e9:.2f} s")
    new = c.mdm_leader()
    assert new and new != lead
    wait_for("sds2 marked down by the new leader",
             lambda: sds_state(c, "sds2")["state"] == "down", timeout=60)
    wait_protected(c)
    r = c.cairn("volume", "check-copies", "ha")
    assert r.returncode == 0, r.stdout + r.stderr
    # the other SDSs and the SDC keep their sessions with the new leader
    wait_for("the SDSs with the new leader", lambda: all(
        sds_state(c, f"sds{i}")["connected"] for i in (1, 3, 4)))
    c.create_volume("mapped-after", 16 << 20)  # mapped to the SDC, which serves it
    data = os.urandom(1 << 20)
    h = nbd.NBD()
    h.connect_uri(c.uri("mapped-after"))
    try:
        h.pwrite(data, 0)
        h.flush()
        assert h.pread(len(data), 0) == data
    finally:
        h.shutdown()
    # the old leader comes back as a follower; sds2 comes back up
    if lead == 1:
        c.start_mdm()
    else:
        c.start_peer_mdm(lead, join=False)
    c.start_sds(1)
    wait_for("sds2 up", lambda: sds_state(c, "sds2")["state"] == "up", timeout=60)
    assert c.mdm_leader() == new


def test_membership_changed_under_load(full):
    """A follower removed, its data directory lost, and a fresh one added in
    its place, all while a verifying load runs: the data path never waits
    for the MDMs."""
    c = full
    c.create_volume("members", 192 << 20)
    fio = fio_job(c, "members", "--size=64M", "--rate_iops=2000")
    wait_load_landing(c, "members", fio)
    lead = c.mdm_leader()
    f = max(i for i in range(1, c.n_mdms + 1) if i != lead)
    assert "removed: 2 voters" in c.cairn("mdm", "remove", str(f)).stdout
    c.daemons[c.mdm_name(f)].stop()
    shutil.rmtree(f"{c.dir}/{c.mdm_name(f)}")
    c.start_peer_mdm(f, join=True)
    out = c.cairn("mdm", "add", "--id", str(f), "--addr", c.mdm_addrs[f - 1],
                  "--raft-addr", c.raft_addrs[f - 1]).stdout
    assert "3 voters" in out, out
    assert fio.poll() is None, "the load ended before the changes did"
    job = fio_result(fio)
    print(f"longest write while the MDMs changed: {job['write']['clat_ns']['max'] / 1e9:.3f} s")
    def names():
        out = c.cairn("--local", "volume", "list", mdm=c.mdm_addrs[f - 1], json_out=True).stdout
        return {v["name"] for v in json.loads(out)}
    wait_for("the new MDM to catch up", lambda: {"ha", "members"} <= names(), timeout=30)
