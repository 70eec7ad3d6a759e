"""A Cairn cluster deployed with Ansible onto five booted Debian 12 hosts.

The hosts are systemd-nspawn containers (tests/deploy/hosts.py) with their
own systemd, addresses on a bridge this test makes, and data directories for
their disks. They reach no package archive: the roles install Cairn's .deb
packages, built here with cpack, and libraft0 0.22.1 (bookworm-backports),
given as a file too; the rootfs has the other libraries the packages need.

As an operator would, from this host (the Ansible controller):

1. site.yml: 3 MDMs (h1-h3), 3 SDSs with unequal file disks (h1-h3), an SDC
   (h4) with two volumes; one is written and read back on h4 through the
   NBD export (nbdcopy over the SDC's unix socket), and its attach-at-boot
   unit and /etc/nbdtab line are checked.
2. site.yml again: changed=0.
3. Under a verifying load (tests/tools/cairn_verify.py, from this host
   through h4's NBD export over TCP): add_sds.yml adds h5 and waits for the
   rebalance; kill -9 of an SDS daemon (systemd restarts it) and a power cut
   of h2 (its systemd starts the daemons at boot; the data catches up);
   upgrade.yml --skip-tags sdc to packages rebuilt with a new version, with
   no client error; remove_sds.yml drains and removes h5.
4. With the load stopped, upgrade.yml --tags sdc; then every acknowledged
   write reads back and every copy of every extent agrees.

The test cleans up every container, mount, cgroup and the bridge it made.
About 10 minutes; it is the suite's one long test (README).
"""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "../.."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(SRC, "tests/tools"))
import hosts  # noqa: E402
from cairn_verify import Verifier  # noqa: E402

BUILD = os.environ.get("CAIRN_BUILD", os.path.join(SRC, "build"))
PLAIN = os.environ.get("CAIRN_PLAIN_BUILD") or BUILD
PLAYBOOKS = os.path.join(SRC, "deploy/ansible/playbooks")
NET = "10.77.%d" % (os.getpid() % 200 + 20)
HOSTS = [("h%d" % i, "%s.%d" % (NET, 10 + i)) for i in range(1, 6)]
ADDR = dict(HOSTS)
SUFFIX = "+upgrade1"
LOAD_SIZE = 128 << 20


def run(argv, timeout=600, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def build_packages(build, out, suffix=None):
    """cpack's .debs of build (reconfigured with a version suffix if given) in out."""
    if suffix:
        run(["cmake", "-S", SRC, "-B", build, "-DCAIRN_WERROR=ON", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
             "-DBUILD_TESTING=OFF", f"-DCAIRN_VERSION_SUFFIX={suffix}"])
        run(["cmake", "--build", build, f"-j{os.cpu_count()}"], timeout=1200)
    os.makedirs(out, exist_ok=True)
    run(["cpack", "-G", "DEB", "--config", f"{build}/CPackConfig.cmake", "-B", out], timeout=600)
    for f in os.listdir(out):
        if not f.endswith(".deb"):
            p = os.path.join(out, f)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)


def libraft_deb(out):
    """libraft0 0.22.1 as a .deb: apt-get download (bookworm-backports on Debian 12)."""
    ver = run(["dpkg-query", "-W", "-f", "${Version}", "libraft0"]).stdout.strip()
    run(["apt-get", "download", f"libraft0={ver}"], cwd=out, timeout=300)


