"""A minimal client of Cairn's own frame protocol, for tests that must talk
to one SDS directly (as an SDC with a stale map would)."""
import socket
import struct

MAGIC = 0x43524E31
FT_PING = 9
FT_IO_READ, FT_IO_WRITE = 16, 17
IO_FLAG_REPLICA = 2


class SdsConn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.req = 1

    def _recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise ConnectionError("SDS closed the connection")
            b += chunk
        return b

    def call(self, ftype, vol, off, length, pool, pg, epoch, flags=0, payload=b""):
        """Returns (status, payload)."""
        io = struct.pack(">QQIIIIQ", vol, off, length, flags, pool, pg, epoch)
        return self._frame(ftype, io, payload)

    def ping(self, sender_id, map_version):
        """Ask for a lease as SDS sender_id holding map_version would: 0 if
        granted, -ESTALE if this SDS's map says the sender is not up."""
        return self._frame(FT_PING, struct.pack(">IQ", sender_id, map_version), b"")[0]

    def _frame(self, ftype, io, payload):
        rid = self.req
        self.req += 1
        hdr = struct.pack(">IHHQIIiI", MAGIC, 1, ftype, rid, len(io), len(payload), 0, 0)
        self.s.sendall(hdr + io + payload)
        while True:
            h = self._recv(32)
            magic, ver, typ, got, mlen, plen, status, _ = struct.unpack(">IHHQIIiI", h)
            assert magic == MAGIC
            self._recv(mlen)
            data = self._recv(plen)
            if got == rid:
                return status, data

    def close(self):
        self.s.close()
