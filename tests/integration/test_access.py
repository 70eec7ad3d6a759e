"""Approved clients only, and SDSs serve an SDC only what is mapped to it.

Restricted SDC mode (the default): a new SDC is pending until `cairn sdc
approve`, gets no export and cannot be mapped. Every SDS checks each I/O of
a peer with an SDC credential against its map: that SDC approved, the
volume mapped to it, read-write for a change; otherwise -EACCES. An unmap
returns once every SDS refuses. The requests the SDSs are asked directly
here are sent with cairnproto.SdsConn under the SDC's own credential, as a
misbehaving (or stale) SDC would send them.
"""
import errno
import json
import os
import re
import subprocess
import threading
import time

import nbd
import pytest

from cairnproto import FT_IO_READ, FT_IO_WRITE, SdsConn
from cluster import free_ports, wait_for

FT_IO_STAT = 21
BLOCK = 4096


@pytest.fixture(scope="module")
def sdc2(cluster):
    """A second SDC, 'sdc2', started here: it registers pending."""
    port = free_ports(1)[0]
    d = cluster._daemon("sdc2", [
        f"{cluster.build}/client/cairn-sdc", "--mdm", cluster.mdm_addr,
        "--data-dir", f"{cluster.dir}/sdc2", "--name", "sdc2",
        "--nbd-listen", f"127.0.0.1:{port}", "--io-timeout", "60",
        "--credentials", cluster.credential("sdc", "sdc2")])
    d.start()
    d.uri = lambda vol: f"nbd://127.0.0.1:{port}/{vol}"
    d.unix_uri = f"nbd+unix:///?socket={cluster.dir}/sdc2/nbd.sock"
    try:
        wait_for("sdc2 registered", lambda: sdc_entry(cluster, "sdc2"))
        yield d
    finally:
        d.stop()
        d.check_log()


def sdc_entry(cluster, name):
    sdcs = json.loads(cluster.cairn("sdc", "list", json_out=True).stdout)
    return next((s for s in sdcs if s["name"] == name), None)


def approve(cluster, name):
    cluster.cairn("sdc", "approve", name)
    assert sdc_entry(cluster, name)["state"] == "approved"


