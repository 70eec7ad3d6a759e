"""The faults of tests/soak.py, and what it waits for after each.

SDS faults (an SDS chosen at random): kill9 (kill -9, restarted after the
hold), sigstop (SIGSTOP for the hold, then SIGCONT), cut (its link cut for
the hold, then restored), restart (SIGTERM and start). sdc-kill9: the SDC
killed with -9 and started again. With one MDM: mdm-kill9 (killed with -9,
started 2 s later). With three or more MDMs: mdm-leader-kill9 (the leader
killed with -9, restarted from its data directory after the hold),
mdm-leader-sigstop (the leader paused for the hold, then SIGCONT: it must
step down, a new leader having been elected in a later term),
mdm-leader-cut (the leader's link cut for the hold, then restored) and
mdm-follower-kill9 (a follower chosen at random killed with -9, restarted
after the hold).

For every MDM fault a CliProbe measures the time to a working CLI: from
the fault, a real change (cairn volume create of a fresh 16 MiB volume,
with every MDM's address and a short --mdm-timeout per try) is tried
again and again until one is made. With several MDMs a CliWatch also
measures what the fault's end costs the CLI (an MDM that rejoins may force
an election): from the end until the cluster has settled (and 1 s more),
changes tried 0.2 s apart, and the longest gap between two made. The
volumes are removed once the cluster has settled.
"""
import json
import signal
import threading
import time

SDS_FAULTS = ["kill9", "sigstop", "cut", "restart"]
MDM_FAULTS = ["mdm-leader-kill9", "mdm-leader-sigstop", "mdm-leader-cut", "mdm-follower-kill9"]
HOLD = 6.0  # seconds a fault lasts: well past the MDM's --sds-timeout (2 s by default)
# each CLI try's --mdm-timeout: the CLI's 2 s connect limit (a paused or cut
# MDM listed before the others costs that much) and an election after it
PROBE_TRY = 4
PROBE_LIMIT = 120  # no change made within this of the fault: a failure
WATCH_PACE = 0.2  # between CliWatch's tries


def fault_kinds(mdms):
    return SDS_FAULTS + ["sdc-kill9"] + (MDM_FAULTS if mdms > 1 else ["mdm-kill9"])


def is_mdm_fault(fault):
    return fault.startswith("mdm-")


def members(c, timeout=30):
    """cairn mdm list --json: each MDM's own view (role, term, indexes)."""
    return json.loads(c.cairn("mdm", "list", json_out=True, timeout=timeout).stdout)


def leader(c):
    """(id, term) of the one MDM that says it leads, or None."""
    ls = [m for m in members(c) if m["role"] == "leader"]
    return (ls[0]["id"], ls[0]["term"]) if len(ls) == 1 else None


class CliProbe(threading.Thread):
    """From monotonic time t0, a fresh volume created through the CLI (every
    MDM's address, --mdm-timeout PROBE_TRY) again and again until one is
    made: took is the time from t0 to the end of the first that was, or None
    if none was within PROBE_LIMIT. Each try is a new volume: a try whose
    outcome the CLI called unknown may have made its volume."""

    def __init__(self, c, t0, tag):
        super().__init__(daemon=True)
        self.c, self.t0, self.tag = c, t0, tag
        self.took = None
        self.tries = 0
        self.failures = []  # the CLI's messages of the tries that failed

    def run(self):
        while time.monotonic() - self.t0 < PROBE_LIMIT:
            self.tries += 1
            r = self.c.cairn("--mdm-timeout", str(PROBE_TRY), "volume", "create",
                             f"probe-{self.tag}-{self.tries}", "--size", "16M", check=False,
                             timeout=PROBE_TRY + 30)
            if r.returncode == 0:
                self.took = time.monotonic() - self.t0
                return
            self.failures.append(r.stderr.strip())
            time.sleep(0.1)  # the pace of the tries; the CLI itself polls for a leader


class CliWatch(threading.Thread):
    """From the end of an MDM fault (the MDM started again, resumed or
    reconnected) until stopped: changes (fresh volumes, as CliProbe's) tried
    one after the other, WATCH_PACE apart. gap is the longest time between
    two changes made (or from the start to the first): what a rejoining MDM
    costs the CLI, an election it forces included."""

    def __init__(self, c, tag):
        super().__init__(daemon=True)
        self.c, self.tag = c, tag
        self.done = threading.Event()
        self.gap = 0.0
        self.tries = 0
        self.failures = []

    def run(self):
        last_ok = time.monotonic()
        while not self.done.is_set():
            self.tries += 1
            r = self.c.cairn("--mdm-timeout", str(PROBE_TRY), "volume", "create",
                             f"probe-{self.tag}-w{self.tries}", "--size", "16M", check=False,
                             timeout=PROBE_TRY + 30)
            now = time.monotonic()
            if r.returncode == 0:
                self.gap = max(self.gap, now - last_ok)
                last_ok = now
            else:
                self.failures.append(r.stderr.strip())
            self.done.wait(WATCH_PACE)
        if self.failures and r.returncode != 0:  # still none made at the end
            self.gap = max(self.gap, time.monotonic() - last_ok)

    def finish(self):
        self.done.set()
        self.join(PROBE_TRY + 40)
        return self.gap


def start_again(c, i):
    """MDM i (killed) started again from its data directory."""
    if i == 1:
        c.start_mdm()
    else:
        c.start_peer_mdm(i, join=False)