class Ansible:
    def __init__(self, fleet, workdir):
        self.fleet, self.workdir = fleet, workdir
        self.creds = os.path.join(workdir, "credentials")
        self.env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1",
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_PIPELINING="True",
                        ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3")

    def inventory(self, sds, packages):
        """Write the inventory: h1-h3 MDM+SDS, h4 SDC, and sds's hosts as SDSs."""
        sizes = {"h1": "2G", "h2": "3G", "h3": "4G", "h5": "3G"}
        lines = ["all:", "  vars:", f"    cairn_packages_dir: {packages}",
                 f"    cairn_credentials_dir: {self.creds}",
                 f"    cairn_controller_cli: {BUILD}/mgmt/cairn",
                 "    cairn_pools: [{name: default, copies: 2, pgs: 64}]",
                 "  hosts:"]
        for name, addr in HOSTS:
            lines.append(f"    {name}:")
            for k, v in self.fleet.inventory_vars()[name].items():
                lines.append(f"      {k}: \"{v}\"")
        lines += ["  children:", "    cairn_mdm:", "      hosts: {h1: {}, h2: {}, h3: {}}",
                  "    cairn_sds:", "      hosts:"]
        for i, name in enumerate(sds):
            lines += [f"        {name}:",
                      f"          cairn_sds_devices: [{{path: /data/disk0.img, size: {sizes[name]}}}]",
                      f"          cairn_sds_fault_set: rack{i + 1}"]
        lines += ["    cairn_sdc:", "      hosts:", "        h4:",
                  "          cairn_sdc_attach_now: false",
                  "          cairn_sdc_volumes:",
                  "            - {name: files, size: 1G, device: nbd0}",
                  "            - {name: load, size: 1G}"]
        path = os.path.join(self.workdir, "inventory.yml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def play(self, playbook, inventory, *args, timeout=1200):
        """Run a playbook; its PLAY RECAP as {host: {ok, changed, failed, ...}}."""
        argv = ["ansible-playbook", "-i", inventory, os.path.join(PLAYBOOKS, playbook)] + list(args)
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env)
        log = os.path.join(self.workdir, f"{playbook}.{int(t0)}.log")
        with open(log, "w") as f:
            f.write(r.stdout + r.stderr)
        print(f"{playbook} {' '.join(args)}: {time.monotonic() - t0:.1f} s, rc {r.returncode}")
        fatal = "\n".join(line[:2000] for line in r.stdout.splitlines()
                          if line.startswith(("fatal:", "failed:")) or "FAILED!" in line)
        assert r.returncode == 0, (f"{' '.join(argv)} failed (log: {log}):\n{fatal}\n...\n"
                                   f"{r.stdout[-4000:]}\n{r.stderr[-2000:]}")
        recap = {}
        for m in re.finditer(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                             r"failed=(\d+)", r.stdout, re.M):
            recap[m.group(1)] = dict(ok=int(m.group(2)), changed=int(m.group(3)),
                                     unreachable=int(m.group(4)), failed=int(m.group(5)))
        assert recap, r.stdout[-3000:]
        return recap, r.stdout


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    for tool in ("ansible-playbook", "systemd-nspawn", "mmdebstrap", "cpack", "apt-get"):
        assert shutil.which(tool), f"{tool} is missing (deploy/deps.sh test installs it)"
    work = str(tmp_path_factory.mktemp("deploy"))
    v1, v2 = os.path.join(work, "pkg-v1"), os.path.join(work, "pkg-v2")
    build_packages(PLAIN, v1)
    build_packages(os.path.join(BUILD, "deploy-upgrade"), v2, SUFFIX)
    os.makedirs(v1, exist_ok=True)
    libraft_deb(v1)
    for f in os.listdir(v1):
        if f.startswith("libraft0_"):
            shutil.copy(os.path.join(v1, f), v2)
    rootfs = hosts.build_rootfs(hosts.CAIRN_HOST_PACKAGES)
    with hosts.Fleet(HOSTS, workdir=os.path.join(work, "fleet"), rootfs=rootfs) as fleet:
        t0 = time.monotonic()
        fleet.boot()
        print(f"5 hosts booted in {time.monotonic() - t0:.1f} s")
        yield dict(fleet=fleet, ansible=Ansible(fleet, work), v1=v1, v2=v2, work=work)


def cli(env, *args, timeout=120):
    """The cairn CLI on this host, with the admin credential the playbooks issued."""
    mdm = ",".join(f"{ADDR[h]}:6611" for h in ("h1", "h2", "h3"))
    cred = os.path.join(env["ansible"].creds, "admin-ansible.cred")
    return run([f"{BUILD}/mgmt/cairn", "--mdm", mdm, "--credentials", cred] + list(args),
               timeout=timeout).stdout