def listed(uri):
    """The export names an NBD server lists (nbdinfo --list)."""
    r = subprocess.run(["nbdinfo", "--list", "--json", uri], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return [e["export-name"] for e in json.loads(r.stdout)["exports"]]


def wait_listed(uri, name):
    wait_for(f"export {name} at {uri}", lambda: name in listed(uri))


def pattern(tag, n=BLOCK):
    b = tag.encode()
    return (b * (n // len(b) + 1))[:n]


def nbd_write(uri, data, off=0):
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pwrite(data, off)
    h.flush()
    h.shutdown()


def nbd_read(uri, n, off=0):
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        return h.pread(n, off)
    finally:
        h.shutdown()


def locate(cluster, vol, off):
    return json.loads(cluster.cairn("volume", "locate", vol, "--offset", str(off),
                                    json_out=True).stdout)


def sds_log(cluster, name):
    with open(cluster.daemons[name].log, "rb") as f:
        return f.read().decode(errors="replace")


def test_pending_sdc_gets_nothing_until_approved(cluster, sdc2):
    # registered pending, and the MDM says how to approve it
    assert sdc_entry(cluster, "sdc2")["state"] == "pending"
    assert sdc_entry(cluster, cluster.sdc_name)["state"] == "approved"
    text = cluster.cairn("sdc", "list").stdout
    assert re.search(r"^sdc2\s+\S+\s+pending\s+-$", text, re.M), text
    mdm_log = sds_log(cluster, "mdm")
    assert re.search(r"SDC 'sdc2' from \S+ is pending approval: cairn sdc approve sdc2",
                     mdm_log), mdm_log[-2000:]

    cluster.cairn("volume", "create", "acc1", "--size", "16M")
    r = cluster.cairn("volume", "map", "acc1", "--sdc", "sdc2", check=False)
    assert r.returncode != 0
    assert ("SDC 'sdc2' is pending approval: approve it first with 'cairn sdc approve sdc2'"
            in r.stderr), r.stderr
    st = cluster.status()
    assert next(v for v in st["volumes"] if v["name"] == "acc1")["mapped_to"] == []
    assert listed(sdc2.unix_uri) == []

    # a monitor may look, not approve
    mon = cluster.credential("monitor", "mon1")
    r = subprocess.run([f"{cluster.build}/mgmt/cairn", "--mdm", cluster.mdm_addr,
                        "--credentials", mon, "sdc", "approve", "sdc2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "permission denied" in r.stderr, r.stderr
    assert sdc_entry(cluster, "sdc2")["state"] == "pending"
    r = cluster.cairn("sdc", "approve", "nosuch", check=False)
    assert r.returncode != 0 and "no SDC named 'nosuch'" in r.stderr, r.stderr

    approve(cluster, "sdc2")
    assert cluster.cairn("volume", "map", "acc1", "--sdc", "sdc2").stdout == "ok\n"
    wait_listed(sdc2.unix_uri, "acc1")
    data = os.urandom(1 << 20)
    nbd_write(sdc2.uri("acc1"), data, 3 * BLOCK)
    assert nbd_read(sdc2.uri("acc1"), len(data), 3 * BLOCK) == data


def test_restricted_mode_setting(cluster):
    r = cluster.cairn("cluster", "set", "--restricted-sdc", "maybe", check=False)
    assert r.returncode != 0 and "on or off" in r.stderr, r.stderr
    # the setting is state: turning it off and on again is seen by the
    # state machine (an SDC registering meanwhile would be approved)
    assert "off" in cluster.cairn("cluster", "set", "--restricted-sdc", "off").stdout
    assert "on" in cluster.cairn("cluster", "set", "--restricted-sdc", "on").stdout


def written_through_sdc1(cluster, vol, tag):
    """A volume mapped to sdc1 alone, its first extent full of tag."""
    cluster.create_volume(vol, 16 << 20)
    data = pattern(tag, 1 << 20)
    nbd_write(cluster.uri(vol), data)
    return data


def test_sds_refuses_a_volume_not_mapped_to_the_sdc(cluster, sdc2):
    approve(cluster, "sdc2")
    data = written_through_sdc1(cluster, "acc2", "sdc1-data ")
    loc = locate(cluster, "acc2", 0)
    args = (loc["volume_id"], 0, BLOCK, loc["pool_id"], loc["pg"], loc["epoch"])
    primary = loc["copies"][0]

    # the SDC it is mapped to is served: the check is not a blanket refusal
    own = SdsConn(primary["addr"], cluster.credential("sdc", cluster.sdc_name))
    st, got = own.call(FT_IO_READ, *args)
    assert st == 0 and got == data[:BLOCK]
    own.close()

    other = SdsConn(primary["addr"], cluster.credential("sdc", "sdc2"))
    want = re.compile(r"refused a change from SDC 'sdc2' at \S+ for volume %d \('acc2'\): "
                      r"not mapped to it" % loc["volume_id"])

    def refused_and_logged():
        # the line is rate-limited (one per 5 s per call site)
        assert other.call(FT_IO_WRITE, *args, payload=b"Z" * BLOCK)[0] == -errno.EACCES
        return want.search(sds_log(cluster, primary["sds"]))
    wait_for("the refusal logged", refused_and_logged, timeout=20, interval=0.5)
    st, got = other.call(FT_IO_READ, *args)
    assert st == -errno.EACCES and got == b""
    assert other.call(FT_IO_STAT, *args)[0] == -errno.EACCES
    other.close()
    # an SDC the cluster never approved (nor saw): refused alike
    ghost = SdsConn(primary["addr"], cluster.credential("sdc", "ghost"))
    assert ghost.call(FT_IO_READ, *args)[0] == -errno.EACCES
    ghost.close()

    assert nbd_read(cluster.uri("acc2"), 1 << 20) == data


def test_read_only_mapping_refuses_changes(cluster, sdc2):
    approve(cluster, "sdc2")
    data = written_through_sdc1(cluster, "acc3", "ro-data ")
    cluster.cairn("volume", "map", "acc3", "--sdc", "sdc2", "--read-only")
    wait_listed(sdc2.unix_uri, "acc3")
    loc = locate(cluster, "acc3", 0)
    args = (loc["volume_id"], 0, BLOCK, loc["pool_id"], loc["pg"], loc["epoch"])
    primary = loc["copies"][0]

    c = SdsConn(primary["addr"], cluster.credential("sdc", "sdc2"))
    want = re.compile(r"refused a change from SDC 'sdc2' at \S+ for volume %d \('acc3'\): "
                      r"mapped read-only" % loc["volume_id"])

    def refused_and_logged():
        # the line is rate-limited (one per 5 s per call site): refusals go
        # on until it is written
        assert c.call(FT_IO_WRITE, *args, payload=b"W" * BLOCK)[0] == -errno.EACCES
        return want.search(sds_log(cluster, primary["sds"]))
    wait_for("the refusal logged", refused_and_logged, timeout=20, interval=0.5)
    st, got = c.call(FT_IO_READ, *args)
    assert st == 0 and got == data[:BLOCK]
    assert c.call(FT_IO_STAT, *args)[0] == 1  # allocated
    c.close()
    # reads work through its export too; the data is unchanged
    assert nbd_read(sdc2.uri("acc3"), 1 << 20) == data
    assert nbd_read(cluster.uri("acc3"), 1 << 20) == data


def test_unmap_stops_a_running_writer(cluster, sdc2):
    """Two writers of sdc2 run while acc4 is unmapped from it: one through
    its NBD export (blocks 1..), one straight to the SDS of block 0 (as an
    SDC that ignored its map would). Every write either side starts after
    `cairn volume unmap` returned is refused, and none of them lands."""
    approve(cluster, "sdc2")
    cluster.cairn("volume", "create", "acc4", "--size", "16M")
    cluster.cairn("volume", "map", "acc4", "--sdc", "sdc2")
    wait_listed(sdc2.unix_uri, "acc4")
    loc = locate(cluster, "acc4", 0)
    args = (loc["volume_id"], 0, BLOCK, loc["pool_id"], loc["pg"], loc["epoch"])
    primary = loc["copies"][0]

    stop = threading.Event()
    raw_log, nbd_log = [], []  # (seq, started, finished, status)

    def raw_writer():
        c = SdsConn(primary["addr"], cluster.credential("sdc", "sdc2"))
        # acc4 is single-writer: a change carries the fence of sdc2's claim,
        # which its NBD writer's connection made (docs/attach.md)
        gen = wait_for("sdc2's claim", lambda: json.loads(cluster.cairn(
            "volume", "show", "acc4", json_out=True).stdout)["writer_generation"])
        seq = 0
        while not stop.is_set():
            seq += 1
            t0 = time.monotonic()
            st, _ = c.call(FT_IO_WRITE, *args, payload=pattern(f"raw{seq:08d} "), writer_gen=gen)
            raw_log.append((seq, t0, time.monotonic(), st))
        c.close()

    def nbd_writer():
        h = nbd.NBD()
        h.connect_uri(sdc2.uri("acc4"))
        seq = 0
        while not stop.is_set():
            seq += 1
            t0 = time.monotonic()
            try:
                h.pwrite(pattern(f"nbd{seq:08d} "), BLOCK * (1 + seq % 64))
                st = 0
            except nbd.Error as e:
                st = -(e.errnum or errno.EIO)
            nbd_log.append((seq, t0, time.monotonic(), st))
        h.shutdown()

    threads = [threading.Thread(target=raw_writer), threading.Thread(target=nbd_writer)]
    for t in threads:
        t.start()
    try:
        wait_for("both writers under way",
                 lambda: sum(e[3] == 0 for e in raw_log) >= 100
                 and sum(e[3] == 0 for e in nbd_log) >= 100, timeout=60)
        t_cmd = time.monotonic()
        cluster.cairn("volume", "unmap", "acc4", "--sdc", "sdc2")
        t_ret = time.monotonic()
        # keep writing for a while after: a second of tries, all refused
        wait_for("writes after the unmap",
                 lambda: sum(e[1] > t_ret for e in raw_log) >= 50
                 and time.monotonic() > t_ret + 1, timeout=60)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    after_raw = [e for e in raw_log if e[1] > t_ret]
    after_nbd = [e for e in nbd_log if e[1] > t_ret]
    assert after_raw and after_nbd
    assert all(e[3] == -errno.EACCES for e in after_raw), after_raw[:5]
    assert all(e[3] < 0 for e in after_nbd), after_nbd[:5]
    first_refused = min(e[2] for e in raw_log if e[3] == -errno.EACCES)
    print(f"\nunmap: the CLI took {(t_ret - t_cmd) * 1000:.0f} ms; the SDS refused the "
          f"first write {(first_refused - t_cmd) * 1000:.0f} ms after the command started "
          f"({(first_refused - t_ret) * 1000:.0f} ms from its return)")

    # what landed: read through sdc1, each block names the write that wrote it
    last_raw_before = max(e[0] for e in raw_log if e[1] <= t_ret)
    last_nbd_before = max(e[0] for e in nbd_log if e[1] <= t_ret)
    cluster.cairn("volume", "map", "acc4", "--sdc", cluster.sdc_name)
    cluster.wait_export("acc4")
    content = nbd_read(cluster.uri("acc4"), 65 * BLOCK)
    seen_raw = re.match(rb"raw(\d{8}) ", content[:BLOCK])
    assert seen_raw and int(seen_raw.group(1)) <= last_raw_before, content[:32]
    for b in range(1, 65):
        m = re.match(rb"nbd(\d{8}) ", content[b * BLOCK:(b + 1) * BLOCK])
        if m:
            assert int(m.group(1)) <= last_nbd_before, (b, m.group(0), last_nbd_before)
    assert "refused a change from SDC 'sdc2'" in sds_log(cluster, primary["sds"])
