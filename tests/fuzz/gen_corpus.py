#!/usr/bin/python3
"""Write the seed corpus of every fuzz target (tests/fuzz/corpus/<target>/seed-*).

Small, valid inputs: protobufs packed by hand (the field numbers of
proto/cairn.proto), a real superblock and extent table, NBD options and
whole NBD client sessions. Run it again after changing a format; regression
inputs (regress-*) are kept."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def f_int(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(field << 3 | 2) + varint(len(b)) + b


def f_packed(field, nums):
    return f_bytes(field, b"".join(varint(n) for n in nums))


def cluster_map(version=5, pgs=16, extent=1 << 20):
    m = f_int(1, version) + f_bytes(2, "fuzz") + f_int(3, 100)
    for i in (1, 2, 3):
        m += f_bytes(4, f_int(1, i) + f_bytes(2, "abc"[i - 1]) + f_bytes(3, "10.0.0.%d:7000" % i))
    for i in (1, 2, 3):
        m += f_bytes(5, f_int(1, i) + f_int(2, i) + f_int(3, 10) + f_bytes(4, "/dev/x") + f_int(5, 4 << 30))
    pool = f_int(1, 10) + f_bytes(2, "default") + f_int(3, 2) + f_int(4, extent) + f_int(5, pgs) + f_int(6, 300)
    for g in range(pgs):
        devs = [1 + g % 3, 1 + (g + 1) % 3]
        pool += f_bytes(7, f_int(1, 1 + g % 4) + f_packed(2, devs))
    m += f_bytes(6, pool)
    m += f_bytes(7, f_int(1, 20) + f_bytes(2, "v") + f_int(3, 10) + f_int(4, 1 << 30))
    m += f_bytes(8, f_int(1, 1) + f_bytes(2, "h1") + f_bytes(3, "guid-1"))
    m += f_bytes(9, f_int(1, 20) + f_int(2, 1))
    return m


def map_reply(sds_id=1, sdc_id=1):
    return f_bytes(2, cluster_map()) + f_int(3, sdc_id) + f_int(4, sds_id)


def rec(kind, b):
    return bytes([kind]) + struct.pack(">H", len(b)) + b


def frame(type_, req_id, msg=b"", payload=b"", status=0):
    return struct.pack(">IHHQIIiI", 0x43524E31, 1, type_, req_id, len(msg), len(payload), status, 0) + msg + payload


def io_hdr(vol, off, length, flags=0, pool=10, pg=0, epoch=1):
    return struct.pack(">QQIIIIQ", vol, off, length, flags, pool, pg, epoch)


def mgmt(op, **kw):
    fields = {"name": 2, "addr": 3, "fault_set": 4, "size": 6, "pool": 8, "volume": 9, "sdc": 10,
              "copies": 12, "pg_count": 13, "guid": 17, "extent_size": 18, "pool_id": 19, "pg": 20,
              "device_id": 21, "epoch": 22}
    b = f_int(1, op)
    for k, v in kw.items():
        if k == "paths":
            for p in v:
                b += f_bytes(5, p)
        elif k == "capacities":
            b += f_packed(16, v)
        elif isinstance(v, str):
            b += f_bytes(fields[k], v)
        else:
            b += f_int(fields[k], v)
    return b


def raft_entry(b):
    return struct.pack(">Q", len(b)) + b + b"\0" * (-len(b) % 8)


def superblock_image(dsize_mib=4, extent=1 << 16, entries=((5, 0, 1), (5, 3, 2), (9, 1, 3)),
                     version=1):
    """A device's start (docs/extent-store.md): version 1 has 32-byte entries;
    version 2 64-byte ones with a bitmap of written granules, and the
    granule size in the superblock."""
    esize = 32 if version == 1 else 64
    dsize = dsize_mib << 20
    n = (dsize - 4096) // (extent + esize)
    while True:
        tbytes = (n * esize + 4095) // 4096 * 4096
        doff = (4096 + tbytes + extent - 1) // extent * extent
        if n == 0 or doff + n * extent <= dsize:
            break
        n -= 1
    sb = bytearray(4096)
    sb[0:8] = b"CAIRNDEV"
    struct.pack_into(">IIQQ", sb, 8, version, 1, extent, n)
    if version == 2:
        struct.pack_into(">Q", sb, 32, max(4096, extent // 256))
    sb[64:68] = b"fuzz"
    table = bytearray(tbytes)
    for slot, (vol, ext, gen) in enumerate(entries):
        struct.pack_into(">QQQ", table, slot * esize, vol, ext, gen)
        if version == 2:
            table[slot * esize + 32] = 0x05 << slot  # some granules written
    return bytes([dsize_mib - 1]) + bytes(sb) + bytes(table)


def shorthash(data, key):
    """libsodium's crypto_shorthash (SipHash-2-4), as the store keys its
    write log's records (server/extent_log.c)."""
    import ctypes
    lib = ctypes.CDLL("libsodium.so.23")
    out = ctypes.create_string_buffer(8)
    lib.crypto_shorthash(out, bytes(data), ctypes.c_ulonglong(len(data)), bytes(key))
    return out.raw


