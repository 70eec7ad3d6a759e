"""The Debian 12 base of the test hosts (see hosts.py): built once with
mmdebstrap from this machine's apt sources, cached as a .tar.zst in
/var/cache/cairn-test-hosts (outside the repository, so a clean clone reuses
it), keyed by the package list, the sources and ROOTFS_FORMAT.

The base has no /etc/machine-id and no ssh host keys (each host gets its
own), units a test did not ask for masked, systemd-networkd and ssh enabled.
"""
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

CACHE_DIR = "/var/cache/cairn-test-hosts"
# Bump when the way the base is built changes, so old caches are not reused.
ROOTFS_FORMAT = 1
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus", "libpam-systemd",
                 "openssh-server", "python3", "iproute2", "procps"]
# Units masked in the base: nothing a test did not ask for runs on a host.
MASKED_UNITS = ["apt-daily.timer", "apt-daily-upgrade.timer",
                "apt-daily.service", "apt-daily-upgrade.service",
                "dpkg-db-backup.timer", "dpkg-db-backup.service",
                "e2scrub_all.timer", "e2scrub_all.service",
                "e2scrub_reap.service", "fstrim.timer", "man-db.timer",
                "motd-news.timer", "fio.service", "fio@.service",
                "getty@tty1.service", "systemd-timesyncd.service"]


class HostError(RuntimeError):
    pass


def log(msg):
    print("[hosts] " + msg, file=sys.stderr, flush=True)


def _run(cmd, **kw):
    kw.setdefault("check", True)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as e:
        raise HostError("%s failed (exit %d): %s" % (
            " ".join(map(shlex.quote, cmd)), e.returncode,
            (e.stderr or e.stdout or "").strip()[-2000:])) from None

def apt_mirror_lines():
    """This machine's Debian sources as one-line "deb" entries for bookworm,
    bookworm-updates and bookworm-security, without bookworm-backports and
    without non-Debian archives."""
    paths = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        paths += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    entries = []               # (options, uri, suite, components)
    for p in paths:
        if not os.path.isfile(p):
            continue
        text = open(p).read()
        if p.endswith(".list"):
            for line in text.splitlines():
                line = line.split("#", 1)[0].strip()
                m = re.match(r"deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
                if m:
                    opts = (m.group(1) or "").strip()[1:-1].strip()
                    entries.append((opts, m.group(2), m.group(3), m.group(4).split()))
        elif p.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                f = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    f[k.strip().lower()] = v.strip()
                if "deb" not in f.get("types", "").split() or \
                        f.get("enabled", "yes").lower() == "no":
                    continue
                opts = "signed-by=" + f["signed-by"] if "signed-by" in f else ""
                for uri in f.get("uris", "").split():
                    for suite in f.get("suites", "").split():
                        entries.append((opts, uri, suite, f.get("components", "main").split()))
    lines = []
    for opts, uri, suite, comps in entries:
        if not re.fullmatch(r"bookworm(-updates|-security|/updates)?", suite):
            continue
        o = "[%s] " % opts if opts else ""
        line = "deb %s%s %s %s" % (o, uri, suite, " ".join(comps))
        if line not in lines:
            lines.append(line)
    if not any(re.search(r" bookworm ", ln) for ln in lines):
        raise HostError("no bookworm source in /etc/apt/sources.list{,.d}")
    return lines


# Runs in the finished chroot ($1). Fails the build when a package is not
# fully installed (nbd-client asks debconf questions).
_CUSTOMIZE = r"""
set -e
root="$1"; shift
for p in "$@"; do
    s=$(chroot "$root" dpkg-query -W -f='${db:Status-Status}' "$p" 2>&1 || true)
    [ "$s" = installed ] || { echo "package $p is not installed: $s" >&2; exit 1; }
done
a=$(chroot "$root" dpkg --audit)
[ -z "$a" ] || { echo "dpkg --audit: $a" >&2; exit 1; }
rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system"
for u in MASKED $(cd "$root/lib/systemd/system" && ls | grep -i fio || true); do
    ln -sfn /dev/null "$root/etc/systemd/system/$u"
done
systemctl --root="$root" enable systemd-networkd.service ssh.service
mkdir -p "$root/root/.ssh" "$root/data"
chmod 700 "$root/root/.ssh"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
"""


def rootfs_cache_path(extra_packages=(), cache_dir=CACHE_DIR):
    """Where build_rootfs() keeps the base for this package list (it may not
    exist yet): keyed by the packages, the apt sources and ROOTFS_FORMAT."""
    pkgs = sorted(set(BASE_PACKAGES) | set(extra_packages))
    key = hashlib.sha256(json.dumps([ROOTFS_FORMAT, pkgs, apt_mirror_lines()])
                         .encode()).hexdigest()[:16]
    return os.path.join(cache_dir, "bookworm-%s.tar.zst" % key)


def build_rootfs(extra_packages=(), cache_dir=CACHE_DIR):
    """Returns the path of a cached .tar.zst of a Debian 12 base with
    BASE_PACKAGES + extra_packages, building it first (mmdebstrap, ~1 min)
    when no cache for that package list and ROOTFS_FORMAT exists. Safe to
    call from concurrent runs: the build holds an flock and the tarball
    appears by an atomic rename."""
    pkgs = sorted(set(BASE_PACKAGES) | set(extra_packages))
    out = rootfs_cache_path(extra_packages, cache_dir)
    key = os.path.basename(out)[len("bookworm-"):-len(".tar.zst")]
    mirrors = apt_mirror_lines()
    os.makedirs(cache_dir, exist_ok=True)
    if os.path.exists(out):
        return out
    with open(out + ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.path.exists(out):
            return out
        tmp = os.path.join(cache_dir, "tmp-%d-%s.tar.zst" % (os.getpid(), key))
        hook = _CUSTOMIZE.replace("MASKED", " ".join(MASKED_UNITS))
        cmd = ["mmdebstrap", "--variant=minbase", "--mode=root",
               "--include=" + ",".join(pkgs),
               "--customize-hook=sh -c %s sh \"$1\" %s" % (
                   shlex.quote(hook), " ".join(map(shlex.quote, pkgs))),
               "bookworm", tmp] + mirrors
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive",
                   DEBCONF_NONINTERACTIVE_SEEN="true", LC_ALL="C.UTF-8")
        log("building %s (%d packages)" % (out, len(pkgs)))
        logpath = out + ".build.log"
        try:
            with open(logpath, "w") as lf:
                rc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=lf, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                tail = open(logpath, errors="replace").read()[-3000:]
                raise HostError("mmdebstrap failed (exit %d), log %s:\n%s" % (rc, logpath, tail))
            os.rename(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def unpack_rootfs(tarball):
    """Unpacks the tarball once, next to it, into a directory used read-only
    as every host's overlay lower dir; returns that directory."""
    d = tarball[:-len(".tar.zst")] + ".d"
    if os.path.isdir(d):
        return d
    with open(tarball + ".lock", "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if os.path.isdir(d):
            return d
        tmp = "%s.tmp-%d" % (d, os.getpid())
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        _run(["tar", "--zstd", "-xpf", tarball, "-C", tmp, "--numeric-owner",
              "--xattrs", "--xattrs-include=*"])
        os.rename(tmp, d)
    return d
