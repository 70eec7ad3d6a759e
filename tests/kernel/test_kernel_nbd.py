"""The real kernel NBD client (Debian's nbd-client 3.24 and nbd.ko, in a qemu
guest) attaches a Cairn export, makes ext4, writes, remounts and verifies;
then the host checks the same file system independently through libnbd."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from cluster import BUILD, Cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cairn")).start()
    yield c
    c.shutdown()


def run(*argv, timeout=600, **kw):
    r = subprocess.run(list(argv), capture_output=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{argv[0]} failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    return r


def test_kernel_nbd_client_ext4(cluster, tmp_path):
    cache = os.path.join(BUILD, "kernel-guest")
    run(os.path.join(HERE, "build_guest.sh"), cache)
    cluster.create_volume("kvol", 256 << 20)

    root = tmp_path / "root"
    shutil.copytree(os.path.join(cache, "root"), root, symlinks=True)
    shutil.copy(os.path.join(HERE, "guest_init.sh"), root / "init")
    os.chmod(root / "init", 0o755)
    pattern = os.urandom(1 << 20)
    (root / "etc" / "pattern").write_bytes(pattern)
    (root / "etc" / "test.env").write_text(f"NBD_PORT={cluster.nbd_port}\nEXPORT=kvol\n")
    initrd = tmp_path / "initrd.cpio"
    with open(initrd, "wb") as out:
        files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                       stdout=out, check=True)

    console = tmp_path / "console.log"
    with open(console, "wb") as log:
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "768", "-smp", "1",
             "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
             "-kernel", os.path.join(cache, "vmlinux"), "-initrd", str(initrd),
             "-append", "console=ttyS0 panic=-1 quiet",
             "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
             "-device", "virtio-rng-pci"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            qemu.wait(timeout=600)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
    out = console.read_text(errors="replace")
    steps = [line for line in out.splitlines() if line.startswith(("STEP", "RESULT"))]
    print("\n".join(steps))
    assert "RESULT PASS" in out, f"guest did not pass; console in {console}:\n" + out[-3000:]

    # Independent check from the host: the file system the guest made, read
    # through libnbd, is clean and holds the guest's files.
    img = tmp_path / "kvol.img"
    run("nbdcopy", cluster.uri("kvol"), str(img))
    run("e2fsck", "-fn", str(img))
    run("debugfs", "-R", f"dump /pattern {tmp_path}/pattern.out", str(img))
    assert (tmp_path / "pattern.out").read_bytes() == pattern
    r = run("debugfs", "-R", "cat /small7", str(img))
    assert r.stdout.decode().strip() == "cairn line 7"