def log_image(dsize_mib=4, extent=1 << 16):
    """A version 3 device's start with its write log (docs/extent-store.md):
    slot 0 in use (allocation 2) with a record for a granule whose bit is
    clear and whose data hashes as the record says (its bit is set at
    open); slot 1 in use (allocation 3) with a record of allocation 1
    (void); slot 3 free (freed allocation 4) with a record of allocation 5
    (the slot is allocated again at open); a record whose own hash is
    wrong. The image runs to the end of slot 3."""
    esize, dsize = 64, dsize_mib << 20
    nlog = min(max(dsize // 128 // 4096, 8), 8192)
    n = (dsize - 4096) // (extent + esize)
    while True:
        tbytes = (n * esize + 4095) // 4096 * 4096
        doff = (4096 + tbytes + nlog * 4096 + extent - 1) // extent * extent
        if n == 0 or doff + n * extent <= dsize:
            break
        n -= 1
    key = bytes(range(16))
    sb = bytearray(4096)
    sb[0:8] = b"CAIRNDEV"
    struct.pack_into(">IIQQQI", sb, 8, 3, 1, extent, n, 4096, nlog)
    sb[48:64] = key
    sb[64:68] = b"fuzz"
    table = bytearray(tbytes)
    for slot, (vol, ext, gen, aid, bits) in enumerate(((5, 0, 1, 2, 0x01), (5, 1, 2, 3, 0x03),
                                                         (0, 0, 0, 0, 0), (0, 0, 0, 4, 0))):
        struct.pack_into(">QQQQ", table, slot * esize, vol, ext, gen, aid)
        table[slot * esize + 32] = bits
    data = bytearray(4 * extent)
    for i in range(len(data) // 4096):
        data[i * 4096:(i + 1) * 4096] = bytes([i % 251 + 1]) * 4096

    def granule(slot, g):
        o = slot * extent + g * 4096
        return data[o:o + 4096]

    def record(seq, slot, g0, g1, vol, ext, aid, good=True):
        r = bytearray(4096)
        r[0:8] = b"CAIRNLOG"
        struct.pack_into(">QIHHQQQ", r, 8, seq, slot, g0, g1, vol, ext, aid)
        for g in range(g0, g1 + 1):
            r[48 + (g - g0) * 8:56 + (g - g0) * 8] = shorthash(granule(slot, g), key)
        r[4088:4096] = shorthash(r[:4088], key if good else bytes(16))
        return bytes(r)
    log = bytearray(nlog * 4096)
    for i, r in enumerate((record(1, 0, 2, 2, 5, 0, 2), record(2, 1, 4, 5, 5, 1, 1),
                           record(3, 3, 0, 1, 9, 4, 5), record(4, 0, 3, 3, 5, 0, 2, good=False))):
        log[i * 4096:(i + 1) * 4096] = r
    img = bytes(sb) + bytes(table) + bytes(log)
    img += bytes(doff - len(img)) + bytes(data)
    return bytes([dsize_mib - 1]) + img


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


cm = cluster_map()
write("fuzz_frame", "seed-calls", b"\x40" + frame(5, 7) + frame(17, 8, io_hdr(20, 0, 4096), b"x" * 4096)
      + frame(0x8005, 1, b"\x0a\x00") + frame(0x8005, 2, status=-11))
write("fuzz_frame", "seed-whole", b"\x00" + frame(2, 1, mgmt(1)) + frame(9, 2, struct.pack(">IQ", 2, 5)))
write("fuzz_mdm_msgs", "seed-ops", rec(0, mgmt(5, volume="w", size=1 << 28)) + rec(0, mgmt(9, volume="w", sdc="h1"))
      + rec(0, mgmt(20, name="rack1")) + rec(0, mgmt(6, volume="w", size=1 << 29))
      + rec(0, mgmt(17, name="a")) + rec(0, mgmt(18, name="a")) + rec(0, mgmt(13, name="b"))
      + rec(0, mgmt(4, name="c", paths=["/dev/y"], capacities=[1 << 32])) + rec(0, mgmt(10, volume="w", sdc="h1"))
      + rec(0, mgmt(7, volume="w")))
write("fuzz_mdm_msgs", "seed-sessions", rec(1, f_bytes(1, "a") + f_bytes(2, "10.0.0.1:7000"))
      + rec(2, f_int(1, 1) + f_int(2, 9) + f_bytes(3, f_int(1, 1) + f_int(2, 3) + f_int(3, 100) + f_int(4, 1)))
      + rec(3, f_bytes(1, "guid-2") + f_bytes(2, "h2")))
def usage(dev, used, failed=0):
    return f_bytes(3, f_int(1, dev) + f_int(2, used) + f_int(3, 4096) + f_int(4, failed))


def vol_io(vol, reads, nbytes):
    return f_bytes(6, f_int(1, vol) + f_int(2, reads) + f_int(3, reads) + f_int(4, nbytes) + f_int(5, nbytes))


# fuzz_mdm_sessions: [flags] then records whose kind is the frame type
# (0 MGMT, 1 SDS_REGISTER, 2 HEARTBEAT, 3 MAP_GET, 4 SDC_REGISTER,
# 5 PG_REBUILT, 6 raw, 7 pause), bit 7 the second client.
B = 0x80
pause = rec(7, b"")
write("fuzz_mdm_sessions", "seed-cli", b"\x00" + rec(0, mgmt(1)) + rec(0, mgmt(5, volume="w", size=1 << 28))
      + rec(0, mgmt(9, volume="w", sdc="h1")) + pause + rec(0, mgmt(6, volume="w", size=1 << 29))
      + rec(0, mgmt(11, name="a")) + rec(0, mgmt(22, name="b", paths=["/dev/x"]))
      + rec(0, mgmt(20, name="rack1")) + rec(0, mgmt(3, name="a", addr="10.0.0.1:7000", paths=["/dev/q"]))
      + rec(0, mgmt(3, name="e", addr="10.0.0.5:7000", fault_set="nope", paths=["/dev/q"]))
      + rec(0, mgmt(4, name="zz", paths=["/dev/q"])) + pause + rec(0, mgmt(1)))
write("fuzz_mdm_sessions", "seed-sds", b"\x00" + rec(1, f_bytes(1, "a") + f_bytes(2, "10.0.0.1:7000"))
      + rec(2, f_int(1, 2) + f_int(2, 5) + usage(3, 3000)) + rec(0, mgmt(11, name="b"))
      + rec(5, mgmt(15, pool_id=1, pg=0, device_id=3, epoch=2)) + rec(5, mgmt(15, pool_id=1, pg=1, device_id=3, epoch=2))
      + rec(5, mgmt(15, pool_id=1, pg=2, device_id=3, epoch=2)) + rec(3, b"") + pause
      + rec(B | 1, f_bytes(1, "b") + f_bytes(2, "10.9.9.9:7000"))
      + rec(2, f_int(1, 2) + f_int(2, 6) + usage(3, 3000, 1)) + pause + rec(3, b"") + rec(0, mgmt(1)))
write("fuzz_mdm_sessions", "seed-probe", b"\x00" + rec(B | 1, f_bytes(1, "d") + f_bytes(2, "10.0.0.4:7000"))
      + rec(0, mgmt(3, name="d", addr="10.0.0.4:7000", paths=["/dev/y", "/dev/z"])) + pause
      + rec(0, mgmt(4, name="d", paths=["/dev/w"])) + rec(0, mgmt(4, name="a", paths=["/dev/w"])) + pause
      + rec(B | 2, f_int(1, 8) + f_int(2, 7) + usage(9, 10) + usage(10, 20, 1)) + pause + rec(0, mgmt(1)))
write("fuzz_mdm_sessions", "seed-probe-error", b"\x08" + rec(B | 1, f_bytes(1, "d") + f_bytes(2, "10.0.0.4:7000"))
      + rec(0, mgmt(3, name="d", addr="10.0.0.4:7000", paths=["/dev/y"])) + pause)
write("fuzz_mdm_sessions", "seed-sdc", b"\x00" + rec(B | 4, f_bytes(1, "guid-1") + f_bytes(2, "h1"))
      + rec(4, f_bytes(1, "guid-2") + f_bytes(2, "h2")) + pause + rec(0, mgmt(23, sdc="h2"))
      + rec(0, mgmt(9, volume="v", sdc="h2")) + pause
      + rec(B | 2, vol_io(8, 10, 40960)) + rec(B | 2, vol_io(8, 20, 81920)) + rec(B | 3, b"")
      + rec(3, b"") + rec(0, mgmt(1)))
write("fuzz_mdm_sessions", "seed-follower", b"\x01" + rec(0, mgmt(3, name="d", addr="x:1", paths=["/dev/y"]))
      + rec(0, mgmt(5, volume="w", size=1 << 28)) + rec(4, f_bytes(1, "guid-3")) + rec(0, mgmt(1))
      + rec(B | 1, f_bytes(1, "a") + f_bytes(2, "10.0.0.1:7000")) + rec(B | 2, usage(3, 1, 1)))
write("fuzz_mdm_sessions", "seed-burst", b"\x00" + b"".join(rec(0x40, mgmt(5, volume="w%d" % i, size=1 << 20))
                                                         for i in range(60)) + rec(0, mgmt(1)))
write("fuzz_mdm_sessions", "seed-raft-fails", b"\x02" + rec(0, mgmt(5, volume="w", size=1 << 28))
      + rec(4, f_bytes(1, "guid-3")) + pause + rec(0, mgmt(1)))
write("fuzz_mdm_sessions", "seed-raw", b"\x04" + rec(0, mgmt(5, volume="w", size=1 << 28))
      + rec(6, struct.pack(">HB", 99, 0) + b"x") + rec(6, struct.pack(">HB", 14, 0))
      + rec(0, b"\xff\xff") + rec(1, b"\x0a\x00") + rec(2, b"\xff") + rec(4, b"\xff") + rec(5, mgmt(1))
      + rec(6, struct.pack(">HB", 2, 4) + b"abcd" + mgmt(1)))

write("fuzz_raft", "seed", rec(0, raft_entry(cm)) + rec(1, raft_entry(mgmt(5, volume="w", size=1 << 28)))
      + rec(1, raft_entry(mgmt(2, pool="p2", pg_count=8))) + rec(1, raft_entry(mgmt(15, pool_id=10, pg=3, device_id=3))))
write("fuzz_sds_msgs", "seed", rec(0, map_reply()) + rec(1, struct.pack(">IQ", 2, 5)) + rec(2, struct.pack(">II", 10, 3))
      + rec(3, struct.pack(">HI", 17, 4096) + io_hdr(20, 0, 4096))
      + rec(3, struct.pack(">HI", 16, 0) + io_hdr(20, 1 << 20, 512, pg=0)))
write("fuzz_saved_map", "seed", struct.pack(">I", 1) + cm)
write("fuzz_sdc_msgs", "seed", rec(0, map_reply()) + rec(1, struct.pack(">QI", 4096, 3 << 20))
      + rec(2, struct.pack(">QI", (1 << 30) - 4096, 4096)))
go = struct.pack(">I", 4) + b"demo" + struct.pack(">HHH", 2, 0, 3)
meta = struct.pack(">I", 4) + b"demo" + struct.pack(">I", 2) + struct.pack(">I", 15) + b"base:allocation" \
    + struct.pack(">I", 5) + b"base:"
write("fuzz_nbd", "seed-flags", b"\x00" + struct.pack(">I", 3))
write("fuzz_nbd", "seed-go", b"\x01" + go)
write("fuzz_nbd", "seed-meta", b"\x02" + meta)
write("fuzz_nbd", "seed-request", b"\x1f" + struct.pack(">IHHQQI", 0x25609513, 1, 1, 42, 4096, 4096)
      + struct.pack(">Q", 1 << 30))
write("fuzz_store", "seed", superblock_image())
write("fuzz_store", "seed-v2", superblock_image(version=2))
write("fuzz_store", "seed-v3-log", log_image())


# fuzz_nbd_conn: [chunk size][flags][what a client sends] (see its comment).
def nbd_opt(opt, data=b""):
    return struct.pack(">QII", 0x49484156454F5054, opt, len(data)) + data


def nbd_req(type_, off, length, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, type_, cookie, off, length) + payload


def nbd_go_data(name, infos=()):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) \
        + b"".join(struct.pack(">H", i) for i in infos)


def nbd_meta_data(name, queries):
    return struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries)) \
        + b"".join(struct.pack(">I", len(q)) + q for q in queries)


