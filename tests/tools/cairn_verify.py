#!/usr/bin/python3
"""cairn-verify: a verifying load for any NBD export.

Writes random 4 KiB blocks and reads random blocks back, keeping an
independent record of every acknowledged write. A read must return the last
acknowledged value of its block (or, for a block whose last write failed or
was cut off, that value or the previous one): anything else is reported as a
lost write or a stale read. Ends with a full read-back of every block written.

    cairn_verify.py --uri nbd://127.0.0.1:10809/demo --size 256M --seconds 60

Exit code 0 when every check passed, 1 otherwise. Usable as a library: see
Verifier (the soak test drives it from a thread).
"""
import argparse
import hashlib
import os
import random
import sys
import threading
import time

import nbd

BLOCK = 4096


def payload(block, gen):
    seed = hashlib.sha256(f"{block}:{gen}".encode()).digest()
    return (seed * (BLOCK // len(seed)))[:BLOCK]


class Verifier:
    def __init__(self, uri, size, seed=1, write_pct=60, initial=None):
        """initial(block) -> bytes: what a block held before the load (default zeroes)."""
        self.uri, self.nblocks = uri, size // BLOCK
        self.initial = initial
        self.rng = random.Random(seed)
        self.write_pct = write_pct
        self.acked = {}       # block -> generation last acknowledged
        self.uncertain = {}   # block -> generation whose write outcome is unknown
        self.gen = 0
        self.errors = []
        self.ops = self.writes = self.reads = 0
        self.retries = 0
        self.max_latency = 0.0
        self.window_max = 0.0  # the longest op since the caller last zeroed it
        self.lat_log = []     # (time done, latency) of slow ops
        self.fail_log = []    # (time reconnected, failed op's time and the reconnect's)
        self.stop = threading.Event()
        self.h = None

    def connect(self):
        while not self.stop.is_set():
            try:
                h = nbd.NBD()
                h.connect_uri(self.uri)
                self.h = h
                return
            except nbd.Error:
                time.sleep(0.2)

    def allowed(self, block):
        ok = set()
        if block in self.acked:
            ok.add(self.acked[block])
        else:
            ok.add(0)  # never written: zeroes
        if block in self.uncertain:
            ok.add(self.uncertain[block])
        return ok

    def check(self, block, data):
        for g in self.allowed(block):
            before = self.initial(block) if self.initial else b"\0" * BLOCK
            if (g == 0 and data == before) or (g and data == payload(block, g)):
                return True
        self.errors.append(f"block {block}: read matches none of generations {sorted(self.allowed(block))}")
        return False

    def one(self):
        block = self.rng.randrange(self.nblocks)
        t0 = time.monotonic()
        if self.rng.randrange(100) < self.write_pct:
            self.gen += 1
            g = self.gen
            try:
                self.h.pwrite(payload(block, g), block * BLOCK)
            except nbd.Error as e:
                # Unknown outcome: the block may hold either value until rewritten.
                self.uncertain[block] = g
                self.retries += 1
                if "Input/output" in str(e):
                    # the cluster gave up on a fault it should have survived
                    self.errors.append(f"write of block {block} failed: {e}")
                self.connect()
                self.fail_log.append((time.monotonic(), time.monotonic() - t0))
                return
            self.acked[block] = g
            self.uncertain.pop(block, None)
            self.writes += 1
        else:
            try:
                data = self.h.pread(BLOCK, block * BLOCK)
            except nbd.Error as e:
                self.retries += 1
                if "Input/output" in str(e):
                    self.errors.append(f"read of block {block} failed: {e}")
                self.connect()
                self.fail_log.append((time.monotonic(), time.monotonic() - t0))
                return
            self.check(block, data)
            self.reads += 1
        lat = time.monotonic() - t0
        self.ops += 1
        if lat > self.max_latency:
            self.max_latency = lat
        if lat > self.window_max:
            self.window_max = lat
        if lat > 0.5:
            self.lat_log.append((time.monotonic(), lat))

    def run(self, seconds=None):
        self.connect()
        end = time.monotonic() + seconds if seconds else None
        while not self.stop.is_set() and (end is None or time.monotonic() < end):
            self.one()

    def final_check(self):
        if not self.h:
            self.connect()
        bad = 0
        for block in sorted(set(self.acked) | set(self.uncertain)):
            if not self.check(block, self.h.pread(BLOCK, block * BLOCK)):
                bad += 1
        return bad

    def summary(self):
        return (f"{self.ops} ops ({self.writes} writes, {self.reads} reads), "
                f"{len(self.acked)} blocks written, {self.retries} reconnects, "
                f"longest op {self.max_latency:.2f} s, {len(self.errors)} errors")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uri", required=True)
    ap.add_argument("--size", default="256M", help="bytes of the export to use (K/M/G)")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    a = ap.parse_args()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    size = int(a.size[:-1]) * mult[a.size[-1]] if a.size[-1] in mult else int(a.size)
    v = Verifier(a.uri, size, a.seed)
    v.run(a.seconds)
    bad = v.final_check()
    print(v.summary())
    for e in v.errors[:20]:
        print("  " + e)
    print("VERDICT:", "PASS" if not v.errors and not bad else "FAIL")
    return 0 if not v.errors and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
