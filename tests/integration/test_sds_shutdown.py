"""An SDS stopped by SIGTERM while its stores are busy completes every store
operation under way before it exits.

The bug: the shutdown's final flush completed first (a sync overtakes the
writes in flight on io_uring), the loop stopped and the ring was closed, so
the completions of the writes and frees still on the ring were never
delivered: their store operations leaked (LeakSanitizer at exit) and their
requests were never answered. Clients writing, a rebuild copying to a copy
that was killed and restarted, and that copy dropping what it must not keep
all put operations on the ring at the moment SIGTERM comes. The daemon must
still stop within the tests' 20 s, with no sanitizer report."""
import os
import signal
import subprocess

import nbd
import prom
import pytest

from cluster import Cluster, wait_for

MIB = 1 << 20


def sds_state(cluster, name):
    return next(s["state"] for s in cluster.status()["sds"] if s["name"] == name)


def pgs_rebuilding(cluster):
    return cluster.status()["pools"][0]["pgs_rebuilding"]


def wait_device_writes(cluster, name):
    """Until SDS name's devices are being written now (operations on its
    ring when it is stopped): its device write count moves."""
    def writes():
        m = prom.scrape(cluster.metrics_addrs[name], cluster.metrics_token)
        return m.sum("cairn_sds_device_writes_total")
    start = writes()
    wait_for(f"{name} writing", lambda: writes() > start)


def write_load(cluster, vol):
    """Writes kept in flight (aligned and not) until killed; an SDS going
    away under them only delays them (the SDC retries)."""
    return subprocess.Popen(
        ["fio", "--name=load", "--ioengine=nbd", f"--uri={cluster.uri(vol)}", "--rw=randwrite",
         "--bsrange=4k-128k", "--bs_unaligned=1", "--iodepth=32", "--time_based",
         "--runtime=300", "--size=192m"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def cluster(tmp_path):
    # a slow rebuild, so that copies are still running when SIGTERM comes
    c = Cluster(tmp_path, sds_sizes=(2 << 30,) * 3, pgs=32, sds_args=["--rebuild-rate", "2"],
                metrics=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()  # every daemon stops cleanly, no sanitizer report


def test_sigterm_while_rebuilding_and_writing(cluster):
    cluster.create_volume("busy", 256 * MIB)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("busy"))
    for off in range(0, 64 * MIB, 4 * MIB):
        h.pwrite(os.urandom(4 * MIB), off)
    h.shutdown()

    fio = write_load(cluster, "busy")
    try:
        for it in range(2):
            # kill -9 a copy and bring it back once it is marked down: it
            # drops what it must not keep, and the primaries copy to it
            victim = cluster.daemons[f"sds{it + 1}"]
            victim.stop(signal.SIGKILL)
            wait_for(f"{victim.name} marked down",
                     lambda: sds_state(cluster, victim.name) == "down")
            victim.start()
            wait_for("a rebuild under way", lambda: pgs_rebuilding(cluster) > 0, timeout=60)
            # SIGTERM each SDS in the middle of it, writes in flight
            for k in range(3):
                d = cluster.daemons[f"sds{(it + k + 1) % 3 + 1}"]
                wait_device_writes(cluster, d.name)
                d.stop()  # exits 0 within 20 s (an ASan report makes it abort)
                d.check_log()
                d.start()
                cluster.wait_sds_connected()
    finally:
        fio.kill()
        fio.wait()
    # the fixture's shutdown stops every daemon, the rebuild still running
