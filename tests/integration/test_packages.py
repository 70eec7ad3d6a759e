"""The Debian packages (docs/packaging.md) and the daemons' --config.

The packages are made by CPack from a build directory (CAIRN_PLAIN_BUILD if
given, else CAIRN_BUILD) into a temporary directory, checked with lintian
(no error, no binary without a manual page) and dpkg-deb (binaries, manual
pages, units, conffiles, dependencies, the version every binary prints),
and never installed. A configuration with CAIRN_VERSION_SUFFIX makes a newer
package version. The units pass systemd-analyze verify. A real cairn-mdm started
from a configuration file, with a command-line flag overriding one of its
keys, serves on the overridden address and tells a notify socket READY=1
and STOPPING=1; a configuration with an unknown key stops each daemon at
start with the file and line.
"""
import glob
import gzip
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

from cluster import BUILD, Cluster, Daemon, free_ports

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
PKG_BUILD = os.environ.get("CAIRN_PLAIN_BUILD") or BUILD
DAEMONS = {"mdm": "mgmt/cairn-mdm", "sds": "server/cairn-sds", "sdc": "client/cairn-sdc"}
PACKAGES = ("cairn-mdm", "cairn-sds", "cairn-sdc", "cairn-cli")
# package component -> its binary and the section of its manual page
BINARIES = {"mdm": ("cairn-mdm", 8), "sds": ("cairn-sds", 8), "sdc": ("cairn-sdc", 8),
            "cli": ("cairn", 1)}


def project_version():
    return re.search(r'project\(cairn VERSION ([0-9.]+)',
                     open(f"{SRC}/CMakeLists.txt").read()).group(1)


