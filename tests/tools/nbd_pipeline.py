#!/usr/bin/python3
"""A deliberately impatient NBD client, for overload tests.

It drives an export the way NetworkBlockDevice/nbd's nbd-tester-client does:
it sends a whole batch of requests before it reads any reply (or, with
--stall, keeps sending while it reads nothing for a while), and checks every
reply: one per request, no error, and read data equal to what was last
written there. A server that buffers without bound, drops a request, or
answers a request twice is caught; one that pushes back (stops reading) only
slows it down.

Blocks are --block bytes; block b written with generation g holds
(b, g) as two little-endian u64s, repeated. A batch never reads and writes
the same block, so every read's expected data is known when it is sent.

Usage (as a library: see run_batch; as a command: --help)."""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

NBD_MAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_REPLY = 0x67446698
OPT_GO = 7
REP_ACK, REP_INFO = 1, 3
CMD_READ, CMD_WRITE, CMD_FLUSH = 0, 1, 3


def pattern(block, gen, size):
    unit = struct.pack("<QQ", block, gen)
    return (unit * (size // 16 + 1))[:size]


def fill(uri, blocks, gen, path, block=1024, timeout=900):
    """Write generation gen over blocks [0, blocks) of the export at uri,
    fast: through a scratch file at path and nbdcopy."""
    with open(path, "wb") as f:
        for b in range(0, blocks, 4096):
            f.write(b"".join(pattern(x, gen, block) for x in range(b, min(b + 4096, blocks))))
    try:
        subprocess.run(["nbdcopy", path, uri], check=True, timeout=timeout)
    finally:
        os.unlink(path)


def recv_exact(s, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = s.recv_into(view[got:], n - got)
        if not k:
            raise ConnectionError(f"server closed the connection ({got} of {n} bytes read)")
        got += k
    return bytes(buf)


def connect(addr, export):
    """addr: 'unix:/path' or 'host:port'. Returns (socket, export size)."""
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(addr[5:])
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    magic, opt, flags = struct.unpack(">QQH", recv_exact(s, 18))
    assert magic == NBD_MAGIC and opt == IHAVEOPT, "not an NBD server"
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    name = export.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    size = None
    while True:
        magic, opt, typ, ln = struct.unpack(">QIII", recv_exact(s, 20))
        body = recv_exact(s, ln)
        assert magic == REP_MAGIC, "bad option reply"
        if typ == REP_INFO and struct.unpack(">H", body[:2])[0] == 0:
            size = struct.unpack(">Q", body[2:10])[0]
        elif typ == REP_ACK:
            break
        elif typ & (1 << 31):
            raise ConnectionError(f"GO refused: {typ:#x} {body!r}")
    return s, size


class Result:
    def __init__(self):
        self.sent = self.replies = self.errors = self.mismatches = 0
        self.problems = []
        self.first_reply_after_send = None  # seconds from the last send to the first read
        self.elapsed = 0.0

    def problem(self, what):
        if len(self.problems) < 10:
            self.problems.append(what)

    def as_dict(self):
        return dict(sent=self.sent, replies=self.replies, errors=self.errors,
                    mismatches=self.mismatches, problems=self.problems,
                    elapsed=round(self.elapsed, 2))


def run_batch(addr, export, ops, block=1024, stall=None, timeout=600, chunk=1 << 20):
    """Send ops, a list of (cmd, block number, gen): for CMD_WRITE gen is what
    it writes, for CMD_READ the generation the block must hold. With stall
    None every request is sent before any reply is read; with stall=S the
    replies are read from S seconds after sending began, while sending goes
    on. Returns a Result; never raises for what the server does."""
    res = Result()
    t0 = time.monotonic()
    try:
        s, size = connect(addr, export)
    except (OSError, AssertionError) as e:
        res.problem(f"connect: {e}")
        return res
    s.settimeout(timeout)
    expect = {}
    for cookie, (cmd, b, gen) in enumerate(ops):
        assert (b + 1) * block <= size, "block beyond the export"
        expect[cookie] = (cmd, b, gen)
    sent_all = threading.Event()
    send_error = []

    def sender():
        try:
            buf = []
            pending = 0
            for cookie, (cmd, b, gen) in enumerate(ops):
                hdr = struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, cookie, b * block,
                                  0 if cmd == CMD_FLUSH else block)
                buf.append(hdr)
                pending += len(hdr)
                if cmd == CMD_WRITE:
                    buf.append(pattern(b, gen, block))
                    pending += block
                res.sent += 1
                if pending >= chunk:
                    s.sendall(b"".join(buf))
                    buf, pending = [], 0
            if buf:
                s.sendall(b"".join(buf))
        except OSError as e:
            send_error.append(e)
        finally:
            sent_all.set()

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    if stall is None:
        if not sent_all.wait(timeout):
            res.problem(f"stuck: {res.sent} of {len(ops)} requests sent in {timeout} s and "
                        "no reply read yet (the server stopped reading and holds its replies)")
            s.close()
            return res
    else:
        time.sleep(stall)  # the client's own pause, the condition under test
    if send_error:
        res.problem(f"send: {send_error[0]}")
    seen = set()
    try:
        while len(seen) < len(ops):
            magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
            if magic != SIMPLE_REPLY:
                res.problem(f"bad reply magic {magic:#x}")
                break
            if cookie not in expect or cookie in seen:
                res.problem(f"reply to unknown or answered cookie {cookie}")
                break
            seen.add(cookie)
            res.replies += 1
            cmd, b, gen = expect[cookie]
            if err:
                res.errors += 1
                res.problem(f"cookie {cookie} (cmd {cmd} block {b}): error {err}")
                continue  # a read with an error carries no data
            if cmd == CMD_READ:
                data = recv_exact(s, block)
                if data != pattern(b, gen, block):
                    res.mismatches += 1
                    res.problem(f"block {b}: read data is not generation {gen}")
    except (OSError, ConnectionError, struct.error) as e:
        res.problem(f"reading replies: {e}")
    th.join(5)
    s.close()
    res.elapsed = time.monotonic() - t0
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("addr", help="unix:/path/nbd.sock or host:port")
    ap.add_argument("export")
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--first", type=int, default=0, help="first block")
    ap.add_argument("--count", type=int, required=True, help="blocks (one request each)")
    ap.add_argument("--write", type=int, metavar="GEN", help="write generation GEN")
    ap.add_argument("--read", type=int, metavar="GEN", help="read, expecting generation GEN")
    ap.add_argument("--stall", type=float, help="read nothing for this long while sending")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    if (a.write is None) == (a.read is None):
        ap.error("give exactly one of --write GEN and --read GEN")
    cmd, gen = (CMD_WRITE, a.write) if a.write is not None else (CMD_READ, a.read)
    ops = [(cmd, a.first + i, gen) for i in range(a.count)]
    res = run_batch(a.addr, a.export, ops, a.block, a.stall, a.timeout)
    print(json.dumps(res.as_dict()))
    ok = res.replies == len(ops) and not res.errors and not res.mismatches and not res.problems
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
