"""Debian 12 hosts booted as systemd-nspawn containers for deployment tests
(Ansible over SSH, power cuts, frozen hosts, cut links); root, /usr/bin/python3.
Where PID 1 is not systemd (the CI machines) nspawn needs --register=no
--keep-unit (else "Failed to open system bus"), a tmpfs on /run/systemd/nspawn
(else it fails removing .../propagate), one cgroup per host in both hierarchies
(hosts from one share payload/ and collide), and a relaunch on exit code 133
(a reboot inside; nothing else restarts it).

    with Fleet([("mdm1", "10.77.0.11")], wd, build_rootfs(CAIRN_HOST_PACKAGES)) as f:
        f.boot(); f.ssh("mdm1", "true"); f.power_cut("mdm1"); f.start("mdm1")"""
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hosts_rootfs import (CACHE_DIR, HostError, build_rootfs,  # noqa: E402
                          log, rootfs_cache_path, unpack_rootfs, _run)

__all__ = ["CACHE_DIR", "CAIRN_HOST_PACKAGES", "Fleet", "HostError",
           "build_rootfs", "reap_stale", "rootfs_cache_path", "unpack_rootfs"]

# The runtime dependencies of Cairn's .deb packages except libraft0, which the
# test ships as a .deb itself (hosts never reach an archive), and python3-apt
# for Ansible's apt module.
CAIRN_HOST_PACKAGES = ["adduser", "libuv1", "liburing2", "libprotobuf-c1",
                       "liblz4-1", "libmicrohttpd12", "libjansson4",
                       "libgnutls30", "libsodium23", "libsystemd0",
                       "nbd-client", "libnbd-bin", "python3-libnbd", "python3-apt"]
NSPAWN_RUN = "/run/systemd/nspawn"
# Who uses the tmpfs above (users/), and what each live Fleet made (fleets/),
# so that what a killed run left behind is removed by the next one.
STATE_DIR = "/run/cairn-test-hosts"
CG_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")
EXIT_REBOOT = 133                        # nspawn's exit code on a reboot inside


def _poll(what, deadline, cond, interval=0.1, fail=HostError):
    """Calls cond() until it returns a true value, then returns it; raises
    fail("timed out waiting for " + what) when the deadline (of
    time.monotonic()) passes."""
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise fail("timed out waiting for " + what)
        time.sleep(interval)


# ----------------------------------------------------------------- helpers

def _mounts():
    """Mount points of this mount namespace, in mount order."""
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4].encode().decode("unicode_escape") for ln in f]


def _children(pid):
    kids = []
    for n in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % n) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(n))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def nspawn_pids():
    """Every systemd-nspawn process of the machine, any fleet's or not."""
    pids = []
    for n in filter(str.isdigit, os.listdir("/proc")):
        try:
            if open("/proc/%s/comm" % n).read().strip() == "systemd-nspawn":
                pids.append(int(n))
        except OSError:
            pass
    return pids


def _cg_procs(path):
    """Every pid in the cgroup at path and below."""
    pids = []
    for d, _, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    return pids


def _cg_remove(path):
    """Removes a cgroup and its children, deepest first (all must be empty)."""
    if not os.path.isdir(path):
        return
    for d, _, _ in sorted(os.walk(path), key=lambda w: -len(w[0])):
        os.rmdir(d)


def _loops_under(d):
    out = _run(["losetup", "--list", "--noheadings", "-O", "NAME,BACK-FILE"]).stdout
    return [ln.split(None, 1)[0] for ln in out.splitlines()
            if len(ln.split(None, 1)) == 2 and ln.split(None, 1)[1].startswith(d + "/")]