def build_version(build):
    """The version build's binaries carry: the project's and the build's
    CAIRN_VERSION_SUFFIX."""
    cache = open(f"{build}/CMakeCache.txt").read()
    m = re.search(r"^CAIRN_VERSION_SUFFIX:STRING=(.*)$", cache, re.M)
    assert m, f"no CAIRN_VERSION_SUFFIX in {build}/CMakeCache.txt"
    return project_version() + m.group(1)


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """Package name -> its .deb, made by cpack from PKG_BUILD."""
    assert shutil.which("cpack") and shutil.which("dpkg-deb"), \
        "cpack or dpkg-deb missing (deploy/deps.sh build installs them)"
    out = tmp_path_factory.mktemp("debs")
    r = subprocess.run(["cpack", "-G", "DEB", "--config", f"{PKG_BUILD}/CPackConfig.cmake",
                        "-B", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"cpack failed:\n{r.stdout}\n{r.stderr}"
    found = {}
    for path in glob.glob(f"{out}/*.deb"):
        found[os.path.basename(path).split("_")[0]] = path
    assert sorted(found) == sorted(PACKAGES), found
    return found


def deb_files(deb):
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                         check=True).stdout
    # "-rwxr-xr-x root/root 405504 2026-12-04 20:03 ./usr/bin/cairn-mdm"
    return {line.split()[5][1:]: line.split()[0] for line in out.splitlines()}


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_lintian_has_no_error(debs):
    assert shutil.which("lintian"), "lintian is not installed (deploy/deps.sh test installs it)"
    r = subprocess.run(["lintian", "--no-tag-display-limit"] + sorted(debs.values()),
                       capture_output=True, text=True, timeout=300)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    assert not errors, "lintian errors:\n" + "\n".join(errors)
    assert r.returncode in (0, 2), r.stderr  # 2: warnings only
    # every binary has its page, and the pages raise nothing (groff-message,
    # bad-whatis-entry, manpage-...)
    man = [line for line in r.stdout.splitlines()
           if re.search(r"manual-page|manpage|groff-message|whatis", line)]
    assert not man, "lintian on the manual pages:\n" + "\n".join(man)


def test_package_contents(debs):
    for name, binary in (("mdm", "cairn-mdm"), ("sds", "cairn-sds"), ("sdc", "cairn-sdc"),
                         ("cli", "cairn")):
        deb = debs[f"cairn-{name}"]
        files = deb_files(deb)
        assert files.get(f"/usr/bin/{binary}", "").startswith("-rwxr-xr-x"), files
        assert f"/usr/share/doc/cairn-{name}/copyright" in files
        assert f"/usr/share/doc/cairn-{name}/changelog.Debian.gz" in files
        assert deb_field(deb, "Version") == build_version(PKG_BUILD) + "-1"
        depends = deb_field(deb, "Depends")
        assert "libuv1" in depends, depends  # computed by dpkg-shlibdeps
        if name == "cli":
            assert not any(f.startswith("/etc/") or f.startswith("/lib/systemd/")
                           for f in files), files
            continue
        assert f"/lib/systemd/system/cairn-{name}.service" in files, files
        assert f"/etc/cairn/{name}.conf" in files, files
        conffiles = subprocess.run(["dpkg-deb", "--info", deb, "conffiles"],
                                   capture_output=True, text=True, check=True).stdout.split()
        assert conffiles == [f"/etc/cairn/{name}.conf"]
        for script in ("postinst", "prerm", "postrm"):
            text = subprocess.run(["dpkg-deb", "--info", deb, script], capture_output=True,
                                  text=True, check=True).stdout
            assert f"cairn-{name}.service" in text, script
        assert "adduser" in depends and "libsystemd0" in depends, depends
    assert "libraft0 (>= 0.22.1)" in deb_field(debs["cairn-mdm"], "Depends")


def test_versions_and_manual_pages(debs, tmp_path):
    """Each package's binary prints the package's version, and its manual
    page (gzipped, in /usr/share/man/manN) renders without a warning and
    says more than --help: the hand-written description, files, see also."""
    version = build_version(PKG_BUILD)
    for name, (binary, sec) in BINARIES.items():
        deb = debs[f"cairn-{name}"]
        page = f"/usr/share/man/man{sec}/{binary}.{sec}.gz"
        assert page in deb_files(deb), deb_files(deb)
        root = tmp_path / name
        subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
        r = subprocess.run([f"{root}/usr/bin/{binary}", "--version"], capture_output=True,
                           text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, f"{binary} {version}\n"), (r.returncode, r.stdout,
                                                                          r.stderr)
        # the build's own binaries say the same
        r = subprocess.run([f"{BUILD}/{DAEMONS.get(name, 'mgmt/cairn')}", "--version"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == f"{binary} {build_version(BUILD)}\n", r.stdout
        src = gzip.open(f"{root}{page}").read().decode()
        assert src.startswith(".\\\" DO NOT MODIFY THIS FILE!  It was generated by help2man"), \
            src[:200]
        assert f'.TH {binary.upper()} "{sec}"' in src and f"{binary} {version}" in src, src[:400]
        assert "Sanitizer" not in src, src  # help2man ran a binary that complained
        assert shutil.which("man"), "man is missing (package man-db)"
        r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z",
                            f"{root}{page}"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80"))
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr
        text = subprocess.run(["man", "-l", f"{root}{page}"], capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80",
                                                   MANPAGER="cat", PAGER="cat")).stdout
        text = re.sub(r".\x08", "", text)  # overstrike bold
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
            assert f"\n{section}\n" in text, (binary, section, text)
        assert "--version" in text and "cluster" in text.split("DESCRIPTION")[1], text
        others = [b for b, _ in BINARIES.values() if b != binary]
        see_also = text.split("\nSEE ALSO\n")[1]
        assert all(re.search(rf"{o}\(\d\)", see_also) for o in others), see_also
        if name != "cli":
            assert f"/etc/cairn/{name}.conf" in text.split("\nFILES\n")[1], text


def test_version_suffix_makes_a_newer_package(tmp_path):
    """Configured with -DCAIRN_VERSION_SUFFIX=+rebuild1 (a configuration
    only: a second build would take minutes), the binaries' version.h and
    the packages' version carry it, and dpkg sorts that package after the
    plain one; a suffix that is not a Debian upstream version's tail is
    refused."""
    v = project_version()
    out = tmp_path / "suffix"
    r = subprocess.run(["cmake", "-S", SRC, "-B", str(out), "-DBUILD_TESTING=OFF",
                        "-DCAIRN_VERSION_SUFFIX=+rebuild1"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'#define CAIRN_VERSION "{v}+rebuild1"' in open(f"{out}/common/version.h").read()
    cpack = open(f"{out}/CPackConfig.cmake").read()
    m = re.search(r'set\(CPACK_DEBIAN_PACKAGE_VERSION "([^"]*)"\)', cpack)
    assert m and m.group(1) == f"{v}+rebuild1", cpack
    assert re.search(r'set\(CPACK_DEBIAN_PACKAGE_RELEASE "1"\)', cpack), cpack
    assert f"cairn ({v}+rebuild1-1)" in open(f"{out}/deb/changelog.Debian").read()
    assert subprocess.run(["dpkg", "--compare-versions", f"{v}+rebuild1-1", "gt",
                           f"{v}-1"]).returncode == 0
    r = subprocess.run(["cmake", "-S", SRC, "-B", str(tmp_path / "bad"), "-DBUILD_TESTING=OFF",
                        "-DCAIRN_VERSION_SUFFIX=-1"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "CAIRN_VERSION_SUFFIX '-1'" in r.stderr, r.stderr


def test_daemons_log_their_version_first(tmp_path):
    """The first line a daemon logs names its version, before anything can
    fail (here: a credential that is not there)."""
    version = build_version(BUILD)
    for name, rel in DAEMONS.items():
        args = {"mdm": ["--data-dir", f"{tmp_path}/{name}"],
                "sds": ["--name", "s", "--listen", "127.0.0.1:1", "--mdm", "127.0.0.1:2",
                        "--data-dir", f"{tmp_path}/{name}"],
                "sdc": ["--mdm", "127.0.0.1:2", "--data-dir", f"{tmp_path}/{name}"]}[name]
        r = subprocess.run([f"{BUILD}/{rel}"] + args + ["--credentials", f"{tmp_path}/none"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, (name, r.returncode, r.stderr)
        first = r.stderr.splitlines()[0]
        assert first.endswith(f" cairn-{name} INFO: cairn-{name} {version} starting"), r.stderr


def test_units_verify(tmp_path):
    """systemd-analyze verify on the units, with ExecStart pointed at this
    build's binaries (verify wants an executable there)."""
    assert shutil.which("systemd-analyze"), \
        "systemd-analyze is not installed (package systemd; deploy/deps.sh test installs it)"
    units = []
    for name, rel in DAEMONS.items():
        text = open(f"{SRC}/deploy/systemd/cairn-{name}.service").read()
        assert "Type=notify" in text and "Restart=on-failure" in text
        assert f"ExecStart=/usr/bin/cairn-{name} --config /etc/cairn/{name}.conf\n" in text
        path = tmp_path / f"cairn-{name}.service"
        path.write_text(text.replace(f"/usr/bin/cairn-{name}", f"{BUILD}/{rel}"))
        units.append(str(path))
    r = subprocess.run(["systemd-analyze", "verify"] + units, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_default_configs_name_real_options(tmp_path):
    """Every key of deploy/etc/*.conf, commented or not, is an option of its
    daemon: the file parses with every '#key = value' line uncommented."""
    for name, rel in DAEMONS.items():
        text = open(f"{SRC}/deploy/etc/{name}.conf").read()
        conf = tmp_path / f"{name}.conf"
        conf.write_text(re.sub(r"^#([a-z-]+ = )", r"\1", text, flags=re.M))
        r = subprocess.run([f"{BUILD}/{rel}", "--config", str(conf), "--help"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "usage:" in r.stderr, r.stderr
        assert str(conf) not in r.stderr, r.stderr  # no complaint about the file


def test_unknown_key_names_file_and_line(tmp_path):
    for name, rel in DAEMONS.items():
        conf = tmp_path / f"{name}.conf"
        conf.write_text("# a comment\n\ndata-dir = /nonexistent\nlisen = 127.0.0.1:1\n")
        r = subprocess.run([f"{BUILD}/{rel}", "--config", str(conf)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2
        assert f"cairn-{name}: {conf}:4: unknown option 'lisen'" in r.stderr, r.stderr
        # --version asks for an answer and an exit: not a configuration key
        conf.write_text("version = true\n")
        r = subprocess.run([f"{BUILD}/{rel}", "--config", str(conf)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
        assert f"cairn-{name}: {conf}:1: unknown option 'version'" in r.stderr, r.stderr
    r = subprocess.run([f"{BUILD}/mgmt/cairn-mdm", "--config", str(tmp_path / "none.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "none.conf" in r.stderr, r.stderr


def test_mdm_from_config_file(tmp_path):
    """A real MDM from a configuration file; --listen on the command line
    overrides the file's; readiness and stop through NOTIFY_SOCKET."""
    creds = Cluster(tmp_path / "creds", sds_sizes=())
    file_port, cli_port, raft_port = free_ports(3)
    conf = tmp_path / "mdm.conf"
    conf.write_text(f"# as /etc/cairn/mdm.conf\n"
                    f"data-dir = {tmp_path}/mdm\n"
                    f"listen = 127.0.0.1:{file_port}\n"
                    f"raft-addr = 127.0.0.1:{raft_port}\n"
                    f"credentials = {creds.credential('mdm', 'mdm1')}\n"
                    f"join = false\n")
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(60)
    d = Daemon("mdm", [f"{BUILD}/mgmt/cairn-mdm", "--config", str(conf),
                       "--listen", f"127.0.0.1:{cli_port}"],
               str(tmp_path / "mdm.log"), env={"NOTIFY_SOCKET": notify_path})
    d.start()
    try:
        assert notify.recv(4096).decode() == "READY=1"  # waits for readiness
        r = subprocess.run([f"{BUILD}/mgmt/cairn", "--mdm", f"127.0.0.1:{cli_port}",
                            "--credentials", creds.credential("admin", "admin"),
                            "--local", "status"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        with socket.socket() as s:  # the file's address was overridden
            assert s.connect_ex(("127.0.0.1", file_port)) != 0
        # one SIGTERM, as systemd sends: the MDM's shutdown closes its
        # signal handles, so a second one would find SIGTERM's default
        d.proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096).decode() == "STOPPING=1"
        assert d.proc.wait(60) == 0, f"cairn-mdm exited with {d.proc.returncode}"
    finally:
        d.stop()  # only if still running (a failed assertion above)
        notify.close()
    d.check_log()
    log = open(tmp_path / "mdm.log").read()
    assert f"listening on 127.0.0.1:{cli_port}" in log, log
    assert f"cairn-mdm {build_version(BUILD)} starting" in log.splitlines()[0], log
