#!/usr/bin/python3
"""slowfs: a FUSE passthrough file system whose writes and syncs can be made slow.

Usage: slowfs.py BACKING MOUNTPOINT CONTROL

Mounts the directory BACKING at MOUNTPOINT (in the foreground: the mount
lasts as long as this process; `umount MOUNTPOINT` or `fusermount -u
MOUNTPOINT` ends both). Every file operation is passed to the same path
under BACKING.

The delay: CONTROL is a file holding a number of seconds (a float; a missing
or empty file is 0), optionally followed by the word "sync". Each write,
fsync, fdatasync and flush (a close) of a file sleeps that long before it is
done, so one append of Raft's log (a write, then an fdatasync) takes twice
the delay; with "sync" (`0.3 sync`) only fsync and fdatasync sleep, as on a
disk whose writes land in the page cache and whose flushes are slow. The file is re-read when
its inode, modification time or size changes, so a test changes the delay at any
time with a plain write to CONTROL, e.g. `echo 0.5 > CONTROL`; it takes
effect for the next operation. Reads, directory operations and fallocate are
not delayed.

Made for the MDM's data directory (tests/integration/test_mdm_slow_disk.py).
libraft probes the directory (seen with strace): O_DIRECT is allowed (FUSE
passes it on), an io_submit with RWF_NOWAIT is refused (EOPNOTSUPP), so it
submits each append with io_submit (O_DIRECT, RWF_DSYNC) from its thread
pool, which FUSE turns into a write and an fdatasync, both of which come
here; its term and vote it stores with pwrite, fdatasync and close on its
loop. O_DIRECT is not passed to BACKING (a tmpfs would refuse it).

fallocate: fusepy 3.0 has no fallocate operation, and without one glibc's
posix_fallocate() falls back to writing one byte per 4 KiB block, 2048
delayed writes for each 8 MiB segment libraft allocates. So the table of
operations is extended here with libfuse 2.9's fields after ioctl (poll,
write_buf, read_buf, flock, fallocate) and fallocate passed through.
"""
import ctypes
import errno
import os
import sys
import threading
import time

import fusepy
from fusepy import FUSE, FuseOSError, Operations


class fuse_operations_29(ctypes.Structure):
    _fields_ = fusepy.fuse_operations._fields_ + [
        ("poll", ctypes.c_voidp),
        ("write_buf", ctypes.c_voidp),
        ("read_buf", ctypes.c_voidp),
        ("flock", ctypes.c_voidp),
        ("fallocate", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, fusepy.c_off_t,
                                       fusepy.c_off_t, ctypes.POINTER(fusepy.fuse_file_info))),
    ]


class SlowFUSE(FUSE):
    def fallocate(self, path, mode, offset, length, fip):
        return self.operations("fallocate", path.decode(self.encoding), mode, offset, length,
                               fip.contents.fh)


fusepy.fuse_operations = fuse_operations_29  # FUSE.__init__ builds the table from this


class Slow(Operations):
    use_ns = True

    def __init__(self, backing, control):
        self.root, self.control = os.path.realpath(backing), control
        self.mu = threading.Lock()  # (not "lock": that name is the FUSE lock operation)
        self.seen, self.delay, self.sync_only = None, 0.0, False

    def _p(self, path):
        return self.root + path

    def _wait(self, sync=False):
        try:
            st = os.stat(self.control)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = None
        with self.mu:
            if key != self.seen:
                self.seen = key
                try:
                    with open(self.control) as f:
                        words = f.read().split()
                    self.delay = float(words[0]) if words else 0.0
                    self.sync_only = words[1:] == ["sync"]
                except (OSError, ValueError):
                    self.delay, self.sync_only = 0.0, False
            d = self.delay if sync or not self.sync_only else 0.0
        if d > 0:
            time.sleep(d)

    def __call__(self, op, *args):
        try:
            return super().__call__(op, *args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)

    # ---- metadata ----
    def access(self, path, mode):
        if not os.access(self._p(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.fstat(fh) if fh is not None else os.lstat(self._p(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks",
                "st_atime_ns", "st_mtime_ns", "st_ctime_ns")
        return {k.replace("_ns", ""): getattr(st, k) for k in keys}

    def statfs(self, path):
        s = os.statvfs(self._p(path))
        return {k: getattr(s, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                                           "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")}

    def chmod(self, path, mode):
        os.chmod(self._p(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._p(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._p(path), ns=times)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._p(path))

    def mkdir(self, path, mode):
        os.mkdir(self._p(path), mode)

    def rmdir(self, path):
        os.rmdir(self._p(path))

    def unlink(self, path):
        os.unlink(self._p(path))

    def rename(self, old, new):
        os.rename(self._p(old), self._p(new))

    def link(self, target, source):
        os.link(self._p(source), self._p(target))

    def symlink(self, target, source):
        os.symlink(source, self._p(target))

    def readlink(self, path):
        return os.readlink(self._p(path))

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            os.truncate(self._p(path), length)

    # ---- files ----
    def open(self, path, flags):
        return os.open(self._p(path), flags & ~(os.O_DIRECT | os.O_APPEND))

    def create(self, path, mode, fi=None):
        return os.open(self._p(path), os.O_RDWR | os.O_CREAT, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self._wait()
        return os.pwrite(fh, data, offset)

    def fallocate(self, path, mode, offset, length, fh):
        if mode != 0:
            raise FuseOSError(errno.EOPNOTSUPP)
        os.posix_fallocate(fh, offset, length)
        return 0

    def flush(self, path, fh):
        self._wait()
        return 0

    def fsync(self, path, datasync, fh):
        self._wait(sync=True)
        (os.fdatasync if datasync else os.fsync)(fh)
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    backing, mnt, control = sys.argv[1:]
    SlowFUSE(Slow(backing, control), mnt, foreground=True, nothreads=False, fsname="slowfs")


if __name__ == "__main__":
    main()