def versions(env, package, names):
    return {h: env["fleet"].ssh(h, f"dpkg-query -W -f '${{Version}}' {package}").stdout.strip()
            for h in names}


def no_secret_in(text, env):
    """No credential's secret key (nor the CA's) appears in a playbook's output."""
    found = 0
    for f in os.listdir(env["ansible"].creds):
        for line in open(os.path.join(env["ansible"].creds, f)):
            words = line.split()
            if len(words) == 2 and words[0].endswith("secret-key"):
                found += 1
                assert words[1] not in text and words[1][:32] not in text, f"{f}'s secret is in the log"
    assert found >= 7, f"only {found} secret keys in the credentials"  # CA, 3 MDMs, 3 SDSs, ...


def test_site_deploys_a_cluster(env):
    a, fleet = env["ansible"], env["fleet"]
    inv = a.inventory(["h1", "h2", "h3"], env["v1"])
    recap, out = a.play("site.yml", inv, "-vv")  # verbose: still no secret
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), recap
    no_secret_in(out, env)
    status = cli(env, "--json", "sds", "list")
    for h in ("h1", "h2", "h3"):
        assert f'"name":"{h}"' in status, status
    mdms = cli(env, "mdm", "list")
    assert len(re.findall(r"\bvoter\b", mdms)) == 3, mdms
    # credentials: mode 0600, owned by the daemon's user
    for h, cred in (("h1", "mdm.cred"), ("h1", "sds.cred"), ("h4", "sdc.cred"), ("h1", "admin.cred")):
        st = fleet.ssh(h, f"stat -c '%a %U' /etc/cairn/credentials/{cred}").stdout.split()
        assert st[0] == "600", (h, cred, st)
        assert st[1] == ("root" if cred == "admin.cred" else "cairn"), (h, cred, st)
    # the units are enabled (they come back at boot) and running
    for h, unit in (("h1", "cairn-mdm"), ("h2", "cairn-sds"), ("h4", "cairn-sdc")):
        assert fleet.ssh(h, f"systemctl is-enabled {unit}; systemctl is-active {unit}").stdout.split() \
            == ["enabled", "active"], (h, unit)
    # a volume written and read back on the SDC host, through its NBD export
    sock = "/var/lib/cairn/sdc/nbd.sock"
    fleet.ssh("h4", "head -c 64M /dev/urandom > /root/data && "
              f"nbdcopy /root/data 'nbd+unix:///files?socket={sock}' && "
              f"nbdcopy 'nbd+unix:///files?socket={sock}' /root/back --flush && "
              "head -c 64M /root/back | cmp - /root/data", timeout=300)
    # attached at boot: the nbdtab line and the unit (the kernel here has no
    # nbd module, so nbd-client itself cannot run; its wait for the export can)
    assert fleet.ssh("h4", "cat /etc/nbdtab").stdout.split("\n")[-2].split() == \
        ["nbd0", sock, "files", "unix,persist"]
    assert fleet.ssh("h4", "systemctl is-enabled cairn-nbd@nbd0").stdout.strip() == "enabled"
    fleet.ssh("h4", "cairn-nbd-wait nbd0 30")


def test_site_again_changes_nothing(env):
    a = env["ansible"]
    recap, _ = a.play("site.yml", os.path.join(a.workdir, "inventory.yml"))
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in recap.values()), recap


@pytest.fixture(scope="module")
def load(env):
    v = Verifier(f"nbd://{ADDR['h4']}:10809/load", LOAD_SIZE, seed=7)
    v.thread = threading.Thread(target=v.run, daemon=True)
    v.thread.start()
    yield v
    v.stop.set()
    v.thread.join(60)


