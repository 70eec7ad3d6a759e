"""Authenticated links (proto/rpc_auth.c): nobody without this cluster's
credentials gets anything from an MDM, SDS or Raft port (only an MDM's
credential gets past the Raft port's handshake), a credential acts only as
its role and name, a recorded handshake replays nothing, a changed frame
closes its connection, and every change is in the MDM's audit log. Each
refusal is logged, and nothing stored changes."""
import errno
import json
import os
import socket
import struct
import subprocess

import nbd
import pytest

from cairnproto import (FT_IO_READ, FT_IO_WRITE, FT_MGMT, FT_SDS_REGISTER, IO_FLAG_REPLICA,
                        MAC_GMAC, MAC_POLY1305, MAGIC, AuthRefused, Conn, SdsConn,
                        load_credential)
from cluster import BUILD, free_ports, lone_credential, wait_for

STATUS = b"\x08\x01"  # MgmtRequest{op: OP_STATUS}


def log_of(cluster, name):
    with open(cluster.daemons[name].log, errors="replace") as f:
        return f.read()


def closed_without_answer(sock):
    """The peer closes sock and sends nothing back."""
    sock.settimeout(15)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data == b""


def all_ports(cluster):
    return [("mdm", cluster.mdm_addr)] + [(f"sds{i + 1}", a) for i, a in
                                          enumerate(cluster.sds_addrs)]


@pytest.fixture(scope="module")
def data(cluster):
    """A volume with known bytes, to show that no refused request changed it."""
    cluster.create_volume("authvol", 16 << 20)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("authvol"))
    h.pwrite(b"K" * (1 << 20), 0)
    h.flush()
    h.shutdown()
    return b"K" * (1 << 20)


def read_back(cluster):
    h = nbd.NBD()
    h.connect_uri(cluster.uri("authvol"))
    try:
        return h.pread(1 << 20, 0)
    finally:
        h.shutdown()


def test_unauthenticated_peer_gets_nothing(cluster, data):
    before = cluster.status()
    for name, addr in all_ports(cluster):
        host, port = addr.rsplit(":", 1)
        # a plain status request, as an old CLI would send it
        s = socket.create_connection((host, int(port)))
        s.sendall(struct.pack(">IHHQIIiI", MAGIC, 1, FT_MGMT, 1, len(STATUS), 0, 0, 0) + STATUS)
        assert closed_without_answer(s), f"{name} answered an unauthenticated peer"
        s.close()
        # a plain write, as a rogue SDC would send it
        s = socket.create_connection((host, int(port)))
        io = struct.pack(">QQIIIIQ", 1, 0, 4096, 0, 1, 0, 1)
        s.sendall(struct.pack(">IHHQIIiI", MAGIC, 1, FT_IO_WRITE, 1, len(io), 4096, 0, 0) + io
                  + b"X" * 4096)
        assert closed_without_answer(s), f"{name} answered an unauthenticated write"
        s.close()
        wait_for(f"{name} to log the refusal",
                 lambda n=name: "unauthenticated peer sent a frame of type" in log_of(cluster, n),
                 timeout=10)
    assert read_back(cluster) == data
    assert cluster.status()["volumes"] == before["volumes"]


