#!/usr/bin/python3
"""Cairn benchmarks: the same fio jobs, in one run, against the device, Cairn,
nbdkit (memory and file) and Ceph RBD; then Cairn's rebuild speed.

Run through tests/bench/run.sh (it builds Cairn and installs what is needed).
Writes results.md, results.json and chart.png under the results folder.

For every job and target: IOPS, MiB/s, mean and p99 latency (fio's total
latency), and the CPU time the target's server processes spent per I/O (from
/proc/PID/stat; the device has no server process). Before each job the
machine must be idle (it waits, and says so if it never was); a job during
which processes other than fio and the target used more than a fifth of a
core is run again (at most twice more) and marked if it stayed disturbed.
"""
import argparse
import threading
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, os.path.join(TOP, "tests/integration"))

MiB = 1 << 20
GiB = 1 << 30
CLK = os.sysconf("SC_CLK_TCK")

JOBS = [
    # name, rw, bs, iodepth
    ("4k randread QD1", "randread", "4k", 1),
    ("4k randread QD32", "randread", "4k", 32),
    ("4k randwrite QD1", "randwrite", "4k", 1),
    ("4k randwrite QD32", "randwrite", "4k", 32),
    ("1M read QD8", "read", "1M", 8),
    ("1M write QD8", "write", "1M", 8),
]


def log(*a):
    print(*a, flush=True)


def run(*argv, **kw):
    return subprocess.run(list(argv), check=True, **kw)


# ---- CPU accounting ----

def proc_cpu(pid):
    """utime + stime of a process (all its threads), in seconds; 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def system_cpu():
    """(busy seconds in user/nice/system, all seconds) over all CPUs."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait = v[0], v[1], v[2], v[3], v[4]
    return (user + nice + system) / CLK, sum(v[:8]) / CLK, (idle + iowait) / CLK


def wait_idle(limit=0.10, max_wait=90):
    """Wait until the machine's CPUs are at most `limit` busy over a second."""
    t0 = time.monotonic()
    while True:
        b0, a0, _ = system_cpu()
        time.sleep(1.0)
        b1, a1, _ = system_cpu()
        busy = (b1 - b0) / max(a1 - a0, 1e-9)
        if busy <= limit:
            return True, busy
        if time.monotonic() - t0 > max_wait:
            log(f"  machine still {busy * 100:.0f}% busy after {max_wait} s; going on (marked)")
            return False, busy
        time.sleep(2)


# ---- targets ----

class Target:
    name = "?"
    label = "?"

    def setup(self):
        pass

    def teardown(self):
        pass

    def pids(self):
        return []

    def fio_args(self):
        raise NotImplementedError


class Device(Target):
    name, label = "device", "device (libaio, O_DIRECT file)"

    def __init__(self, work, size):
        self.path, self.size = os.path.join(work, "device.img"), size

    def setup(self):
        with open(self.path, "wb") as f:
            f.truncate(self.size)

    def teardown(self):
        os.unlink(self.path)

    def fio_args(self):
        return ["--ioengine=libaio", "--direct=1", f"--filename={self.path}",
                f"--size={self.size}"]


