#!/usr/bin/python3
"""User-space instructions per replicated 4 KiB I/O, per daemon, counted by
valgrind's callgrind: unlike time, the count does not move with the
machine's load, so two builds compare exactly on a noisy host.

The SDC and the three SDSs of a quick-start-shaped cluster run under
callgrind; the MDM does not (it is not on the I/O path). The count per I/O
is (instructions after N I/Os - instructions after none) / N, for QD1 4 KiB
writes (to extents already allocated) or reads through the SDC's unix
socket. Background work (heartbeats, pings) falls in both runs and is small
against the I/Os.

usage: instructions.py --build DIR [--baseline-build DIR] [--ops N] [--op write|read]
(tests/bench/run.sh --baseline REF builds both; build-bench/ and
build-bench-base/build/ hold them.)"""
import argparse
import os
import shutil
import sys
import tempfile

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
sys.path.insert(0, os.path.join(TOP, "tests/integration"))
import cluster as C  # noqa: E402
import nbd  # noqa: E402

DAEMONS = ("sdc", "sds1", "sds2", "sds3")


def totals(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def run(build, ops, op, work):
    """Instructions per daemon for a cluster that served `ops` I/Os."""
    out = os.path.join(work, f"cg-{ops}")
    os.makedirs(out)

    class Counted(C.Cluster):
        def _daemon(self, name, argv):
            if name != "mdm":
                argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/{name}.cg",
                        "--dump-instr=no"] + argv
            return super()._daemon(name, argv)

    # a long heartbeat timeout: under valgrind the daemons run many times slower
    c = Counted(os.path.join(out, "c"), build=build, mdm_args=["--sds-timeout", "60"])
    c.start()
    try:
        c.create_volume("v", 64 << 20)
        h = nbd.NBD()
        h.connect_uri(c.unix_uri("v"))
        for e in range(64):  # every extent allocated: steady-state writes
            h.pwrite(os.urandom(1 << 20), e << 20)
        data = os.urandom(4096)
        for i in range(ops):
            off = ((i % 64) << 20) + (i * 4096) % (1 << 20)
            if op == "write":
                h.pwrite(data, off)
            else:
                h.pread(4096, off)
        h.shutdown()
    finally:
        c.shutdown()  # callgrind writes its counts as each daemon exits
    return {d: totals(os.path.join(out, f"{d}.cg")) for d in DAEMONS}


def per_io(build, ops, op):
    work = tempfile.mkdtemp(prefix="cairn-instr-")
    try:
        zero, n = run(build, 0, op, work), run(build, ops, op, work)
        return {d: (n[d] - zero[d]) / ops for d in DAEMONS}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--baseline-build")
    ap.add_argument("--ops", type=int, default=4000)
    ap.add_argument("--op", choices=("write", "read"), default="write")
    a = ap.parse_args()
    builds = [("baseline", a.baseline_build)] if a.baseline_build else []
    builds.append(("this", a.build))
    rows = {name: per_io(b, a.ops, a.op) for name, b in builds}
    print(f"user-space instructions per 4 KiB QD1 {a.op} ({a.ops} I/Os, callgrind)")
    print(f"{'build':10} " + " ".join(f"{d:>8}" for d in DAEMONS) + f" {'total':>8}")
    for name, r in rows.items():
        print(f"{name:10} " + " ".join(f"{r[d]:8.0f}" for d in DAEMONS) +
              f" {sum(r.values()):8.0f}")
    if a.baseline_build:
        b, t = sum(rows["baseline"].values()), sum(rows["this"].values())
        print(f"this / baseline: {t / b:.3f}")


if __name__ == "__main__":
    main()
