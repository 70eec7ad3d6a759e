"""The quick start, as a new user runs it: up, a daemon killed with -9, up
again. The test makes itself the reaper of the daemons the script leaves
behind and reaps none of them, so a killed daemon stays a zombie, as it does
under an init that does not reap: up must still see that it is gone. The
tokens it makes: private files, used by every HTTP port, named but never
printed, kept across a second up."""
import ctypes
import glob
import json
import os
import re
import signal
import stat
import subprocess

import yaml

import prom
from cluster import free_ports, wait_for
from rest_client import RestClient

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
PLAIN = os.environ.get("CAIRN_PLAIN_BUILD") or os.environ.get("CAIRN_BUILD")
PR_SET_CHILD_SUBREAPER = 36


def qs(env, *args):
    r = subprocess.run([os.path.join(TOP, "deploy/quickstart.sh"), *args], env=env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:  # the daemons' logs say why; purge deletes them
        logs = ""
        for log in sorted(glob.glob(os.path.join(env["CAIRN_QS_DIR"], "*.log"))):
            with open(log, errors="replace") as f:
                logs += f"--- {log} (end)\n{f.read()[-3000:]}\n"
        raise AssertionError(f"quickstart {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}\n{logs}")
    return r.stdout


def check_tokens(qdir, base, out):
    """The token files of the quick start in qdir: mode 0600, random hex,
    needed and enough on every HTTP port, named in out and never written
    there nor in a log. Returns them."""
    with open(qdir / "http-tokens") as f:
        lines = [ln.split() for ln in f if ln.strip() and not ln.startswith("#")]
    with open(qdir / "metrics.token") as f:
        mtok = f.read().strip()
    roles = dict(lines)
    assert sorted(r for r, _ in lines) == ["admin", "monitor"], lines
    for t in (roles["admin"], roles["monitor"], mtok):
        assert re.fullmatch(r"[0-9a-f]{64}", t), "not 32 random bytes in hex"
    assert len({roles["admin"], roles["monitor"], mtok}) == 3
    for name in ("http-tokens", "metrics.token"):
        assert stat.S_IMODE(os.stat(qdir / name).st_mode) == 0o600, name
        assert str(qdir / name) in out, f"{name} not named in the output"
    for text in [out] + [open(p, errors="replace").read() for p in glob.glob(str(qdir / "*.log"))]:
        for t in (roles["admin"], roles["monitor"], mtok):
            assert t not in text, "a token was printed"
    # the REST API and the dashboard's data
    url = f"http://127.0.0.1:{base + 80}"
    assert RestClient(url).get("/api/v1/status").status == 401
    assert RestClient(url, roles["admin"]).get("/api/v1/status").status == 200
    mon = RestClient(url, roles["monitor"])
    assert mon.get("/api/v1/volumes").status == 200
    assert mon.post("/api/v1/volumes", body={"name": "qs-mon", "size": "8M"}).status == 403
    assert RestClient(url).get("/").status == 200  # the page itself
    # every daemon's metrics, and the scrape configuration written for them
    for port in (base + 91, base + 191, base + 192, base + 193, base + 291):
        addr = f"127.0.0.1:{port}"
        assert prom.get(addr)[0] == 401, addr
        assert prom.scrape(addr, mtok).types, addr
    with open(qdir / "prometheus.yml") as f:
        conf = yaml.safe_load(f)
    assert len(conf["scrape_configs"]) == 3
    for job in conf["scrape_configs"]:
        assert job["authorization"] == {"type": "Bearer",
                                        "credentials_file": str(qdir / "metrics.token")}, job
    check_credentials(qdir, base, out)
    return roles, mtok


def check_credentials(qdir, base, out):
    """The quick start's credentials: a 0700 directory of 0600 files, the
    CLI's admin one named in out and enough to change the cluster, the
    monitor one enough to query and not to change, none at all refused."""
    creds = qdir / "credentials"
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o700
    for p in creds.iterdir():
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    assert f"CAIRN_CREDENTIALS={creds}/admin.cred" in out
    cli = [f"{PLAIN}/mgmt/cairn", "--mdm", f"127.0.0.1:{base + 11}"]
    env = dict(os.environ, CAIRN_CREDENTIALS=str(creds / "admin.cred"))
    r = subprocess.run(cli + ["fault-set", "add", "qs-rack"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cli + ["fault-set", "remove", "qs-rack"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    env["CAIRN_CREDENTIALS"] = str(creds / "monitor.cred")
    r = subprocess.run(cli + ["--json", "status"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["cluster_id"], r.stderr
    r = subprocess.run(cli + ["fault-set", "add", "qs-mon"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "monitor credential may query, not change" in r.stderr, r.stderr
    del env["CAIRN_CREDENTIALS"]
    r = subprocess.run(cli + ["status"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no credential" in r.stderr, r.stderr


def test_up_again_after_kill9(tmp_path):
    assert ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    # the quick start's ports are base+11 .. base+291: all below the
    # kernel's ephemeral range (32768 up), where another process's
    # connection may hold one (the MDM then cannot listen)
    nbd_port, base = free_ports(1)[0], 20000 + os.getpid() % 12000
    env = dict(os.environ, CAIRN_QS_DIR=str(tmp_path / "qs"), CAIRN_BUILD=PLAIN,
               CAIRN_NBD_PORT=str(nbd_port), CAIRN_QS_PORT_BASE=str(base))
    try:
        out = qs(env, "up")
        assert "Cairn is up" in out
        tokens = check_tokens(tmp_path / "qs", base, out)
        with open(tmp_path / "qs" / "sds2.pid") as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        # dead, and left a zombie: nobody reaps it
        def zombie():
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] == "Z"
        wait_for("sds2 to be a zombie", zombie)
        out = qs(env, "up")
        assert "Cairn is up" in out
        assert check_tokens(tmp_path / "qs", base, out) == tokens, "the tokens changed"
        with open(tmp_path / "qs" / "sds2.pid") as f:
            assert int(f.read()) != pid, "sds2 was not started again"
        r = subprocess.run(["nbdinfo", f"nbd://127.0.0.1:{nbd_port}/demo"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run([os.path.join(TOP, "deploy/quickstart.sh"), "purge"], env=env,
                       capture_output=True, timeout=300)
        while True:  # the zombies we kept
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break


def test_up_with_three_mdms(tmp_path):
    """up --mdms 3: three MDMs in one cluster; the leader killed with -9,
    the cluster still takes changes and serves the volume; up again brings
    the killed MDM back into the cluster."""
    nbd_port, base = free_ports(1)[0], 20000 + (os.getpid() + 6000) % 12000
    qdir = tmp_path / "qs"
    env = dict(os.environ, CAIRN_QS_DIR=str(qdir), CAIRN_BUILD=PLAIN,
               CAIRN_NBD_PORT=str(nbd_port), CAIRN_QS_PORT_BASE=str(base))
    cli = [os.path.join(PLAIN, "mgmt/cairn"), "--credentials", str(qdir / "credentials/admin.cred")]

    def cairn(*args):
        mdms = ",".join(f"127.0.0.1:{base + 10 * i + 1}" for i in (1, 2, 3))
        r = subprocess.run(cli + ["--mdm", mdms] + list(args), capture_output=True, text=True,
                           timeout=90)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def members():
        return json.loads(cairn("--json", "mdm", "list"))

    try:
        out = qs(env, "up", "--mdms", "3")
        assert "Cairn is up" in out and "MDMs:        3" in out, out
        assert sorted((m["id"], m["member"]) for m in members()) == [
            (1, "voter"), (2, "voter"), (3, "voter")]
        lead = next(m["id"] for m in members() if m["role"] == "leader")
        pidfile = qdir / ("mdm.pid" if lead == 1 else f"mdm{lead}.pid")
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        cairn("volume", "create", "after-kill", "--size", "16M")
        r = subprocess.run(["nbdinfo", f"nbd://127.0.0.1:{nbd_port}/demo"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = qs(env, "up")  # the count is kept: three again
        wait_for("the killed MDM back", lambda: next(
            m for m in members() if m["id"] == lead)["role"] == "follower")
    finally:
        subprocess.run([os.path.join(TOP, "deploy/quickstart.sh"), "purge"], env=env,
                       capture_output=True, timeout=300)
        while True:  # the killed MDM, if this process is the daemons' reaper
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