class Cairn(Target):
    """fio reaches the SDC through its unix socket (as a hypervisor on the host
    would, and as the nbdkit targets are reached); `cairn-tcp` through its TCP
    port. The SDC reaches the SDSs, all on this host, through their unix
    sockets; with tcp_links (`cairn-tcplinks`) through TCP 127.0.0.1, as it
    reaches SDSs on other hosts, so every frame between them carries its MAC."""

    def __init__(self, work, size, build, tcp=False, suffix="", metrics=False, tcp_links=False,
                 macs=None):
        self.name = ("cairn-tcp" if tcp else "cairn-tcplinks" if tcp_links else "cairn") + suffix
        self.work, self.size, self.build = os.path.join(work, self.name), size, build
        self.tcp, self.tcp_links = tcp, tcp_links
        self.macs = macs  # CAIRN_LINK_MACS for the daemons (docs/security.md)
        # metrics: every daemon serves /metrics and is scraped every second
        # while the target is up (Prometheus's usual interval is 15 s)
        self.metrics = metrics
        self.scraper = None
        self.label = ("Cairn" + (f" ({suffix[1:]} build)" if suffix and not macs else "") +
                      " (3 SDSs, 2 copies, NBD via SDC, " +
                      ("TCP 127.0.0.1)" if tcp else "unix socket)") +
                      (", SDC and SDSs linked by TCP 127.0.0.1" if tcp_links else "") +
                      (f", link MACs {macs} only" if macs else ""))

    def setup(self):
        from cluster import Cluster
        if self.macs:  # the daemons, started now, inherit it
            os.environ["CAIRN_LINK_MACS"] = self.macs
        self.c = Cluster(self.work, sds_sizes=(4 * GiB, 6 * GiB, 8 * GiB), pgs=1024,
                         build=self.build, metrics=self.metrics,
                         sds_args=["--local-socket", "none"] if self.tcp_links else []).start()
        os.environ.pop("CAIRN_LINK_MACS", None)
        self.c.create_volume("bench", self.size)
        if self.metrics:
            self.scraping = threading.Event()
            self.scraper = threading.Thread(target=self._scrape, daemon=True)
            self.scraper.start()

    def _scrape(self):
        import urllib.request
        while not self.scraping.wait(1.0):
            for addr in self.c.metrics_addrs.values():
                try:
                    req = urllib.request.Request(
                        f"http://{addr}/metrics",
                        headers={"Authorization": f"Bearer {self.c.metrics_token}"})
                    with urllib.request.urlopen(req, timeout=5) as r:
                        r.read()
                except OSError:
                    pass

    def teardown(self):
        if self.scraper:
            self.scraping.set()
            self.scraper.join()
            self.scraper = None
        self.c.shutdown()
        shutil.rmtree(self.work, ignore_errors=True)

    def pids(self):
        return [d.proc.pid for d in self.c.daemons.values() if d.alive()]

    def fio_args(self):
        uri = self.c.uri("bench") if self.tcp else self.c.unix_uri("bench")
        return ["--ioengine=nbd", f"--uri={uri}", f"--size={self.size}"]


class Nbdkit(Target):
    def __init__(self, work, size, plugin):
        self.work, self.size, self.plugin = work, size, plugin
        self.name = f"nbdkit-{plugin}"
        self.label = ("nbdkit memory (unix socket)" if plugin == "memory"
                      else "nbdkit file cache=none (unix socket)")
        self.sock = os.path.join(work, f"nbdkit-{plugin}.sock")
        self.file = os.path.join(work, "nbdkit-file.img")

    def setup(self):
        args = ["nbdkit", "-f", "-U", self.sock, "--threads", "16"]
        if self.plugin == "memory":
            args += ["memory", str(self.size)]
        else:
            with open(self.file, "wb") as f:
                f.truncate(self.size)
            args += ["file", self.file, "cache=none"]
        self.proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not os.path.exists(self.sock):
            if time.time() > deadline:
                raise RuntimeError("nbdkit did not start")
            time.sleep(0.05)

    def teardown(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        if os.path.exists(self.file):
            os.unlink(self.file)

    def pids(self):
        return [self.proc.pid]

    def fio_args(self):
        return ["--ioengine=nbd", f"--uri=nbd+unix:///?socket={self.sock}", f"--size={self.size}"]


class Ceph(Target):
    name, label = "ceph-rbd", "Ceph RBD (1 mon, 3 OSDs on files, size=2)"

    def __init__(self, work, size):
        self.dir, self.size = os.path.join(work, "ceph"), size

    def setup(self):
        run(os.path.join(HERE, "ceph.sh"), "up", self.dir, str(self.size // MiB))

    def teardown(self):
        subprocess.run([os.path.join(HERE, "ceph.sh"), "down", self.dir])
        shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self):
        out = []
        for f in os.listdir(self.dir):
            if f.endswith(".pid"):
                with open(os.path.join(self.dir, f)) as fh:
                    out.append(int(fh.read().strip()))
        return out

    def fio_args(self):
        return ["--ioengine=rbd", "--clientname=admin", "--pool=bench", "--rbdname=img",
                f"--size={self.size}", f"--env=CEPH_CONF={self.dir}/ceph.conf"]


# ---- one fio job ----

def fio(target, rw, bs, qd, runtime, extra=()):
    args = ["fio", "--name=bench", f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}",
            "--output-format=json", "--lat_percentiles=1", "--percentile_list=50:99",
            "--randrepeat=0", "--norandommap"] + target.fio_args() + list(extra)
    if runtime:
        args += ["--time_based", f"--runtime={runtime}", "--ramp_time=2"]
    env = dict(os.environ)
    for a in args:
        if a.startswith("--env="):
            k, v = a[6:].split("=", 1)
            env[k] = v
    args = [a for a in args if not a.startswith("--env=")]
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"fio failed for {target.name}: {r.stderr.strip()[-500:]}")
    # fio may print warnings before the JSON
    return json.loads(r.stdout[r.stdout.index("{"):])


