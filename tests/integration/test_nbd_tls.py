"""NBD over TLS (STARTTLS): real clients (nbdinfo, nbdcopy, python3-libnbd,
qemu-img) with X.509 and PSK credentials made here by certtool and psktool;
plaintext clients, wrong keys, foreign certificates and identities outside
an export's allow list are refused, and the SDC says so in its log."""
import json
import os
import re
import secrets
import socket
import ssl
import struct
import subprocess

import nbd
import pytest

import prom
from cluster import Cluster, free_ports, hold_for, wait_for, write_private

IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_GO = 1, 2, 3, 5, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
ERR_INVALID, ERR_POLICY, ERR_TLS_REQD = (1 << 31) + 3, (1 << 31) + 2, (1 << 31) + 5


def run(*argv, check=True, timeout=300):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, f"{argv[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


# ---- credentials, made with the tools the docs tell operators to use ----

def certtool(*args):
    run("certtool", *args)


def template(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_ca(d, name):
    key, cert = d / f"{name}-key.pem", d / f"{name}-cert.pem"
    certtool("--generate-privkey", "--outfile", key)
    t = template(d / f"{name}.info", [f"cn = {name}", "ca", "cert_signing_key", "expiration_days = 2"])
    certtool("--generate-self-signed", "--load-privkey", key, "--template", t, "--outfile", cert)
    return key, cert


def make_cert(d, ca, out_dir, kind, cn, extra=()):
    """Sign a certificate for cn with ca into out_dir/{kind}-cert.pem and
    {kind}-key.pem (kind: server or client, the names qemu and libnbd look for)."""
    os.makedirs(out_dir, exist_ok=True)
    key, cert = out_dir / f"{kind}-key.pem", out_dir / f"{kind}-cert.pem"
    certtool("--generate-privkey", "--outfile", key)
    usage = "tls_www_server" if kind == "server" else "tls_www_client"
    t = template(d / f"{kind}-{cn}-{out_dir.name}.info",
                 [f"cn = {cn}", usage, "encryption_key", "signing_key", "expiration_days = 2",
                  *extra])
    certtool("--generate-certificate", "--load-ca-certificate", ca[1], "--load-ca-privkey", ca[0],
             "--load-privkey", key, "--template", t, "--outfile", cert)
    os.chmod(key, 0o600)
    return key, cert


class Creds:
    def __init__(self, d):
        self.dir = d
        ca = make_ca(d, "cairn-test-ca")
        evil = make_ca(d, "other-ca")
        # the SDC's: ca-cert.pem, server-cert.pem, server-key.pem
        self.server = d / "server"
        make_cert(d, ca, self.server, "server", "localhost",
                  ['dns_name = "localhost"', 'ip_address = "127.0.0.1"'])
        run("cp", ca[1], self.server / "ca-cert.pem")
        # clients: alice's certificate from our CA, and one named alice too
        # from another CA (both trust our CA for the server's certificate)
        self.alice = d / "alice"
        make_cert(d, ca, self.alice, "client", "alice")
        run("cp", ca[1], self.alice / "ca-cert.pem")
        self.forged = d / "forged"
        make_cert(d, evil, self.forged, "client", "alice")
        run("cp", ca[1], self.forged / "ca-cert.pem")
        # PSK: the SDC's file holds alice and bob; each client has its own
        self.psk = d / "keys.psk"
        for who in ("alice", "bob"):
            run("psktool", "-u", who, "-p", self.psk)
        os.chmod(self.psk, 0o600)
        self.client_psk = {}
        with open(self.psk) as f:
            for line in f:
                who = line.split(":")[0]
                p = d / f"{who}.psk"
                p.write_text(line)
                self.client_psk[who] = p
        # alice's identity with a key the SDC does not know
        self.wrong_psk = d / "wrong.psk"
        run("psktool", "-u", "alice", "-p", self.wrong_psk)


@pytest.fixture(scope="module")
def creds(tmp_path_factory):
    return Creds(tmp_path_factory.mktemp("creds"))


def tls_args(creds, mode="require", verify=False):
    return (["--tls", mode, "--tls-certs", str(creds.server), "--tls-psk", str(creds.psk),
             "--tls-allow", "secret=alice"] + (["--tls-verify-peer"] if verify else []))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, creds):
    c = Cluster(tmp_path_factory.mktemp("cairn"), sdc_args=tls_args(creds))
    c.creds = creds
    try:
        c.start()
        for vol in ("data", "secret"):
            c.create_volume(vol, 64 << 20, map_it=False)
            c.cairn("volume", "map", vol, "--sdc", c.sdc_name)
        wait_export_tls(c, "data")
        wait_export_tls(c, "secret")
        yield c
    finally:
        c.shutdown()