def test_wrong_cluster_credential(cluster):
    for name, addr in all_ports(cluster):
        with pytest.raises(AuthRefused, match="not signed by this cluster's CA"):
            Conn(addr, lone_credential("admin"), check_server=False)
        wait_for(f"{name} to log it", lambda n=name: "refused: credential not signed by this "
                 "cluster's CA" in log_of(cluster, n), timeout=10)
    # the CLI says so too
    r = subprocess.run([f"{BUILD}/mgmt/cairn", "--mdm", cluster.mdm_addr, "--credentials",
                        lone_credential("admin"), "status"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r


def test_replayed_handshake_is_refused(cluster):
    c = Conn(cluster.mdm_addr, cluster.credential("admin", "admin"))
    st, _, _ = c.request(FT_MGMT, STATUS)
    assert st == 0
    hello, proof = c.recorded
    c.close()
    # the same bytes on a new connection: the server's fresh key differs,
    # so the recorded proof's signature no longer matches
    def replay_refused():
        host, port = cluster.mdm_addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
        s.settimeout(15)
        s.sendall(hello)
        f = s.makefile("rb")
        hdr = f.read(32)
        mlen = struct.unpack(">IHHQIIiI", hdr)[4]
        f.read(mlen)
        s.sendall(proof)
        hdr = f.read(32)
        assert len(hdr) == 32
        status = struct.unpack(">IHHQIIiI", hdr)[6]
        assert status == -errno.EACCES, status
        try:
            s.sendall(struct.pack(">IHHQIIiI", MAGIC, 1, FT_MGMT, 3, len(STATUS), 0, 0, 0)
                      + STATUS)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            rest = f.read()
        except ConnectionResetError:
            rest = b""
        assert len(rest) <= struct.unpack(">IHHQIIiI", hdr)[4], "answered after a refused proof"
        s.close()
        return True
    # refusals are logged at most once a second per kind: replay until it is
    wait_for("the replay's refusal in the MDM's log", lambda: replay_refused() and
             "bad signature (wrong key, or a replayed handshake)" in log_of(cluster, "mdm"),
             timeout=15, interval=0.3)


def test_changed_frame_closes_the_connection(cluster):
    c = Conn(cluster.mdm_addr, cluster.credential("monitor", "monitor"))
    frame = bytearray(c.frame_bytes(FT_MGMT, STATUS))
    frame[-1] ^= 1  # the MAC
    c.send_raw(bytes(frame))
    assert closed_without_answer(c.s)
    wait_for("the MDM to log it", lambda: "failed its integrity check" in log_of(cluster, "mdm"),
             timeout=10)
    # and a frame replayed within one connection fails the same way
    c = Conn(cluster.mdm_addr, cluster.credential("monitor", "monitor"))
    frame = c.frame_bytes(FT_MGMT, STATUS)
    c.send_raw(frame)
    c.send_raw(frame)
    c.s.settimeout(15)
    got = b""
    while True:
        chunk = c.s.recv(65536)
        if not chunk:
            break
        got += chunk
    hdr = struct.unpack(">IHHQIIiI", got[:32])
    assert len(got) == 32 + hdr[4] + hdr[5] + 16, "the replayed frame was answered"


def cpu_has_fast_aes():
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split()
    return "aes" in flags and "pclmulqdq" in flags


@pytest.mark.parametrize("offer", [MAC_POLY1305, MAC_POLY1305 | MAC_GMAC])
def test_frame_macs_are_negotiated_and_checked(cluster, offer):
    """The daemon picks AES-256-GMAC when offered on a CPU with AES-NI and
    PCLMUL, ChaCha20-Poly1305 otherwise; either way its frames carry the MAC
    an independent implementation computes (cairnproto.py: PyNaCl or
    OpenSSL), and a frame whose MAC is off closes the connection."""
    want = MAC_GMAC if offer & MAC_GMAC and cpu_has_fast_aes() else MAC_POLY1305
    for name, addr in all_ports(cluster):
        c = Conn(addr, cluster.credential("admin", "admin"), macs=offer)
        assert c.mac == want, (name, c.mac)
        if name == "mdm":
            for _ in range(3):  # successive frames: the nonce moves on
                st, m, _ = c.request(FT_MGMT, STATUS)
                assert st == 0 and m
        frame = bytearray(c.frame_bytes(FT_MGMT, STATUS))
        frame[33] ^= 0x10  # the message's second byte: the MAC no longer matches
        c.send_raw(bytes(frame))
        assert closed_without_answer(c.s), name


def test_a_credential_acts_only_as_its_role(cluster, data):
    sdc = Conn(cluster.mdm_addr, cluster.credential("sdc", cluster.sdc_name))
    st, _, _ = sdc.request(FT_MGMT, STATUS)
    assert st == -errno.EACCES, "an SDC's credential acted as the CLI"
    reg = b"\x0a\x04sdsX\x12\x0e127.0.0.1:1234"  # SdsRegister{name, addr}
    st, _, _ = sdc.request(FT_SDS_REGISTER, reg)
    assert st == -errno.EACCES, "an SDC's credential registered an SDS"
    sdc.close()
    sds = Conn(cluster.mdm_addr, cluster.credential("sds", "sds1"))
    st, _, _ = sds.request(FT_MGMT, STATUS)
    assert st == -errno.EACCES, "an SDS's credential acted as the CLI"
    st, _, _ = sds.request(FT_SDS_REGISTER, b"\x0a\x04sds2\x12\x0e127.0.0.1:1234")
    assert st == -errno.EACCES, "sds1's credential registered as sds2"
    sds.close()
    assert "may not send request type 2" in log_of(cluster, "mdm")
    assert "the credential of SDS 'sds1' cannot register SDS 'sds2'" in log_of(cluster, "mdm")
    # an SDC's credential cannot send an SDS a replica's write
    loc = json.loads(cluster.cairn("volume", "locate", "authvol", "--offset", "0",
                                   json_out=True).stdout)
    primary = loc["copies"][0]
    c = SdsConn(primary["addr"], cluster.credential("sdc", cluster.sdc_name))
    st, _ = c.call(FT_IO_WRITE, loc["volume_id"], 0, 4096, loc["pool_id"], loc["pg"],
                   loc["epoch"], flags=IO_FLAG_REPLICA, payload=b"R" * 4096)
    assert st == -errno.EACCES, "an SDC's credential wrote as a replica"
    c.close()
    # and a monitor's credential may read copies (check-copies) but not write
    c = SdsConn(primary["addr"], cluster.credential("monitor", "monitor"))
    st, got = c.call(FT_IO_READ, loc["volume_id"], 0, 4096, loc["pool_id"], loc["pg"],
                     loc["epoch"], flags=IO_FLAG_REPLICA)
    assert st >= 0 and got == data[:4096], st
    st, _ = c.call(FT_IO_WRITE, loc["volume_id"], 0, 4096, loc["pool_id"], loc["pg"],
                   loc["epoch"], payload=b"M" * 4096)
    assert st == -errno.EACCES
    c.close()
    assert read_back(cluster) == data
    # the client checks the server's role too: an SDS port is no MDM
    r = subprocess.run([f"{BUILD}/mgmt/cairn", "--mdm", primary["addr"], "--credentials",
                        cluster.credential("admin", "admin"), "status"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r


def test_monitor_queries_only_and_audit_log(cluster):
    mon = ["--credentials", cluster.credential("monitor", "monitor")]
    argv = [f"{BUILD}/mgmt/cairn", "--mdm", cluster.mdm_addr] + mon
    r = subprocess.run(argv + ["--json", "volume", "list"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "authvol" in r.stdout, r.stderr
    r = subprocess.run(argv + ["volume", "create", "monvol", "--size", "4M"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "monitor credential may query, not change" in r.stderr
    assert "monvol" not in {v["name"] for v in cluster.status()["volumes"]}
    cluster.cairn("volume", "create", "auditvol", "--size", "4M")
    r = cluster.cairn("volume", "create", "auditvol", "--size", "4M", check=False)
    assert r.returncode == 1
    path = os.path.join(cluster.dir, "mdm", "audit.log")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    lines = [json.loads(ln) for ln in open(path)]
    mine = [e for e in lines if e["request"].get("volume") in ("monvol", "auditvol")]
    assert [(e["who"]["role"], e["who"]["name"], e["op"], e["result"]) for e in mine] == [
        ("monitor", "monitor", "volume_create", "error"),
        ("admin", "admin", "volume_create", "ok"),
        ("admin", "admin", "volume_create", "error")], mine
    assert "already exists" in mine[2]["message"]
    assert mine[1]["request"]["size"] == 4 << 20 and mine[1]["time"].endswith("Z")
    assert not any(e["op"] == "status" for e in lines), "queries are not changes"


FT_RAFT_OPEN, FT_RAFT_DATA = 15, 22  # proto/frame.h


def test_raft_port_takes_only_mdms(cluster, data):
    """The MDM's Raft port (mgmt/raft_link.c) is an authenticated link that
    takes only a proved MDM: what an unauthenticated libraft peer sends, or
    any other role's credential, gets nothing and is logged with its
    address; a proved MDM that breaks the protocol is closed and logged."""
    host, port = cluster.raft_addr.rsplit(":", 1)
    # libraft's own TCP handshake (protocol 1, id 2, address), then an
    # AppendEntries-sized blob: what a rogue Raft peer would send
    s = socket.create_connection((host, int(port)))
    me = "%s:%d" % s.getsockname()[:2]
    addr = b"127.0.0.1:9999\0\0"
    s.sendall(struct.pack("<QQQ", 1, 2, len(addr)) + addr + b"\x01" * 256)
    assert closed_without_answer(s), "the Raft port answered a plain TCP peer"
    s.close()
    wait_for("the MDM to log the plain peer", lambda: f"rpc {me}: malformed frame header"
             in log_of(cluster, "mdm"), timeout=10)

    def refused(cred, why, check_server=True):
        c = Conn(cluster.raft_addr)  # plain, then the handshake by hand: to know our port
        me = "%s:%d" % c.s.getsockname()[:2]
        with pytest.raises(AuthRefused, match=why):
            c._handshake(load_credential(cred), check_server)
        c.close()
        return f"rpc {me}: refused: {why}" in log_of(cluster, "mdm")
    # refusals are logged at most once a second per kind: try until one is
    for role, name in (("sds", "sds1"), ("admin", "admin"), ("sdc", cluster.sdc_name),
                       ("monitor", "monitor")):
        wait_for(f"the MDM to log the refused {role} credential on its Raft port",
                 lambda r=role, n=name: refused(cluster.credential(r, n),
                                                "role not allowed on this connection"),
                 timeout=15, interval=0.3)
    wait_for("the MDM to log another CA's MDM credential on its Raft port",
             lambda: refused(lone_credential("mdm"), "credential not signed by this cluster's CA",
                             check_server=False), timeout=15, interval=0.3)

    # a proved MDM that breaks the protocol: closed, with what it did
    mdm2 = cluster.credential("mdm", "mdm2")
    for frames, why in (
            ([(FT_RAFT_DATA, b"", b"x" * 100)], "a data frame before its open frame"),
            ([(FT_RAFT_OPEN, struct.pack(">Q", 0) + b"127.0.0.1:1", b"")], "raft id 0"),
            ([(FT_RAFT_OPEN, b"\x00\x01", b"")], "a malformed open frame"),
            ([(FT_MGMT, STATUS, b"")], "a frame of type 2 on the Raft port")):
        c = Conn(cluster.raft_addr, mdm2)
        me = "%s:%d" % c.s.getsockname()[:2]
        with pytest.raises(ConnectionError):
            for ftype, msg, payload in frames:
                c.request(ftype, msg, payload)
        c.close()
        wait_for(f"the MDM to log '{why}'", lambda m=me, w=why: f"raft link {m}: {w}" in
                 log_of(cluster, "mdm"), timeout=10)
    # the MDM, its Raft log and the data are as they were: a change commits
    cluster.cairn("volume", "create", "raftportvol", "--size", "4M")
    assert "raftportvol" in {v["name"] for v in cluster.status()["volumes"]}
    assert read_back(cluster) == data
    assert cluster.daemons["mdm"].alive()


def test_daemons_refuse_bad_credential_files(cluster, tmp_path):
    cred = tmp_path / "sds9.cred"
    with open(cluster.credential("sds", "sds9")) as src:
        cred.write_text(src.read())
    port = free_ports(1)[0]
    base = [f"{BUILD}/server/cairn-sds", "--name", "sds9", "--listen", f"127.0.0.1:{port}",
            "--mdm", cluster.mdm_addr, "--data-dir", str(tmp_path / "d")]
    os.chmod(cred, 0o644)
    r = subprocess.run(base + ["--credentials", str(cred)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "run chmod 600" in r.stderr and "0644" in r.stderr, r.stderr
    os.chmod(cred, 0o600)
    r = subprocess.run(base[:2] + ["sds8"] + base[3:] + ["--credentials", str(cred)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "the credential is for SDS 'sds9', not 'sds8'" in r.stderr
    r = subprocess.run(base + ["--credentials", cluster.credential("sdc", "x")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not of an sds" in r.stderr, r.stderr
    env = dict(os.environ)
    env.pop("CAIRN_CREDENTIALS", None)
    r = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "no credential" in r.stderr, r.stderr
    # a credential edited by hand (its name changed) fails the CA's signature
    text = cred.read_text().replace("name sds9", "name sds7")
    forged = tmp_path / "sds7.cred"
    forged.write_text(text)
    os.chmod(forged, 0o600)
    r = subprocess.run(base[:2] + ["sds7"] + base[3:] + ["--credentials", str(forged)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "signature does not match" in r.stderr, r.stderr
