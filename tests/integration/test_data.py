"""Data written through real NBD clients reads back identical."""
import json
import os
import subprocess
import time

import nbd

from cluster import Cluster, wait_for
from devices import LoggedDevice


def run(*argv, **kw):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert r.returncode == 0, f"{argv[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def nbd_map(uri):
    return json.loads(run("nbdinfo", "--map", "--json", uri).stdout)


def test_list_and_map_holes_then_data(cluster):
    cluster.create_volume("maps", 64 << 20)
    listed = json.loads(run("nbdinfo", "--list", "--json", cluster.uri("")).stdout)
    names = [e["export-name"] for e in listed["exports"]]
    assert "maps" in names
    m = nbd_map(cluster.uri("maps"))
    assert m == [{"offset": 0, "length": 64 << 20, "type": 3, "description": "hole,zero"}]
    h = nbd.NBD()
    h.connect_uri(cluster.uri("maps"))
    h.pwrite(b"\x5a" * 4096, (5 << 20) + 512)
    h.flush()
    assert h.pread(4096, (5 << 20) + 512) == b"\x5a" * 4096
    assert h.pread(512, 5 << 20) == b"\0" * 512  # the rest of a new extent reads zeroes
    h.shutdown()
    m = nbd_map(cluster.uri("maps"))
    data = [e for e in m if e["type"] == 0]
    assert data == [{"offset": 5 << 20, "length": 1 << 20, "type": 0, "description": "data"}], m
    assert sum(e["length"] for e in m) == 64 << 20


def test_nbdcopy_256m_roundtrip(cluster, tmp_path):
    cluster.create_volume("copy", 512 << 20)
    src, out = tmp_path / "src.bin", tmp_path / "out.bin"
    with open(src, "wb") as f:
        f.write(os.urandom(256 << 20))
    run("nbdcopy", "--flush", str(src), cluster.uri("copy"))
    run("nbdcopy", cluster.uri("copy"), str(out))
    assert os.path.getsize(out) == 512 << 20
    run("cmp", "-n", str(256 << 20), str(src), str(out))
    # the unwritten tail reads as zeroes
    with open(out, "rb") as f:
        f.seek(256 << 20)
        assert f.read(1 << 20) == b"\0" * (1 << 20)
    # over the unix socket too
    out2 = tmp_path / "out2.bin"
    run("nbdcopy", cluster.unix_uri("copy"), str(out2))
    run("cmp", str(out), str(out2))


def test_qemu_img_convert_and_compare(cluster, tmp_path):
    cluster.create_volume("qemu", 128 << 20)
    img = tmp_path / "img.raw"
    with open(img, "wb") as f:
        f.truncate(128 << 20)
        for off in range(0, 128 << 20, 7 << 20):
            f.seek(off)
            f.write(os.urandom(300 << 10))
    run("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", str(img), cluster.uri("qemu"))
    run("qemu-img", "compare", "-f", "raw", "-F", "raw", str(img), cluster.uri("qemu"))
    mp = json.loads(run("qemu-img", "map", "--output=json", "-f", "raw", cluster.uri("qemu")).stdout)
    assert any(e["data"] for e in mp) and any(not e["data"] for e in mp)


def test_qemu_io_commands(cluster):
    cluster.create_volume("qio", 16 << 20)
    run("qemu-io", "-f", "raw", "-c", "write -P 0x55 0 1M", "-c", "write -z 1M 1M",
        "-c", "discard 2M 1M", "-c", "write -f 3M 4k", "-c", "flush",
        "-c", "read -P 0x55 0 1M", "-c", "read -P 0 1M 1M", "-c", "read -P 0xcd 3M 4k",
        cluster.uri("qio"))


def fio(cluster, vol, *extra):
    r = run("fio", "--name=v", "--ioengine=nbd", f"--uri={cluster.uri(vol)}", "--verify=crc32c", "--verify_state_save=0",
            "--verify_fatal=1", "--do_verify=1", "--output-format=json", *extra, timeout=900)
    res = json.loads(r.stdout[r.stdout.index("{"):])
    job = res["jobs"][0]
    assert job["error"] == 0, job
    return job


def test_fio_verify(cluster):
    cluster.create_volume("fio", 256 << 20)
    fio(cluster, "fio", "--rw=randwrite", "--bs=4k", "--iodepth=1", "--size=16M")
    fio(cluster, "fio", "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=64M", "--offset=64M")
    fio(cluster, "fio", "--rw=write", "--bs=1M", "--iodepth=8", "--size=128M", "--offset=128M")
    # mixed sizes, unaligned to extents, several connections
    fio(cluster, "fio", "--rw=randwrite", "--bs=4k-2m", "--bs_unaligned=1", "--iodepth=16",
        "--numjobs=2", "--size=32M", "--offset=0", "--offset_increment=32M")


