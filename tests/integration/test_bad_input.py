"""Bad input gets a clear error and leaves the session (or daemon) usable."""
import json
import os
import socket
import struct
import subprocess

import nbd
import pytest

from cluster import Cluster, wait_for


def expect_nbd_error(fn, errno_name):
    with pytest.raises(nbd.Error) as e:
        fn()
    assert e.value.errnum is not None
    import errno
    assert e.value.errnum == getattr(errno, errno_name), f"got {e.value}"


def test_libnbd_strict_off_errors_keep_session(cluster):
    cluster.create_volume("bad", 8 << 20)
    h = nbd.NBD()
    h.set_strict_mode(0)
    h.add_meta_context("base:allocation")
    h.connect_uri(cluster.uri("bad"))
    size = h.get_size()
    good = os.urandom(4096)
    h.pwrite(good, 0)
    # a flag the command does not take
    expect_nbd_error(lambda: h.pread(512, 0, flags=nbd.CMD_FLAG_REQ_ONE), "EINVAL")
    expect_nbd_error(lambda: h.pwrite(b"x" * 512, 0, flags=nbd.CMD_FLAG_NO_HOLE), "EINVAL")
    # out of range: reads EINVAL, writes ENOSPC
    expect_nbd_error(lambda: h.pread(4096, size), "EINVAL")
    expect_nbd_error(lambda: h.pread(4096, size - 100), "EINVAL")
    expect_nbd_error(lambda: h.pwrite(b"y" * 4096, size - 100), "ENOSPC")
    expect_nbd_error(lambda: h.zero(1 << 20, size - 4096), "ENOSPC")
    expect_nbd_error(lambda: h.trim(8192, size), "EINVAL")
    # oversize requests: over the 32 MiB maximum
    expect_nbd_error(lambda: h.pread((32 << 20) + 1, 0), "EINVAL")
    expect_nbd_error(lambda: h.pwrite(b"z" * ((32 << 20) + 4096), 0), "EINVAL")
    # zero length, unaligned: fine
    assert h.pread(0, 4096) == b""
    h.pwrite(b"\x01\x02\x03", 4097)
    assert h.pread(5, 4096) == b"\0\x01\x02\x03\0"
    assert h.pread(4096, 0) == good
    # the session still works
    assert h.pread(4096, 8192) == b"\0" * 4096
    h.shutdown()


def test_block_status_needs_context(cluster):
    cluster.create_volume("bs", 4 << 20)
    h = nbd.NBD()
    h.set_strict_mode(0)
    h.connect_uri(cluster.uri("bs"))
    with pytest.raises(nbd.Error):
        h.block_status(4096, 0, lambda *a: 0)
    assert h.pread(512, 0) == b"\0" * 512
    h.shutdown()


def raw_connect(cluster, export):
    """A minimal fixed-newstyle client that goes to transmission with GO."""
    s = socket.create_connection(("127.0.0.1", cluster.nbd_port))
    def recv(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            assert chunk, "server closed"
            b += chunk
        return b
    hello = recv(18)
    assert hello[:16] == b"NBDMAGICIHAVEOPT"
    s.sendall(struct.pack(">I", 3))
    # an unknown option first: UNSUP, and the session stays in sync
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 99, 5) + b"hello")
    magic, opt, typ, ln = struct.unpack(">QIII", recv(20))
    recv(ln)
    assert opt == 99 and typ == (1 << 31 | 1)
    name = export.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, len(data)) + data)
    size = None
    while True:
        magic, opt, typ, ln = struct.unpack(">QIII", recv(20))
        body = recv(ln)
        if typ == 3 and struct.unpack(">H", body[:2])[0] == 0:
            size = struct.unpack(">Q", body[2:10])[0]
        if typ == 1:
            break
    return s, recv, size


def raw_request(s, recv, typ, off, ln, flags=0, cookie=1, payload=b""):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, typ, cookie, off, ln) + payload)
    magic, err, ck = struct.unpack(">IIQ", recv(16))
    assert magic == 0x67446698 and ck == cookie
    return err


def test_raw_unknown_command_and_bad_flush(cluster):
    cluster.create_volume("raw", 4 << 20)
    s, recv, size = raw_connect(cluster, "raw")
    assert size == 4 << 20
    assert raw_request(s, recv, 99, 0, 0) == 22          # unknown command: EINVAL
    assert raw_request(s, recv, 3, 4096, 0) == 22        # FLUSH with an offset: EINVAL
    assert raw_request(s, recv, 1, 0, 4, flags=1 << 7, payload=b"abcd") == 22  # unknown flag
    assert raw_request(s, recv, 1, 0, 4, payload=b"abcd") == 0
    assert raw_request(s, recv, 3, 0, 0) == 0
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 9, 0, 0))  # DISC
    assert s.recv(1) == b""
    s.close()
    # a bad request magic drops only that connection
    s, recv, _ = raw_connect(cluster, "raw")
    s.sendall(b"\xde\xad\xbe\xef" + b"\0" * 24)
    assert s.recv(1) == b""
    s.close()
    h = nbd.NBD()
    h.connect_uri(cluster.uri("raw"))
    assert h.pread(4, 0) == b"abcd"
    h.shutdown()


