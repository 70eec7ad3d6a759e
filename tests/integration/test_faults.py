"""Faults under a verifying load, with every SDS in a network namespace of its
own: acknowledged writes survive, I/O resumes, every PG gets its copies back,
and a deposed primary serves no stale read."""
import errno
import json
import os
import signal
import subprocess
import time

import nbd
import pytest

from cairnproto import FT_IO_READ, FT_IO_WRITE, SdsConn
from cluster import NetCluster as Cluster, hold_for, wait_for  # every SDS a host of its own
from devices import FaultyDevice


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("faults"), sds_sizes=(2 << 30,) * 4, pgs=64)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


def pool(cluster):
    return cluster.status()["pools"][0]


def wait_protected(cluster, timeout=120):
    def ok():
        st = cluster.status()
        p = st["pools"][0]
        return (p["pgs_fully_protected"] == p["pg_count"] and p["pgs_rebuilding"] == 0)
    wait_for("every PG fully protected", ok, timeout=timeout)


def fio_job(cluster, vol, *extra):
    return subprocess.Popen(
        ["fio", "--name=load", "--ioengine=nbd", f"--uri={cluster.uri(vol)}", "--rw=randwrite",
         "--bs=4k", "--iodepth=16", "--verify=crc32c", "--verify_state_save=0", "--verify_fatal=1", "--do_verify=1",
         "--output-format=json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fio_result(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"fio failed:\n{out[-2000:]}\n{err[-2000:]}"
    job = json.loads(out[out.index("{"):])["jobs"][0]
    assert job["error"] == 0
    return job


def data_bytes(cluster, vol):
    """Bytes of the volume that hold data (BLOCK_STATUS through the SDC)."""
    r = subprocess.run(["nbdinfo", "--map", "--json", cluster.uri(vol)], capture_output=True,
                       text=True, timeout=60, check=True)
    return sum(e["length"] for e in json.loads(r.stdout) if not e["type"] & 1)


def wait_load_landing(cluster, vol, proc, min_bytes=16 << 20):
    """Wait until the load proc (fio) has written min_bytes more of vol: the
    fault that follows then falls in the middle of a running load."""
    base = data_bytes(cluster, vol)

    def landing():
        assert proc.poll() is None, "the load ended before the fault"
        return data_bytes(cluster, vol) >= base + min_bytes
    wait_for(f"the load on {vol} to be under way", landing, timeout=60, interval=0.2)


def test_kill9_under_load_then_second_failure(cluster):
    cluster.create_volume("load", 192 << 20)
    # about 12 s of writes at 2000 IOPS; fio verifies every block at the end
    fio = fio_job(cluster, "load", "--size=96M", "--rate_iops=2000")
    wait_load_landing(cluster, "load", fio)
    t0 = time.time()
    cluster.daemons["sds2"].stop(signal.SIGKILL)
    job = fio_result(fio)
    stall = job["write"]["clat_ns"]["max"] / 1e9
    print(f"kill -9 sds2: longest write {stall:.1f} s; fault to fio end {time.time() - t0:.1f} s")
    assert stall < 10, f"I/O stalled {stall:.1f} s"
    wait_protected(cluster)
    st = cluster.status()
    assert [s["state"] for s in st["sds"]] == ["up", "down", "up", "up"]
    r = cluster.cairn("volume", "check-copies", "load")
    assert r.returncode == 0, r.stdout + r.stderr

    # a second failure once the first rebuild is done: still nothing lost
    fio = fio_job(cluster, "load", "--size=96M", "--offset=96M", "--rate_iops=2000")
    wait_load_landing(cluster, "load", fio)
    cluster.daemons["sds3"].stop(signal.SIGKILL)
    fio_result(fio)
    wait_protected(cluster)
    # everything written before either failure still verifies
    r = subprocess.run(["fio", "--name=load", "--ioengine=nbd", f"--uri={cluster.uri('load')}",
                        "--rw=randwrite", "--bs=4k", "--iodepth=16", "--verify=crc32c", "--verify_state_save=0",
                        "--verify_fatal=1", "--verify_only", "--size=96M"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = cluster.cairn("volume", "check-copies", "load")
    assert r.returncode == 0, r.stdout + r.stderr
    # both come back: marked up again
    cluster.start_sds(1)
    cluster.start_sds(2)
    wait_for("sds2 and sds3 up", lambda: all(s["state"] == "up" for s in cluster.status()["sds"]))


def test_deposed_primary_serves_no_stale_read(cluster):
    wait_for("all SDSs up", lambda: all(s["state"] == "up" and s["connected"]
                                        for s in cluster.status()["sds"]), timeout=60)
    wait_protected(cluster)
    cluster.create_volume("stale", 16 << 20)
    off = 5 << 20
    h = nbd.NBD()
    h.connect_uri(cluster.uri("stale"))
    old = b"O" * 4096
    h.pwrite(old, off)
    h.flush()
    loc = json.loads(cluster.cairn("volume", "locate", "stale", "--offset", str(off),
                                   json_out=True).stdout)
    primary = loc["copies"][0]
    victim = cluster.daemons[primary["sds"]]
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        # the write goes on to the new primary once the old one is declared down
        new = b"N" * 4096
        t0 = time.time()
        h.pwrite(new, off)
        print(f"write after SIGSTOP of the primary took {time.time() - t0:.1f} s")
        assert h.pread(4096, off) == new
        wait_for("the stopped SDS marked down", lambda: any(
            s["name"] == primary["sds"] and s["state"] == "down" for s in cluster.status()["sds"]))
        # every live SDS has the map that says so: it refuses the stopped one a lease
        now = cluster.status()
        victim_id = next(s["id"] for s in now["sds"] if s["name"] == primary["sds"])
        live = [s["addr"] for s in now["sds"] if s["name"] != primary["sds"]]

        def refused_everywhere():
            for addr in live:
                conn = SdsConn(addr, cluster.credential("sds", primary["sds"]))
                try:
                    if conn.ping(victim_id, now["map_version"]) != -errno.ESTALE:
                        return False
                finally:
                    conn.close()
            return True
        wait_for("every live SDS to know the stopped one is down", refused_everywhere)
        # The deposed primary must not learn of its replacement from the MDM:
        # only its lease can stop it from serving.
        cluster.daemons["mdm"].proc.send_signal(signal.SIGSTOP)
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    try:
        # Ask the deposed primary directly, with the old epoch, as a client
        # with a stale map would: it must refuse, never answer the old bytes.
        conn = SdsConn(primary["addr"], cluster.credential("sdc", cluster.sdc_name))
        refused = [0]

        def refuses():
            st, data = conn.call(FT_IO_READ, loc["volume_id"], off, 4096, loc["pool_id"],
                                 loc["pg"], loc["epoch"])
            assert st < 0 or data == new, "a deposed primary served a stale read"
            refused[0] += st < 0
            st, _ = conn.call(FT_IO_WRITE, loc["volume_id"], off, 4096, loc["pool_id"],
                              loc["pg"], loc["epoch"], payload=b"X" * 4096)
            assert st < 0, "a deposed primary acknowledged a write"
            return True
        # over longer than its lease (2 s) would last had it kept one
        hold_for("the deposed primary refusing", refuses, 4, interval=0.05)
        conn.close()
        assert refused[0] > 0
        # the SDC keeps serving from the new primary while the MDM is away
        assert h.pread(4096, off) == new
    finally:
        cluster.daemons["mdm"].proc.send_signal(signal.SIGCONT)
    h.shutdown()
    wait_for("the resumed SDS up again", lambda: all(s["state"] == "up"
                                                     for s in cluster.status()["sds"]), timeout=60)
    wait_protected(cluster)
    r = cluster.cairn("volume", "check-copies", "stale")
    assert r.returncode == 0, r.stdout + r.stderr


def test_device_io_error_fails_over_that_device_only(tmp_path):
    dev = FaultyDevice(tmp_path / "faulty", 1 << 30)
    c = None
    try:
        c = Cluster(tmp_path / "c", sds_sizes=(2 << 30,) * 3, pgs=64,
                    extra_devices={0: [dev.loop]})
        c.start()
        c.create_volume("dev", 128 << 20)
        fio = fio_job(c, "dev", "--size=64M", "--rate_iops=2000")
        wait_load_landing(c, "dev", fio)
        dev.fail()
        fio_result(fio)  # no error reached the client; every block verifies

        def failed_over():
            st = c.status()
            devs = [d for s in st["sds"] for d in s["devices"]]
            bad = [d for d in devs if d["path"] == dev.loop]
            p = st["pools"][0]
            return (bad and bad[0]["failed"] and st["sds"][0]["state"] == "up"
                    and p["pgs_fully_protected"] == p["pg_count"] and p["pgs_rebuilding"] == 0)
        wait_for("the failed device's copies rebuilt elsewhere", failed_over, timeout=120)
        assert "FAILED" in c.cairn("device", "list").stdout
        r = c.cairn("volume", "check-copies", "dev")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        try:
            if c:
                c.shutdown()
        finally:
            dev.close()  # even when the cluster did not stop cleanly


def catchup_lines(cluster):
    """Per SDS, the log lines of catch-ups it led."""
    out = {}
    for n, d in cluster.daemons.items():
        if n.startswith("sds"):
            with open(d.log, errors="replace") as f:
                out[n] = [l for l in f if "catching device" in l]
    return out


def maintenance_round(cluster, h, model, round_, restart_primary, seen):
    cluster.cairn("sds", "maintenance", "enter", "sds4")
    assert cluster.status()["sds"][3]["state"] == "maintenance"
    cluster.daemons["sds4"].stop(signal.SIGTERM)  # the reboot
    touched = set()
    for i in range(12):
        e = (i * 5 + round_) % 64
        data = os.urandom(4096)
        h.pwrite(data, (e << 20) + 8192)
        model[e << 20] = model[e << 20][:8192] + data + model[e << 20][8192 + 4096:]
        touched.add(e)
    e = 63 - round_
    h.trim(1 << 20, e << 20)  # a freed extent must be freed on the returning copy too
    h.zero(1 << 20, e << 20)
    model[e << 20] = b"\0" * (1 << 20)
    touched.add(e)
    h.flush()
    # sds4 is silent: the MDM must not take that for a failure (no rebuild) for
    # longer than it would take to detect one (--sds-timeout 4 s, or 30 s)
    def no_rebuild():
        st = cluster.status()
        return st["pools"][0]["pgs_rebuilding"] == 0 and st["sds"][3]["state"] == "maintenance"
    hold_for("maintenance without a rebuild", no_rebuild, 5)
    if restart_primary:
        # sds1 forgets what changed: the copies it leads are compared instead
        cluster.daemons["sds1"].stop(signal.SIGTERM)
        cluster.start_sds(0)
        wait_for("sds1 back", lambda: cluster.status()["sds"][0]["connected"], timeout=30)
    cluster.start_sds(3)
    wait_for("sds4 connected", lambda: cluster.status()["sds"][3]["connected"], timeout=30)
    cluster.cairn("sds", "maintenance", "exit", "sds4")
    wait_protected(cluster)
    now = catchup_lines(cluster)
    devs = [d["id"] for d in cluster.status()["sds"][3]["devices"]]
    lines = [l for n, ls in now.items() for l in ls[seen.get(n, 0):]
             if any(f"catching device {d} up" in l for d in devs)]
    seen.update({n: len(l) for n, l in now.items()})
    sent = sum(int(l.split(":")[-1].split()[0]) for l in lines if "changed extents" in l)
    print(f"round {round_}: {len(lines)} PGs caught up, {sent} changed extents sent "
          f"for {len(touched)} touched")
    assert lines, "nothing was caught up"
    r = cluster.cairn("volume", "check-copies", "maint")
    assert r.returncode == 0, r.stdout + r.stderr
    return lines, sent, touched


def maintenance_volume(cluster):
    cluster.create_volume("maint", 64 << 20)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("maint"))
    model = {}
    for e in range(64):
        model[e << 20] = os.urandom(1 << 20)
        h.pwrite(model[e << 20], e << 20)
    h.flush()
    return h, model


def test_maintenance_reboot_catches_up_only_changes(cluster):
    wait_for("all SDSs up", lambda: all(s["state"] == "up" for s in cluster.status()["sds"]),
             timeout=60)
    wait_protected(cluster)
    h, model = maintenance_volume(cluster)
    seen = {n: len(l) for n, l in catchup_lines(cluster).items()}
    lines, sent, touched = maintenance_round(cluster, h, model, 1, False, seen)
    assert all("changed extents" in l for l in lines)
    assert sent <= len(touched), "catch-up sent more than what changed"
    for off, data in model.items():
        assert h.pread(len(data), off) == data, f"extent at {off} differs"
    h.shutdown()


def test_maintenance_with_restarted_primary_compares(tmp_path):
    """A primary that restarted during the maintenance lost its record of what
    changed: it compares extent lists with the returning copy instead."""
    # a long heartbeat timeout: the restart must not count as a failure here
    c = Cluster(tmp_path, sds_sizes=(2 << 30,) * 4, pgs=64, mdm_args=["--sds-timeout", "30"])
    try:
        c.start()
        h, model = maintenance_volume(c)
        lines, _, _ = maintenance_round(c, h, model, 2, True, {})
        assert any("comparing" in l for l in lines)
        for off, data in model.items():
            assert h.pread(len(data), off) == data, f"extent at {off} differs"
        h.shutdown()
    finally:
        c.shutdown()


def test_failure_during_rebuild_leaves_one_copy(tmp_path):
    """Three copies; a second SDS dies while the first one's rebuild runs."""
    c = Cluster(tmp_path, sds_sizes=(2 << 30,) * 4, pgs=64, copies=3,
                sds_args=["--rebuild-rate", "8"])
    try:
        c.start()
        c.create_volume("three", 256 << 20)
        r = subprocess.run(["fio", "--name=fill", "--ioengine=nbd", f"--uri={c.uri('three')}",
                            "--rw=write", "--bs=1M", "--iodepth=8", "--size=160M",
                            "--verify=crc32c", "--verify_state_save=0", "--do_verify=0"], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr
        fio = fio_job(c, "three", "--size=32M", "--offset=192M", "--rate_iops=1000")
        c.daemons["sds2"].stop(signal.SIGKILL)
        wait_for("the rebuild to be under way", lambda: c.status()["rebuild"]["pg_copies_left"] > 0,
                 timeout=60)
        c.daemons["sds3"].stop(signal.SIGKILL)
        fio_result(fio)  # I/O went on with one copy left of some PGs
        p = c.status()["pools"][0]
        assert p["pgs_no_copy"] == 0 and p["pgs_degraded"] > 0
        c.start_sds(1)
        c.start_sds(2)
        wait_protected(c, timeout=240)
        for name, size, off in (("fill", "160M", "0"), ("load", "32M", "192M")):
            r = subprocess.run(["fio", f"--name={name}", "--ioengine=nbd", f"--uri={c.uri('three')}",
                                "--rw=write" if name == "fill" else "--rw=randwrite",
                                "--bs=1M" if name == "fill" else "--bs=4k", f"--size={size}",
                                f"--offset={off}", "--verify=crc32c", "--verify_state_save=0", "--verify_only",
                                "--verify_fatal=1"], capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        r = c.cairn("volume", "check-copies", "three")
        assert r.returncode == 0 and "3 copies" in r.stdout, r.stdout + r.stderr
    finally:
        c.shutdown()


def test_failed_sds_back_within_grace_catches_up(tmp_path):
    """kill -9, writes meanwhile, back before its copies were rebuilt elsewhere:
    it catches up with what changed instead of being rebuilt from scratch."""
    c = Cluster(tmp_path, sds_sizes=(2 << 30,) * 4, pgs=64, sds_args=["--rebuild-rate", "2"])
    try:
        c.start()
        c.create_volume("grace", 256 << 20)
        h = nbd.NBD()
        h.connect_uri(c.uri("grace"))
        model = {}
        for e in range(0, 192):
            model[e] = os.urandom(256 << 10)
            h.pwrite(model[e], e << 20)
        h.flush()
        c.daemons["sds2"].stop(signal.SIGKILL)
        wait_for("sds2 down", lambda: c.status()["sds"][1]["state"] == "down", timeout=30)
        for e in range(0, 192, 7):  # written while it is away
            model[e] = os.urandom(256 << 10)
            h.pwrite(model[e], e << 20)
        h.flush()
        st = c.status()
        print("rebuild:", st["rebuild"], "pools:", st["pools"][0]["pgs_rebuilding"])
        assert st["pools"][0]["pgs_rebuilding"] > 0, "rebuild finished too soon to test"
        c.start_sds(1)
        wait_protected(c, timeout=240)
        lines = catchup_lines(c)
        caught = [l for ls in lines.values() for l in ls if "changed extents" in l]
        print(f"{len(caught)} PGs caught up")
        assert caught, "the returning SDS was not caught up"
        for e, data in model.items():
            assert h.pread(len(data), e << 20) == data
        h.shutdown()
        r = c.cairn("volume", "check-copies", "grace")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        c.shutdown()
