"""The data path's metrics: cairn-sdc and cairn-sds serve Prometheus text at
/metrics (--metrics-listen), whose counters move by exactly the I/O an NBD
client makes, and the MDM turns the SDC's heartbeats into live per-volume
rates in its status reply.

Scraped with urllib and parsed by prom.py, which refuses what Prometheus
would (a sample outside a declared family, a malformed line)."""
import os
import struct
import subprocess
import threading
import urllib.error
import urllib.request

import nbd
import pytest

import prom
from cairnproto import FT_MGMT, Conn
from cluster import SANITIZER_MARKS, Cluster, free_ports, lone_credential, wait_for, write_private

BLK = 4096


@pytest.fixture(scope="module")
def mc(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("metrics"), metrics=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


def sdc(c):
    return prom.scrape(c.metrics_addrs["sdc"], c.metrics_token)


def sdss(c):
    return [prom.scrape(c.metrics_addrs[f"sds{i + 1}"], c.metrics_token) for i in sorted(c.members)]


def total(scrapes, name, **labels):
    return sum(m.sum(name, **labels) for m in scrapes)


def test_exposition_parses_and_other_paths_404(mc):
    for name in ["sdc"] + [f"sds{i + 1}" for i in sorted(mc.members)]:
        addr = mc.metrics_addrs[name]
        status, body = prom.get(addr, "/metrics", mc.metrics_token)
        assert status == 200
        m = prom.Exposition(body)  # raises on a sample outside a # TYPE family
        assert m.types, f"{name}: no families"
        assert prom.get(addr, "/", mc.metrics_token)[0] == 404
        assert prom.get(addr, "/metrics/x", mc.metrics_token)[0] == 404
    s = sdc(mc)
    assert s.value("cairn_sdc_map_version", sdc="sdc1") > 0
    for fam in ("cairn_sdc_retries_total", "cairn_sdc_io_timeouts_total",
                "cairn_sdc_nbd_connections", "cairn_sdc_requests_in_flight",
                "cairn_sdc_io_memory_bytes"):
        assert s.has(fam), fam
    for m, i in zip(sdss(mc), sorted(mc.members)):
        devs = m.samples("cairn_sds_device_capacity_bytes")
        assert len(devs) == 1
        labels, cap = devs[0]
        assert labels["sds"] == f"sds{i + 1}" and labels["device"].endswith(f"dev{i + 1}.img")
        assert int(labels["device_id"]) > 0 and cap > 0
        assert m.value("cairn_sds_device_failed") == 0
        assert m.value("cairn_sds_device_free_bytes") == cap - m.value("cairn_sds_device_used_bytes")
        for kind in ("rebuild", "rebalance"):
            assert m.samples("cairn_sds_rebuild_bytes_total", kind=kind)
            assert m.samples("cairn_sds_rebuild_pgs_left", kind=kind)
        assert m.has("cairn_sds_rebuild_rate_bytes_per_second")
        assert m.has("cairn_sds_rebuild_received_bytes_total")
        assert m.value("cairn_sds_connections", sds=f"sds{i + 1}") >= 0


def test_metrics_need_the_token(mc):
    """Every daemon's /metrics: no token, a wrong one (or the right one
    in another scheme) get 401 with a Bearer challenge and no series, on
    any path; each refusal is logged with the peer's address."""
    wrong = "0" * 64
    for name in ["mdm", "sdc"] + [f"sds{i + 1}" for i in sorted(mc.members)]:
        addr = mc.metrics_addrs[name]
        for path in ("/metrics", "/", "/metrics/x"):
            status, headers, body = prom.get_full(addr, path)
            assert status == 401, (name, path, status)
            assert headers["WWW-Authenticate"] == 'Bearer realm="cairn"', (name, headers)
            assert "cairn_" not in body, (name, body)
        status, headers, body = prom.get_full(addr, "/metrics", wrong)
        assert status == 401 and "cairn_" not in body, (name, status)
        assert headers["WWW-Authenticate"] == 'Bearer realm="cairn", error="invalid_token"'
        assert prom.get(addr, "/metrics", mc.metrics_token[:-1])[0] == 401  # a prefix
        assert prom.get(addr, "/metrics", mc.metrics_token + "0")[0] == 401
        status, _, _ = prom.get_full(addr, "/metrics", f"{mc.metrics_token} {mc.metrics_token}")
        assert status == 401
        # the right token, but not as a bearer token
        req = urllib.request.Request(f"http://{addr}/metrics",
                                     headers={"Authorization": f"Basic {mc.metrics_token}"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 401
        assert prom.get(addr, "/metrics", mc.metrics_token)[0] == 200

        def logged(d=mc.daemons[name]):
            with open(d.log, errors="replace") as f:
                return "http: refused GET /metrics from 127.0.0.1:" in f.read()
        wait_for(f"{name} to log the refusal", logged, timeout=10)


def daemon_argv(c, tmp, name, metrics_port):
    """The command line of daemon name ("mdm", "sds", "sdc") with metrics on
    metrics_port, for a cluster that is not there (it must not start)."""
    l1, l2, l3 = free_ports(3)
    d = os.path.join(tmp, name)
    return {"mdm": [f"{c.build}/mgmt/cairn-mdm", "--data-dir", d, "--listen", f"127.0.0.1:{l1}",
                    "--raft-addr", f"127.0.0.1:{l2}"],
            "sds": [f"{c.build}/server/cairn-sds", "--name", "lone-sds", "--listen",
                    f"127.0.0.1:{l1}", "--mdm", f"127.0.0.1:{l2}", "--data-dir", d],
            "sdc": [f"{c.build}/client/cairn-sdc", "--mdm", f"127.0.0.1:{l2}", "--data-dir", d,
                    "--nbd-listen", f"127.0.0.1:{l3}"]}[name] + \
        ["--credentials", lone_credential(name)] + \
        ["--metrics-listen", f"127.0.0.1:{metrics_port}"]


def test_token_file_others_may_read_refused(mc, tmp_path):
    """No daemon starts its metrics with a token file that group or others
    may read, nor without one; each says what to do."""
    tok = write_private(str(tmp_path / "metrics.token"), "a" * 64 + "\n")
    port = free_ports(1)[0]
    for name in ("mdm", "sds", "sdc"):
        argv = daemon_argv(mc, str(tmp_path), name, port)
        for mode in (0o644, 0o660):
            os.chmod(tok, mode)
            r = subprocess.run(argv + ["--metrics-token-file", tok], capture_output=True,
                               text=True, timeout=60)
            assert r.returncode == 1, (name, mode, r.returncode, r.stderr)
            assert f"--metrics-token-file {tok}: the file is readable or writable by group or " \
                   f"others (mode 0{mode:o})" in r.stderr and f"chmod 600 {tok}" in r.stderr, \
                r.stderr
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "needs --metrics-token-file FILE" in r.stderr, (name, r.stderr)
        for mark in SANITIZER_MARKS:
            assert mark not in r.stderr, (name, r.stderr)


def test_counters_move_by_exactly_the_io(mc):
    mc.create_volume("mv", 64 << 20)
    vol = {"volume": "mv", "sdc": "sdc1"}
    n = 300
    data = [os.urandom(BLK) for _ in range(8)]
    h = nbd.NBD()
    h.connect_uri(mc.uri("mv"))
    try:
        s0, d0 = sdc(mc), sdss(mc)
        assert s0.value("cairn_sdc_nbd_connections") >= 1
        for i in range(n):
            h.pwrite(data[i % 8], i * BLK)
        s1, d1 = sdc(mc), sdss(mc)
        for i in range(n):
            assert h.pread(BLK, i * BLK) == data[i % 8]
        h.flush()
        s2 = sdc(mc)
        # a read past the end, let through by the client, is answered with
        # an error: counted as a read and as an error, with no bytes
        h.set_strict_mode(0)
        with pytest.raises(nbd.Error):
            h.pread(BLK, 64 << 20)
        s3 = sdc(mc)
    finally:
        h.shutdown()

    def d(a, b, name, **kw):
        return b.value(name, **vol, **kw) - a.value(name, **vol, **kw)
    assert d(s0, s1, "cairn_sdc_volume_writes_total") == n
    assert d(s0, s1, "cairn_sdc_volume_written_bytes_total") == n * BLK
    assert d(s0, s1, "cairn_sdc_volume_reads_total") == 0
    assert d(s1, s2, "cairn_sdc_volume_reads_total") == n
    assert d(s1, s2, "cairn_sdc_volume_read_bytes_total") == n * BLK
    assert d(s1, s2, "cairn_sdc_volume_writes_total") == 0
    assert d(s1, s2, "cairn_sdc_volume_other_requests_total", op="flush") == 1
    assert d(s0, s2, "cairn_sdc_volume_errors_total") == 0
    assert d(s2, s3, "cairn_sdc_volume_reads_total") == 1
    assert d(s2, s3, "cairn_sdc_volume_errors_total") == 1
    assert d(s2, s3, "cairn_sdc_volume_read_bytes_total") == 0
    # the histograms count every request their counter does
    for m in (s1, s2, s3):
        assert (m.value("cairn_sdc_volume_write_latency_seconds_count", **vol)
                == m.value("cairn_sdc_volume_writes_total", **vol))
        assert (m.value("cairn_sdc_volume_read_latency_seconds_count", **vol)
                == m.value("cairn_sdc_volume_reads_total", **vol))
        inf = m.value("cairn_sdc_volume_write_latency_seconds_bucket", **vol, le="+Inf")
        assert inf == m.value("cairn_sdc_volume_write_latency_seconds_count", **vol)
    # the latency is of these writes: more than nothing, well under a second each
    lat = (d(s0, s1, "cairn_sdc_volume_write_latency_seconds_sum")
           / d(s0, s1, "cairn_sdc_volume_write_latency_seconds_count"))
    assert 0 < lat < 1.0

    # every byte reached every copy's device (metadata and whole-slot
    # allocation come on top), and the new extent took a slot on each
    copies = mc.copies
    assert (total(d1, "cairn_sds_device_written_bytes_total")
            - total(d0, "cairn_sds_device_written_bytes_total")) >= copies * n * BLK
    assert (total(d1, "cairn_sds_device_writes_total")
            - total(d0, "cairn_sds_device_writes_total")) >= copies * n
    assert (total(d1, "cairn_sds_device_used_bytes")
            - total(d0, "cairn_sds_device_used_bytes")) >= copies * (1 << 20)
    # the primaries took the writes, the other copies their forwards
    assert (total(d1, "cairn_sds_requests_total", op="write")
            - total(d0, "cairn_sds_requests_total", op="write")) >= n
    assert (total(d1, "cairn_sds_requests_total", op="replica_write")
            - total(d0, "cairn_sds_requests_total", op="replica_write")) >= (copies - 1) * n
    for m in d1:
        assert (m.value("cairn_sds_request_latency_seconds_count", op="write")
                == m.value("cairn_sds_requests_total", op="write"))
        assert m.value("cairn_sds_device_queue_depth") >= 0

    # nothing in flight once the client is gone
    def idle():
        m = sdc(mc)
        return (m.value("cairn_sdc_nbd_connections") == 0
                and m.value("cairn_sdc_requests_in_flight") == 0
                and m.value("cairn_sdc_io_memory_bytes") == 0)
    wait_for("the SDC idle", idle)
    wait_for("the SDSs idle", lambda: all(m.value("cairn_sds_requests_in_flight") == 0
                                          and m.value("cairn_sds_io_memory_bytes") == 0
                                          for m in sdss(mc)))


def test_unmapped_volume_disappears(mc):
    mc.create_volume("gone", 16 << 20)
    wait_for("the volume's series", lambda: sdc(mc).samples("cairn_sdc_volume_writes_total",
                                                            volume="gone"))
    mc.cairn("volume", "unmap", "gone", "--sdc", mc.sdc_name)
    wait_for("the volume's series gone",
             lambda: not sdc(mc).samples("cairn_sdc_volume_writes_total", volume="gone"))


FT_MGMT = 2
RATE_FIELDS = {2: "read_iops", 3: "write_iops", 4: "read_bytes_per_sec",
               5: "write_bytes_per_sec", 6: "read_latency_us", 7: "write_latency_us"}


def pb_fields(b):
    """The (field number, value) pairs of a protobuf message: varints as
    ints, fixed64 as doubles, length-delimited as bytes (just what a
    MgmtReply's volume_io needs)."""
    out, i = [], 0

    def varint():
        nonlocal i
        v, shift = 0, 0
        while True:
            c = b[i]
            i += 1
            v |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                return v
    while i < len(b):
        key = varint()
        field, wt = key >> 3, key & 7
        if wt == 0:
            out.append((field, varint()))
        elif wt == 1:
            out.append((field, struct.unpack("<d", b[i:i + 8])[0]))
            i += 8
        elif wt == 2:
            n = varint()
            out.append((field, b[i:i + n]))
            i += n
        elif wt == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wt}")
    return out


def mdm_volume_io(c):
    """The MDM's status reply's volume_io, read over the request API itself
    (OP_STATUS): {volume id: {rate name: value}}."""
    conn = Conn(c.mdm_addr, c.credential("monitor", "monitor"))
    try:
        status, reply, _ = conn.request(FT_MGMT, b"\x08\x01")  # MgmtRequest{op: OP_STATUS}
        assert status == 0
    finally:
        conn.close()
    rates = {}
    for field, v in pb_fields(reply):
        if field == 6:
            r = {name: 0.0 for name in RATE_FIELDS.values()}
            vid = 0
            for f2, v2 in pb_fields(v):
                if f2 == 1:
                    vid = v2
                elif f2 in RATE_FIELDS:
                    r[RATE_FIELDS[f2]] = v2
            rates[vid] = r
    return rates


def volume_id(c, name):
    st = c.status()
    return next(v["id"] for v in st["volumes"] if v["name"] == name)


def cli_volume_io(c, name):
    """The "io" of volume name in the CLI's JSON status, or None if the CLI
    does not print it."""
    st = c.status()
    for v in st.get("volumes", []):
        if v.get("name") == name:
            return v.get("io")
    return None


def test_mdm_shows_live_rates(mc):
    mc.create_volume("live", 64 << 20)
    vid = volume_id(mc, "live")
    # served (mapped to a connected SDC), idle: listed with zero rates
    idle = wait_for("the volume in the MDM's status", lambda: mdm_volume_io(mc).get(vid))
    assert idle["write_iops"] == 0 and idle["read_iops"] == 0
    stop = threading.Event()
    errors = []

    def writer():
        try:
            h = nbd.NBD()
            h.connect_uri(mc.uri("live"))
            buf, i = os.urandom(BLK), 0
            while not stop.is_set():
                h.pwrite(buf, (i % 4096) * BLK)
                if i % 4 == 0:
                    h.pread(BLK, (i % 4096) * BLK)
                i += 1
            h.shutdown()
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
    t = threading.Thread(target=writer)
    t.start()
    try:
        def busy():
            r = mdm_volume_io(mc).get(vid)
            return r if r and r["write_iops"] > 0 and r["read_iops"] > 0 else None
        io = wait_for("write and read IOPS in the MDM's status", busy, timeout=30)
        assert io["write_bytes_per_sec"] == pytest.approx(io["write_iops"] * BLK, rel=1e-6)
        assert io["read_bytes_per_sec"] == pytest.approx(io["read_iops"] * BLK, rel=1e-6)
        assert 0 < io["write_latency_us"] < 1e6 and 0 < io["read_latency_us"] < 1e6
        assert io["write_iops"] > io["read_iops"]  # one read per four writes
        cli = cli_volume_io(mc, "live")
        if cli is not None:  # once the CLI prints it, it must say the same thing
            wait_for("write IOPS in the CLI's status",
                     lambda: (cli_volume_io(mc, "live") or {}).get("write_iops", 0) > 0)
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    # idle again: the rates fall back to zero with the next heartbeats
    wait_for("idle rates", lambda: mdm_volume_io(mc)[vid]["write_iops"] == 0, timeout=30)


def test_rebalance_counted_apart_from_rebuild(tmp_path):
    """Adding an SDS moves copies to it: the primaries count that as
    rebalance, not as rebuild, and the new SDS as bytes received."""
    c = Cluster(tmp_path, sds_sizes=(2 << 30, 2 << 30, 2 << 30, 2 << 30), pgs=64, initial=3,
                metrics=True)
    try:
        c.start()
        c.create_volume("rb", 64 << 20)
        h = nbd.NBD()
        h.connect_uri(c.uri("rb"))
        buf = os.urandom(1 << 20)
        for i in range(32):
            h.pwrite(buf, i << 20)
        h.flush()
        h.shutdown()
        c.add_sds(3)

        def moved():
            ms = sdss(c)
            return (total(ms, "cairn_sds_rebuild_bytes_total", kind="rebalance") > 0
                    and total(ms, "cairn_sds_rebuild_received_bytes_total") > 0 and ms)
        ms = wait_for("copies moved to the new SDS", moved, timeout=120)
        assert total(ms, "cairn_sds_rebuild_bytes_total", kind="rebuild") == 0
        new = prom.scrape(c.metrics_addrs["sds4"], c.metrics_token)
        assert new.value("cairn_sds_rebuild_received_bytes_total") > 0
        wait_for("the rebalance done", lambda: total(
            sdss(c), "cairn_sds_rebuild_pgs_left", kind="rebalance") == 0, timeout=120)
    finally:
        c.shutdown()