def psk_uri(cluster, vol, who="alice", key=None):
    key = key or cluster.creds.client_psk[who]
    return f"nbds://{who}@127.0.0.1:{cluster.nbd_port}/{vol}?tls-psk-file={key}"


def x509_uri(cluster, vol, certs=None):
    certs = certs or cluster.creds.alice
    return f"nbds://127.0.0.1:{cluster.nbd_port}/{vol}?tls-certificates={certs}"


def listed(uri):
    r = run("nbdinfo", "--list", "--json", uri, check=False, timeout=30)
    if r.returncode != 0:
        return None
    return {e["export-name"] for e in json.loads(r.stdout)["exports"]}


def wait_export_tls(cluster, vol):
    """The SDC serves vol (asked over TLS, as alice, who may see every export)."""
    wait_for(f"export {vol} over TLS", lambda: vol in (listed(psk_uri(cluster, "")) or set()))


def sdc_log(cluster):
    with open(cluster.daemons["sdc"].log, errors="replace") as f:
        return f.read()


def log_mark(cluster):
    return len(sdc_log(cluster))


def wait_log(cluster, mark, text):
    """text appears in the SDC's log after position mark."""
    return wait_for(f"'{text}' in the SDC log", lambda: text in sdc_log(cluster)[mark:], timeout=10)


def restart_sdc(cluster, args):
    """Run the SDC with other TLS options (same data dir, same name)."""
    cluster.daemons["sdc"].stop()
    cluster.sdc_args = args
    del cluster.daemons["sdc"]
    cluster.start_sdc()
    cluster.wait_sdc_registered()
    wait_export_tls(cluster, "data")
    wait_export_tls(cluster, "secret")


# ---- raw protocol, for what the tools do not send ----

