"""The CLI's live views against a real cluster: `status --watch` on and off a
terminal, `rebuild wait` and `rebalance wait` (which must not return before
the work is done, even when started before the MDM knows of it), and `top`
while a writer runs."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import threading
import time

import nbd

from cluster import BUILD, Cluster, free_ports, lone_credential, wait_for

CAIRN = f"{BUILD}/mgmt/cairn"
ESC = "\x1b"


def cairn_argv(cluster, *args):
    return [CAIRN, "--mdm", cluster.mdm_addr, "--credentials",
            cluster.credential("admin", "admin"), *args]


def read_until(fd, pred, timeout, chunks):
    """Read fd into chunks (a list of str) until pred(text so far) holds or
    the fd ends; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not pred("".join(chunks)):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; output so far:\n{''.join(chunks)[-3000:]}"
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # a pty whose other side closed: EIO
            data = b""
        if not data:
            break
        chunks.append(data.decode(errors="replace"))
    return "".join(chunks)


def read_all(fd, timeout):
    chunks = []
    read_until(fd, lambda t: False, timeout, chunks)
    return "".join(chunks)


def stop(proc, sig=signal.SIGINT, timeout=10):
    proc.send_signal(sig)
    return proc.wait(timeout)


class Writer:
    """Writes 4 KiB blocks through the SDC's NBD export in a thread until
    stopped; counts what it wrote."""

    def __init__(self, cluster, vol, span=32 << 20):
        self.h = nbd.NBD()
        self.h.connect_uri(cluster.uri(vol))
        self.span, self.done, self.err = span, 0, None
        self.halt = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        buf = os.urandom(4096)
        try:
            while not self.halt.is_set():
                self.h.pwrite(buf, (self.done * 4096 * 7) % self.span)
                self.done += 1
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.err = e

    def stop(self):
        self.halt.set()
        self.t.join(30)
        self.h.shutdown()
        assert self.err is None, self.err
        return self.done


def fill(cluster, vol, mib):
    """Write mib MiB of data in 1 MiB writes, one per 4 MiB of the volume
    (many extents, so many PGs)."""
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    buf = os.urandom(1 << 20)
    for i in range(mib):
        h.pwrite(buf, i * (4 << 20))
    h.flush()
    h.shutdown()


def pools_settled(st):
    return all(p["pgs_degraded"] == 0 and p["pgs_rebuilding"] == 0 and p["pgs_no_copy"] == 0
               for p in st["pools"])


# ---- status --watch, and top, on the module's cluster ----