nbd_flags = struct.pack(">I", 3)  # FIXED_NEWSTYLE | NO_ZEROES
nbd_haggle = nbd_flags + nbd_opt(8) + nbd_opt(9, nbd_meta_data(b"a", [])) \
    + nbd_opt(10, nbd_meta_data(b"a", [b"base:allocation"])) + nbd_opt(3) + nbd_opt(6, nbd_go_data(b"ro", [1, 2])) \
    + nbd_opt(99, b"xyz") + nbd_opt(5)
nbd_requests = nbd_req(0, 0, 4096) + nbd_req(1, 4096, 512, flags=1, payload=b"w" * 512) + nbd_req(3, 0, 0) \
    + nbd_req(4, 8192, 4096) + nbd_req(6, 16384, 4096, flags=2) + nbd_req(6, 16384, 4096, flags=16) \
    + nbd_req(7, 0, 65536) + nbd_req(7, 512, 4096, flags=8) + nbd_req(5, 0, 4096) + nbd_req(0, 0, 0) \
    + nbd_req(0, 1 << 20, 4096, flags=4) + nbd_req(1, 1 << 20, 1024, payload=b"r" * 1024) + nbd_req(2, 0, 0)
write("fuzz_nbd_conn", "seed-go", b"\x00\x00" + nbd_haggle + nbd_opt(7, nbd_go_data(b"a", [0, 1, 2, 3]))
      + nbd_requests)