def measure(target, job, runtime):
    name, rw, bs, qd = job
    for attempt in range(3):
        idle, busy = wait_idle()
        pids = target.pids()
        c0 = sum(proc_cpu(p) for p in pids)
        s0, a0, _ = system_cpu()
        ru0 = os.times()
        t0 = time.monotonic()
        out = fio(target, rw, bs, qd, runtime)
        wall = time.monotonic() - t0
        ru1 = os.times()
        s1, a1, _ = system_cpu()
        c1 = sum(proc_cpu(p) for p in pids)
        fio_cpu = (ru1.children_user - ru0.children_user) + (ru1.children_system -
                                                                ru0.children_system)
        server = c1 - c0
        other = (s1 - s0) - server - fio_cpu
        j = out["jobs"][0]
        side = j["read"] if rw in ("read", "randread") else j["write"]
        ios = side["total_ios"]
        res = {
            "iops": side["iops"],
            "mib_s": side["bw_bytes"] / MiB,
            "lat_mean_us": side["lat_ns"]["mean"] / 1000,
            "lat_p99_us": side["lat_ns"]["percentile"]["99.000000"] / 1000,
            "cpu_us_per_io": None,
            "other_cpu_cores": other / wall,
            "idle_before": idle,
            "attempts": attempt + 1,
        }
        # the server's CPU per I/O; the ramp's I/Os are not in total_ios, so the
        # CPU measured over ramp + runtime is scaled to the timed part
        if pids and ios and runtime:
            res["cpu_us_per_io"] = server * (runtime / (runtime + 2)) * 1e6 / ios
        disturbed = res["other_cpu_cores"] > 0.2
        res["disturbed"] = disturbed
        if not disturbed:
            return res
        log(f"    disturbed (others used {res['other_cpu_cores']:.2f} cores): again")
    return res