def test_export_name_and_abort(cluster):
    cluster.create_volume("old", 4 << 20)
    s = socket.create_connection(("127.0.0.1", cluster.nbd_port))
    assert s.recv(18)[:8] == b"NBDMAGIC"
    s.sendall(struct.pack(">I", 1))  # fixed newstyle, zeroes wanted
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 3) + b"old")  # EXPORT_NAME
    b = b""
    while len(b) < 134:
        b += s.recv(134 - len(b))
    size, flags = struct.unpack(">QH", b[:10])
    assert size == 4 << 20 and flags & 1 and b[10:] == b"\0" * 124
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 5, 0, 512))
    hdr = b""
    while len(hdr) < 16 + 512:
        hdr += s.recv(16 + 512 - len(hdr))
    assert struct.unpack(">IIQ", hdr[:16]) == (0x67446698, 0, 5)
    s.close()
    # an unknown export with EXPORT_NAME: the server hangs up
    s = socket.create_connection(("127.0.0.1", cluster.nbd_port))
    s.recv(18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 1, 4) + b"nope")
    s.settimeout(10)
    assert s.recv(1) == b""
    s.close()
    # ABORT is acknowledged, then the connection closes
    s = socket.create_connection(("127.0.0.1", cluster.nbd_port))
    s.recv(18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 2, 0))
    magic, opt, typ, ln = struct.unpack(">QIII", s.recv(20))
    assert (opt, typ, ln) == (2, 1, 0)
    assert s.recv(1) == b""
    s.close()


def test_garbage_to_daemons_does_not_crash(cluster):
    for addr in [cluster.mdm_addr] + cluster.sds_addrs:
        host, port = addr.split(":")
        for junk in (b"\0" * 64, os.urandom(200), b"CRN1" + b"\xff" * 28, b"CRN1\0\1\0\x11" + b"\0" * 24):
            s = socket.create_connection((host, int(port)))
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
            s.close()
    st = cluster.status()
    assert all(s["connected"] for s in st["sds"])
    for d in cluster.daemons.values():
        assert d.alive(), f"{d.name} died"


def test_cli_refusals(cluster, tmp_path):
    def refused(*args, msg):
        r = cluster.cairn(*args, check=False)
        assert r.returncode != 0, f"cairn {' '.join(args)} should fail"
        assert msg in r.stderr, r.stderr
    cluster.create_volume("dup", 4 << 20, map_it=False)
    refused("volume", "create", "dup", "--size", "4M", msg="already exists")
    refused("volume", "create", "thick", "--size", "1T", "--thick", msg="has only")
    refused("volume", "create", "thin", "--size", "1P", msg="overcommit limit")
    cluster.cairn("pool", "set", "default", "--overcommit", "100")
    st = cluster.status()["pools"][0]
    refused("volume", "create", "thin2", "--size", str(st["usable_capacity"]), msg="overcommit limit")
    cluster.cairn("pool", "set", "default", "--overcommit", "300")
    refused("device", "add", "--sds", "sds1", "--device", "/nonexistent/dev.img",
            msg="does not exist")
    refused("sds", "add", "--name", "x", "--addr", "127.0.0.1:1", "--device", "/tmp/x",
            msg="no cairn-sds is connected")
    refused("volume", "create", "odd", "--size", "1000", msg="multiple of 4 KiB")
    refused("volume", "map", "nosuch", "--sdc", cluster.sdc_name, msg="no volume")
    refused("volume", "remove", "nosuch", msg="no volume")
    r = cluster.cairn("volume", "frobnicate", check=False)
    assert r.returncode != 0 and "usage" in r.stderr
    r = cluster.cairn("--json", "volume", "show", "dup")
    assert json.loads(r.stdout)["name"] == "dup"
    cluster.cairn("volume", "remove", "dup")


def test_thin_pool_out_of_space(tmp_path):
    """A thin pool that runs out of space fails the writes that need new space
    with ENOSPC, keeps everything already written, and says so in the CLI."""
    c = Cluster(tmp_path, sds_sizes=(80 << 20, 80 << 20, 80 << 20), pgs=32).start()
    try:
        c.create_volume("full", 256 << 20)
        h = nbd.NBD()
        h.connect_uri(c.uri("full"))
        written = {}
        failed = 0
        for i in range(256):
            data = os.urandom(64 << 10)
            try:
                h.pwrite(data, i << 20)
                written[i] = data
            except nbd.Error as e:
                import errno
                assert e.errnum == errno.ENOSPC, e
                failed += 1
        assert failed > 0 and len(written) > 60
        # already-allocated extents still take writes
        first = min(written)
        written[first] = os.urandom(64 << 10)
        h.pwrite(written[first], first << 20)
        h.flush()
        for i, data in written.items():
            assert h.pread(len(data), i << 20) == data
        h.shutdown()
        def full():
            p = c.status()["pools"][0]
            return p["full_devices"] > 0 and p["enospc_errors"] > 0 and "OUT OF SPACE" in p["health"]
        wait_for("the CLI to report the full pool", full)
        out = c.cairn("pool", "list").stdout
        assert "OUT OF SPACE" in out and "ENOSPC" in out, out
        r = c.cairn("volume", "check-copies", "full")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        c.shutdown()
