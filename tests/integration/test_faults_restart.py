"""A real file system on a Cairn volume survives restarts of every daemon,
by SIGTERM and by kill -9; acknowledged writes survive kill -9 without FLUSH."""
import hashlib
import os
import signal
import subprocess
import time

import nbd

from cluster import wait_for
from devices import detach_loops, fuse_unmount


def sh(*argv, timeout=300):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


class FuseMount:
    """nbdfuse exposes the export as a file; a loop mount puts ext4 on it."""

    def __init__(self, cluster, vol, base):
        self.cluster, self.vol = cluster, vol
        self.fdir, self.mnt = os.path.join(base, "fuse"), os.path.join(base, "mnt")
        os.makedirs(self.fdir, exist_ok=True)
        os.makedirs(self.mnt, exist_ok=True)
        self.pidfile = os.path.join(base, "nbdfuse.pid")

    def attach(self):
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        self.proc = subprocess.Popen(["nbdfuse", "-P", self.pidfile, f"{self.fdir}/disk",
                                      self.cluster.uri(self.vol)])
        wait_for("nbdfuse", lambda: os.path.exists(self.pidfile) and os.path.exists(f"{self.fdir}/disk"))
        return f"{self.fdir}/disk"

    def mount(self):
        sh("mount", "-o", "loop", f"{self.fdir}/disk", self.mnt)

    def umount(self):
        sh("umount", self.mnt)
        # the mount's loop device lets go of the FUSE file a moment later:
        # until then the FUSE file system is busy
        detach_loops(f"{self.fdir}/disk")

    def detach(self):
        sh("fusermount3", "-u", self.fdir)
        self.proc.wait(30)

    def close(self):
        """After a failure: unmount and stop nbdfuse whatever state they are
        in (lazily, so a busy or dead mount goes too); never raises."""
        subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        try:
            detach_loops(f"{self.fdir}/disk")
        except TimeoutError:
            pass
        proc = getattr(self, "proc", None)
        fuse_unmount(self.fdir, proc if proc and proc.poll() is None else None)


def write_files(root, n, size, seed):
    sums = {}
    for i in range(n):
        data = hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32)
        data += os.urandom(1000 + i)
        p = os.path.join(root, f"f{seed}-{i}.bin")
        with open(p, "wb") as f:
            f.write(data)
        sums[p] = hashlib.sha256(data).hexdigest()
    os.sync()
    return sums


def check_files(sums):
    for p, want in sums.items():
        with open(p, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == want, f"{p} differs"


def test_ext4_survives_sigterm_and_kill9(cluster, tmp_path):
    cluster.create_volume("fs", 1 << 30)
    m = FuseMount(cluster, "fs", str(tmp_path))
    try:
        disk = m.attach()
        sh("mkfs.ext4", "-q", "-F", disk)
        m.mount()
        sums = write_files(m.mnt, 40, 1 << 20, "a")
        sums.update(write_files(m.mnt, 200, 8 << 10, "b"))
        check_files(sums)
        m.umount()
        m.detach()

        for sig in (signal.SIGTERM, signal.SIGKILL):
            cluster.stop_all(sig)
            cluster.start_all()
            cluster.wait_export("fs")
            m.attach()
            sh("e2fsck", "-fn", f"{m.fdir}/disk")
            m.mount()
            check_files(sums)
            sums.update(write_files(m.mnt, 20, 256 << 10, f"after-{int(sig)}"))
            check_files(sums)
            m.umount()
            m.detach()
    finally:
        m.close()


def test_acknowledged_writes_survive_kill9_without_flush(cluster):
    cluster.create_volume("noflush", 64 << 20)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("noflush"))
    blocks = {}
    for i in range(64):
        off = i * (1 << 20) + (i * 4096) % (1 << 20)
        data = os.urandom(4096 * (1 + i % 4))
        h.pwrite(data, off)  # acknowledged: on every copy's device
        blocks[off] = data
    h.shutdown()
    cluster.stop_all(signal.SIGKILL)
    cluster.start_all()
    cluster.wait_export("noflush")
    h = nbd.NBD()
    h.connect_uri(cluster.uri("noflush"))
    for off, data in blocks.items():
        assert h.pread(len(data), off) == data, f"lost the write at {off}"
    h.shutdown()
    r = cluster.cairn("volume", "check-copies", "noflush")
    assert r.returncode == 0, r.stdout + r.stderr


def test_sdc_restart_client_reconnects(cluster):
    cluster.create_volume("sdcre", 16 << 20)
    h = nbd.NBD()
    h.connect_uri(cluster.uri("sdcre"))
    data = os.urandom(1 << 20)
    h.pwrite(data, 3 << 20)
    h.shutdown()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        cluster.daemons["sdc"].stop(sig)
        cluster.start_sdc()
        cluster.wait_export("sdcre")
        h = nbd.NBD()
        h.connect_uri(cluster.uri("sdcre"))
        assert h.pread(len(data), 3 << 20) == data
        h.shutdown()