# oldstyle zeroes, EXPORT_NAME, no structured replies; a read-only export,
# errors from the backend, requests pipelined past the flow limits
write("fuzz_nbd_conn", "seed-export-name", b"\x07\x1c" + struct.pack(">I", 1) + nbd_opt(1, b"ro")
      + nbd_req(1, 0, 512, payload=b"p" * 512) + b"".join(nbd_req(0, i * 4096, 4096, cookie=i) for i in range(8))
      + nbd_req(4, 0, 4096) + nbd_req(7, 0, 4096) + nbd_req(3, 0, 0, flags=1) + nbd_req(2, 0, 0))
write("fuzz_nbd_conn", "seed-abort", b"\x10\x00" + nbd_flags + nbd_opt(3) + nbd_opt(7, nbd_go_data(b"nope"))
      + nbd_opt(8) + nbd_opt(6, nbd_go_data(b"v/" + b"x" * 700, [1])) + nbd_opt(2))
# the client goes with requests in flight and waiting: they are cancelled
write("fuzz_nbd_conn", "seed-leave-early", b"\x00\x38" + nbd_flags + nbd_opt(7, nbd_go_data(b"a"))
      + b"".join(nbd_req(0, i * 8192, 65536, cookie=i) for i in range(8)) + nbd_req(1, 0, 512, payload=b"q" * 100))