class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=20)
        hello = self.recv(18)
        assert hello[:16] == b"NBDMAGICIHAVEOPT"
        self.s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES

    def recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise ConnectionError("server closed")
            b += chunk
        return b

    def opt(self, opt, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def reply(self):
        magic, opt, typ, ln = struct.unpack(">QIII", self.recv(20))
        assert magic == REP_MAGIC
        return opt, typ, self.recv(ln)

    def list(self):
        """LIST: (names, final reply type)."""
        self.opt(OPT_LIST)
        names = []
        while True:
            _, typ, data = self.reply()
            if typ != REP_SERVER:
                return names, typ
            names.append(data[4:4 + struct.unpack(">I", data[:4])[0]].decode())

    def go(self, name):
        n = name.encode()
        self.opt(OPT_GO, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
        while True:
            _, typ, _ = self.reply()
            if typ != REP_INFO:
                return typ

    def starttls(self, certs):
        """STARTTLS, then TLS as certs (a client dir) over the same socket."""
        self.opt(OPT_STARTTLS)
        assert self.reply()[1] == REP_ACK
        ctx = ssl.create_default_context(cafile=str(certs / "ca-cert.pem"))
        ctx.load_cert_chain(str(certs / "client-cert.pem"), str(certs / "client-key.pem"))
        self.s = ctx.wrap_socket(self.s, server_hostname="localhost")

    def closed(self):
        try:
            return self.s.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True


# ---- the tests ----

def test_psk_and_x509_nbdcopy_roundtrip(cluster, tmp_path):
    src, out = tmp_path / "src.bin", tmp_path / "out.bin"
    src.write_bytes(os.urandom(48 << 20))
    info = json.loads(run("nbdinfo", "--json", psk_uri(cluster, "data")).stdout)
    assert info["exports"][0]["export-size"] == 64 << 20
    # in with PSK (multi-conn: nbdcopy opens several connections), out with X.509
    run("nbdcopy", "--flush", src, psk_uri(cluster, "data"))
    run("nbdcopy", x509_uri(cluster, "data"), out)
    assert os.path.getsize(out) == 64 << 20
    run("cmp", "-n", 48 << 20, src, out)
    with open(out, "rb") as f:
        f.seek(48 << 20)
        assert f.read() == b"\0" * (16 << 20)  # never written: zeroes
    # the unix socket takes the same TLS
    sock = f"{cluster.dir}/sdc/nbd.sock"
    out2 = tmp_path / "out2.bin"
    run("nbdcopy", f"nbds+unix://alice@/data?socket={sock}&tls-psk-file="
        f"{cluster.creds.client_psk['alice']}", out2)
    run("cmp", out, out2)


def test_large_requests_and_block_status_over_tls(cluster):
    """32 MiB writes and reads (many records each), pipelined, with
    structured replies and base:allocation negotiated inside TLS."""
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.add_meta_context("base:allocation")
    h.connect_uri(psk_uri(cluster, "secret"))
    assert h.get_tls_negotiated()
    assert h.get_structured_replies_negotiated()
    a, b = os.urandom(32 << 20), os.urandom((16 << 20) + 123)
    errs = []
    for data, off in ((a, 0), (b, 32 << 20)):
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off,
                     completion=lambda err: errs.append(err.value) or 1)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    assert errs == [0, 0]
    h.flush()
    assert h.pread(32 << 20, 0) == a
    assert h.pread(len(b), 32 << 20) == b
    seen = []
    h.block_status(64 << 20, 0, lambda ctx, off, ents, err: seen.append((ctx, ents)) or 0)
    assert seen and seen[0][0] == "base:allocation"
    h.trim(16 << 20, 48 << 20)
    assert h.pread(4096, 60 << 20) == b"\0" * 4096
    h.shutdown()


def test_qemu_img_x509(cluster, tmp_path):
    img = tmp_path / "img.raw"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
        for off in range(0, 64 << 20, 5 << 20):
            f.seek(off)
            f.write(os.urandom(200 << 10))
    obj = f"tls-creds-x509,id=tls0,dir={cluster.creds.alice},endpoint=client"
    target = f"driver=nbd,host=127.0.0.1,port={cluster.nbd_port},export=data,tls-creds=tls0"
    run("qemu-img", "convert", "-n", "--object", obj, "-f", "raw", "--target-image-opts",
        img, target)
    run("qemu-img", "compare", "--object", obj, "--image-opts",
        f"driver=file,filename={img}", target)
    # and a difference is seen: the comparison does read the export
    with open(img, "r+b") as f:
        f.seek(3 << 20)
        f.write(b"\x01")
    r = run("qemu-img", "compare", "--object", obj, "--image-opts",
            f"driver=file,filename={img}", target, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    # PSK through qemu: tls-creds-psk reads DIR/keys.psk
    pskdir = tmp_path / "qpsk"
    pskdir.mkdir()
    run("cp", cluster.creds.client_psk["alice"], pskdir / "keys.psk")
    pobj = f"tls-creds-psk,id=tls1,dir={pskdir},username=alice,endpoint=client"
    ptarget = target.replace("tls-creds=tls0", "tls-creds=tls1")
    r = run("qemu-img", "compare", "--object", pobj, "--image-opts",
            f"driver=file,filename={img}", ptarget, check=False)
    assert r.returncode == 1, r.stdout + r.stderr  # the byte changed above: seen via PSK too
    run("qemu-img", "convert", "-n", "--object", pobj, "-f", "raw", "--target-image-opts",
        img, ptarget)
    run("qemu-img", "compare", "--object", pobj, "--image-opts",
        f"driver=file,filename={img}", ptarget)


def test_plaintext_refused_under_require(cluster):
    mark = log_mark(cluster)
    r = run("nbdinfo", cluster.uri("data"), check=False, timeout=30)
    assert r.returncode != 0, r.stdout
    wait_log(cluster, mark, "plaintext client refused: TLS is required")
    assert listed(f"nbd://127.0.0.1:{cluster.nbd_port}") is None  # no export list
    assert listed(cluster.unix_uri()) is None  # nor over the unix socket
    # what the tools do not show: the replies themselves
    c = Raw(cluster.nbd_port)
    names, typ = c.list()
    assert names == [] and typ == ERR_TLS_REQD
    assert c.go("data") == ERR_TLS_REQD
    c.opt(OPT_STARTTLS, b"x")  # STARTTLS with data
    assert c.reply()[1] == ERR_INVALID
    c.opt(OPT_EXPORT_NAME, b"data")  # cannot be answered with an error: closed
    assert c.closed()
    c = Raw(cluster.nbd_port)
    c.opt(OPT_ABORT)
    assert c.reply()[1] == REP_ACK


def test_starttls_then_options_inside_tls(cluster):
    c = Raw(cluster.nbd_port)
    c.starttls(cluster.creds.alice)
    names, typ = c.list()  # alice sees both exports, in TLS
    assert typ == REP_ACK and sorted(names) == ["data", "secret"]
    c.opt(OPT_STARTTLS)  # a second time
    assert c.reply()[1] == ERR_INVALID
    assert c.go("data") == REP_ACK
    c.s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 7, 0, 4096))  # READ 4 KiB
    magic, err, cookie = struct.unpack(">IIQ", c.recv(16))
    assert (magic, err, cookie) == (0x67446698, 0, 7)
    assert len(c.recv(4096)) == 4096


