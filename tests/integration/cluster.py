"""Start and drive a real local Cairn cluster for integration tests.

Daemons are started with pidfiles and waited on by readiness (the CLI
answering, SDSs connected, the SDC registered, exports listed), never by a
fixed sleep. Stopping checks that each daemon exits cleanly and that its log
holds no sanitizer report.
"""
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time

BUILD = os.environ.get("CAIRN_BUILD", os.path.join(os.path.dirname(__file__), "../../build"))


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def write_private(path, text):
    """Write a token file as the daemons want it: mode 0600 from the start."""
    if os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def wait_for(what, pred, timeout=30.0, interval=0.05):
    """Poll pred until it returns something true (returned) or timeout passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what} (last error: {last})")


def hold_for(what, pred, seconds, interval=0.1):
    """Check that pred stays true for the whole of the next `seconds`: for a
    thing that must NOT happen within a window (a false failure, a rebuild
    that should not start), watched over the window in which it could."""
    end = time.monotonic() + seconds
    while True:
        assert pred(), f"{what} stopped holding"
        if time.monotonic() >= end:
            return
        time.sleep(interval)


SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


ALLOC_HOOK = os.environ.get("CAIRN_ALLOC_HOOK",
                            os.path.join(BUILD, "tests", "libcairn_alloc_count.so"))


def alloc_env(count_file, binary):
    """Environment that loads the allocation counter (tests/tools/alloc_count.c)
    into a daemon; under ASan its runtime must come first."""
    preload = [ALLOC_HOOK]
    libs = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    if "libasan" in libs:
        asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                              text=True).stdout.strip()
        preload.insert(0, asan)
    return {"LD_PRELOAD": " ".join(preload), "CAIRN_ALLOC_COUNT": count_file}


def read_alloc_count(count_file):
    """(allocations, bytes) a daemon has made since it started."""
    import struct
    with open(count_file, "rb") as f:
        return struct.unpack("=QQ", f.read(16))


class Daemon:
    def __init__(self, name, argv, log, env=None):
        self.name, self.argv, self.log, self.env = name, argv, log, env
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        env = dict(os.environ, **self.env) if self.env else None
        # a session of its own: a daemon the test stops (SIGSTOP) must not be
        # in a process group that becomes orphaned while it is stopped (the
        # shell that started the run exiting), or the kernel sends it SIGHUP
        # and it dies; it was seen to kill an SDS and an MDM in a soak
        # started in the background
        self.proc = subprocess.Popen(self.argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop; for SIGTERM require a clean exit. Returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout}s after {sig}")
        self.logf.close()
        if sig == signal.SIGTERM:
            assert rc == 0, f"{self.name} exited with {rc} after SIGTERM; see {self.log}"
        return rc

    def check_log(self):
        with open(self.log, "rb") as f:
            text = f.read().decode(errors="replace")
        for mark in SANITIZER_MARKS:
            assert mark not in text, f"{self.name}: sanitizer report in {self.log}"


class Cluster:
    def __init__(self, workdir, sds_sizes=(4 << 30, 6 << 30, 8 << 30), pgs=256,
                 extra_devices=None, copies=2, sds_args=(), mdm_args=(), initial=None,
                 count_allocations=False, devices=None, build=None, sdc_args=(),
                 metrics=False, http=False, mdms=1):
        self.dir = str(workdir)
        self.build = build or BUILD  # the daemons and CLI of this build directory
        # SDSs started and added by start(); the rest wait for add_sds()
        self.initial = len(sds_sizes) if initial is None else initial
        self.members = set()
        self.mdm_args = list(mdm_args)
        self.copies = copies
        self.sds_args = list(sds_args)
        self.sdc_args = list(sdc_args)
        self.extra_devices = extra_devices or {}  # SDS index -> more device paths
        self.devices = devices or {}  # SDS index -> its first device, instead of a file
        self.sds_sizes = sds_sizes
        self.pgs = pgs
        ports = free_ports(3 + len(sds_sizes) + 2 * (mdms - 1))
        self.mdm_addr = f"127.0.0.1:{ports[0]}"
        self.raft_addr = f"127.0.0.1:{ports[1]}"
        self.nbd_port = ports[2]
        self.sds_addrs = [f"127.0.0.1:{p}" for p in ports[3:3 + len(sds_sizes)]]
        # mdms > 1: MDM 1 (daemon "mdm") starts the cluster, MDMs 2.. (daemons
        # "mdm2"..) join it; every client is given every MDM's address
        self.n_mdms = mdms
        extra = ports[3 + len(sds_sizes):]
        self.mdm_addrs = [self.mdm_addr] + [f"127.0.0.1:{p}" for p in extra[0::2]]
        self.raft_addrs = [self.raft_addr] + [f"127.0.0.1:{p}" for p in extra[1::2]]
        self.mdm_list = ",".join(self.mdm_addrs)
        self.daemons = {}
        self.sdc_name = "sdc1"
        self.count_allocations = count_allocations
        # metrics: every daemon serves /metrics on a port of its own
        # (metrics_addrs: daemon name -> host:port) to holders of
        # metrics_token (in metrics_token_file); http: the MDM serves the
        # REST API and the dashboard at http_url, with the tokens
        # http_admin_token and http_monitor_token (in http_tokens_file)
        self.metrics = metrics
        self.metrics_addrs = {}
        self.metrics_token = self.http_admin_token = self.http_monitor_token = None
        os.makedirs(self.dir, exist_ok=True)
        if metrics:
            self.metrics_token = secrets.token_hex(32)
            self.metrics_token_file = write_private(os.path.join(self.dir, "metrics.token"),
                                                    self.metrics_token + "\n")
            mp = free_ports(2 + len(sds_sizes))
            self.metrics_addrs["mdm"] = f"127.0.0.1:{mp[0]}"
            self.metrics_addrs["sdc"] = f"127.0.0.1:{mp[1]}"
            for i in range(len(sds_sizes)):
                self.metrics_addrs[f"sds{i + 1}"] = f"127.0.0.1:{mp[2 + i]}"
        self.http_url = None
        self.http_urls = []  # MDM i's at index i - 1; http_url is MDM 1's
        if http:
            self.http_urls = [f"http://127.0.0.1:{p}" for p in free_ports(mdms)]
            self.http_url = self.http_urls[0]
            self.http_admin_token = secrets.token_hex(32)
            self.http_monitor_token = secrets.token_hex(32)
            self.http_tokens_file = write_private(
                os.path.join(self.dir, "http-tokens"),
                f"# REST API and dashboard\nadmin {self.http_admin_token}\n"
                f"monitor {self.http_monitor_token}\n")

    # ---- credentials (proto/auth.h): one CA per cluster, one credential each ----
    def credential(self, role, name):
        """The path of this cluster's credential for (role, name), issued
        by its CA on first use."""
        d = os.path.join(self.dir, "creds")
        os.makedirs(d, mode=0o700, exist_ok=True)
        ca = os.path.join(d, "ca.key")
        cli = f"{self.build}/mgmt/cairn"
        if not os.path.exists(ca):
            subprocess.run([cli, "credentials", "init-ca", ca], check=True, capture_output=True)
        path = os.path.join(d, f"{role}-{name}.cred")
        if not os.path.exists(path):
            subprocess.run([cli, "credentials", "issue", "--ca", ca, "--role", role, "--name",
                            name, "--out", path], check=True, capture_output=True)
        return path

    def _cred_args(self, role, name):
        if not builds_with_auth(self.build):
            return []  # a build from before authentication (a benchmark's baseline)
        return ["--credentials", self.credential(role, name)]

    def _metrics_args(self, name):
        if name not in self.metrics_addrs:
            return []
        return ["--metrics-listen", self.metrics_addrs[name],
                "--metrics-token-file", self.metrics_token_file]

    def _http_args(self, i=1):
        if not self.http_url:
            return []
        return ["--http-listen", self.http_urls[i - 1][len("http://"):],
                "--http-tokens", self.http_tokens_file]

    def alloc_file(self, name):
        return os.path.join(self.dir, f"{name}.alloc")

    # ---- processes ----
    def _daemon(self, name, argv):
        env = None
        if self.count_allocations:
            binary = next(a for a in argv if a.startswith(self.build))
            env = alloc_env(self.alloc_file(name), binary)
        d = Daemon(name, argv, os.path.join(self.dir, f"{name}.log"), env)
        self.daemons[name] = d
        return d

    def mdm_netns(self, i):
        """The network namespace MDM i (1..n_mdms) runs in; None: this host's."""
        return None

    def _in_netns(self, ns, argv):
        return (["ip", "netns", "exec", ns] if ns else []) + argv

    def start_mdm(self):
        d = self.daemons.get("mdm") or self._daemon("mdm", self._in_netns(self.mdm_netns(1), [
            f"{self.build}/mgmt/cairn-mdm", "--data-dir", f"{self.dir}/mdm",
            "--listen", self.mdm_addr, "--raft-addr", self.raft_addr,
            "--snapshot-threshold", "64"]  # snapshots get exercised
            + self._cred_args("mdm", "mdm1")
            + self._metrics_args("mdm")
            + self._http_args()
            + self.mdm_args))
        d.start()
        wait_for("the MDM", lambda: self.cairn("status", check=False).returncode == 0)

    def mdm_name(self, i):
        """The daemon name of MDM i (1..n_mdms)."""
        return "mdm" if i == 1 else f"mdm{i}"

    def start_peer_mdm(self, i, join=True):
        """Start MDM i (2..n_mdms); join: with --join (a new or emptied data
        directory, to be added with cairn mdm add)."""
        name = self.mdm_name(i)
        d = self._daemon(name, self._in_netns(self.mdm_netns(i), [
            f"{self.build}/mgmt/cairn-mdm", "--data-dir", f"{self.dir}/{name}", "--id", str(i),
            "--listen", self.mdm_addrs[i - 1], "--raft-addr", self.raft_addrs[i - 1],
            "--snapshot-threshold", "64"] + (["--join"] if join else [])
            + self._cred_args("mdm", name) + self._http_args(i) + self.mdm_args))
        d.start()
        wait_for(f"{name} to answer", lambda: self.cairn(
            "--local", "status", mdm=self.mdm_addrs[i - 1], check=False).returncode == 0)

    def form_mdms(self):
        """MDMs 2..n_mdms join MDM 1's cluster."""
        for i in range(2, self.n_mdms + 1):
            self.start_peer_mdm(i)
            self.cairn("mdm", "add", "--id", str(i), "--addr", self.mdm_addrs[i - 1],
                       "--raft-addr", self.raft_addrs[i - 1])

    def mdm_leader(self):
        """The id of the MDM that leads, by the MDMs' own word, or None."""
        ms = json.loads(self.cairn("mdm", "list", json_out=True).stdout)
        ls = [m["id"] for m in ms if m["role"] == "leader"]
        return ls[0] if len(ls) == 1 else None

    def start_sds(self, i):
        name = f"sds{i + 1}"
        d = self.daemons.get(name) or self._daemon(name, [
            f"{self.build}/server/cairn-sds", "--name", name, "--listen", self.sds_addrs[i],
            "--mdm", self.mdm_list, "--data-dir", f"{self.dir}/{name}"]
            + self._cred_args("sds", name) + self._metrics_args(name) + self.sds_args)
        d.start()

    def start_sdc(self):
        d = self.daemons.get("sdc") or self._daemon("sdc", [
            f"{self.build}/client/cairn-sdc", "--mdm", self.mdm_list, "--data-dir", f"{self.dir}/sdc",
            "--name", self.sdc_name, "--nbd-listen", f"127.0.0.1:{self.nbd_port}",
            "--io-timeout", "60"] + self._cred_args("sdc", self.sdc_name)
            + self._metrics_args("sdc") + self.sdc_args)
        d.start()

    def add_sdc(self, name):
        """Start another SDC (daemon and SDC name, data directory DIR/name),
        registered and approved; returns the TCP port of its NBD exports."""
        port = free_ports(1)[0]
        self._daemon(name, [
            f"{self.build}/client/cairn-sdc", "--mdm", self.mdm_list, "--data-dir",
            f"{self.dir}/{name}", "--name", name, "--nbd-listen", f"127.0.0.1:{port}",
            "--io-timeout", "60"] + self._cred_args("sdc", name) + self.sdc_args).start()
        wait_for(f"SDC {name} registered",
                 lambda: any(s["name"] == name for s in self.status()["sdcs"]))
        if builds_with_auth(self.build):
            self.cairn("sdc", "approve", name)
        return port

    def wait_sds_connected(self):
        def ok():
            st = self.status()
            return ({s["name"] for s in st["sds"]} == {f"sds{i + 1}" for i in self.members}
                    and all(s["connected"] for s in st["sds"]))
        wait_for("every SDS connected", ok)

    def wait_sdc_registered(self):
        wait_for("the SDC registered",
                 lambda: any(s["name"] == self.sdc_name for s in self.status()["sdcs"]))

    def start(self):
        """Start and form the cluster. If that fails half-way, whatever was
        started is stopped before the error goes up (callers that have no
        cluster yet cannot clean up after it)."""
        try:
            os.makedirs(self.dir, exist_ok=True)
            self.start_mdm()
            self.form_mdms()
            for i in range(self.initial):
                self.start_sds(i)
            self.start_sdc()
            self.cairn("pool", "create", "default", "--pgs", str(self.pgs), "--copies",
                       str(self.copies))
            for i in range(self.initial):
                self._add_sds(i)
            self.wait_sds_connected()
            self.wait_sdc_registered()
            # restricted SDC mode (the default): a new SDC waits for approval
            # (since the builds that authenticate; a baseline's has none)
            if builds_with_auth(self.build):
                self.cairn("sdc", "approve", self.sdc_name)
            return self
        except BaseException:
            self.abort()
            raise

    def abort(self):
        """Kill every daemon at once (a failed start or test); never raises."""
        for d in self.daemons.values():
            try:
                if d.alive():
                    d.proc.kill()
                    d.proc.wait(30)
            except Exception:  # noqa: BLE001 - best effort, the next one must go too
                pass

    def _add_sds(self, i, fault_set=None):
        dev = self.devices.get(i)
        if not dev:
            dev = os.path.join(self.dir, f"dev{i + 1}.img")
            with open(dev, "wb") as f:
                f.truncate(self.sds_sizes[i])
        name = f"sds{i + 1}"
        fs = ["--fault-set", fault_set] if fault_set else []
        wait_for(f"{name} to connect to the MDM", lambda a=self.sds_addrs[i], n=name, d=dev:
                 self.cairn("sds", "add", "--name", n, "--addr", a, "--device", d, *fs,
                            check=False).returncode == 0)
        for extra in self.extra_devices.get(i, []):
            self.cairn("device", "add", "--sds", name, "--device", extra)
        self.members.add(i)

    def add_sds(self, i, fault_set=None):
        """Start SDS i (not started by start()) and add it to the cluster."""
        self.start_sds(i)
        self._add_sds(i, fault_set)
        self.wait_sds_connected()

    def forget_sds(self, i):
        """SDS i was removed from the cluster: stop its daemon."""
        self.members.discard(i)
        self.daemons[f"sds{i + 1}"].stop()

    def stop_all(self, sig=signal.SIGTERM):
        order = ([n for n in self.daemons if n.startswith("sdc")]
                 + [n for n in self.daemons if n.startswith("sds")]
                 + [self.mdm_name(i) for i in range(self.n_mdms, 0, -1)])
        failed = []
        for n in order:
            if n in self.daemons:
                try:
                    self.daemons[n].stop(sig)
                except AssertionError as e:  # stop the others before reporting it
                    failed.append(e)
        if failed:
            raise failed[0]

    def start_all(self):
        self.start_mdm()
        for i in sorted(self.members):
            self.start_sds(i)
        self.start_sdc()
        self.wait_sds_connected()
        self.wait_sdc_registered()

    def shutdown(self):
        self.stop_all()
        for d in self.daemons.values():
            d.check_log()

    # (a cluster that failed half-way through start() shuts down the same way)

    # ---- CLI ----
    def cairn(self, *args, check=True, json_out=False, mdm=None, netns=None, timeout=60):
        """The CLI (in network namespace netns, if given) against mdm, or
        against every MDM."""
        argv = self._in_netns(netns, [f"{self.build}/mgmt/cairn", "--mdm", mdm or self.mdm_list]
                              + self._cred_args("admin", "admin")
                              + (["--json"] if json_out else []) + list(args))
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"cairn {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def status(self):
        return json.loads(self.cairn("status", json_out=True).stdout)

    def status_after(self, t, margin=0.5, timeout=60):
        """The status once every connected SDS's last heartbeat was received
        more than margin seconds after monotonic time t: what the SDSs
        report (usage, rebuild counters) arrives with their heartbeats, so
        only then does it include everything that happened before t."""
        def fresh():
            st = self.status()
            now = time.monotonic()
            beats = [now - s["last_heartbeat_ms_ago"] / 1000 for s in st["sds"] if s["connected"]]
            return st if all(b > t + margin for b in beats) else None
        return wait_for("a heartbeat from every SDS", fresh, timeout=timeout, interval=0.2)

    def create_volume(self, name, size, thick=False, map_it=True):
        args = ["volume", "create", name, "--size", str(size)] + (["--thick"] if thick else [])
        self.cairn(*args)
        if map_it:
            self.cairn("volume", "map", name, "--sdc", self.sdc_name)
            self.wait_export(name)

    def wait_export(self, name):
        def listed():
            r = subprocess.run(["nbdinfo", "--list", "--json", self.unix_uri()],
                               capture_output=True, text=True, timeout=30)
            return r.returncode == 0 and any(e["export-name"] == name
                                             for e in json.loads(r.stdout)["exports"])
        wait_for(f"export {name}", listed)

    def uri(self, vol):
        return f"nbd://127.0.0.1:{self.nbd_port}/{vol}"

    def unix_uri(self, vol=""):
        return f"nbd+unix:///{vol}?socket={self.dir}/sdc/nbd.sock"


