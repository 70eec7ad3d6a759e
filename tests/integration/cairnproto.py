"""A minimal client of Cairn's own frame protocol, for tests that must talk
to one daemon directly (as an SDC with a stale map would, or as a peer with
the wrong credential). It speaks the link handshake of proto/rpc_auth.c and
MACs its frames as that file says: ChaCha20-Poly1305 with PyNaCl (libsodium),
or, if offered, AES-256-GMAC with python3-cryptography (OpenSSL), neither the
daemons' code."""
import hashlib
import socket
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl import bindings as nb

MAGIC = 0x43524E31
FT_MGMT = 2
FT_SDS_REGISTER = 3
FT_PING = 9
FT_AUTH_HELLO, FT_AUTH_PROOF = 12, 13
FT_IO_READ, FT_IO_WRITE = 16, 17
IO_FLAG_REPLICA = 2
REPLY = 0x8000
MAC_POLY1305, MAC_GMAC = 1, 2  # AuthHello.macs bits
ROLES = {"mdm": 1, "sds": 2, "sdc": 3, "admin": 4, "monitor": 5}


def load_credential(path):
    kv = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or " " not in line:
                continue
            k, v = line.rstrip("\n").split(" ", 1)
            kv[k] = v
    return {"role": ROLES[kv["role"]], "name": kv["name"], "ca": bytes.fromhex(kv["ca-key"]),
            "pk": bytes.fromhex(kv["public-key"]), "sk": bytes.fromhex(kv["secret-key"]),
            "sig": bytes.fromhex(kv["signature"])}


# ---- protobuf, the little the handshake needs ----
def _varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _field(num, value):
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _parse(buf):
    fields, i = {}, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError("unexpected wire type")
        fields[num] = v
    return fields


def _read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _cred_msg(c):
    return (_field(1, c["role"]) + _field(2, c["name"].encode()) + _field(3, c["pk"])
            + _field(4, c["sig"]))


def _cert_bytes(role, name, pk):
    return b"cairn-cred-v1".ljust(16, b"\0") + bytes([role, len(name)]) + name + pk


def _h(*parts):
    return hashlib.blake2b(b"".join(parts), digest_size=32).digest()


class AuthRefused(ConnectionError):
    pass


class Conn:
    """One authenticated connection to a Cairn daemon (cred: a credential
    file's path, or None for a plain peer that sends frames unauthenticated)."""

    def __init__(self, addr, cred=None, timeout=10, check_server=True, macs=MAC_POLY1305):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.req = 1
        self.tx_key = self.rx_key = None
        self.tx_seq = self.rx_seq = 0
        self.peer = None
        self.mac = None  # the frame MAC the daemon chose
        self.macs = macs  # the ones this side offers
        self.recorded = []  # the handshake frames this side sent
        self.early = {}  # replies read before their recv_reply asked
        if cred:
            self._handshake(load_credential(cred), check_server)

    def _recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            b += chunk
        return b

    def send_raw(self, data):
        self.s.sendall(data)

    def frame_bytes(self, ftype, msg, payload=b"", rid=None):
        rid = rid if rid is not None else self.req
        hdr = struct.pack(">IHHQIIiI", MAGIC, 1, ftype, rid, len(msg), len(payload), 0, 0)
        data = hdr + msg + payload
        if self.tx_key:
            nonce = b"\0" * 4 + struct.pack("<Q", self.tx_seq)
            self.tx_seq += 1
            data += self._tag(data, nonce, self.tx_key)
        return data

    def _tag(self, data, nonce, key):
        if self.mac == MAC_GMAC:  # AES-256-GCM with no plaintext: its tag is GMAC's
            return AESGCM(key).encrypt(nonce, b"", data)
        return nb.crypto_aead_chacha20poly1305_ietf_encrypt(b"", data, nonce, key)

    def request(self, ftype, msg, payload=b""):
        """Send a request; returns (status, msg, payload) of its reply."""
        rid = self.req
        self.req += 1
        data = self.frame_bytes(ftype, msg, payload, rid)
        if ftype in (FT_AUTH_HELLO, FT_AUTH_PROOF):
            self.recorded.append(data)
        self.s.sendall(data)
        return self.recv_reply(rid)

    def recv_reply(self, rid):
        """Read frames until the reply to request rid: (status, msg, payload).
        Replies to other requests sent before it (pipelined) are kept for
        their own recv_reply."""
        if rid in self.early:
            return self.early.pop(rid)
        while True:
            h = self._recv(32)
            magic, ver, typ, got, mlen, plen, status, _ = struct.unpack(">IHHQIIiI", h)
            assert magic == MAGIC
            m = self._recv(mlen)
            p = self._recv(plen)
            if self.rx_key:
                tag = self._recv(16)
                nonce = b"\0" * 4 + struct.pack("<Q", self.rx_seq)
                self.rx_seq += 1
                want = self._tag(h + m + p, nonce, self.rx_key)
                assert want == tag, "a frame from the daemon failed its MAC"
            if got == rid and typ & REPLY:
                return status, m, p
            if typ & REPLY:
                self.early[got] = (status, m, p)

    def _handshake(self, c, check_server):
        pk, sk = nb.crypto_kx_keypair()
        st, m, _ = self.request(FT_AUTH_HELLO, _field(1, 1) + _field(2, pk) + _field(3, self.macs))
        if st != 0:
            raise AuthRefused(_parse(m).get(1, b"").decode())
        f = _parse(m)
        eph_s, srv, sig = f[1], _parse(f[2]), f[3]
        srv_cert = _cert_bytes(srv.get(1, 0), srv.get(2, b""), srv[3])
        self.mac = f.get(4, 0)
        assert self.mac & self.macs and not self.mac & (self.mac - 1), "the daemon chose no MAC offered"
        t = _h(b"cairn-link-v1", c["ca"], pk, eph_s, srv_cert, struct.pack(">II", self.macs, self.mac))
        if check_server:  # (off: to see the server refuse a credential of another CA)
            nb.crypto_sign_open(sig + _h(b"server", t), srv[3])  # raises if forged
        self.peer = {"role": srv.get(1, 0), "name": srv.get(2, b"").decode()}
        rx, tx = nb.crypto_kx_client_session_keys(pk, sk, eph_s)
        my_cert = _cert_bytes(c["role"], c["name"].encode(), c["pk"])
        mysig = nb.crypto_sign(_h(b"client", t, my_cert), c["sk"])[:64]
        st, m, _ = self.request(FT_AUTH_PROOF, _field(2, _cred_msg(c)) + _field(3, mysig))
        if st != 0:
            raise AuthRefused(_parse(m).get(1, b"").decode())
        self.rx_key, self.tx_key = rx, tx

    def close(self):
        self.s.close()


class SdsConn(Conn):
    """A connection to one SDS, with I/O and ping helpers."""

    def call(self, ftype, vol, off, length, pool, pg, epoch, flags=0, payload=b"",
             writer_gen=0):
        """Returns (status, payload). writer_gen: a change's fence
        (docs/attach.md), sent in the 48-byte header when not 0."""
        io = struct.pack(">QQIIIIQ", vol, off, length, flags, pool, pg, epoch)
        if writer_gen:
            io += struct.pack(">Q", writer_gen)
        st, _, p = self.request(ftype, io, payload)
        return st, p

    def ping(self, sender_id, map_version):
        """Ask for a lease as SDS sender_id holding map_version would: 0 if
        granted, -ESTALE if this SDS's map says the sender is not up."""
        return self.request(FT_PING, struct.pack(">IQ", sender_id, map_version))[0]
