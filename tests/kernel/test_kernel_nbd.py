"""The real kernel NBD client (Debian's nbd-client 3.24 and nbd.ko, in a qemu
guest) attaches a Cairn export, makes ext4, writes, remounts and verifies;
then the host checks the same file system independently through libnbd.
In the same boot, nbd-client attaches an export that only a TLS client with
the right certificate may use (--tls on, --tls-allow): refused in plaintext,
then read and written over TLS, checked from the host over TLS."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from cluster import BUILD, Cluster  # noqa: E402
from test_nbd_tls import Creds, psk_uri, wait_export_tls  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    creds = Creds(tmp_path_factory.mktemp("creds"))
    # TLS on: plaintext clients keep kvol, ktls is alice's over TLS only
    c = Cluster(tmp_path_factory.mktemp("cairn"),
                sdc_args=["--tls", "on", "--tls-certs", str(creds.server), "--tls-psk",
                          str(creds.psk), "--tls-allow", "ktls=alice"])
    c.creds = creds
    c.start()
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
    cluster.create_volume("ktls", 16 << 20, map_it=False)
    cluster.cairn("volume", "map", "ktls", "--sdc", cluster.sdc_name)
    wait_export_tls(cluster, "ktls")
    tls_in, tls_out = os.urandom(1 << 20), os.urandom(1 << 20)
    src = tmp_path / "tls_in.bin"
    src.write_bytes(tls_in)
    run("nbdcopy", str(src), psk_uri(cluster, "ktls"))

    root = tmp_path / "root"
    shutil.copytree(os.path.join(cache, "root"), root, symlinks=True)
    shutil.copy(os.path.join(HERE, "guest_init.sh"), root / "init")
    os.chmod(root / "init", 0o755)
    pattern = os.urandom(1 << 20)
    (root / "etc" / "pattern").write_bytes(pattern)
    (root / "etc" / "test.env").write_text(f"NBD_PORT={cluster.nbd_port}\nEXPORT=kvol\n"
                                           "TLS_EXPORT=ktls\n")
    (root / "etc" / "tls_in").write_bytes(tls_in)
    (root / "etc" / "tls_out").write_bytes(tls_out)
    os.makedirs(root / "etc" / "tls")
    for f in ("ca-cert.pem", "client-cert.pem", "client-key.pem"):
        shutil.copy(cluster.creds.alice / f, root / "etc" / "tls" / f)
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
    # what the guest wrote over TLS, read back over TLS
    out = tmp_path / "tls_out.bin"
    run("nbdcopy", psk_uri(cluster, "ktls"), str(out))
    data = out.read_bytes()
    assert data[:1 << 20] == tls_in and data[1 << 20:2 << 20] == tls_out