# --tls require: options refused before STARTTLS, then STARTTLS (with data,
# refused; then accepted) and bytes that are not a ClientHello
write("fuzz_nbd_conn", "seed-tls-require", b"\x00\x02" + nbd_flags + nbd_opt(7, nbd_go_data(b"a")) + nbd_opt(3)
      + nbd_opt(5, b"x") + nbd_opt(5) + b"\x16\x03\x01\x00\x05hello")
# --tls on with an allow list: a plaintext client does not see "secret"
write("fuzz_nbd_conn", "seed-tls-on", b"\x00\x01" + nbd_flags + nbd_opt(3) + nbd_opt(7, nbd_go_data(b"secret"))
      + nbd_opt(1, b"secret"))
# a payload large enough to be read straight into its buffer: the server
# reads 64 KiB at a time, so with 55 bytes before the payload, the 64 KiB
# left after the first read arrive (and complete) in a direct read
write("fuzz_nbd_conn", "seed-large-write", b"\x00\x00" + nbd_flags + nbd_opt(7, nbd_go_data(b"a"))
      + nbd_req(1, 0, 131017, payload=b"L" * 131017) + nbd_req(0, 0, 131017) + nbd_req(2, 0, 0))

# Regression inputs: maps that every daemon must refuse (cmap_check), which
# divided by zero (extent size 0) before it existed.
bad = struct.pack(">I", 1) + cluster_map(extent=0)
write("fuzz_saved_map", "regress-extent-size-zero", bad)
write("fuzz_sds_msgs", "regress-extent-size-zero", rec(0, f_bytes(2, cluster_map(extent=0)) + f_int(4, 1))
      + rec(3, struct.pack(">HI", 16, 0) + io_hdr(20, 0, 4096)))
write("fuzz_sdc_msgs", "regress-extent-size-zero", rec(0, f_bytes(2, cluster_map(extent=0)) + f_int(3, 1))
      + rec(1, struct.pack(">QI", 4096, 4096)))
