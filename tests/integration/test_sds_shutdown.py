"""An SDS stopped by SIGTERM while its stores are busy completes every store
operation under way before it exits.

The bug: the shutdown's final flush completed first (a sync overtakes the
writes in flight on io_uring), the loop stopped and the ring was closed, so
the completions of the writes and frees still on the ring were never
delivered: their store operations leaked (LeakSanitizer at exit) and their
requests were never answered. Clients writing, a rebuild copying to a copy
that was killed and restarted, and that copy dropping what it must not keep
all put operations on the ring at the moment SIGTERM comes. The daemon must
still stop within the tests' 20 s, with no sanitizer report.

A second SIGTERM is not swallowed: the first one's handler is one-shot, so
a second ends a shutdown that hangs by SIGTERM's default action. An SDS
whose device hangs (its nbdkit stopped with SIGSTOP) waits for the
operations on it when SIGTERM comes; a second SIGTERM kills it
(-SIGTERM, where a clean stop exits 0). Two SIGTERMs back to back stop
the SDC, an SDS and the MDM promptly, cleanly or by the default action."""
import os
import signal
import subprocess
import time

import nbd
import prom
import pytest

from cluster import Cluster, wait_for
from devices import NbdkitDevice

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


def device_queue_depth(cluster, name):
    m = prom.scrape(cluster.metrics_addrs[name], cluster.metrics_token)
    return m.sum("cairn_sds_device_queue_depth")


def test_second_sigterm_ends_a_shutdown_stuck_on_a_hung_device(tmp_path):
    dev = NbdkitDevice(tmp_path / "hung", 1 << 30, [])
    c = fio = None
    stopped = False
    try:
        c = Cluster(tmp_path / "c", sds_sizes=(1 << 30,) * 3, pgs=32, devices={0: dev.loop},
                    metrics=True)
        c.start()
        c.create_volume("hang", 128 * MIB)
        fio = write_load(c, "hang")
        wait_device_writes(c, "sds1")
        os.kill(dev.nbdkit_pid, signal.SIGSTOP)  # the device hangs
        stopped = True
        wait_for("operations stuck on sds1's device", lambda: device_queue_depth(c, "sds1") > 0)
        d = c.daemons["sds1"]
        d.proc.send_signal(signal.SIGTERM)
        wait_for("sds1's shutdown to begin",
                 lambda: "shutting down" in open(d.log, errors="replace").read())
        time.sleep(1)  # what a stuck shutdown looks like: still there
        assert d.alive(), f"sds1 stopped with {d.proc.returncode} on a hung device"
        d.proc.send_signal(signal.SIGTERM)
        # the kernel has it killed by now; it exits once the device answers
        # what was on its ring (a clean stop would also be done then, with 0)
        os.kill(dev.nbdkit_pid, signal.SIGCONT)
        stopped = False
        rc = d.proc.wait(20)
        assert rc == -signal.SIGTERM, f"sds1 exited with {rc} after a second SIGTERM"
    finally:
        if stopped:
            os.kill(dev.nbdkit_pid, signal.SIGCONT)
        if fio:
            fio.kill()
            fio.wait()
        try:
            if c:
                c.shutdown()
        finally:
            dev.close()


def test_two_sigterms_back_to_back(cluster):
    """The second may find the first still pending (then they are one) or
    its default action: either way each daemon is gone within seconds."""
    for name in ("sdc", "sds1", "mdm"):
        d = cluster.daemons[name]
        d.proc.send_signal(signal.SIGTERM)
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(20)
        assert rc in (0, -signal.SIGTERM), f"{name} exited with {rc}"
        d.check_log()