def test_allow_list(cluster):
    # bob (PSK) may not see or use 'secret'
    assert listed(psk_uri(cluster, "", "bob")) == {"data"}
    mark = log_mark(cluster)
    r = run("nbdinfo", psk_uri(cluster, "secret", "bob"), check=False, timeout=30)
    assert r.returncode != 0, r.stdout
    wait_log(cluster, mark, "identity 'bob' may not use export 'secret': refused")
    c = Raw(cluster.nbd_port)
    c.starttls(cluster.creds.alice)
    assert c.go("secret") == REP_ACK  # alice, by certificate CN
    # bob can use the other export
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.connect_uri(psk_uri(cluster, "data", "bob"))
    h.pwrite(b"bob" * 1000, 1 << 20)
    assert h.pread(3000, 1 << 20) == b"bob" * 1000
    h.shutdown()


def test_wrong_psk_refused(cluster):
    mark = log_mark(cluster)
    r = run("nbdinfo", psk_uri(cluster, "data", key=cluster.creds.wrong_psk), check=False,
            timeout=30)
    assert r.returncode != 0, r.stdout
    wait_log(cluster, mark, "TLS handshake failed")
    # the line names the peer and carries gnutls's message
    assert re.search(r"nbd 127\.0\.0\.1:\d+: TLS handshake failed: \S", sdc_log(cluster)[mark:])
    mallory = cluster.creds.dir / "mallory.psk"
    mallory.write_text("mallory:" + cluster.creds.client_psk["bob"].read_text().split(":")[1])
    r = run("nbdinfo", psk_uri(cluster, "data", "mallory", key=mallory), check=False, timeout=30)
    assert r.returncode != 0
    wait_log(cluster, mark, "unknown PSK identity 'mallory'")


def test_tls_on_mode_plaintext_and_restricted(cluster):
    restart_sdc(cluster, tls_args(cluster.creds, mode="on"))
    # plaintext works for an export without an allow list; 'secret' is hidden
    assert listed(cluster.uri("")) == {"data"}
    h = nbd.NBD()
    h.connect_uri(cluster.uri("data"))
    assert not h.get_tls_negotiated()
    h.pwrite(b"plain" * 1000, 2 << 20)
    assert h.pread(5000, 2 << 20) == b"plain" * 1000
    h.shutdown()
    c = Raw(cluster.nbd_port)
    assert c.go("secret") == ERR_TLS_REQD  # a TLS-only export, before TLS
    c.starttls(cluster.creds.alice)
    assert c.go("secret") == REP_ACK
    # TLS still works in this mode, and bob gets POLICY on 'secret'
    assert listed(psk_uri(cluster, "", "bob")) == {"data"}
    r = run("nbdinfo", psk_uri(cluster, "secret", "bob"), check=False, timeout=30)
    assert r.returncode != 0


def test_verify_peer(cluster, tmp_path):
    restart_sdc(cluster, tls_args(cluster.creds, verify=True))
    mark = log_mark(cluster)
    # a certificate named alice, signed by another CA: refused
    r = run("nbdinfo", x509_uri(cluster, "data", cluster.creds.forged), check=False, timeout=30)
    assert r.returncode != 0, r.stdout
    wait_log(cluster, mark, "TLS handshake failed: Error in the certificate verification")
    # no certificate at all (a directory with only the CA): refused
    nocert = tmp_path / "nocert"
    nocert.mkdir()
    run("cp", cluster.creds.alice / "ca-cert.pem", nocert)
    mark = log_mark(cluster)
    r = run("nbdinfo", x509_uri(cluster, "data", nocert), check=False, timeout=30)
    assert r.returncode != 0, r.stdout
    wait_log(cluster, mark, "TLS handshake failed: Certificate is required")
    # the right certificate, and PSK (no certificate in that exchange), work
    assert "data" in listed(x509_uri(cluster, ""))
    assert "data" in listed(psk_uri(cluster, ""))
    # back to the module's configuration
    restart_sdc(cluster, tls_args(cluster.creds))


