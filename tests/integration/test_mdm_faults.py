"""Faults of the MDM cluster, with each of three MDMs a host of its own (a
network namespace on the bridge the SDSs' namespaces share), under a
verifying client load through the SDC: the leader cut off from the majority
and healed, with a client still talking to it; an SDS killed with -9 during
an election; CLI changes during an election and without quorum; a rolling
restart of the MDMs; a follower killed with -9 and restarted; a follower
cut off and healed, which must not depose the leader (pre-vote).

What every test holds the cluster to: the data read back through NBD is what
was written (tests/tools/cairn_verify.py checks every read and reads
everything back at the end), no client sees an error, every change the CLI
was told was made is in every MDM's own state, and no change the CLI was
told failed ever shows up anywhere.
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from cluster import NetCluster, hold_for, wait_for
from test_faults import wait_protected

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from cairn_verify import Verifier  # noqa: E402

N = 3
WAIT = 6  # the CLI's --mdm-timeout where a change is expected to fail
# what a failing CLI may take beyond its --mdm-timeout: starting the
# process (under ASan) and its last try's clean-up
MARGIN = 3


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    c = NetCluster(tmp_path_factory.mktemp("mdmfaults"), sds_sizes=(2 << 30,) * 4, pgs=64, mdms=N)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


class Load:
    """A verifying load (cairn_verify's Verifier) on a new volume through the
    SDC, in a thread, from entering until finish()."""

    def __init__(self, c, vol, seed):
        c.create_volume(vol, 64 << 20)  # mapped to the SDC; it starts zeroed
        self.v = Verifier(c.uri(vol), 64 << 20, seed=seed)
        self.t = threading.Thread(target=self.v.run, daemon=True)

    def __enter__(self):
        self.t.start()
        ops = self.v.ops
        wait_for("the load under way", lambda: self.v.ops >= ops + 200, timeout=60)
        return self

    def running(self):
        ops = self.v.ops
        wait_for("the load still running", lambda: self.v.ops >= ops + 50, timeout=60)

    def finish(self):
        self.running()  # it came through whatever the test did
        self.v.stop.set()
        self.t.join(120)
        assert not self.t.is_alive(), "the load is stuck"
        bad = self.v.final_check()
        print(self.v.summary())
        assert not self.v.errors and bad == 0, self.v.errors[:10]
        assert self.v.retries == 0, f"the client saw {self.v.retries} failed requests"

    def __exit__(self, *exc):
        self.v.stop.set()
        self.t.join(120)


def addrs(c, ids):
    return ",".join(c.mdm_addrs[i - 1] for i in ids)


def others(c, i):
    return [j for j in range(1, N + 1) if j != i]


def members(c, mdm=None, netns=None):
    return json.loads(c.cairn("mdm", "list", json_out=True, mdm=mdm, netns=netns).stdout)


def leader_of(c, ids):
    """The leader by the word of the MDMs ids (each asked for its own view)."""
    ms = members(c, mdm=addrs(c, ids))
    ls = [m["id"] for m in ms if m["role"] == "leader" and m["id"] in ids]
    return ls[0] if len(ls) == 1 else None


def role_of(c, i, netns=None):
    """MDM i's role in its own words."""
    ms = members(c, mdm=c.mdm_addrs[i - 1], netns=netns)
    return next(m["role"] for m in ms if m["id"] == i)


def own_state(c, i, netns=None):
    """The replicated state in MDM i's own copy (--local): what a change
    made, as opposed to the leader's soft state (connections, usage)."""
    st = json.loads(c.cairn("--local", "status", mdm=c.mdm_addrs[i - 1], json_out=True,
                            netns=netns).stdout)
    return {"cluster_id": st["cluster_id"], "map_version": st["map_version"],
            "volumes": sorted((v["id"], v["name"], v["size"]) for v in st["volumes"]),
            "sds": sorted((s["name"], s["state"]) for s in st["sds"]),
            "sdcs": sorted((s["name"], s["state"]) for s in st["sdcs"])}


def volumes_of(c, i, netns=None):
    return {v[1] for v in own_state(c, i, netns)["volumes"]}


def wait_same_state(c, ids, timeout=60):
    """Every MDM of ids holds the same state (the leader's)."""
    def same():
        states = [own_state(c, i) for i in ids]
        return states if all(s == states[0] for s in states) else None
    return wait_for(f"MDMs {ids} to hold the same state", same, timeout=timeout, interval=0.2)


def failed_clearly(r, took, wait):
    """A change the CLI could not make: it says why, in words a user can act
    on, and gives up within its --mdm-timeout."""
    assert r.returncode != 0, r.stdout
    assert took < wait + MARGIN, f"the CLI took {took:.1f} s with --mdm-timeout {wait}"
    msg = r.stderr.strip()
    assert msg.startswith("cairn: "), msg
    # no leader (found none in time), or the one asked lost its leadership
    # with the change not committed and none answered its resends (with the
    # same request id, made at most once): never "done"
    assert ("no MDM leads after" in msg and "an election under way, or too few MDMs reachable "
            "for a majority" in msg) or (
        "took the change but gave no outcome (it stopped leading, or its connection broke), "
        "and no MDM answered it in the" in msg
        and "whether the change was made is unknown" in msg), msg
    return msg


def start_again(c, i):
    if i == 1:
        c.start_mdm()
    else:
        c.start_peer_mdm(i, join=False)


def wait_in_cluster(c, i):
    """MDM i is back: a voter following the leader, and it has applied
    everything the leader had committed when this was called."""
    def committed():
        lead = [m for m in members(c) if m["role"] == "leader"]
        return lead[0]["commit_index"] if len(lead) == 1 else None
    target = wait_for("a leader's commit index", committed, timeout=60, interval=0.2)

    def back():
        me = next(m for m in members(c) if m["id"] == i)
        return (me["reachable"] and me["role"] in ("leader", "follower")
                and me.get("applied_index", -1) >= target)
    wait_for(f"MDM {i} back in the cluster", back, timeout=60, interval=0.2)


def sds_states(c):
    return {s["name"]: s["state"] for s in c.status()["sds"]}


def all_sds_up(c):
    st = c.status()
    return all(s["state"] == "up" and s["connected"] for s in st["sds"])


def test_leader_cut_off_then_healed(c):
    """The leader's link is cut while it runs; a client on its side of the
    cut (the CLI in its namespace, --mdm naming it alone) tries a change.
    Two leaders never both commit: the majority elects another and takes
    changes, the change sent to the old one fails clearly and is never
    applied, and once healed the old leader follows and holds the majority's
    state."""
    wait_for("every SDS up and connected", lambda: all_sds_up(c), timeout=60)
    old = c.mdm_leader()
    assert old
    rest = others(c, old)
    ns = c.mdm_netns(old)
    with Load(c, "load-a", seed=11) as load:
        c.cut_mdm(old)
        try:
            # at once: it may still think it leads, and take the change into
            # its log, where nothing commits it
            t0 = time.monotonic()
            r = c.cairn("--mdm-timeout", str(WAIT), "volume", "create", "cut-1", "--size", "16M",
                        mdm=c.mdm_addrs[old - 1], netns=ns, check=False)
            print(f"change sent to the cut-off leader: {failed_clearly(r, time.monotonic() - t0, WAIT)}")
            # the majority elects a leader of its own and takes changes
            new = wait_for("a leader among the majority", lambda: leader_of(c, rest), timeout=30)
            c.cairn("volume", "create", "while-cut", "--size", "16M", mdm=addrs(c, rest))
            # the old one has stepped down by now, and finds no leader
            wait_for("the cut-off MDM to step down",
                     lambda: role_of(c, old, netns=ns) != "leader", timeout=10)
            t0 = time.monotonic()
            r = c.cairn("--mdm-timeout", str(WAIT), "volume", "create", "cut-2", "--size", "16M",
                        mdm=c.mdm_addrs[old - 1], netns=ns, check=False)
            took = time.monotonic() - t0
            msg = failed_clearly(r, took, WAIT)
            assert "no MDM leads after" in msg, msg
            assert took >= WAIT - 1, f"gave up after {took:.1f} s, before its --mdm-timeout"
            assert not {"cut-1", "cut-2", "while-cut"} & volumes_of(c, old, netns=ns)
            assert "while-cut" in volumes_of(c, new, netns=None)
        finally:
            c.restore_mdm(old)
        # healed: it follows, and holds what the majority holds, and nothing
        # of what it was asked while cut off
        wait_for("the old leader to follow", lambda: role_of(c, old) == "follower", timeout=60)
        wait_same_state(c, range(1, N + 1))
        hold_for("no change sent to the cut-off leader applied", lambda: all(
            not {"cut-1", "cut-2"} & volumes_of(c, i) and "while-cut" in volumes_of(c, i)
            for i in range(1, N + 1)), 3, interval=0.5)
        # and the SDSs' and SDC's sessions found the new leader: nothing was
        # marked down for the MDM's cut
        wait_for("every SDS connected to the leader", lambda: all_sds_up(c), timeout=60)
        load.finish()


def test_sessions_follow_a_new_leader_while_the_old_is_cut_off(c):
    """The leader's link is cut: the SDC and the SDSs must find the new
    leader before its failure detector (which gives each SDS a full
    --sds-timeout from its election) judges them. A cut-off MDM is no
    reason to mark any SDS down, and the SDC serves a volume mapped by the
    new leader."""
    wait_for("every SDS up and connected", lambda: all_sds_up(c), timeout=60)
    old = c.mdm_leader()
    rest = others(c, old)
    with Load(c, "load-a2", seed=16) as load:
        c.cut_mdm(old)
        try:
            new = wait_for("a leader among the majority", lambda: leader_of(c, rest), timeout=30)
            elected = time.monotonic()
            c.cairn("volume", "create", "mapped-while-cut", "--size", "16M", mdm=addrs(c, rest))
            c.cairn("volume", "map", "mapped-while-cut", "--sdc", c.sdc_name, mdm=addrs(c, rest))
            wait_for("the SDC to serve it", lambda: export_listed(c, "mapped-while-cut"),
                     timeout=15)
            hold_for("every SDS up in the new leader's state", lambda: all(
                st == "up" for _, st in own_state(c, new)["sds"]),
                max(0, elected + 8 - time.monotonic()), interval=0.2)
        finally:
            c.restore_mdm(old)
            # (whatever failed above: the next test starts from a whole cluster)
            wait_for("the old leader to follow", lambda: role_of(c, old) == "follower", timeout=60)
            wait_for("every SDS up and connected", lambda: all_sds_up(c), timeout=60)
        load.finish()


def export_listed(c, name):
    r = subprocess.run(["nbdinfo", "--list", "--json", c.unix_uri()], capture_output=True,
                       text=True, timeout=30)
    return r.returncode == 0 and any(e["export-name"] == name
                                     for e in json.loads(r.stdout)["exports"])


def test_sds_killed_during_the_election(c):
    """The leader is killed with -9 and an SDS right after it, before any
    other MDM can have been elected (the election timeout is 500 ms): the new
    leader, whose failure detector starts afresh, still marks it down and
    rebuilds its copies."""
    wait_for("every SDS up", lambda: all_sds_up(c), timeout=60)
    wait_protected(c)
    old = c.mdm_leader()
    with Load(c, "load-b", seed=12) as load:
        c.daemons[c.mdm_name(old)].stop(signal.SIGKILL)
        c.daemons["sds3"].stop(signal.SIGKILL)
        new = wait_for("a new leader", lambda: leader_of(c, others(c, old)), timeout=30)
        wait_for("sds3 marked down by the new leader", lambda: sds_states(c)["sds3"] == "down",
                 timeout=60)
        wait_protected(c)
        load.finish()
    assert new != old
    r = c.cairn("volume", "check-copies", "load-b")
    assert r.returncode == 0, r.stdout + r.stderr
    start_again(c, old)
    wait_in_cluster(c, old)
    c.start_sds(2)
    wait_for("sds3 up again", lambda: all_sds_up(c), timeout=60)
    wait_same_state(c, range(1, N + 1))


def test_cli_during_an_election(c):
    """(i) A change issued the moment the leader is killed is made, once,
    by the next leader. (ii) With two of the three MDMs cut off, changes
    fail clearly within the CLI's --mdm-timeout: one sent the moment quorum
    is lost may have reached the leader's log (the CLI then says its outcome
    is unknown); one sent once the leader has stepped down is never made."""
    wait_for("every SDS up", lambda: all_sds_up(c), timeout=60)
    old = c.mdm_leader()
    before = own_state(c, old)["volumes"]
    c.daemons[c.mdm_name(old)].stop(signal.SIGKILL)
    t0 = time.monotonic()
    c.cairn("volume", "create", "in-election", "--size", "16M")
    print(f"leader kill -9 to a volume created: {time.monotonic() - t0:.2f} s")
    new = leader_of(c, others(c, old))
    assert new and new != old
    after = own_state(c, new)["volumes"]
    added = [v for v in after if v not in before]
    assert [v[1] for v in added] == ["in-election"], added  # one volume, made once
    r = c.cairn("volume", "create", "in-election", "--size", "16M", check=False)
    assert r.returncode != 0 and "already exists" in r.stderr, r.stderr
    start_again(c, old)
    wait_in_cluster(c, old)
    wait_same_state(c, range(1, N + 1))

    # (ii) the two followers cut off: the leader left alone has no quorum
    lead = c.mdm_leader()
    cut = others(c, lead)
    with Load(c, "load-c", seed=13) as load:
        for i in cut:
            c.cut_mdm(i)
        try:
            # at once: the leader may not have noticed, and take it into its
            # log; then the CLI must say that its outcome is unknown
            t0 = time.monotonic()
            r = c.cairn("--mdm-timeout", str(WAIT), "volume", "create", "no-quorum-1", "--size",
                        "16M", check=False)
            first = failed_clearly(r, time.monotonic() - t0, WAIT)
            print(f"no-quorum-1: {first}")
            # once it has stepped down: refused, never in any log
            wait_for("the leader to step down", lambda: role_of(c, lead) != "leader", timeout=10)
            t0 = time.monotonic()
            r = c.cairn("--mdm-timeout", str(WAIT), "volume", "create", "no-quorum-2", "--size",
                        "16M", check=False)
            msg = failed_clearly(r, time.monotonic() - t0, WAIT)
            assert "no MDM leads after" in msg, msg
        finally:
            for i in cut:
                c.restore_mdm(i)
        wait_for("a leader again", lambda: leader_of(c, range(1, N + 1)), timeout=60)
        wait_same_state(c, range(1, N + 1))
        # A change the CLI was told failed is never made. One it was told
        # may or may not have been made had reached the leader's log: Raft
        # may yet commit it (the leader, re-elected with the longest log,
        # does), and every MDM then holds it alike.
        never = {"no-quorum-2"} | ({"no-quorum-1"} if "unknown" not in first else set())
        hold_for("the changes refused without quorum never made", lambda: all(
            not never & volumes_of(c, i) for i in range(1, N + 1)), 3, interval=0.5)
        wait_same_state(c, range(1, N + 1))
        wait_for("every SDS connected to the leader", lambda: all_sds_up(c), timeout=60)
        load.finish()


def test_rolling_restart(c):
    """Each MDM in turn, the leader included, stopped (SIGTERM) and started
    again once a change was made without it: the load never sees an error,
    and every change is in every MDM's state at the end."""
    wait_for("every SDS up", lambda: all_sds_up(c), timeout=60)
    lead = c.mdm_leader()
    order = others(c, lead) + [lead]  # the leader too, last
    made = []
    with Load(c, "load-d", seed=14) as load:
        for i in order:
            c.daemons[c.mdm_name(i)].stop()  # a clean exit
            name = f"roll-{i}"
            c.cairn("volume", "create", name, "--size", "16M", mdm=addrs(c, others(c, i)))
            made.append(name)
            start_again(c, i)
            wait_in_cluster(c, i)
            assert set(made) <= volumes_of(c, i)
            load.running()
        states = wait_same_state(c, range(1, N + 1))
        assert set(made) <= {v[1] for v in states[0]["volumes"]}
        wait_for("every SDS connected to the leader", lambda: all_sds_up(c), timeout=60)
        load.finish()


def test_follower_killed_and_restarted(c):
    """A follower killed with -9 under load, changes made while it is down:
    restarted from its data directory, it catches up to the leader's state."""
    wait_for("every SDS up", lambda: all_sds_up(c), timeout=60)
    lead = c.mdm_leader()
    f = max(others(c, lead))
    with Load(c, "load-e", seed=15) as load:
        c.daemons[c.mdm_name(f)].stop(signal.SIGKILL)
        for k in range(3):
            c.cairn("volume", "create", f"while-down-{k}", "--size", "16M")
        start_again(c, f)
        wait_in_cluster(c, f)
        states = wait_same_state(c, [lead, f])
        assert {f"while-down-{k}" for k in range(3)} <= {v[1] for v in states[0]["volumes"]}
        assert c.mdm_leader() == lead
        load.finish()


def own_term(c, i, netns=None):
    ms = members(c, mdm=c.mdm_addrs[i - 1], netns=netns)
    return next(m["term"] for m in ms if m["id"] == i)


def test_follower_cut_off_comes_back_without_an_election(c):
    """A follower cut off for some seconds stands for election again and
    again, alone; with pre-vote (docs/raft.md C8) it first asks whether it
    could win, finds it could not, and keeps its term. Healed, it follows
    the leader it left: no election, and the leader's term is unchanged
    (without pre-vote its raised term would depose the leader, and the
    cluster would take no change for about a second)."""
    wait_for("every SDS up", lambda: all_sds_up(c), timeout=60)
    lead = c.mdm_leader()
    f = min(others(c, lead))
    ns = c.mdm_netns(f)
    term = own_term(c, lead)
    with Load(c, "load-f", seed=16) as load:
        c.cut_mdm(f)
        try:
            wait_for("the cut-off follower to stand", lambda: role_of(c, f, netns=ns) == "candidate",
                     timeout=30, interval=0.2)
            hold_for("the cut-off follower's term unchanged", lambda: own_term(c, f, netns=ns) <= term,
                     4, interval=0.3)
            c.cairn("volume", "create", "while-f-cut", "--size", "16M", mdm=addrs(c, others(c, f)))
        finally:
            c.restore_mdm(f)
        wait_in_cluster(c, f)
        assert c.mdm_leader() == lead
        assert own_term(c, lead) == term, "the returning follower forced an election"
        wait_same_state(c, range(1, N + 1))
        load.finish()