_lone = {}
_auth_builds = {}


def builds_with_auth(build):
    """Whether the daemons of build authenticate their links (every build
    since they do; benchmarks compare against builds from before)."""
    if build not in _auth_builds:
        r = subprocess.run([f"{build}/mgmt/cairn", "--help"], capture_output=True, text=True)
        _auth_builds[build] = "credentials init-ca" in r.stderr
    return _auth_builds[build]


def lone_credential(role="admin"):
    """A credential of a CA no cluster uses (made once per test process):
    for commands that must get past the CLI's credential check and never
    reach an MDM, and for peers that must be refused."""
    if role not in _lone:
        d = _lone.setdefault("dir", tempfile.mkdtemp(prefix="cairn-lone-"))
        cli = f"{BUILD}/mgmt/cairn"
        ca = os.path.join(d, "ca.key")
        if not os.path.exists(ca):
            subprocess.run([cli, "credentials", "init-ca", ca], check=True, capture_output=True)
        path = os.path.join(d, f"{role}.cred")
        subprocess.run([cli, "credentials", "issue", "--ca", ca, "--role", role, "--name",
                        f"lone-{role}", "--out", path], check=True, capture_output=True)
        _lone[role] = path
    return _lone[role]


def sh(*argv):
    subprocess.run(list(argv), check=True, capture_output=True)


