"""An MDM whose data directory fills up (docs/raft.md, E row 1: a write
failure on the leader, A3 in 0.15).

The data directory is a small tmpfs the test mounts. libraft keeps up to
three 8 MiB log segments allocated ahead, so a disk that fills while the
MDM runs does not stop its log at once: changes go on into those segments,
and only the snapshots cannot be written. libraft refuses a change before
it appends once the room left in them is under 4 MiB (its capacity check,
which with several MDMs counts a majority of the voters); a disk with no
room for one segment is refused from the start. In both cases every
change, sent many at a time, gets exactly one answer of its own; an answer
of "done" is kept across a restart on the full disk; a refusal says what is
wrong and leaves nothing behind; and once there is room the MDM carries on
without a restart.
"""
import json
import os
import random
import signal
import subprocess

import pytest

from cairnproto import FT_MGMT, Conn
from cluster import Cluster, Daemon, free_ports, wait_for
from test_mdm_history import OP_FAULT_SET_ADD, mgmt, outcome

EIO = 5


class DiskMdm:
    def __init__(self, workdir, size):
        self.c = Cluster(workdir)  # for its CA, credentials and build only
        self.dir = str(workdir)
        self.mnt = os.path.join(self.dir, "disk")
        os.makedirs(self.mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", self.mnt], check=True)
        p = free_ports(2)
        self.addr = f"127.0.0.1:{p[0]}"
        self.d = Daemon("mdm1", [
            f"{self.c.build}/mgmt/cairn-mdm", "--data-dir", f"{self.mnt}/mdm", "--id", "1",
            "--listen", self.addr, "--raft-addr", f"127.0.0.1:{p[1]}", "--snapshot-threshold", "64",
            "--credentials", self.c.credential("mdm", "mdm1")], os.path.join(self.dir, "mdm1.log"))
        self.cred = self.c.credential("admin", "admin")

    def start(self):
        self.d.start()
        wait_for("the MDM to answer", lambda: self.cairn("--local", "status", check=False).returncode == 0)

    def cairn(self, *args, check=True):
        r = subprocess.run([f"{self.c.build}/mgmt/cairn", "--mdm", self.addr, "--credentials",
                            self.cred] + list(args), capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"cairn {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def fault_sets(self):
        return {f["name"] for f in json.loads(self.cairn("--json", "fault-set", "list").stdout)}

    def fill(self):
        """Fill the disk to its last byte (big writes, then small ones)."""
        for name, chunk in (("filler", 1 << 16), ("filler2", 512)):
            with open(os.path.join(self.mnt, name), "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError as e:
                    assert e.errno == 28, e

    def free(self):
        for name in ("filler", "filler2"):
            os.remove(os.path.join(self.mnt, name))

    def close(self):
        if self.d.alive():
            self.d.stop()
        subprocess.run(["umount", self.mnt], check=False)


def send_batch(mdm, names):
    """Send one change per name, all at once over one connection: each
    gets exactly one reply of its own. {name: (status, error)}."""
    conn = Conn(mdm.addr, mdm.cred)
    try:
        rids = {}
        data = b""
        for n in names:
            rid = conn.req
            conn.req += 1
            rids[rid] = n
            data += conn.frame_bytes(FT_MGMT, mgmt(OP_FAULT_SET_ADD, random.getrandbits(62) | 1,
                                                   fault_set=n), rid=rid)
        conn.send_raw(data)
        out = {rids[rid]: outcome(conn.recv_reply(rid)) for rid in rids}
        # a reply that came twice would be kept for a later request: ask one
        # more thing and see that nothing else is waiting
        conn.request(FT_MGMT, mgmt(OP_FAULT_SET_ADD, random.getrandbits(62) | 1, fault_set="probe-" + names[0]))
        assert not conn.early, f"replies nobody asked for: {sorted(conn.early)}"
        return out
    finally:
        conn.close()


@pytest.fixture
def disk(tmp_path):
    made = []

    def make(size):
        m = DiskMdm(tmp_path / f"d{len(made)}", size)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()
        m.d.check_log()


def test_disk_fills_while_it_runs(disk):
    m = disk("96m")
    m.start()
    assert all(r == (0, "") for r in send_batch(m, [f"a{i}" for i in range(200)]).values())
    m.fill()
    # the log goes on in its segments allocated ahead; the snapshots (every
    # 64 changes) cannot be written, and are not needed to keep anything
    got = send_batch(m, [f"b{i}" for i in range(600)])
    assert all(r == (0, "") for r in got.values()), {r for r in got.values()}
    # what was answered done is there after a clean stop and a start on the
    # full disk, from the log alone
    m.d.stop(signal.SIGTERM)
    assert m.d.proc.returncode == 0
    m.start()
    want = {f"a{i}" for i in range(200)} | {f"b{i}" for i in range(600)} | {"probe-a0", "probe-b0"}
    assert m.fault_sets() == want
    m.free()
    m.cairn("fault-set", "add", "after")
    m.d.stop(signal.SIGTERM)
    m.start()
    assert m.fault_sets() == want | {"after"}


def test_no_room_for_the_log(disk):
    m = disk("8m")  # less than one of the 8 MiB segments libraft allocates ahead
    m.start()
    got = send_batch(m, [f"x{i}" for i in range(50)])
    msg = "the MDM's data directory is out of space (its Raft log cannot grow)"
    assert all(st == -EIO and msg in err for st, err in got.values()), {r for r in got.values()}
    r = m.cairn("fault-set", "add", "y", check=False)
    assert r.returncode != 0 and msg in r.stderr, r.stderr
    assert m.d.alive()
    # the operator makes room: the same MDM takes changes, nothing refused
    # was kept
    subprocess.run(["mount", "-o", "remount,size=96m", m.mnt], check=True)
    wait_for("the MDM to take a change",
             lambda: m.cairn("fault-set", "add", "z", check=False).returncode == 0, timeout=30)
    assert m.fault_sets() == {"z"}
    m.d.stop(signal.SIGTERM)
    m.start()
    assert m.fault_sets() == {"z"}
