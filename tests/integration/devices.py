"""Block devices for SDSs built from real parts: an nbdkit server over a file
(with a filter that makes the device fail or records what reaches it),
exposed by nbdfuse and attached as a loop device with direct I/O, so the SDS
opens it with O_DIRECT through io_uring as it would a disk.

Every part is stopped by close(), whatever state the setup reached, so a
failing test leaves no nbdkit, nbdfuse or loop device behind."""
import os
import re
import signal
import subprocess
import time

from cluster import wait_for


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of ours is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _kill(pid, timeout=10):
    """SIGTERM, then SIGKILL if it has not gone within timeout."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + timeout
        while time.time() < deadline and _pid_alive(pid):
            time.sleep(0.05)
        if not _pid_alive(pid):
            return


def loops_of(path):
    """Loop devices whose backing file is path."""
    r = subprocess.run(["losetup", "-j", path, "-O", "NAME", "-n"], capture_output=True,
                       text=True)
    return [l.strip() for l in r.stdout.splitlines() if l.strip()]


def detach_loops(path, timeout=30):
    """Detach every loop device backed by path and wait until the kernel has
    let go of the file: a detach only completes once nothing holds the loop
    device open, and until then the file (a FUSE file, say) stays busy."""
    for dev in loops_of(path):
        subprocess.run(["losetup", "-d", dev], capture_output=True)
    wait_for(f"the loop devices of {path} to go", lambda: not loops_of(path), timeout=timeout,
             interval=0.1)


def fuse_unmount(mountpoint, proc=None, timeout=30):
    """Unmount a FUSE file system and wait for its server (proc) to exit. A
    mount that stays busy past the timeout is unmounted lazily and its server
    killed; never raises."""
    def unmounted():
        return subprocess.run(["fusermount3", "-u", mountpoint],
                              capture_output=True).returncode == 0 or \
            not os.path.ismount(mountpoint)
    try:
        wait_for(f"{mountpoint} to unmount", unmounted, timeout=timeout, interval=0.2)
        if proc:
            proc.wait(timeout)
    except (TimeoutError, subprocess.TimeoutExpired):
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True)
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()


class NbdkitDevice:
    """nbdkit FILTER over a sparse file of size bytes, as /dev/loopN."""

    def __init__(self, base, size, filter_args):
        self.base = str(base)
        self.nbdkit_pid = None
        self.fuse = None
        self.loop = None
        os.makedirs(f"{self.base}/fuse", exist_ok=True)
        try:
            with open(f"{self.base}/backing.img", "wb") as f:
                f.truncate(size)
            pidfile = f"{self.base}/nbdkit.pid"
            subprocess.run(["nbdkit", *filter_args[:1], "-U", f"{self.base}/nbd.sock", "-P",
                            pidfile, "file", f"{self.base}/backing.img", *filter_args[1:]],
                           check=True)
            wait_for("nbdkit's pidfile", lambda: os.path.getsize(pidfile) > 0
                     if os.path.exists(pidfile) else False)
            with open(pidfile) as f:
                self.nbdkit_pid = int(f.read())
            self.fuse = subprocess.Popen(["nbdfuse", "-P", f"{self.base}/fuse.pid",
                                          f"{self.base}/fuse/dev", "--unix",
                                          f"{self.base}/nbd.sock"])
            wait_for("nbdfuse", lambda: os.path.exists(f"{self.base}/fuse.pid"))
            self.loop = subprocess.run(["losetup", "--direct-io=on", "-f", "--show",
                                        f"{self.base}/fuse/dev"], check=True,
                                       capture_output=True, text=True).stdout.strip()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Detach and stop everything, in order (loop device, FUSE mount,
        nbdkit); safe to call at any point, and twice; never raises."""
        if self.loop:
            try:
                detach_loops(f"{self.base}/fuse/dev")
            except TimeoutError:
                pass  # the unmount below goes lazily then
            self.loop = None
        if self.fuse:
            fuse_unmount(f"{self.base}/fuse", self.fuse)
            self.fuse = None
        if not self.nbdkit_pid:
            try:  # started, but the setup failed before it was noted
                with open(f"{self.base}/nbdkit.pid") as f:
                    self.nbdkit_pid = int(f.read())
            except (OSError, ValueError):
                pass
        if self.nbdkit_pid:
            _kill(self.nbdkit_pid)
            self.nbdkit_pid = None


class FaultyDevice(NbdkitDevice):
    """Fails on demand (nbdkit's error filter): while the trigger file exists
    every read and write gets EIO."""

    def __init__(self, base, size):
        self.trigger = f"{base}/trigger"
        super().__init__(base, size, ["--filter=error", "error=EIO", "error-rate=100%",
                                      f"error-file={self.trigger}"])

    def fail(self):
        open(self.trigger, "w").close()

    def close(self):
        if os.path.exists(self.trigger):
            os.unlink(self.trigger)
        super().close()


class LoggedDevice(NbdkitDevice):
    """Records every request that reaches the medium (nbdkit's log filter),
    so a test can see when data and flushes get there."""

    def __init__(self, base, size):
        self.logfile = f"{base}/requests.log"
        super().__init__(base, size, ["--filter=log", f"logfile={self.logfile}"])

    def completed(self, op):
        """How many requests of kind op ('Flush', 'Write', ...) have completed."""
        with open(self.logfile) as f:
            return len(re.findall(rf"\.\.\.{op} id=\d+ return=0", f.read()))