class NetCluster(Cluster):
    """A cluster whose SDSs each live in a network namespace of their own,
    joined by a bridge that also carries the MDM's address, so that one SDS's
    link can be cut (and restored) while it keeps running.

    With mdms=3 (or 5), each MDM lives in a namespace of its own on the same
    bridge too (MDM i at .(1+i), its request and Raft ports 7100 and 7101),
    and cut_mdm(i) / restore_mdm(i) cut and restore its link; the SDSs, the
    SDC and the CLI are given every MDM's address. The CLI can also be run
    from inside an MDM's namespace (cairn(..., netns=c.mdm_netns(i))): a
    client on the same side of a cut as that MDM. With mdms=1 the one MDM
    runs on this host, at the bridge's own address."""

    instances = 0

    def __init__(self, workdir, mdms=1, **kw):
        super().__init__(workdir, mdms=mdms, **kw)
        NetCluster.instances += 1
        n = NetCluster.instances
        tag = f"{os.getpid() % 1000}{n}"
        self.net = f"10.{77 + os.getpid() % 50}.{(os.getpid() // 50 + n * 37) % 250 + 1}"
        self.bridge = f"cb{tag}"
        self.ns = [f"cn{tag}s{i}" for i in range(len(self.sds_sizes))]
        self.hveth = [f"cv{tag}h{i}" for i in range(len(self.sds_sizes))]
        # MDM i's namespace and host-side veth are at index i - 1
        self.mdm_ns = [f"cn{tag}m{i}" for i in range(1, mdms + 1)] if mdms > 1 else []
        self.mdm_hveth = [f"cv{tag}mh{i}" for i in range(1, mdms + 1)] if mdms > 1 else []
        if mdms > 1:
            self.mdm_addrs = [f"{self.net}.{1 + i}:7100" for i in range(1, mdms + 1)]
            self.raft_addrs = [f"{self.net}.{1 + i}:7101" for i in range(1, mdms + 1)]
            self.raft_addr = self.raft_addrs[0]
            if self.http_url:  # each MDM's namespace has an address of its own
                self.http_urls = [f"http://{self.net}.{1 + i}:7102" for i in range(1, mdms + 1)]
                self.http_url = self.http_urls[0]
        else:
            port = free_ports(1)[0]
            self.mdm_addrs = [f"{self.net}.1:{port}"]
        self.mdm_addr = self.mdm_addrs[0]
        self.mdm_list = ",".join(self.mdm_addrs)
        self.sds_addrs = [f"{self.net}.{10 + i}:7000" for i in range(len(self.sds_sizes))]
        try:
            self._setup_net()
        except BaseException:
            self._teardown_net()
            raise

    def _add_host(self, ns, hveth, peer, ip):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", hveth, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "link", "set", hveth, "master", self.bridge)
        sh("ip", "link", "set", hveth, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", peer)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def _setup_net(self):
        sh("ip", "link", "add", "name", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.net}.1/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, ns in enumerate(self.ns):
            self._add_host(ns, self.hveth[i], f"{self.hveth[i][:-2]}n{i}", f"{self.net}.{10 + i}")
        for i, ns in enumerate(self.mdm_ns):
            self._add_host(ns, self.mdm_hveth[i], f"{self.mdm_hveth[i][:-3]}mn{i + 1}",
                           f"{self.net}.{2 + i}")

    def mdm_netns(self, i):
        return self.mdm_ns[i - 1] if self.mdm_ns else None

    def start_sds(self, i):
        name = f"sds{i + 1}"
        if name not in self.daemons:
            self._daemon(name, ["ip", "netns", "exec", self.ns[i],
                                f"{self.build}/server/cairn-sds", "--name", name, "--listen",
                                self.sds_addrs[i], "--mdm", self.mdm_list, "--data-dir",
                                f"{self.dir}/{name}"] + self._cred_args("sds", name)
                                + self.sds_args)
        self.daemons[name].start()

    def cut(self, i):
        sh("ip", "link", "set", self.hveth[i], "down")

    def restore(self, i):
        sh("ip", "link", "set", self.hveth[i], "up")

    def cut_mdm(self, i):
        """Cut MDM i (1..n_mdms) off the bridge; it keeps running."""
        sh("ip", "link", "set", self.mdm_hveth[i - 1], "down")

    def restore_mdm(self, i):
        sh("ip", "link", "set", self.mdm_hveth[i - 1], "up")

    def _teardown_net(self):
        for i, ns in enumerate(self.ns):
            subprocess.run(["ip", "link", "del", self.hveth[i]], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for i, ns in enumerate(self.mdm_ns):
            subprocess.run(["ip", "link", "del", self.mdm_hveth[i]], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def abort(self):
        super().abort()
        self._teardown_net()

    def shutdown(self):
        try:
            super().shutdown()
        finally:
            self._teardown_net()
