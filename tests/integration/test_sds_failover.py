"""How fast the MDM acts on an SDS that fails, and that it does not act on
one that has not.

A process that dies closes its connections at once: when an SDS's session
closes, the MDM tries the SDS's port, and if that is closed too it marks the
SDS down then, not after its heartbeat timeout. These tests run the MDM with
a 30 s timeout, so that only that evidence can mark an SDS down within their
windows: a kill -9 or a SIGTERM is acted on; a stopped process whose session
was reset under it is not. Then, with the default timeout
(2 s), a CPU hog beside the cluster declares no false failure. Every test
runs a verifying load (fio with crc32c verify) through the SDC.
"""
import os
import re
import signal
import subprocess
import time

import pytest

from cluster import Cluster, hold_for, wait_for
from test_faults import fio_job, fio_result, wait_load_landing, wait_protected


def states(c):
    return {s["name"]: s["state"] for s in c.status()["sds"]}


def log_of(c, name):
    with open(os.path.join(c.dir, f"{name}.log"), errors="replace") as f:
        return f.read()


@pytest.fixture(scope="module")
def slow_timeout(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("gone"), sds_sizes=(2 << 30,) * 3, pgs=64,
                mdm_args=["--sds-timeout", "30"])
    try:
        c.start()
        c.create_volume("load", 128 << 20)
        yield c
    finally:
        c.shutdown()


def test_kill9_marked_down_at_once(slow_timeout):
    c = slow_timeout
    fio = fio_job(c, "load", "--size=64M", "--rate_iops=2000")
    wait_load_landing(c, "load", fio)
    t0 = time.monotonic()
    c.daemons["sds2"].stop(signal.SIGKILL)
    # 30 s of silence would be needed otherwise
    wait_for("sds2 marked down", lambda: states(c)["sds2"] == "down", timeout=10)
    print(f"kill -9 sds2: marked down after {time.monotonic() - t0:.2f} s")
    assert "SDS 'sds2' is gone" in log_of(c, "mdm")
    job = fio_result(fio)
    stall = job["write"]["clat_ns"]["max"] / 1e9
    print(f"kill -9 sds2: longest write {stall:.2f} s")
    assert stall < 10, f"a write waited {stall:.1f} s: the timeout, not the evidence"
    wait_protected(c)
    r = c.cairn("volume", "check-copies", "load")
    assert r.returncode == 0, r.stdout + r.stderr
    c.start_sds(1)
    wait_for("sds2 up again", lambda: states(c)["sds2"] == "up", timeout=60)
    wait_protected(c)


def test_sigterm_restart_catches_up(slow_timeout):
    """A stopped daemon is as gone as a killed one: it is marked down at
    once, the writes go on to the other copies, and once it is back it
    catches up, with every copy equal."""
    c = slow_timeout
    fio = fio_job(c, "load", "--size=64M", "--offset=64M", "--rate_iops=2000")
    wait_load_landing(c, "load", fio)
    c.daemons["sds3"].stop(signal.SIGTERM)
    wait_for("sds3 marked down", lambda: states(c)["sds3"] == "down", timeout=10)
    c.start_sds(2)
    job = fio_result(fio)
    print(f"SIGTERM and restart of sds3: longest write {job['write']['clat_ns']['max'] / 1e9:.2f} s")
    wait_for("sds3 up again", lambda: states(c)["sds3"] == "up", timeout=60)
    wait_protected(c)
    r = c.cairn("volume", "check-copies", "load")
    assert r.returncode == 0, r.stdout + r.stderr


def session_port(c, name):
    """The client port of the newest session SDS name opened to the MDM."""
    ports = re.findall(rf"SDS '{name}' \([^)]*\) connected from 127\.0\.0\.1:(\d+)",
                       log_of(c, "mdm"))
    assert ports, f"no session of {name} in the MDM's log"
    return ports[-1]


def test_live_sds_whose_session_resets_stays_up(slow_timeout):
    """Only a closed port is evidence. sds1 is stopped (a stopped process
    keeps its connections, and the kernel still accepts on its port) and
    its session with the MDM is reset under it: the MDM tries its port,
    which answers, and leaves it to the heartbeat timeout. Resumed, it opens
    a new session and was never marked down."""
    c = slow_timeout
    port = session_port(c, "sds1")
    before = log_of(c, "mdm").count("SDS 'sds1' disconnected")
    victim = c.daemons["sds1"]
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        # reset the MDM's end of sds1's session (the kernel sends the RST)
        subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", f":{port}"], check=True,
                       capture_output=True)
        wait_for("the MDM to see sds1's session closed",
                 lambda: log_of(c, "mdm").count("SDS 'sds1' disconnected") > before, timeout=10)
        # the try of its port takes at most a second; watch well past it
        hold_for("sds1 up while stopped", lambda: states(c)["sds1"] == "up", 3)
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    wait_for("sds1 to open a new session", lambda: session_port(c, "sds1") != port, timeout=30)
    assert states(c)["sds1"] == "up"
    assert "SDS 'sds1' is gone" not in log_of(c, "mdm")


def test_no_false_failure_beside_a_cpu_hog(tmp_path):
    """With the default timeout (2 s), every CPU kept busy by other work for
    15 s under a verifying load: no SDS is marked down."""
    c = Cluster(tmp_path, sds_sizes=(2 << 30,) * 3, pgs=64)
    hogs = []
    try:
        c.start()
        c.create_volume("hog", 128 << 20)
        fio = fio_job(c, "hog", "--size=64M", "--rate_iops=1000")
        wait_load_landing(c, "hog", fio, min_bytes=4 << 20)
        hogs = [subprocess.Popen(["/usr/bin/python3", "-c", "while True: pass"])
                for _ in range(3 * os.cpu_count())]
        hold_for("every SDS up beside the hog",
                 lambda: set(states(c).values()) == {"up"}, 15, interval=0.5)
        for h in hogs:
            h.kill()
            h.wait()
        hogs = []
        fio_result(fio)
        log = log_of(c, "mdm")
        assert "missed its heartbeats" not in log and "is gone" not in log, log[-3000:]
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        c.shutdown()
