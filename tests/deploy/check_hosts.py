#!/usr/bin/python3
"""Self-check of hosts.py: boots 5 hosts, checks that each runs, reaches every
other over TCP, has a writable /data where O_DIRECT works and a loop disk as
/dev/vdb; power-cuts one host and starts it again; freezes one and cuts a
link; then cleans up and checks nothing is left. Exit 0 on success.

    /usr/bin/python3 tests/deploy/check_hosts.py   (as root)
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hosts  # noqa: E402

HOSTS = [("h%d" % i, "10.77.0.%d" % (10 + i)) for i in range(1, 6)]
timings = []


def step(name, t0):
    dt = time.monotonic() - t0
    timings.append((name, dt))
    print("  %-28s %6.2f s" % (name, dt), flush=True)


def check(cond, msg):
    if not cond:
        raise SystemExit("FAIL: " + msg)


def leftovers(fleet):
    """Everything the fleet could have left behind, as a list of strings."""
    left = []
    for p in hosts.nspawn_pids():
        try:
            cmd = open("/proc/%d/cmdline" % p).read()
        except OSError:
            continue
        if fleet.workdir in cmd:
            left.append("nspawn process %d" % p)
    for m in hosts._mounts():
        if m.startswith(fleet.workdir):
            left.append("mount " + m)
    if os.path.exists("/sys/class/net/" + fleet.bridge):
        left.append("bridge " + fleet.bridge)
    for n, _ in HOSTS:
        for cg in fleet._cg(n):
            if os.path.exists(cg):
                left.append("cgroup " + cg)
    losetup = subprocess.run(["losetup", "-a"], stdout=subprocess.PIPE, text=True).stdout
    for line in losetup.splitlines():
        if fleet.workdir in line:
            left.append("loop " + line)
    if os.path.exists(fleet.workdir):
        left.append("workdir " + fleet.workdir)
    return left


def main():
    print("hosts.py self-check: %d hosts" % len(HOSTS), flush=True)
    t0 = time.monotonic()
    cached = os.path.exists(hosts.rootfs_cache_path(hosts.CAIRN_HOST_PACKAGES))
    rootfs = hosts.build_rootfs(hosts.CAIRN_HOST_PACKAGES)
    step("rootfs (%s)" % ("cache hit" if cached else "build"), t0)

    workdir = tempfile.mkdtemp(prefix="cairn-hosts-", dir="/var/tmp")
    fleet = hosts.Fleet(HOSTS, workdir, rootfs)
    try:
        t0 = time.monotonic()
        with fleet:
            step("setup (unpack, overlays, keys)", t0)
            fleet.add_loop_disk("h5", 256 << 20)

            t0 = time.monotonic()
            states = fleet.boot()
            step("boot %d hosts" % len(HOSTS), t0)
            print("  states: %s" % states)
            check(all(s in ("running", "degraded") for s in states.values()), "states")

            t0 = time.monotonic()
            for n, _ in HOSTS:
                check(fleet.ssh(n, "hostname").stdout.strip() == n, n + ": hostname")
                check(fleet.ssh(n, "systemctl is-active ssh systemd-networkd").stdout.split()
                      == ["active", "active"], n + ": ssh/networkd not active")
                mid = fleet.ssh(n, "cat /etc/machine-id").stdout.strip()
                check(len(mid) == 32, n + ": machine-id " + mid)
                others = [a for m, a in HOSTS if m != n]
                prog = ("import socket,sys\nbad=[]\nfor a in sys.argv[1:]:\n"
                        " try: socket.create_connection((a,22),3).close()\n"
                        " except OSError as e: bad.append('%s: %s'%(a,e))\n"
                        "print(bad)\nsys.exit(1 if bad else 0)\n")
                r = fleet.ssh(n, "python3 - %s" % " ".join(others), input=prog, check=False)
                check(r.returncode == 0, "%s cannot reach: %s %s" % (n, r.stdout, r.stderr))
                r = fleet.ssh(n, "fallocate -l 16M /data/f && "
                              "dd if=/dev/urandom of=/data/f bs=1M count=16 oflag=direct "
                              "conv=notrunc status=none && "
                              "dd if=/data/f of=/dev/null bs=1M iflag=direct status=none && "
                              "echo ok", check=False)
                check(r.stdout.strip() == "ok", "%s: O_DIRECT on /data: %s" % (n, r.stderr))
                check(os.path.getsize(os.path.join(fleet.data_dir(n), "f")) == 16 << 20,
                      n + ": /data is not the machine's data dir")
            ids = {fleet.ssh(n, "cat /etc/machine-id").stdout for n, _ in HOSTS}
            check(len(ids) == len(HOSTS), "machine-ids are not unique")
            keys = {fleet.ssh(n, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
                    for n, _ in HOSTS}
            check(len(keys) == len(HOSTS), "ssh host keys are not unique")
            r = fleet.ssh("h5", "dd if=/dev/zero of=/dev/vdb bs=1M count=8 oflag=direct "
                          "status=none && blockdev --getsize64 /dev/vdb")
            check(r.stdout.strip() == str(256 << 20), "h5: /dev/vdb size " + r.stdout)
            step("checks (TCP mesh, /data, vdb)", t0)

            # Ansible's view: the inventory vars work for a raw ping
            inv = fleet.write_inventory(os.path.join(workdir, "inventory.json"))
            t0 = time.monotonic()
            r = subprocess.run(["ansible", "-i", inv, "all", "-m", "ping", "-o"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False"))
            check(r.returncode == 0 and r.stdout.count("SUCCESS") == len(HOSTS),
                  "ansible ping: " + r.stdout[-2000:])
            step("ansible ping", t0)

            # power cut: a file written but never synced may be lost; the
            # host's units come back
            t0 = time.monotonic()
            fleet.power_cut("h2")
            step("power cut h2", t0)
            check(not fleet.running("h2"), "h2 still running after power cut")
            r = fleet.ssh("h1", "python3 -c 'import socket; socket.create_connection("
                          "(\"10.77.0.12\",22),2)'", check=False)
            check(r.returncode != 0, "h2 still answers after power cut")
            t0 = time.monotonic()
            st = fleet.start("h2")
            step("restart h2 after power cut", t0)
            check(st in ("running", "degraded"), "h2 after restart: " + st)
            check(fleet.ssh("h2", "systemctl is-active ssh systemd-networkd").stdout.split()
                  == ["active", "active"], "h2: units did not come back")
            r = fleet.ssh("h1", "python3 -c 'import socket; socket.create_connection("
                          "(\"10.77.0.12\",22),2)'", check=False)
            check(r.returncode == 0, "h1 cannot reach h2 after its restart")

            # reboot inside: nspawn exits 133 and is relaunched
            t0 = time.monotonic()
            old = fleet.ssh("h3", "cat /proc/sys/kernel/random/boot_id").stdout
            fleet.ssh("h3", "systemctl reboot", check=False)
            deadline = time.monotonic() + 60
            while True:
                try:
                    r = fleet.ssh("h3", "cat /proc/sys/kernel/random/boot_id", check=False,
                                  timeout=5, connect_timeout=1)
                    if r.returncode == 0 and r.stdout != old:
                        break
                except subprocess.TimeoutExpired:
                    pass
                check(time.monotonic() < deadline, "h3 did not come back from a reboot")
                time.sleep(0.2)
            fleet.wait_ready("h3")
            step("reboot inside h3", t0)

            # freeze and link cut
            t0 = time.monotonic()
            fleet.freeze("h4", True)
            try:
                fleet.ssh("h4", "true", timeout=3, connect_timeout=2)
                check(False, "h4 answered while frozen")
            except (subprocess.TimeoutExpired, hosts.HostError):
                pass
            fleet.freeze("h4", False)
            fleet.ssh("h4", "true")
            veth = fleet.veth("h4")
            fleet.link("h4", False)
            r = fleet.ssh("h4", "true", check=False, timeout=10, connect_timeout=2)
            check(r.returncode != 0, "h4 answered with its link down (%s)" % veth)
            fleet.link("h4", True)
            fleet.wait_ready("h4", timeout=30)
            step("freeze + link cut h4 (%s)" % veth, t0)

            t0 = time.monotonic()
        step("cleanup", t0)
        t0 = time.monotonic()
        fleet.cleanup()      # a second call is a no-op
        check(time.monotonic() - t0 < 1, "second cleanup took time")
    finally:
        left = leftovers(fleet)
    check(not left, "left behind: %s" % left)
    print("OK: %s" % ", ".join("%s %.1fs" % t for t in timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