def test_backpressure_holds_over_tls(cluster):
    """A TLS client asks for 256 MiB of reads and reads no reply: the SDC
    answers only what its budget (--io-memory 16: 4 MiB a connection) and the
    socket buffers hold, its budget stays within bounds while the client
    stalls (the records waiting for the socket count), and when the client
    reads again every reply is there and right."""
    maddr = f"127.0.0.1:{free_ports(1)[0]}"
    tok = secrets.token_hex(32)
    tokfile = write_private(os.path.join(cluster.dir, "tls-metrics.token"), tok + "\n")
    restart_sdc(cluster, tls_args(cluster.creds) + ["--io-memory", "16", "--metrics-listen", maddr,
                                                    "--metrics-token-file", tokfile])
    MiB = 1 << 20
    region = os.urandom(32 * MiB)
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.connect_uri(psk_uri(cluster, "data"))
    h.pwrite(region, 0)
    h.shutdown()
    reads = lambda: prom.scrape(maddr, tok).value("cairn_sdc_volume_reads_total", volume="data")
    before = reads()
    c = Raw(cluster.nbd_port)
    c.starttls(cluster.creds.alice)
    assert c.go("data") == REP_ACK
    n = 256
    c.s.sendall(b"".join(struct.pack(">IHHQQI", 0x25609513, 0, 0, i, (i % 32) * MiB, MiB)
                         for i in range(n)))
    # the connection fills its budget, then the SDC stops answering
    wait_for("the connection's budget in use",
             lambda: prom.scrape(maddr, tok).value("cairn_sdc_io_memory_bytes") >= 2 * MiB)
    hold_for("the SDC holding back replies", lambda: reads() - before < 64
             and prom.scrape(maddr, tok).value("cairn_sdc_io_memory_bytes") <= 17 * MiB, 3)
    got = {}
    for _ in range(n):
        magic, err, cookie = struct.unpack(">IIQ", c.recv(16))
        assert (magic, err) == (0x67446698, 0)
        off = (cookie % 32) * MiB
        assert c.recv(MiB) == region[off:off + MiB], f"reply {cookie}"
        got[cookie] = True
    assert len(got) == n
    assert reads() - before == n
    # writes the other way: 64 MiB of payload pipelined through libnbd; past
    # the budget the SDC holds decrypted requests back (and stops reading)
    # and starts them as earlier ones finish
    new = os.urandom(32 * MiB)
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.connect_uri(psk_uri(cluster, "data"))
    errs = []
    for i in range(64):
        off = (i % 32) * MiB
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(new[off:off + MiB])), off,
                     completion=lambda err: errs.append(err.value) or 1)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    assert errs == [0] * 64
    assert h.pread(32 * MiB, 0) == new
    h.shutdown()
    restart_sdc(cluster, tls_args(cluster.creds))


def sdc_start_error(cluster, tmp_path, args):
    """Start a second SDC with args; it must refuse at once: its stderr."""
    r = subprocess.run([f"{cluster.build}/client/cairn-sdc", "--mdm", cluster.mdm_addr,
                        "--data-dir", str(tmp_path / "sdc2"), "--nbd-listen", "none",
                        "--nbd-socket", str(tmp_path / "sdc2.sock")] + args,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    return r.stderr


def test_refuses_to_start_with_exposed_secrets(cluster, tmp_path):
    certs = tmp_path / "certs"
    run("cp", "-r", cluster.creds.server, certs)
    os.chmod(certs / "server-key.pem", 0o644)
    err = sdc_start_error(cluster, tmp_path, ["--tls", "require", "--tls-certs", str(certs)])
    assert "server-key.pem is accessible to group or others (mode 644)" in err
    os.chmod(certs / "server-key.pem", 0o640)
    err = sdc_start_error(cluster, tmp_path, ["--tls", "on", "--tls-certs", str(certs)])
    assert "server-key.pem is accessible to group or others (mode 640)" in err
    psk = tmp_path / "k.psk"
    run("cp", cluster.creds.psk, psk)
    os.chmod(psk, 0o604)
    err = sdc_start_error(cluster, tmp_path, ["--tls", "require", "--tls-psk", str(psk)])
    assert "k.psk is accessible to group or others (mode 604)" in err
    err = sdc_start_error(cluster, tmp_path, ["--tls", "require"])
    assert "needs credentials" in err
    err = sdc_start_error(cluster, tmp_path, ["--tls-allow", "secret=alice"])
    assert "need --tls on or --tls require" in err
    os.chmod(psk, 0o600)
    with open(psk, "a") as f:
        f.write("carol:not-hex\n")
    err = sdc_start_error(cluster, tmp_path, ["--tls", "require", "--tls-psk", str(psk)])
    assert "line 3: " in err