def test_status_watch_not_a_terminal(cluster):
    p = subprocess.Popen(cairn_argv(cluster, "status", "--watch", "--interval", "0.3"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        chunks = []
        text = read_until(p.stdout.fileno(),
                          lambda t: len(re.findall(r"^--- .* ---$", t, re.M)) >= 3, 30, chunks)
    finally:
        rc = stop(p, signal.SIGTERM)
    assert rc == 0, p.stderr.read()
    assert ESC not in text, "escape sequences off a terminal"
    stamps = re.findall(r"^--- (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ---$", text, re.M)
    assert len(stamps) >= 3, text
    blocks = re.split(r"^--- .* ---$", text, flags=re.M)[1:]
    for b in blocks[:-1]:  # the last may be cut short by the signal
        assert re.search(r"^Cluster \S+ \(map version \d+", b, re.M), b
        assert "POOL" in b and "VOLUME" in b, b


def test_status_watch_json_lines(cluster):
    p = subprocess.Popen(cairn_argv(cluster, "--json", "status", "--watch", "--interval", "0.3"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        chunks = []
        text = read_until(p.stdout.fileno(), lambda t: t.count("\n") >= 2, 30, chunks)
    finally:
        assert stop(p) == 0
    lines = text.splitlines()[:2]
    for line in lines:
        st = json.loads(line)
        assert st["cluster_id"] and "pools" in st


def test_status_watch_mdm_unreachable_keeps_trying():
    addr = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    p = subprocess.Popen([CAIRN, "--mdm", addr, "--credentials", lone_credential(), "status",
                          "--watch", "--interval", "0.2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        chunks = []
        text = read_until(p.stdout.fileno(), lambda t: t.count("cannot reach the MDM") >= 3, 30,
                          chunks)
        assert p.poll() is None, "status --watch gave up on an unreachable MDM"
    finally:
        assert stop(p) == 0
    assert f"cannot reach the MDM at {addr}" in text


def test_status_watch_on_a_terminal(cluster):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    p = subprocess.Popen(cairn_argv(cluster, "status", "--watch", "--interval", "0.3"),
                         stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    chunks = []
    try:
        # three frames: each starts with the cursor going home
        read_until(master, lambda t: t.count(ESC + "[H") >= 3 and t.rstrip().endswith(ESC + "[J"),
                   30, chunks)
    finally:
        rc = stop(p)
    os.close(slave)
    text = "".join(chunks) + read_all(master, 10)
    os.close(master)
    assert rc in (0, 130), rc
    assert text.startswith(ESC + "[?25l" + ESC + "[H" + ESC + "[2J"), repr(text[:40])
    frames = text.split(ESC + "[H")[1:]
    assert len(frames) >= 3
    for f in frames[1:-1]:
        assert "Cluster " in f and "Every 0.3s: cairn status" in f, repr(f[:200])
        # each line cut to the terminal's width and erased to its end
        for line in f.split("\n")[:-1]:
            line = line.rstrip("\r")  # the terminal's own newline translation
            assert line.endswith(ESC + "[K"), repr(line)
            assert len(line.replace(ESC + "[K", "").replace(ESC + "[2J", "")) < 120
    # the terminal is left as it was: the cursor shown again, the modes kept
    assert text.rfind(ESC + "[?25h") > text.rfind(ESC + "[?25l"), repr(text[-200:])
    assert not text.endswith(ESC + "[?25l")


def test_status_watch_on_a_terminal_settings_kept(cluster):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen(cairn_argv(cluster, "status", "--watch", "--interval", "0.3"),
                         stdin=slave, stdout=slave, stderr=slave)
    chunks = []
    try:
        read_until(master, lambda t: t.count(ESC + "[H") >= 2, 30, chunks)
    finally:
        rc = stop(p)
    assert rc in (0, 130)
    assert termios.tcgetattr(slave) == before
    os.close(slave)
    read_all(master, 10)
    os.close(master)


def test_top(cluster):
    cluster.create_volume("top1", 64 << 20)
    cluster.create_volume("top2", 64 << 20)
    st = cluster.status()
    vol = next(v for v in st["volumes"] if v["name"] == "top1")
    # the volume JSON keeps its keys, in their order, and gains "io" at the end
    assert list(vol) == ["id", "name", "pool", "size", "thick", "mapped_to", "writer",
                         "writer_generation", "io"], list(vol)
    assert set(vol["io"]) == {"read_iops", "write_iops", "read_bytes_per_sec",
                              "write_bytes_per_sec", "read_latency_us", "write_latency_us"}

    w = Writer(cluster, "top1")
    try:
        wait_for("the writer under way", lambda: w.done > 100 or w.err)
        r = subprocess.run(cairn_argv(cluster, "--json", "top", "--count", "3", "--interval", "1"),
                           capture_output=True, text=True, timeout=60)
        plain = subprocess.run(cairn_argv(cluster, "top", "--count", "2", "--interval", "0.5"),
                               capture_output=True, text=True, timeout=60)
        shown = cluster.cairn("volume", "show", "top1", json_out=True).stdout
    finally:
        wrote = w.stop()
    assert wrote > 100
    assert r.returncode == 0, r.stderr
    refreshes = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(refreshes) == 3, r.stdout
    for rows in refreshes:
        assert {"top1", "top2"} <= {row["name"] for row in rows}
        totals = [row["read_iops"] + row["write_iops"] for row in rows]
        assert totals == sorted(totals, reverse=True), rows  # busiest first
    assert plain.returncode == 0, plain.stderr
    assert ESC not in plain.stdout
    assert plain.stdout.count("VOLUME ") == 2 and "top1" in plain.stdout, plain.stdout

    best = max(row["write_iops"] for rows in refreshes for row in rows if row["name"] == "top1")
    assert best > 0, refreshes  # the MDM's rates (MgmtReply.volume_io) reach top
    assert refreshes[-1][0]["name"] == "top1", refreshes[-1]  # the busy one on top
    assert json.loads(shown)["io"]["write_iops"] >= 0


def test_top_options(cluster):
    for bad in (["--count", "0"], ["--count", "x"], ["--interval", "0"], ["--interval", "abc"]):
        r = subprocess.run(cairn_argv(cluster, "top", *bad), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and r.stderr.startswith("cairn: invalid --"), (bad, r.stderr)
    r = subprocess.run(cairn_argv(cluster, "status", "--interval", "1"), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "--interval goes with --watch" in r.stderr


# ---- rebuild wait and rebalance wait, each on a cluster of its own ----

def test_rebuild_wait(tmp_path):
    c = Cluster(tmp_path, sds_sizes=(1 << 30,) * 3, pgs=32, sds_args=["--rebuild-rate", "2"])
    c.start()
    try:
        c.create_volume("rb", 256 << 20)
        fill(c, "rb", 40)
        # nothing to do: it says so and returns 0
        r = c.cairn("rebuild", "wait", "--timeout", "30")
        assert r.stdout.endswith("rebuild: done; nothing is left to copy\n"), r.stdout

        c.daemons["sds3"].stop(signal.SIGKILL)
        # started before the MDM has marked sds3 down: it must wait all the same
        waiter = subprocess.Popen(cairn_argv(c, "rebuild", "wait", "--timeout", "120"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for("the rebuild under way",
                 lambda: c.status()["rebuild"]["pg_copies_left"] > 0, timeout=60, interval=0.1)
        r = c.cairn("--json", "rebuild", "wait", "--timeout", "1", check=False)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert re.match(r"cairn: rebuild not done after 1 s: ", r.stderr), r.stderr
        polls = [json.loads(line) for line in r.stdout.splitlines()]
        assert polls and all(not p["done"] and p["work"] == "rebuild" for p in polls), r.stdout

        out, err = waiter.communicate(timeout=150)
        assert waiter.returncode == 0, (out, err)
        lines = out.splitlines()
        assert lines[-1].startswith("rebuild: done; "), out
        progress = [ln for ln in lines[:-1]
                    if re.match(r"rebuild: \d+ PG cop(y|ies), .* left, .*/s, ETA ", ln)]
        assert progress, out
        st = c.status()
        assert pools_settled(st), st["pools"]
        assert [s["state"] for s in st["sds"]] == ["up", "up", "down"]
    finally:
        c.shutdown()


def test_rebuild_wait_no_live_copy(tmp_path):
    """Both copies of some PGs gone: it says so rather than wait forever."""
    c = Cluster(tmp_path, sds_sizes=(1 << 30,) * 3, pgs=16)
    c.start()
    try:
        c.create_volume("nl", 64 << 20, map_it=False)
        # both at once: one seen gone first would have its empty PGs
        # rebuilt onto the other before the second kill
        for n in ("sds2", "sds3"):
            c.daemons[n].proc.send_signal(signal.SIGKILL)
        for n in ("sds2", "sds3"):
            c.daemons[n].stop(signal.SIGKILL)
        r = c.cairn("rebuild", "wait", "--timeout", "60", check=False)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert re.search(r"cannot rebuild: \d+ PGs? ha(s|ve) no live copy", r.stderr), r.stderr
    finally:
        c.shutdown()


def test_rebalance_wait(tmp_path):
    c = Cluster(tmp_path, sds_sizes=(1 << 30,) * 4, pgs=32, initial=3,
                sds_args=["--rebuild-rate", "4"])
    c.start()
    try:
        c.create_volume("rbl", 256 << 20)
        fill(c, "rbl", 40)
        c.add_sds(3)
        r = c.cairn("--json", "rebalance", "wait", "--timeout", "120", check=False)
        assert r.returncode == 0, (r.stdout, r.stderr)
        polls = [json.loads(line) for line in r.stdout.splitlines()]
        assert polls[-1]["done"] and polls[-1]["state"] == "done", polls[-1]
        assert all(not p["done"] for p in polls[:-1])
        assert any(p["pgs_moving"] > 0 for p in polls), "no move was seen to wait for"
        st = c.status()
        assert all(p["pgs_moving"] == 0 and p["pgs_rebuilding"] == 0 for p in st["pools"]), \
            st["pools"]
        sds4 = next(s for s in st["sds"] if s["name"] == "sds4")
        assert sds4["rebuild_bytes_received"] > 0, sds4
    finally:
        c.shutdown()
