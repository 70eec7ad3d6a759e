#!/usr/bin/python3
"""Server-side copy against a copy through the SDC, side by side (COPY.md).

One cluster (one MDM, three SDSs of --dev-gib GiB device files each, two
copies, 1024 PGs, 1 MiB extents), a volume of --size MiB written full with
random data (fio, 1 MiB writes at QD8). Then, per round, each after the
machine was idle (under 15% busy over a second, or 60 s waited):

  nbdcopy   nbdcopy from the volume's export to a new volume's, both
            through the SDC's unix socket: every byte goes SDS -> SDC ->
            nbdcopy -> SDC -> SDS, and is written to both copies
  copy      `cairn volume copy SRC DST --wait --rate R` (R: --rate MiB/s
            per SDS, default far above what the disks do): a snapshot of
            SRC, a clone of it, the clone flattened by every SDS on its own
            devices, the snapshot removed; no byte leaves an SDS
  copy-64   the same at the default rate (64 MiB/s per SDS), as an operator
            who does not ask for more gets it

Per job and round: seconds and MiB/s of volume data; each copy is then read
back through the SDC and compared with the source (a copy that is fast but
wrong fails the run). Builds without sanitizers only.

usage: copy.py --build DIR [--size MIB] [--rounds N] [--dev-gib N] [--rate MIB/S]"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
sys.path.insert(0, os.path.join(TOP, "tests/integration"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster as C  # noqa: E402
from fresh import prepare_devices, wait_idle  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--build", required=True)
ap.add_argument("--size", type=int, default=1024, help="MiB of the source volume")
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--dev-gib", type=int, default=6, help="GiB per SDS device file")
ap.add_argument("--rate", type=int, default=4096, help="MiB/s per SDS for the `copy` job")


def digest(c, vol, size):
    """sha256 of the volume read through the SDC (nbdcopy to stdout)."""
    p = subprocess.run(["nbdcopy", c.unix_uri(vol), "-"], capture_output=True, check=True)
    assert len(p.stdout) == size, (vol, len(p.stdout))
    return hashlib.sha256(p.stdout).hexdigest()


def main():
    a = ap.parse_args()
    size = a.size * MiB
    work = tempfile.mkdtemp(prefix="cairn-copy-", dir="/var/tmp")
    c = None
    rows = []
    try:
        devs = prepare_devices(work, 3, a.dev_gib * GiB)
        c = C.Cluster(os.path.join(work, "c"), sds_sizes=(a.dev_gib * GiB,) * 3, pgs=1024,
                      build=os.path.abspath(a.build), devices=dict(enumerate(devs)))
        c.start()
        c.create_volume("src", size)
        subprocess.run(["fio", "--name=fill", "--ioengine=nbd", f"--uri={c.unix_uri('src')}",
                        "--rw=write", "--bs=1m", "--iodepth=8", f"--size={size}",
                        "--refill_buffers", "--output-format=terse"], check=True,
                       capture_output=True)
        want = digest(c, "src", size)
        for r in range(a.rounds):
            for job in ("nbdcopy", "copy", "copy-64"):
                dst = f"{job.replace('-', '')}{r}"
                busy = wait_idle()
                print(f"copy: round {r + 1} {job} (machine {busy * 100:.0f}% busy)",
                      file=sys.stderr, flush=True)
                t0 = time.monotonic()
                if job == "nbdcopy":
                    c.create_volume(dst, size)
                    subprocess.run(["nbdcopy", c.unix_uri("src"), c.unix_uri(dst)], check=True)
                else:
                    rate = ["--rate", str(a.rate)] if job == "copy" else []
                    c.cairn("volume", "copy", "src", dst, "--wait", *rate, timeout=3600)
                secs = time.monotonic() - t0
                if job != "nbdcopy":
                    c.cairn("volume", "map", dst, "--sdc", c.sdc_name)
                    c.wait_export(dst)
                assert digest(c, dst, size) == want, f"{job} round {r + 1}: the copy differs"
                rows.append((r, job, secs, busy))
                c.cairn("volume", "unmap", dst, "--sdc", c.sdc_name)
                c.cairn("volume", "remove", dst)
        c.shutdown()
    except BaseException:
        if c:
            c.abort()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"source: {a.size} MiB written full; 3 SDSs, 2 copies; copy --rate {a.rate} MiB/s per "
          "SDS; copy-64 at the default rate")
    print("| round | job | seconds | MiB/s | busy before |")
    print("|--:|---|--:|--:|--:|")
    for r, job, secs, busy in rows:
        print(f"| {r + 1} | {job} | {secs:.2f} | {a.size / secs:,.0f} | {busy * 100:.0f}% |")
    print("\n| job | mean seconds | mean MiB/s | vs nbdcopy |")
    print("|---|--:|--:|--:|")
    mean = {j: sum(s for _, jj, s, _ in rows if jj == j) / a.rounds
            for j in ("nbdcopy", "copy", "copy-64")}
    for j, s in mean.items():
        print(f"| {j} | {s:.2f} | {a.size / s:,.0f} | {mean['nbdcopy'] / s:.2f}x |")


if __name__ == "__main__":
    main()