def inject(c, fault, i, rng, tag):
    """Inject fault (SDS faults hit SDS index i), hold it, end it. Returns
    (target, probe, watch, before): what was hit, the CliProbe of an MDM
    fault (None otherwise; started at the fault, maybe still running), the
    CliWatch started as the fault of an MDM of several ended (None
    otherwise; running: the caller finishes it) and the leader (id, term)
    before it."""
    probe, before = None, None
    if is_mdm_fault(fault) and c.n_mdms > 1:
        before = leader(c)
        assert before, "no single leader before an MDM fault"
        lead = before[0]
        target = lead
        if fault == "mdm-follower-kill9":
            target = rng.choice([j for j in range(1, c.n_mdms + 1) if j != lead])
        name = c.mdm_name(target)
        t0 = time.monotonic()
        if fault in ("mdm-leader-kill9", "mdm-follower-kill9"):
            c.daemons[name].stop(signal.SIGKILL)
        elif fault == "mdm-leader-sigstop":
            c.daemons[name].proc.send_signal(signal.SIGSTOP)
        elif fault == "mdm-leader-cut":
            c.cut_mdm(target)
        probe = CliProbe(c, t0, tag)
        probe.start()
        time.sleep(HOLD)
        watch = CliWatch(c, tag)
        watch.start()
        if fault in ("mdm-leader-kill9", "mdm-follower-kill9"):
            start_again(c, target)
        elif fault == "mdm-leader-sigstop":
            c.daemons[name].proc.send_signal(signal.SIGCONT)
        elif fault == "mdm-leader-cut":
            c.restore_mdm(target)
        return name, probe, watch, before
    if fault == "mdm-kill9":  # the one MDM
        t0 = time.monotonic()
        c.daemons["mdm"].stop(signal.SIGKILL)
        probe = CliProbe(c, t0, tag)
        probe.start()
        time.sleep(2)
        c.start_mdm()
        return "mdm", probe, None, None
    name = f"sds{i + 1}"
    if fault == "kill9":
        c.daemons[name].stop(signal.SIGKILL)
        time.sleep(HOLD)
        c.start_sds(i)
    elif fault == "sigstop":
        c.daemons[name].proc.send_signal(signal.SIGSTOP)
        time.sleep(HOLD)
        c.daemons[name].proc.send_signal(signal.SIGCONT)
    elif fault == "cut":
        c.cut(i)
        time.sleep(HOLD)
        c.restore(i)
    elif fault == "restart":
        c.daemons[name].stop(signal.SIGTERM)
        c.start_sds(i)
    elif fault == "sdc-kill9":
        c.daemons["sdc"].stop(signal.SIGKILL)
        c.start_sdc()
        return "sdc", None, None, None
    return name, None, None, None


def sds_healthy(c):
    """Every SDS up and connected, every PG fully protected, no rebuild."""
    st = c.status()
    p = st["pools"][0]
    return (all(s["state"] == "up" and s["connected"] for s in st["sds"])
            and p["pgs_fully_protected"] == p["pg_count"] and p["pgs_rebuilding"] == 0)


class MdmsSettled:
    """Every MDM reachable, leader or follower, one leader, and each has
    applied what that leader had committed when first seen so: a callable
    for polling."""

    def __init__(self, c):
        self.c, self.target = c, None
        self.leader = None  # (id, term) once settled

    def __call__(self):
        ms = members(self.c)
        if len(ms) != self.c.n_mdms or any(
                not m["reachable"] or m["role"] not in ("leader", "follower") for m in ms):
            return False
        ls = [m for m in ms if m["role"] == "leader"]
        if len(ls) != 1:
            return False
        if self.target is None:
            self.target = ls[0]["commit_index"]
        if all(m.get("applied_index", -1) >= self.target for m in ms):
            self.leader = (ls[0]["id"], ls[0]["term"])
            return True
        return False


def exit_of(rc):
    return f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit {rc}"


def dead_daemons(c):
    return [n for n, d in c.daemons.items() if not d.alive()]


def log_tail(c, name, lines=30):
    with open(c.daemons[name].log, "rb") as f:
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def settle(c, mdm_fault, timeout=180):
    """Poll until the cluster is whole again: every SDS up and every PG
    fully protected, and after an MDM fault every MDM back with one leader.
    Returns (None, the MdmsSettled) once it is, or (why not, ...) if a
    daemon died or the time ran out."""
    t0 = time.monotonic()
    mdms = MdmsSettled(c) if mdm_fault and c.n_mdms > 1 else None
    last = None
    while time.monotonic() - t0 < timeout:
        dead = dead_daemons(c)
        if dead:
            return "daemon(s) died: " + ", ".join(
                f"{n} ({exit_of(c.daemons[n].proc.returncode)})" for n in dead), mdms
        try:
            if sds_healthy(c) and (mdms is None or mdms()):
                return None, mdms
        except Exception as e:  # noqa: BLE001 - a CLI failure while it settles: poll on
            last = e
        time.sleep(0.5)
    return f"not whole within {timeout} s (last error: {last})", mdms


def remove_probes(c):
    """Remove the probes' volumes (none is mapped)."""
    for v in c.status()["volumes"]:
        if v["name"].startswith("probe-"):
            c.cairn("volume", "remove", v["name"])