def test_multi_conn_flush_barrier(tmp_path):
    """CAN_MULTI_CONN: a write answered on one connection, then a FLUSH answered
    on another, is durable on every copy and read back on a third. Each SDS's
    device records what reaches it, so the test sees the FLUSH land: the write
    alone brings no flush to either device, the FLUSH brings one to both."""
    devs = [LoggedDevice(tmp_path / f"dev{i}", 1 << 30) for i in range(2)]
    c = None
    try:
        c = Cluster(tmp_path / "c", sds_sizes=(1 << 30,) * 2, pgs=16,
                    devices={i: d.loop for i, d in enumerate(devs)})
        c.start()
        c.create_volume("mc", 8 << 20)
        h1, h2, h3 = nbd.NBD(), nbd.NBD(), nbd.NBD()
        for h in (h1, h2, h3):
            h.connect_uri(c.uri("mc"))
            assert h.can_multi_conn()
        # every extent gets its slot first (allocating writes are durable at once)
        h1.pwrite(os.urandom(8 << 20), 0)
        h1.flush()
        for i in range(20):
            data = os.urandom(4096 + i)
            off = (i * 300007) % ((8 << 20) - len(data))
            before = [d.completed("Flush") for d in devs]
            h1.pwrite(data, off)
            assert [d.completed("Flush") for d in devs] == before, \
                "a plain write flushed a device: the test could not tell FLUSH's effect"
            h2.flush()
            after = [d.completed("Flush") for d in devs]
            assert all(a > b for a, b in zip(after, before)), \
                f"FLUSH did not reach every copy's device ({before} -> {after})"
            assert h3.pread(len(data), off) == data
        for h in (h1, h2, h3):
            h.shutdown()
    finally:
        try:
            if c:
                c.shutdown()
        finally:
            for d in devs:
                d.close()


def test_copies_identical(cluster):
    """Every copy of every written extent holds the same bytes (read each SDS directly)."""
    cluster.create_volume("scrub", 64 << 20)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("scrub"))
    for i in range(0, 64, 3):
        h.pwrite(os.urandom(200 << 10), (i << 20) + 4096 * i)
    h.flush()
    h.shutdown()
    r = cluster.cairn("volume", "check-copies", "scrub", json_out=True)
    rep = json.loads(r.stdout)
    assert rep["extents_checked"] >= 21 and rep["mismatches"] == 0, rep
    assert rep["copies_per_extent"] == 2


def used_bytes(cluster):
    return sum(d["used"] for s in cluster.status()["sds"] for d in s["devices"])


def settled_usage(cluster):
    """Raw bytes used on all devices, as reported after every write so far
    (the previous tests' writes are all answered)."""
    st = cluster.status_after(time.monotonic())
    return sum(d["used"] for s in st["sds"] for d in s["devices"])


def test_grow_and_remove_frees_space(cluster):
    base = settled_usage(cluster)
    cluster.create_volume("grow", 8 << 20)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("grow"))
    assert h.get_size() == 8 << 20
    h.pwrite(b"g" * 4096, (8 << 20) - 4096)
    h.shutdown()
    cluster.cairn("volume", "grow", "grow", "--size", str(24 << 20))
    r = cluster.cairn("volume", "grow", "grow", "--size", str(16 << 20), check=False)
    assert r.returncode != 0 and "larger" in r.stderr

    def grown():
        h = nbd.NBD()
        h.connect_uri(cluster.uri("grow"))
        try:
            return h.get_size() == 24 << 20
        finally:
            h.shutdown()
    wait_for("the new size at the SDC", grown)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("grow"))
    assert h.pread(4096, (8 << 20) - 4096) == b"g" * 4096
    h.pwrite(os.urandom(16 << 20), 8 << 20)
    h.flush()
    h.shutdown()

    def used():
        return used_bytes(cluster)
    # 17 extents of 1 MiB, two copies each
    wait_for("usage to include the volume", lambda: used() == base + 2 * (17 << 20))
    cluster.cairn("volume", "unmap", "grow", "--sdc", cluster.sdc_name)
    cluster.cairn("volume", "remove", "grow")
    wait_for("the SDSs to free every copy of the removed volume", lambda: used() == base)
