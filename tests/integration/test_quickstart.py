"""The quick start, as a new user runs it: up, a daemon killed with -9, up
again. The test makes itself the reaper of the daemons the script leaves
behind and reaps none of them, so a killed daemon stays a zombie, as it does
under an init that does not reap: up must still see that it is gone."""
import ctypes
import os
import signal
import subprocess

from cluster import free_ports, wait_for

TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../..")
PLAIN = os.environ.get("CAIRN_PLAIN_BUILD") or os.environ.get("CAIRN_BUILD")
PR_SET_CHILD_SUBREAPER = 36


def qs(env, *args):
    r = subprocess.run([os.path.join(TOP, "deploy/quickstart.sh"), *args], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"quickstart {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_up_again_after_kill9(tmp_path):
    assert ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    nbd_port, base = free_ports(1)[0], 20000 + os.getpid() % 20000
    env = dict(os.environ, CAIRN_QS_DIR=str(tmp_path / "qs"), CAIRN_BUILD=PLAIN,
               CAIRN_NBD_PORT=str(nbd_port), CAIRN_QS_PORT_BASE=str(base))
    try:
        out = qs(env, "up")
        assert "Cairn is up" in out
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
