"""The Debian packages (docs/packaging.md) and the daemons' --config.

The packages are made by CPack from a build directory (CAIRN_PLAIN_BUILD if
given, else CAIRN_BUILD) into a temporary directory, checked with lintian
(no error) and dpkg-deb (binaries, units, conffiles, dependencies), and never
installed. The units pass systemd-analyze verify. A real cairn-mdm started
from a configuration file, with a command-line flag overriding one of its
keys, serves on the overridden address and tells a notify socket READY=1
and STOPPING=1; a configuration with an unknown key stops each daemon at
start with the file and line.
"""
import glob
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


def test_package_contents(debs):
    for name, binary in (("mdm", "cairn-mdm"), ("sds", "cairn-sds"), ("sdc", "cairn-sdc"),
                         ("cli", "cairn")):
        deb = debs[f"cairn-{name}"]
        files = deb_files(deb)
        assert files.get(f"/usr/bin/{binary}", "").startswith("-rwxr-xr-x"), files
        assert f"/usr/share/doc/cairn-{name}/copyright" in files
        assert f"/usr/share/doc/cairn-{name}/changelog.Debian.gz" in files
        assert deb_field(deb, "Version").startswith(
            re.search(r'project\(cairn VERSION ([0-9.]+)',
                      open(f"{SRC}/CMakeLists.txt").read()).group(1) + "-")
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