def wait_for(what, pred, timeout=300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_add_sds_under_load(env, load):
    a = env["ansible"]
    inv = a.inventory(["h1", "h2", "h3", "h5"], env["v1"])
    ops = load.ops
    a.play("add_sds.yml", inv, "-l", "h5")
    assert '"name":"h5"' in cli(env, "--json", "sds", "list")
    assert load.ops > ops and not load.errors and load.retries == 0, load.summary()


def sds_connected(env, name):
    return re.search(r'"name":"%s"[^}]*"connected":true' % name, cli(env, "--json", "sds", "list"))


def test_sds_daemon_and_host_come_back(env, load):
    fleet = env["fleet"]
    retries = load.retries
    pid = fleet.ssh("h3", "systemctl show -p MainPID --value cairn-sds").stdout.strip()
    fleet.ssh("h3", f"kill -9 {pid}")
    wait_for("systemd to restart cairn-sds on h3", lambda: fleet.ssh(
        "h3", "systemctl show -p MainPID --value cairn-sds").stdout.strip() not in ("0", pid))
    wait_for("h3's SDS to reconnect", lambda: sds_connected(env, "h3"))
    fleet.power_cut("h2")
    fleet.start("h2")
    wait_for("h2's SDS to come back after its boot", lambda: sds_connected(env, "h2"))
    cli(env, "rebuild", "wait", "--timeout", "600", timeout=660)
    assert not load.errors and load.retries == retries, load.summary()


def test_rolling_upgrade_under_load(env, load):
    a = env["ansible"]
    inv = os.path.join(a.workdir, "inventory.yml")
    retries, ops = load.retries, load.ops
    a.play("upgrade.yml", inv, "-e", f"cairn_packages_dir={env['v2']}", "--skip-tags", "sdc",
           timeout=1800)
    assert load.ops > ops and not load.errors and load.retries == retries, load.summary()
    for package, names in (("cairn-mdm", ("h1", "h2", "h3")), ("cairn-sds", ("h1", "h2", "h3", "h5"))):
        for h, v in versions(env, package, names).items():
            assert SUFFIX in v, (package, h, v)
    out = env["fleet"].ssh("h1", "cairn-sds --version").stdout
    assert SUFFIX in out, out
    assert len(re.findall(r"\bvoter\b", cli(env, "mdm", "list"))) == 3


def test_remove_sds_under_load(env, load):
    a = env["ansible"]
    inv = os.path.join(a.workdir, "inventory.yml")
    retries, ops = load.retries, load.ops
    a.play("remove_sds.yml", inv, "-l", "h5", "-e", f"cairn_packages_dir={env['v2']}")
    assert '"name":"h5"' not in cli(env, "--json", "sds", "list")
    assert env["fleet"].ssh("h5", "dpkg-query -W -f '${db:Status-Status}' cairn-sds",
                            check=False).stdout.strip() in ("", "not-installed", "config-files")
    assert load.ops > ops and not load.errors and load.retries == retries, load.summary()


def test_every_acknowledged_write_reads_back(env, load):
    a = env["ansible"]
    load.stop.set()
    load.thread.join(60)
    assert not load.thread.is_alive(), "the load did not stop"
    print("load:", load.summary())
    assert not load.errors, load.errors[:10]
    # the SDC's upgrade, with no load on it (its NBD connections drop)
    inv = a.inventory(["h1", "h2", "h3"], env["v2"])
    a.play("upgrade.yml", inv, "--tags", "sdc")
    assert SUFFIX in versions(env, "cairn-sdc", ["h4"])["h4"]
    load.stop.clear()  # connect() gives up while stop is set
    load.h = None
    bad = load.final_check()
    assert bad == 0 and not load.errors, load.errors[:10]
    for vol in ("files", "load"):
        out = cli(env, "volume", "check-copies", vol, timeout=600)
        assert "0 mismatched" in out, out
    env["fleet"].ssh("h4", "nbdcopy 'nbd+unix:///files?socket=/var/lib/cairn/sdc/nbd.sock' "
                     "/root/back2 && head -c 64M /root/back2 | cmp - /root/data", timeout=300)