def _teardown(rec):
    """Removes what a Fleet made, as named by its record: processes in its
    cgroups, the cgroups, mounts and loop devices under its workdir, its
    bridge, the workdir. Returns the list of what failed."""
    errors = []

    def step(what, fn, *a):
        try:
            fn(*a)
        except Exception as e:
            errors.append("%s: %s" % (what, e))
    for cg in rec["cgroups"]:
        fz = os.path.join(cg, "cgroup.freeze")
        if os.path.exists(fz):      # SIGKILL reaches frozen tasks, but thaw anyway
            step("thawing " + cg, lambda: open(fz, "w").write("0"))
    deadline = time.monotonic() + 10
    while True:
        pids = {p for cg in rec["cgroups"] for p in _cg_procs(cg)}
        if not pids:
            break
        if time.monotonic() > deadline:
            errors.append("processes %s survive SIGKILL" % sorted(pids))
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for cg in rec["cgroups"]:
        step("removing cgroup " + cg, _cg_remove, cg)
    wd = rec["workdir"]
    for mp in reversed(_mounts()):
        if mp == wd or mp.startswith(wd + "/"):
            step("unmounting " + mp, _run, ["umount", mp])
    for dev in _loops_under(wd):
        step("detaching " + dev, _run, ["losetup", "-d", dev])
    if os.path.exists("/sys/class/net/" + rec["bridge"]):
        step("deleting bridge " + rec["bridge"], _run, ["ip", "link", "del", rec["bridge"]])
    left = [m for m in _mounts() if m.startswith(wd + "/")]
    if left:
        errors.append("not removing %s: still mounted: %s" % (wd, left))
    elif os.path.exists(wd):
        step("removing " + wd, shutil.rmtree, wd)
    return errors


def reap_stale():
    """Tears down what Fleets of processes that died without cleanup left
    (nspawns, cgroups, mounts, loops, bridges, workdirs). Fleet.setup() calls
    it; returns the number of fleets reaped."""
    d = os.path.join(STATE_DIR, "fleets")
    n = 0
    for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        p = os.path.join(d, f)
        try:
            rec = json.load(open(p))
        except (OSError, ValueError):
            continue
        if os.path.exists("/proc/%d" % rec["pid"]):
            continue
        log("reaping fleet %s of dead pid %d (workdir %s)" % (f, rec["pid"], rec["workdir"]))
        errors = _teardown(rec)
        if errors:
            log("reaping %s: %s" % (f, "; ".join(errors)))
        else:
            os.unlink(p)
            n += 1
    return n


class _Host:
    def __init__(self, name, addr):
        self.name, self.addr = name, addr
        self.thread = None          # runs nspawn, relaunching it on 133
        self.proc = None            # the current nspawn Popen
        self.wanted = False         # False: do not relaunch
        self.exit_code = None
        self.extra_args = []
        self.loops = []


# ----------------------------------------------------------------- fleet