def run_rounds(targets, size, runtime, rounds):
    """Every target up at once; each job run rounds times on each target in
    turn, the first target of a round rotating; per job and target, the run
    of median IOPS, with the others' range in iops_min/iops_max."""
    up = []
    results = {}
    try:
        for t in targets:
            log(f"== {t.label}")
            t.setup()
            up.append(t)
            precondition(t, size)
        for j in JOBS:
            runs = {t.name: [] for t in up}
            for r in range(rounds):
                for k in range(len(up)):
                    t = up[(r + k) % len(up)]
                    runs[t.name].append(measure(t, j, runtime))
            for t in up:
                rs = sorted(runs[t.name], key=lambda x: x["iops"])
                med = dict(rs[len(rs) // 2])
                med["iops_min"], med["iops_max"] = rs[0]["iops"], rs[-1]["iops"]
                med["rounds"] = rounds
                results.setdefault(t.name, {})[j[0]] = med
                log(f"  {t.name:16} {j[0]:18} median {med['iops']:10,.0f} IOPS "
                    f"(range {med['iops_min']:,.0f}-{med['iops_max']:,.0f}) mean "
                    f"{med['lat_mean_us']:8.1f} µs cpu/io {fmt(med['cpu_us_per_io'], 1)} µs")
    finally:
        for t in up:
            t.teardown()
    return results


def precondition(target, size):
    log(f"  preconditioning {target.name}: writing {size // MiB} MiB once")
    fio(target, "write", "1M", 8, None)


# ---- the rebuild benchmark ----

def rebuild_bench(work, build, fill, runtime):
    from cluster import Cluster, wait_for
    c = Cluster(os.path.join(work, "rebuild"), sds_sizes=(4 * GiB,) * 4, pgs=1024, build=build)
    res = {}
    try:
        c.start()
        c.create_volume("rb", fill)

        class T(Target):
            name = "cairn"

            def fio_args(self):
                return ["--ioengine=nbd", f"--uri={c.unix_uri('rb')}", f"--size={fill}"]
        t = T()
        precondition(t, fill)
        wait_idle()
        before = fio(t, "randread", "4k", 8, runtime)["jobs"][0]["read"]
        res["p99_before_us"] = before["lat_ns"]["percentile"]["99.000000"] / 1000
        res["iops_before"] = before["iops"]
        st = c.status()
        victim = max(st["sds"], key=lambda s: sum(d["used"] for d in s["devices"]))
        res["victim_bytes"] = sum(d["used"] for d in victim["devices"])
        lat_log = os.path.join(work, "rebuild-lat")
        args = ["fio", "--name=rb", "--rw=randread", "--bs=4k", "--iodepth=8",
                "--time_based", "--runtime=600", "--output-format=json",
                f"--write_lat_log={lat_log}", "--log_avg_msec=0", "--randrepeat=0",
                "--norandommap"] + t.fio_args()
        f = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(3)
        t_start = time.monotonic()
        c.daemons[victim["name"]].stop(signal.SIGKILL)
        log(f"  killed {victim['name']} holding {res['victim_bytes'] / MiB:.0f} MiB")

        def state():
            s = c.status()
            pool = s["pools"][0]
            return s, pool

        wait_for("the SDS marked down", lambda: state()[1]["pgs_degraded"] > 0, timeout=30,
                 interval=0.1)
        t_down = time.monotonic()
        wait_for("every PG fully protected again",
                 lambda: state()[1]["pgs_degraded"] == 0, timeout=1200, interval=0.25)
        t_done = time.monotonic()
        f.send_signal(signal.SIGINT)
        f.wait(60)
        res["detect_s"] = t_down - t_start
        res["rebuild_s"] = t_done - t_down
        res["rebuild_mib_s"] = res["victim_bytes"] / MiB / max(res["rebuild_s"], 1e-9)
        # p99 of the reads that completed while the rebuild ran
        lats = []
        path = lat_log + "_lat.1.log"
        # fio's log times are ms since fio started; fio started 3 s before the kill
        with open(path) as fh:
            for line in fh:
                parts = line.split(",")
                tms, ns = int(parts[0]), int(parts[1])
                if 3000 + (t_down - t_start) * 1000 <= tms <= 3000 + (t_done - t_start) * 1000:
                    lats.append(ns)
        lats.sort()
        res["p99_during_us"] = lats[int(len(lats) * 0.99)] / 1000 if lats else None
        res["reads_during"] = len(lats)
        return res
    finally:
        c.shutdown()


# ---- report ----

def ratio_checks(results):
    """(description, value, bound, passed) for each target of the issue."""
    def g(t, j, k):
        return results.get(t, {}).get(j, {}).get(k)
    checks = []

    def add(desc, val, bound, ok):
        checks.append((desc, val, bound, ok))

    def ratio(a, b):
        return a / b if a is not None and b else None

    r = ratio(g("cairn", "4k randread QD32", "iops"), g("device", "4k randread QD32", "iops"))
    add("4k randread QD32 IOPS vs device", r, ">= 0.70", r is not None and r >= 0.7)
    r = ratio(g("cairn", "4k randread QD1", "lat_mean_us"),
              g("device", "4k randread QD1", "lat_mean_us"))
    add("4k randread QD1 mean latency vs device", r, "<= 2.0", r is not None and r <= 2.0)
    r = ratio(g("cairn", "4k randwrite QD32", "iops"), g("device", "4k randwrite QD32", "iops"))
    add("4k randwrite QD32 IOPS vs device", r, ">= 0.45", r is not None and r >= 0.45)
    r = ratio(g("cairn", "4k randwrite QD1", "lat_mean_us"),
              g("device", "4k randwrite QD1", "lat_mean_us"))
    add("4k randwrite QD1 mean latency vs device", r, "<= 2.5", r is not None and r <= 2.5)
    for j in JOBS[:4]:
        r = ratio(g("cairn", j[0], "iops"), g("nbdkit-file", j[0], "iops"))
        add(f"{j[0]} IOPS vs nbdkit-file", r, ">= 1.0", r is not None and r >= 1.0)
    for j in JOBS[:4]:
        r = ratio(g("cairn", j[0], "iops"), g("ceph-rbd", j[0], "iops"))
        add(f"{j[0]} IOPS vs Ceph RBD", r, ">= 5.0", r is not None and r >= 5.0)
        r = ratio(g("cairn", j[0], "cpu_us_per_io"), g("ceph-rbd", j[0], "cpu_us_per_io"))
        add(f"{j[0]} CPU per I/O vs Ceph RBD", r, "<= 0.2", r is not None and r <= 0.2)
    r = ratio(g("cairn", "1M read QD8", "mib_s"), g("device", "1M read QD8", "mib_s"))
    add("1M read QD8 MiB/s vs device", r, ">= 0.80", r is not None and r >= 0.8)
    r = ratio(g("cairn", "1M write QD8", "mib_s"), g("device", "1M write QD8", "mib_s"))
    add("1M write QD8 MiB/s vs device", r, ">= 0.45", r is not None and r >= 0.45)
    return checks


def fmt(v, nd=0):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}"


def report(out, results, targets, meta, rebuild):
    lines = [f"# Cairn benchmark, {meta['date']}", "",
             f"Machine: {meta['machine']}. fio {meta['fio']}; {meta['runtime']} s per job after "
             f"2 s ramp, time-based, over a {meta['size'] // MiB} MiB region written once "
             "first. Latency is fio's total latency. CPU/IO: CPU time of the target's server "
             "processes per I/O (the device has none).", ""]
    for t in targets:
        lines.append(f"- **{t.name}**: {t.label}")
    lines.append("")
    lines.append("| job | target | IOPS | MiB/s | mean µs | p99 µs | CPU µs/IO | note |")
    lines.append("|---|---|--:|--:|--:|--:|--:|---|")
    for j in JOBS:
        for t in targets:
            r = results.get(t.name, {}).get(j[0])
            if not r:
                lines.append(f"| {j[0]} | {t.name} | failed | | | | | |")
                continue
            note = []
            if r["disturbed"]:
                note.append("disturbed")
            if not r["idle_before"]:
                note.append("machine busy before")
            if r["attempts"] > 1:
                note.append(f"{r['attempts']} runs")
            if r.get("rounds"):
                note.append(f"median of {r['rounds']}, IOPS {fmt(r['iops_min'])}-"
                            f"{fmt(r['iops_max'])}")
            lines.append(f"| {j[0]} | {t.name} | {fmt(r['iops'])} | {fmt(r['mib_s'], 1)} | "
                         f"{fmt(r['lat_mean_us'], 1)} | {fmt(r['lat_p99_us'], 1)} | "
                         f"{fmt(r['cpu_us_per_io'], 1)} | {', '.join(note)} |")
    lines += ["", "## Cairn against the targets", "", "| check | ratio | bound | |",
              "|---|--:|--:|---|"]
    for desc, val, bound, ok in ratio_checks(results):
        lines.append(f"| {desc} | {fmt(val, 2)} | {bound} | {'pass' if ok else 'SHORT'} |")
    lines += ["", "## Cairn's IOPS over each target's, per job", "",
              "| job | " + " | ".join(t.name for t in targets if t.name != "cairn") + " |",
              "|---|" + "--:|" * (len(targets) - 1)]
    for j in JOBS:
        row = [j[0]]
        c = results.get("cairn", {}).get(j[0])
        for t in targets:
            if t.name == "cairn":
                continue
            o = results.get(t.name, {}).get(j[0])
            row.append(fmt(c["iops"] / o["iops"], 2) + "x" if c and o and o["iops"] else "-")
        lines.append("| " + " | ".join(row) + " |")
    if rebuild:
        lines += ["", "## Rebuild speed (4 SDSs, one killed)", "",
                  f"- data on the killed SDS: {rebuild['victim_bytes'] / MiB:.0f} MiB; "
                  f"detected after {rebuild['detect_s']:.1f} s; re-protected in "
                  f"{rebuild['rebuild_s']:.1f} s = **{rebuild['rebuild_mib_s']:.0f} MiB/s** "
                  f"(throttle: cairn-sds --rebuild-rate, default 64 MiB/s per SDS)",
                  f"- client 4k randread QD8: p99 {fmt(rebuild['p99_before_us'])} µs before "
                  f"({fmt(rebuild['iops_before'])} IOPS), "
                  f"**{fmt(rebuild['p99_during_us'])} µs** during the rebuild "
                  f"({rebuild['reads_during']} reads)"]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results, "rebuild": rebuild}, f, indent=1)
    chart(out, results, targets)
    return text


