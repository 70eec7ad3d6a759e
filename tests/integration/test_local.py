"""Daemons on one host reach an SDS through its unix socket instead of TCP.
Without the socket, or when its path leads to another SDS, they stay on TCP;
the data is the same either way."""
import os
import re
import subprocess

import nbd

from cluster import Cluster, wait_for

MiB = 1 << 20


def sockets():
    """Established stream sockets: unix ones by inode (path, peer inode, pid)
    and TCP ones as (pid, local port, remote port)."""
    unix, tcp = {}, []
    out = subprocess.run(["ss", "-xpnH", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        pid = re.search(r"pid=(\d+)", line)
        if len(f) < 7 or f[0] != "u_str":
            continue
        unix[f[4]] = (f[3], f[6], int(pid.group(1)) if pid else None)
    out = subprocess.run(["ss", "-tpnH", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        pid = re.search(r"pid=(\d+)", line)
        if pid:
            tcp.append((int(pid.group(1)), int(f[2].rsplit(":", 1)[1]), int(f[3].rsplit(":", 1)[1])))
    return unix, tcp


def links(cluster, name):
    """How daemon `name` is connected to each SDS: {sds name: {"unix", "tcp"}}."""
    pid = cluster.daemons[name].proc.pid
    unix, tcp = sockets()
    ports = {int(a.rsplit(":", 1)[1]): f"sds{i + 1}" for i, a in enumerate(cluster.sds_addrs)}
    paths = {f"{cluster.dir}/sds{i + 1}/sds.sock": f"sds{i + 1}" for i in range(len(ports))}
    got = {}
    for path, peer, p in unix.values():
        if p == pid and path == "*" and peer in unix and unix[peer][0] in paths:
            got.setdefault(paths[unix[peer][0]], set()).add("unix")
    for p, _, rport in tcp:
        if p == pid and rport in ports:
            got.setdefault(ports[rport], set()).add("tcp")
    return got


def write_and_check(cluster, vol, seed):
    """Write a distinct pattern over every extent (so every SDS is a primary
    for some), then read it all back through a second connection."""
    data = bytes((seed + i * 7) & 0xFF for i in range(256)) * (16 * MiB // 256)
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    for off in range(0, 16 * MiB, MiB):
        h.pwrite(data[off:off + MiB], off)
    h.flush()
    h.shutdown()
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    back = b"".join(h.pread(MiB, off) for off in range(0, 16 * MiB, MiB))
    h.shutdown()
    assert back == data


def test_same_host_daemons_use_unix_sockets(tmp_path):
    c = Cluster(tmp_path).start()
    try:
        c.create_volume("v", 16 * MiB)
        write_and_check(c, "v", 1)
        want = {f"sds{i + 1}": {"unix"} for i in range(3)}
        assert links(c, "sdc") == want
        for i in range(3):
            me = f"sds{i + 1}"
            others = {k: v for k, v in want.items() if k != me}
            # an SDS pings every peer, so it has a connection to each
            wait_for(f"{me}'s peer links", lambda: links(c, me) == others)
    finally:
        c.shutdown()


def test_without_local_sockets_tcp_is_used(tmp_path):
    c = Cluster(tmp_path, sds_args=["--local-socket", "none"]).start()
    try:
        c.create_volume("v", 16 * MiB)
        write_and_check(c, "v", 2)
        assert links(c, "sdc") == {f"sds{i + 1}": {"tcp"} for i in range(3)}
        assert not any(os.path.exists(f"{c.dir}/sds{i + 1}/sds.sock") for i in range(3))
    finally:
        c.shutdown()


def test_socket_of_another_sds_is_not_taken(tmp_path):
    """sds1's socket path made to lead to sds2 (as a socket of another mount
    namespace would): the SDC sees another SDS's token there and keeps TCP."""
    c = Cluster(tmp_path).start()
    try:
        c.create_volume("v", 16 * MiB)
        c.daemons["sdc"].stop()
        sock1 = f"{c.dir}/sds1/sds.sock"
        os.unlink(sock1)
        os.symlink(f"{c.dir}/sds2/sds.sock", sock1)
        c.start_sdc()
        c.wait_export("v")
        write_and_check(c, "v", 3)
        assert links(c, "sdc") == {"sds1": {"tcp"}, "sds2": {"unix"}, "sds3": {"unix"}}
        with open(f"{c.dir}/sdc.log") as f:
            assert "belongs to another SDS" in f.read()
    finally:
        c.shutdown()