class Fleet:
    """A set of nspawn hosts on a private bridge. hosts: [(name, address)],
    all addresses in one /24 whose .1 is the machine's side of the bridge.
    workdir is created and, by cleanup(), removed. rootfs: a .tar.zst from
    build_rootfs() or an unpacked directory (used read-only)."""

    _seq = 0

    def __init__(self, hosts, workdir, rootfs, boot_timeout=120):
        Fleet._seq += 1
        self.tag = "%d-%d" % (os.getpid(), Fleet._seq)
        self.hosts = {}
        for name, addr in hosts:
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
                raise HostError("bad host name %r" % name)
            self.hosts[name] = _Host(name, addr)
        nets = {a.rsplit(".", 1)[0] for _, a in hosts}
        if len(nets) != 1:
            raise HostError("host addresses are not in one /24: %s" % sorted(nets))
        self.net = nets.pop()
        self.gateway = self.net + ".1"
        self.bridge = ("cbr%d" % os.getpid())[:12] + "x%d" % (Fleet._seq % 100)
        self.workdir = os.path.abspath(workdir)
        self.rootfs = rootfs
        self.boot_timeout = boot_timeout
        self.key_path = os.path.join(self.workdir, "id_ed25519")
        self.ssh_config_path = os.path.join(self.workdir, "ssh_config")
        self._lock = threading.Lock()
        self._setup_done = False
        self._cleaned = False
        self._tmpfs_user = None
        self._record_path = os.path.join(STATE_DIR, "fleets", self.tag + ".json")

    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, et, ev, tb):
        try:
            self.cleanup()
        except Exception as e:
            if et is None:
                raise
            log("cleanup after a failure also failed: %s" % e)
        return False

    # --- paths
    def _hdir(self, name, *sub):
        return os.path.join(self.workdir, "hosts", name, *sub)

    def root(self, name):
        """The host's root file system as mounted on the machine."""
        return self._hdir(name, "merged")

    def data_dir(self, name):
        """The machine's directory that is the host's /data."""
        return self._hdir(name, "data")

    def log_path(self, name):
        return self._hdir(name, "console.log")

    def _cg(self, name):
        return ["%s/cairn-hosts-%s-%s" % (r, self.tag, name) for r in CG_ROOTS]

    # --- setup
    def setup(self):
        if self._setup_done:
            return
        reap_stale()
        os.makedirs(os.path.dirname(self._record_path), exist_ok=True)
        with open(self._record_path, "w") as f:
            json.dump(self._record(), f)
        os.makedirs(self.workdir, exist_ok=True)
        self._setup_done = True
        lower = self.rootfs if os.path.isdir(self.rootfs) else unpack_rootfs(self.rootfs)
        if not os.path.exists(self.key_path):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                  "cairn-fleet-" + self.tag, "-f", self.key_path])
        self._write_ssh_config()
        self._nspawn_tmpfs_acquire()
        self._make_bridge()
        errors = {}

        def prep(h):
            try:
                self._prepare_host(h, lower)
            except Exception as e:
                errors[h.name] = e
        ts = [threading.Thread(target=prep, args=(h,)) for h in self.hosts.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise HostError("preparing hosts: %s" % "; ".join(
                "%s: %s" % kv for kv in sorted(errors.items())))
        log("fleet %s: %d hosts on %s (%s.0/24), workdir %s" % (
            self.tag, len(self.hosts), self.bridge, self.net, self.workdir))

    def _record(self):
        return {"pid": os.getpid(), "workdir": self.workdir, "bridge": self.bridge,
                "cgroups": [cg for n in self.hosts for cg in self._cg(n)]}

    def _prepare_host(self, h, lower):
        """The host's overlay root with its own identity, address and keys."""
        pub = open(self.key_path + ".pub").read()
        etc_hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n" + \
            "".join("%s\t%s\n" % (x.addr, x.name) for x in self.hosts.values())
        for sub in ("upper", "work", "merged", "data"):
            os.makedirs(self._hdir(h.name, sub), exist_ok=True)
        for cg in self._cg(h.name):
            os.makedirs(cg, exist_ok=True)
        m = self.root(h.name)
        _run(["mount", "-t", "overlay", "overlay", "-o",
              "lowerdir=%s,upperdir=%s,workdir=%s" % (
                  lower, self._hdir(h.name, "upper"), self._hdir(h.name, "work")), m])
        mid = _run(["systemd-id128", "new"]).stdout.strip()
        self._write(m, "etc/machine-id", mid + "\n", 0o444)
        self._write(m, "etc/hostname", h.name + "\n")
        self._write(m, "etc/hosts", etc_hosts)
        self._write(m, "etc/systemd/network/10-host0.network",
                    "[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nGateway=%s\n"
                    "LinkLocalAddressing=no\nIPv6AcceptRA=no\n" % (h.addr, self.gateway))
        self._write(m, "root/.ssh/authorized_keys", pub, 0o600)
        _run(["ssh-keygen", "-A", "-f", m])     # writes m/etc/ssh/ssh_host_*

    @staticmethod
    def _write(root, rel, text, mode=0o644):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if os.path.lexists(p):
            os.unlink(p)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def _write_ssh_config(self):
        opts = ("User root\nIdentityFile %s\nIdentitiesOnly yes\nStrictHostKeyChecking no\n"
                "UserKnownHostsFile /dev/null\nLogLevel ERROR\nBatchMode yes\n"
                "ConnectTimeout 5\nServerAliveInterval 5\nServerAliveCountMax 3\n"
                % self.key_path).replace("\n", "\n  ")
        with open(self.ssh_config_path, "w") as f:
            for h in self.hosts.values():
                f.write("Host %s %s\n  HostName %s\n  %s\n" % (h.name, h.addr, h.addr, opts))

    def inventory_vars(self):
        """{host: {ansible_host, ansible_user, ...}} for an Ansible inventory."""
        common = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null " \
                 "-o IdentitiesOnly=yes -o LogLevel=ERROR -o ConnectTimeout=5"
        return {h.name: {"ansible_host": h.addr, "ansible_user": "root",
                         "ansible_ssh_private_key_file": self.key_path,
                         "ansible_ssh_common_args": common,
                         "ansible_python_interpreter": "/usr/bin/python3"}
                for h in self.hosts.values()}

    def write_inventory(self, path, groups=None):
        """Writes a YAML-compatible JSON inventory: groups {name: [hosts]}
        (default: one group "all"). Returns path."""
        hv = self.inventory_vars()
        inv = {"all": {"hosts": hv, "children": {}}}
        for g, members in (groups or {}).items():
            inv["all"]["children"][g] = {"hosts": {m: {} for m in members}}
        with open(path, "w") as f:
            json.dump(inv, f, indent=1)
        return path

    def _nspawn_tmpfs_acquire(self):
        """nspawn needs a tmpfs on /run/systemd/nspawn here. Mounted by the
        first Fleet that needs it, unmounted by the last one that leaves; a
        tmpfs someone else mounted is left alone."""
        os.makedirs(os.path.join(STATE_DIR, "users"), exist_ok=True)
        with open(os.path.join(STATE_DIR, "lock"), "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            marker = os.path.join(STATE_DIR, "mounted-by-us")
            if NSPAWN_RUN not in _mounts():
                if os.path.exists(marker):
                    os.unlink(marker)
                os.makedirs(NSPAWN_RUN, exist_ok=True)
                _run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", NSPAWN_RUN])
                open(marker, "w").close()
            self._tmpfs_user = os.path.join(STATE_DIR, "users", self.tag)
            open(self._tmpfs_user, "w").close()

    def _nspawn_tmpfs_release(self):
        if not self._tmpfs_user:
            return
        with open(os.path.join(STATE_DIR, "lock"), "w") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            os.unlink(self._tmpfs_user)
            self._tmpfs_user = None
            users = os.path.join(STATE_DIR, "users")
            for u in os.listdir(users):        # users that died without cleanup
                pid = int(u.split("-")[0])
                if not os.path.exists("/proc/%d" % pid):
                    os.unlink(os.path.join(users, u))
            marker = os.path.join(STATE_DIR, "mounted-by-us")
            nspawns = nspawn_pids()
            if not os.listdir(users) and os.path.exists(marker) and not nspawns:
                _run(["umount", NSPAWN_RUN])
                os.unlink(marker)

    def _make_bridge(self):
        routes = _run(["ip", "-4", "route", "show", self.net + ".0/24"]).stdout.strip()
        if routes:
            raise HostError("%s.0/24 is already routed here (%s): another fleet's "
                            "bridge? pick another subnet" % (self.net, routes))
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", self.gateway + "/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def add_loop_disk(self, name, size):
        """Gives host `name` a loop device over a sparse file of `size` bytes
        in workdir, direct I/O on, seen as /dev/vdb from its next (re)start.
        Returns the loop device's path."""
        h = self.hosts[name]
        img = self._hdir(name, "disk%d.img" % len(h.loops))
        with open(img, "wb") as f:
            f.truncate(size)
        dev = _run(["losetup", "--find", "--show", "--direct-io=on", img]).stdout.strip()
        h.loops.append(dev)
        target = "/dev/vd" + "bcdefgh"[len(h.loops) - 1]
        h.extra_args.append("--bind=%s:%s" % (dev, target))
        return dev

    # --- running hosts
    def _nspawn_cmd(self, h):
        cg_sys, cg_uni = self._cg(h.name)
        ns = ["systemd-nspawn", "--boot", "--directory=" + self.root(h.name),
              "--machine=%s-%s" % (h.name, self.tag), "--hostname=" + h.name,
              "--register=no", "--keep-unit", "--console=read-only",
              "--network-bridge=" + self.bridge, "--resolv-conf=off",
              "--timezone=off", "--link-journal=no",
              "--bind=%s:/data" % self.data_dir(h.name)] + h.extra_args
        # The shell joins the host's cgroups, then becomes nspawn, so that
        # nspawn's payload/ cgroup is this host's alone.
        return ["sh", "-c", 'echo $$ > "$1"/cgroup.procs && echo $$ > "$2"/cgroup.procs'
                ' && shift 2 && exec "$@"', "sh", cg_sys, cg_uni] + ns

    def _supervise(self, h):
        with open(self.log_path(h.name), "ab") as lf:
            while True:
                lf.write(b"\n=== nspawn started %s\n" % time.strftime("%H:%M:%S").encode())
                lf.flush()
                p = subprocess.Popen(self._nspawn_cmd(h), stdin=subprocess.DEVNULL,
                                     stdout=lf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
                h.proc = p
                rc = p.wait()
                lf.write(b"\n=== nspawn exited %d\n" % rc)
                lf.flush()
                if rc == EXIT_REBOOT and h.wanted:
                    continue
                h.exit_code = rc
                return

    def _launch(self, h):
        if h.thread and h.thread.is_alive():
            raise HostError("host %s is already running" % h.name)
        h.wanted, h.exit_code, h.proc = True, None, None
        h.thread = threading.Thread(target=self._supervise, args=(h,),
                                    name="nspawn-" + h.name, daemon=True)
        h.thread.start()

    def running(self, name):
        h = self.hosts[name]
        return bool(h.thread and h.thread.is_alive())

    def _log_tail(self, name, lines=40):
        try:
            with open(self.log_path(name), errors="replace") as f:
                text = re.sub(r"\x1b\[[0-9;]*m|\r", "", f.read())
            return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])
        except OSError as e:
            return str(e)

    def _fail(self, name, what):
        return HostError("host %s: %s\n--- last lines of %s:\n%s" % (
            name, what, self.log_path(name), self._log_tail(name)))

    def wait_ready(self, name, timeout=None):
        """Waits until host `name` answers SSH and its boot has finished;
        returns "running" or "degraded" (failed units are printed)."""
        h = self.hosts[name]
        deadline = time.monotonic() + (timeout or self.boot_timeout)

        def ssh_up():
            if not self.running(name):
                raise self._fail(name, "nspawn exited (%s) while booting" % h.exit_code)
            try:
                return self.ssh(name, "true", check=False, timeout=10,
                                connect_timeout=2).returncode == 0
            except subprocess.TimeoutExpired:
                return False
        _poll("SSH at %s" % h.addr, deadline, ssh_up, 0.2,
              fail=lambda msg: self._fail(name, msg))
        left = max(5, deadline - time.monotonic())
        try:
            r = self.ssh(name, "systemctl is-system-running --wait", check=False,
                         timeout=left)
        except subprocess.TimeoutExpired:
            raise self._fail(name, "timed out waiting for systemctl "
                             "is-system-running --wait") from None
        state = r.stdout.strip()
        if state == "degraded":
            failed = self.ssh(name, "systemctl --failed --plain --no-legend",
                              check=False).stdout.strip()
            log("host %s is degraded, failed units:\n%s" % (name, failed))
        elif state != "running":
            raise self._fail(name, "is-system-running says %r (%s)" % (
                state, r.stderr.strip()))
        return state

    def boot(self):
        """Starts every host that is not running, all at once, and waits until
        all are ready. Returns {host: "running" | "degraded"}."""
        self.setup()
        todo = [n for n in self.hosts if not self.running(n)]
        for n in todo:
            self._launch(self.hosts[n])
        results, errors = {}, {}

        def wait(n):
            try:
                results[n] = self.wait_ready(n)
            except Exception as e:
                errors[n] = e
        ts = [threading.Thread(target=wait, args=(n,)) for n in todo]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            for n, e in sorted(errors.items()):
                log(str(e))
            raise HostError("hosts failed to boot: %s" % ", ".join(sorted(errors)))
        return results

    def start(self, name):
        """Boots a host that is down (after power_cut or stop) and waits."""
        self._launch(self.hosts[name])
        return self.wait_ready(name)

    def pid1(self, name, timeout=30):
        """The machine's pid of the host's PID 1 (nspawn's child)."""
        h = self.hosts[name]

        def find():
            if not self.running(name):
                raise HostError("host %s is not running" % name)
            p = h.proc
            if p is None:
                return None
            for c in _children(p.pid):
                try:
                    with open("/proc/%d/status" % c) as f:
                        ns = [ln for ln in f if ln.startswith("NSpid:")]
                except OSError:
                    continue
                if ns and ns[0].split()[-1] == "1":
                    return c
            return None
        return _poll("PID 1 of host %s" % name, time.monotonic() + timeout, find)

    def power_cut(self, name, timeout=30):
        """SIGKILLs the host's PID 1: every process of the host dies at once,
        nothing is synced or shut down. The host stays down until start()."""
        h = self.hosts[name]
        pid = self.pid1(name)
        h.wanted = False
        self.freeze(name, False)
        os.kill(pid, signal.SIGKILL)
        self._wait_down(h, timeout)

    def stop(self, name, timeout=60):
        """Shuts the host down cleanly (systemd poweroff) and waits."""
        h = self.hosts[name]
        h.wanted = False
        os.kill(self.pid1(name), signal.SIGRTMIN + 4)
        self._wait_down(h, timeout)

    def _wait_down(self, h, timeout):
        deadline = time.monotonic() + timeout
        h.thread.join(timeout)
        if h.thread.is_alive():
            raise self._fail(h.name, "nspawn still runs %ds after its PID 1 was "
                             "told to stop" % timeout)
        _poll("host %s's cgroup to be empty" % h.name, deadline,
              lambda: not _cg_procs(self._cg(h.name)[1]))

    def freeze(self, name, on, timeout=10):
        """Pauses (on=True) or resumes every process of the host, nspawn
        included, through cgroup v2's cgroup.freeze."""
        cg = self._cg(name)[1]
        with open(os.path.join(cg, "cgroup.freeze"), "w") as f:
            f.write("1" if on else "0")
        want = "frozen %d" % (1 if on else 0)
        _poll("host %s to be %s" % (name, "frozen" if on else "thawed"),
              time.monotonic() + timeout,
              lambda: want in open(os.path.join(cg, "cgroup.events")).read())

    def veth(self, name):
        """The machine's side of the host's veth (nspawn shortens long names,
        so it is found by the peer index of the host's host0)."""
        pid = self.pid1(name)
        # /sys here is the machine's: ask ip in the host's netns instead
        out = _run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show",
                    "host0"]).stdout
        m = re.search(r"host0@if(\d+):", out)
        if not m:
            raise HostError("host %s: no peer index in %r" % (name, out))
        iflink = m.group(1)
        for n in os.listdir("/sys/class/net"):
            try:
                if open("/sys/class/net/%s/ifindex" % n).read().strip() == iflink:
                    return n
            except OSError:
                pass
        raise HostError("host %s: no interface with ifindex %s" % (name, iflink))

    def link(self, name, up):
        """Cuts (up=False) or restores the host's network link."""
        _run(["ip", "link", "set", self.veth(name), "up" if up else "down"])

    # --- commands
    def _ssh_base(self, connect_timeout=None):
        c = ["-F", self.ssh_config_path]
        if connect_timeout:
            c += ["-o", "ConnectTimeout=%d" % connect_timeout]
        return c

    def ssh(self, name, cmd, check=True, timeout=120, input=None, connect_timeout=None):
        """Runs the shell command cmd (a string) as root on host `name`;
        returns a CompletedProcess with text stdout/stderr. check: raise
        HostError on a non-zero exit. timeout: subprocess.TimeoutExpired."""
        if name not in self.hosts:
            raise HostError("no host %r" % name)
        r = subprocess.run(["ssh"] + self._ssh_base(connect_timeout) + [name, cmd],
                           input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise HostError("host %s: %r exited %d: %s" % (
                name, cmd, r.returncode, (r.stderr or r.stdout).strip()[-2000:]))
        return r

    def scp_to(self, name, local, remote, timeout=300):
        """Copies local file(s) (a path or a list) to host `name`:remote."""
        srcs = [local] if isinstance(local, str) else list(local)
        _run(["scp", "-q", "-r"] + self._ssh_base() + srcs + ["%s:%s" % (name, remote)],
             timeout=timeout)

    def scp_from(self, name, remote, local, timeout=300):
        _run(["scp", "-q", "-r"] + self._ssh_base() + ["%s:%s" % (name, remote), local],
             timeout=timeout)

    # --- cleanup
    def cleanup(self):
        """Stops every host and removes all the Fleet made: processes,
        cgroups, overlay mounts, loop devices, the bridge, its share of the
        nspawn tmpfs, the workdir. Safe to call twice; raises HostError
        listing whatever it could not remove."""
        with self._lock:
            if self._cleaned:
                return
            self._cleaned = True
        errors = []
        for h in self.hosts.values():
            try:
                self._kill_host(h)
            except Exception as e:
                errors.append("stopping %s: %s" % (h.name, e))
        errors += _teardown(self._record())
        try:
            self._nspawn_tmpfs_release()
        except Exception as e:
            errors.append("releasing %s: %s" % (NSPAWN_RUN, e))
        if not errors and os.path.exists(self._record_path):
            os.unlink(self._record_path)    # else the next run's reap_stale() retries
        if errors:
            raise HostError("fleet cleanup: " + "; ".join(errors))

    def _kill_host(self, h):
        h.wanted = False
        cg_uni = self._cg(h.name)[1]
        if os.path.exists(os.path.join(cg_uni, "cgroup.freeze")):
            self.freeze(h.name, False)
        if self.running(h.name):
            try:
                os.kill(self.pid1(h.name, timeout=5), signal.SIGKILL)
            except (HostError, ProcessLookupError):
                pass
            h.thread.join(10)
        if h.thread and h.thread.is_alive() and h.proc:
            h.proc.kill()
            h.thread.join(10)
        if h.thread and h.thread.is_alive():
            raise HostError("nspawn of %s did not exit" % h.name)