def chart(out, results, targets):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no chart")
        return
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    width = 0.8 / max(len(targets), 1)
    panels = [("IOPS (4 KiB jobs)", JOBS[:4], "iops", True),
              ("mean latency, µs (4 KiB jobs)", JOBS[:4], "lat_mean_us", True),
              ("MiB/s (1 MiB jobs)", JOBS[4:], "mib_s", False)]
    for ax, (title, jobs, key, logy) in zip(axes, panels):
        for i, t in enumerate(targets):
            vals = [(results.get(t.name, {}).get(j[0]) or {}).get(key) or 0 for j in jobs]
            ax.bar([k + i * width for k in range(len(jobs))], vals, width, label=t.name)
        ax.set_xticks([k + width * (len(targets) - 1) / 2 for k in range(len(jobs))])
        ax.set_xticklabels([j[0] for j in jobs], rotation=15)
        ax.set_title(title)
        if logy:
            ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "chart.png"), dpi=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True, help="Cairn build directory (release)")
    ap.add_argument("--out", required=True, help="results folder")
    ap.add_argument("--work", default=None, help="scratch folder on the disk under test")
    ap.add_argument("--size", default=1024, type=int, help="MiB per target")
    ap.add_argument("--runtime", default=15, type=int, help="seconds per job")
    ap.add_argument("--targets",
                    default="device,cairn,cairn-tcp,nbdkit-memory,nbdkit-file,ceph-rbd")
    ap.add_argument("--no-rebuild", action="store_true")
    ap.add_argument("--jobs", default=None,
                    help="only these jobs (comma-separated names, e.g. '4k randwrite QD32,1M write QD8')")
    ap.add_argument("--rounds", type=int, default=1,
                    help="set every target up at once and run each job ROUNDS times on each, "
                         "in turn (the order rotating), and report the median run: for comparing "
                         "two builds on a machine whose speed drifts")
    ap.add_argument("--baseline-build", default=None,
                    help="a build of another commit: adds targets cairn-base, cairn-tcp-base and "
                         "cairn-tcplinks-base")
    ap.add_argument("--metrics", action="store_true",
                    help="targets cairn and cairn-tcp serve metrics, scraped every second "
                         "(the baseline targets do not)")
    a = ap.parse_args()
    if a.jobs:
        wanted = [j.strip() for j in a.jobs.split(",")]
        unknown = [w for w in wanted if w not in [j[0] for j in JOBS]]
        if unknown:
            ap.error(f"unknown jobs {unknown}; the jobs are: {', '.join(j[0] for j in JOBS)}")
        JOBS[:] = [j for j in JOBS if j[0] in wanted]
    size = a.size * MiB
    os.makedirs(a.out, exist_ok=True)
    work = a.work or os.path.join(a.out, "work")
    os.makedirs(work, exist_ok=True)
    all_targets = {
        "device": lambda: Device(work, size),
        "cairn": lambda: Cairn(work, size, a.build, metrics=a.metrics),
        "cairn-tcp": lambda: Cairn(work, size, a.build, tcp=True, metrics=a.metrics),
        "cairn-tcplinks": lambda: Cairn(work, size, a.build, tcp_links=True),
        "cairn-tcplinks-poly1305": lambda: Cairn(work, size, a.build, tcp_links=True,
                                                 suffix="-poly1305", macs="poly1305"),
        "nbdkit-memory": lambda: Nbdkit(work, size, "memory"),
        "nbdkit-file": lambda: Nbdkit(work, size, "file"),
        "ceph-rbd": lambda: Ceph(work, size),
    }
    if a.baseline_build:
        all_targets["cairn-base"] = lambda: Cairn(work, size, a.baseline_build, suffix="-base")
        all_targets["cairn-tcp-base"] = lambda: Cairn(work, size, a.baseline_build, tcp=True,
                                                      suffix="-base")
        all_targets["cairn-tcplinks-base"] = lambda: Cairn(work, size, a.baseline_build,
                                                           tcp_links=True, suffix="-base")
    targets = [all_targets[n]() for n in a.targets.split(",")]
    fio_v = subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "fio": fio_v, "runtime": a.runtime,
            "size": size,
            "machine": f"{os.cpu_count()} CPUs, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / GiB:.0f} GiB, "
                       f"{os.uname().sysname} {os.uname().release}"}
    results = {}
    if a.rounds > 1:
        results = run_rounds(targets, size, a.runtime, a.rounds)
    for t in targets if a.rounds <= 1 else []:
        log(f"== {t.label}")
        try:
            t.setup()
        except Exception as e:  # noqa: BLE001 - one target failing must not lose the rest
            log(f"  could not set up {t.name}: {e}")
            continue
        try:
            precondition(t, size)
            results[t.name] = {}
            for j in JOBS:
                r = measure(t, j, a.runtime)
                results[t.name][j[0]] = r
                log(f"  {j[0]:18} {r['iops']:10,.0f} IOPS {r['mib_s']:8.1f} MiB/s "
                    f"mean {r['lat_mean_us']:8.1f} µs p99 {r['lat_p99_us']:8.1f} µs "
                    f"cpu/io {fmt(r['cpu_us_per_io'], 1)} µs")
        except Exception as e:  # noqa: BLE001
            log(f"  {t.name} failed: {e}")
        finally:
            t.teardown()
    rebuild = None
    if not a.no_rebuild:
        log("== rebuild speed")
        try:
            rebuild = rebuild_bench(work, a.build, 2 * GiB, a.runtime)
            log(f"  {rebuild}")
        except Exception as e:  # noqa: BLE001
            log(f"  rebuild benchmark failed: {e}")
    shutil.rmtree(work, ignore_errors=True)
    print(report(a.out, results, targets, meta, rebuild))


if __name__ == "__main__":
    main()
