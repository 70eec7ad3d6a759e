"""The MDM's REST API against a real cluster: every route of
docs/openapi.yaml with valid input (each answer checked against its
documented schema), the set of routes served equal to the set documented,
the same objects and error messages as the CLI, a volume made and mapped
over REST read and written over NBD, and bad input that must leave the MDM
standing (the cluster's shutdown checks that it stops cleanly, with no
sanitizer or leak report). Bearer tokens: no token or a wrong one gets 401
on every API path, a monitor token reads but changes nothing (403), and a
token file others may read keeps the MDM from starting."""
import json
import os
import re
import subprocess
import urllib.parse

import jsonschema
import nbd
import pytest

from cairnproto import FT_MGMT, Conn
from cluster import BUILD, Cluster, free_ports, lone_credential, wait_for, write_private
from rest_client import OPENAPI, OpenApi, RestClient

API = "/api/v1"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class Api:
    """The REST client, checking every answer against the document and
    noting which documented operations answered with success."""

    def __init__(self, url, token):
        self.client = RestClient(url, token)
        self.spec = OpenApi.load()
        self.covered = set()

    def call(self, method, template, body=None, raw=None, query=None, expect=None, client=None,
             **params):
        """client: another RestClient (another token) instead of the admin's."""
        path = API + template.format(**{k: urllib.parse.quote(str(v), safe="")
                                        for k, v in params.items()})
        if query:
            path += "?" + urllib.parse.urlencode(query)
        r = (client or self.client).request(method, path, body=body, raw=raw)
        if expect is not None:
            assert r.status == expect, (method, path, body, r)
        self.spec.validate(method, template, r)
        if 200 <= r.status < 300:
            self.covered.add((method, API + template))
        return r

    def error(self, method, template, status, **kw):
        """A call that must fail with status: its message."""
        r = self.call(method, template, expect=status, **kw)
        return r.json["error"]


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    # sds4 is started and added over REST by test_sds_add_remove
    c = Cluster(tmp_path_factory.mktemp("rest"), sds_sizes=(4 << 30, 6 << 30, 8 << 30, 4 << 30),
                initial=3, http=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def api(rc):
    a = Api(rc.http_url, rc.http_admin_token)
    wait_for("the REST API", lambda: a.client.get(API + "/status").status == 200)
    return a


def cli_json(rc, *args):
    return json.loads(rc.cairn(*args, json_out=True).stdout)


def cli_error(rc, *args):
    """What the CLI says on stderr for a command that must fail."""
    r = rc.cairn(*args, check=False)
    assert r.returncode != 0, (args, r.stdout)
    msg = r.stderr.strip()
    assert msg.startswith("cairn: "), msg
    return msg[len("cairn: "):]


# ---- the document and the dashboard ----

def test_openapi_document(api):
    r = api.call("GET", "/openapi.yaml", expect=200)
    assert r.content_type.startswith("application/yaml")
    with open(OPENAPI, "rb") as f:
        assert r.body == f.read()
    assert api.spec.doc["openapi"].startswith("3.0")
    for name in ("SDS", "Device", "Pool", "Volume", "Sdc", "FaultSet", "Mapping", "Mdm", "Status",
                 "Error"):
        jsonschema.Draft7Validator.check_schema(api.spec.schema(name))


def test_dashboard_files(api):
    c = api.client
    r = c.get("/")
    assert r.status == 200 and r.content_type.startswith("text/html"), r
    assert c.get("/no-such-file.js").status == 404
    assert c.get("/../../docs/openapi.yaml").status == 404  # only at /api/v1/openapi.yaml
    r = c.post("/", body={})
    assert r.status == 405 and "GET" in r.headers["Allow"], r


# ---- tokens ----

WRONG = "f" * 64


def test_whoami(api, rc):
    assert api.call("GET", "/whoami", expect=200).json == {"role": "admin"}
    mon = RestClient(rc.http_url, rc.http_monitor_token)
    assert api.call("GET", "/whoami", client=mon, expect=200).json == {"role": "monitor"}


def test_no_token_or_a_wrong_one_gets_401(api, rc):
    """Every documented operation (bar the document itself) and any other
    API path: 401, a Bearer challenge, a JSON error, and no data; each
    refusal is logged with the peer's address."""
    samples = {"name": "sds1", "volume": "cv1", "sdc": "sdc1"}
    wrongs = {None: 'Bearer realm="cairn"',
              WRONG: 'Bearer realm="cairn", error="invalid_token"',
              rc.http_admin_token[:-1]: 'Bearer realm="cairn", error="invalid_token"',
              rc.http_admin_token + "0": 'Bearer realm="cairn", error="invalid_token"'}
    ops = sorted(api.spec.routes() - {("GET", API + "/openapi.yaml")})
    assert len(ops) > 25
    for token, challenge in wrongs.items():
        c = RestClient(rc.http_url, token)
        for method, template in ops:
            path = re.sub(r"\{([^}]+)\}", lambda m: samples[m.group(1)], template)
            body = {"name": "x401", "size": "8M"} if method in ("POST", "PATCH") else None
            r = c.request(method, path, body=body)
            assert r.status == 401, (token, method, path, r)
            assert r.headers["WWW-Authenticate"] == challenge, (method, path, r.headers)
            api.spec.validate(method, template[len(API):], r)
            assert r.json["error"].startswith("unauthorized ("), r.json
            assert "cv1" not in r.body.decode() and "sds1" not in r.body.decode()
        for path in ("/api/v1/nothing", "/api/v2/status", "/api", "/api/v1/"):
            r = c.get(path)
            assert r.status == 401 and "error" in r.json, (path, r)
    # not a bearer token, or the right one in another scheme
    for value in (f"Basic {rc.http_admin_token}", rc.http_admin_token, "Bearer",
                  f"Bearer {rc.http_admin_token} {rc.http_admin_token}"):
        r = RestClient(rc.http_url).get(API + "/status", headers={"Authorization": value})
        assert r.status == 401, (value, r)
    assert "x401" not in {v["name"] for v in cli_json(rc, "volume", "list")}

    def logged():
        with open(rc.daemons["mdm"].log, errors="replace") as f:
            text = f.read()
        return re.search(r"http: refused \S+ /api/\S* from 127\.0\.0\.1:\d+ with 401: "
                         r"(no bearer token|wrong token)", text)
    wait_for("the refusal logged", logged, timeout=10)


def test_public_files_need_no_token(rc):
    c = RestClient(rc.http_url)
    for path in ("/", "/app.js", "/auth.js", "/style.css", "/favicon.svg", API + "/openapi.yaml"):
        r = c.get(path)
        assert r.status == 200, (path, r)
    with open(OPENAPI, "rb") as f:
        assert c.get(API + "/openapi.yaml").body == f.read()
    # the page's files hold no cluster data
    st = RestClient(rc.http_url, rc.http_admin_token).get(API + "/status").json
    for path in ("/", "/app.js", "/auth.js"):
        assert st["cluster_id"].encode() not in c.get(path).body


def test_monitor_token_reads_but_changes_nothing(api, rc):
    """A monitor token: every documented GET answers as for the admin; every
    change is 403 with a clear message, and the cluster is as before."""
    mon = RestClient(rc.http_url, rc.http_monitor_token)
    rc.cairn("volume", "create", "monvol", "--size", "8M")
    try:
        samples = {"name": "monvol", "volume": "monvol", "sdc": rc.sdc_name}
        for method, template in sorted(api.spec.routes()):
            path = re.sub(r"\{([^}]+)\}", lambda m: samples[m.group(1)], template)
            if method == "GET":
                r = mon.get(path)
                assert r.status in (200, 404), (path, r)
                assert r.status == api.client.get(path).status, path
        assert api.call("GET", "/volumes/{name}", name="monvol", client=mon,
                        expect=200).json["size"] == 8 << 20
        before = rc.status()
        changes = [("POST", "/volumes", {"name": "mon2", "size": "8M"}),
                   ("PATCH", "/volumes/{name}", {"size": "16M"}),
                   ("DELETE", "/volumes/{name}", None),
                   ("POST", "/mappings", {"volume": "monvol", "sdc": rc.sdc_name}),
                   ("POST", "/fault-sets", {"name": "monfs"}),
                   ("PATCH", "/pools/{name}", {"overcommit_pct": 123}),
                   ("POST", "/pools", {"name": "monpool"}),
                   ("POST", "/sds/{name}/maintenance", {"enter": True}),
                   ("DELETE", "/sds/{name}", None)]
        names = {"/volumes/{name}": "monvol", "/pools/{name}": "default",
                 "/sds/{name}/maintenance": "sds1", "/sds/{name}": "sds2"}
        for method, template, body in changes:
            kw = {"name": names[template]} if template in names else {}
            r = api.call(method, template, body=body, client=mon, expect=403, **kw)
            msg = r.json["error"]
            assert "monitor token" in msg and method in msg and "admin token" in msg, msg
        after = rc.status()
        for k in ("volumes", "pools", "sds", "mappings", "fault_sets", "map_version"):
            if k in before:
                assert _stable(after[k]) == _stable(before[k]), k
        vols = {v["name"]: v for v in cli_json(rc, "volume", "list")}
        assert "mon2" not in vols and vols["monvol"]["size"] == 8 << 20
        assert cli_json(rc, "volume", "show", "monvol").get("mapped_to", []) == []
        assert {p["name"] for p in cli_json(rc, "pool", "list")} == {"default"}
        assert cli_json(rc, "fault-set", "list") == []
        assert all(s["state"] == "up" for s in cli_json(rc, "sds", "list"))
    finally:
        rc.cairn("volume", "remove", "monvol")


def _stable(v):
    """A status part without what moves on its own (heartbeat ages, I/O)."""
    if isinstance(v, dict):
        return {k: _stable(x) for k, x in v.items()
                if k not in ("last_heartbeat_ms_ago", "io", "used", "free", "map_version_held")}
    if isinstance(v, list):
        return [_stable(x) for x in v]
    return v


def mdm_argv(tmp_path, tokens, port):
    d = tmp_path / "mdm"
    l, r = free_ports(2)
    argv = [f"{BUILD}/mgmt/cairn-mdm", "--data-dir", str(d), "--listen", f"127.0.0.1:{l}",
            "--raft-addr", f"127.0.0.1:{r}", "--http-listen", f"127.0.0.1:{port}",
            "--credentials", lone_credential("mdm")]
    return argv + (["--http-tokens", tokens] if tokens else [])


def test_token_file_others_may_read_refused(tmp_path):
    """The MDM does not start with a token file that group or others may
    read (or with none at all), and says what to do; with mode 0600 it
    starts."""
    port = free_ports(1)[0]
    tokens = write_private(str(tmp_path / "tokens"), "admin " + "a" * 64 + "\n")
    for mode in (0o644, 0o640, 0o604):
        os.chmod(tokens, mode)
        r = subprocess.run(mdm_argv(tmp_path, tokens, port), capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1, (mode, r.returncode, r.stderr)
        assert f"--http-tokens {tokens}: the file is readable or writable by group or others " \
               f"(mode 0{mode:o})" in r.stderr, r.stderr
        assert f"chmod 600 {tokens}" in r.stderr, r.stderr
    r = subprocess.run(mdm_argv(tmp_path, None, port), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--http-listen" in r.stderr and \
        "needs --http-tokens FILE" in r.stderr, r.stderr
    os.chmod(tokens, 0o600)
    p = subprocess.Popen(mdm_argv(tmp_path, tokens, port), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        c = RestClient(f"http://127.0.0.1:{port}", "a" * 64)
        wait_for("the MDM's REST API", lambda: c.get(API + "/whoami").status == 200)
    finally:
        p.terminate()
        assert p.wait(30) == 0, p.stderr.read()


# ---- reads: the same objects as the CLI's --json ----

def test_status(api, rc):
    st = api.call("GET", "/status", expect=200).json
    cli = rc.status()
    assert st["cluster_id"] == cli["cluster_id"]
    assert st["health"] == "ok", st
    assert {s["name"] for s in st["sds"]} == {"sds1", "sds2", "sds3"}
    assert all(s["connected"] and s["state"] == "up" for s in st["sds"])
    assert [p["name"] for p in st["pools"]] == ["default"]
    assert [c["name"] for c in st["sdcs"]] == [rc.sdc_name]
    assert st["mappings"] == [] and st["fault_sets"] == []
    assert [(m["role"], m["self"]) for m in st["mdms"]] == [("leader", True)]
    assert st["mdms"][0]["raft_addr"] == rc.raft_addr
    assert set(st["rebuild"]) == set(st["rebalance"])


def test_lists_match_cli(api, rc):
    # SDSs: the CLI's keys and stable values; devices gain their SDS's name and free bytes
    rest = {s["name"]: s for s in api.call("GET", "/sds", expect=200).json}
    for s in cli_json(rc, "sds", "list"):
        r = rest[s["name"]]
        assert set(s) <= set(r) and set(r) - set(s) <= {"last_heartbeat_ms_ago"}
        for k in ("id", "addr", "fault_set", "connected", "removing", "state"):
            assert r[k] == s[k], k
        assert [d["id"] for d in r["devices"]] == [d["id"] for d in s["devices"]]
        for d, rd in zip(s["devices"], r["devices"]):
            assert set(rd) == set(d) | {"sds", "free"}
            assert rd["sds"] == s["name"] and rd["path"] == d["path"]
            assert rd["capacity"] == d["capacity"] and rd["pool"] == d["pool"]
        one = api.call("GET", "/sds/{name}", name=s["name"], expect=200).json
        assert (one["id"], one["name"], one["addr"]) == (s["id"], s["name"], s["addr"])
    devs = api.call("GET", "/devices", expect=200).json
    assert sorted(d["id"] for d in devs) == sorted(d["id"] for s in rest.values()
                                                   for d in s["devices"])
    # pools, fault sets: exactly the CLI's keys
    pools = api.call("GET", "/pools", expect=200).json
    cli_pools = cli_json(rc, "pool", "list")
    assert [set(p) for p in pools] == [set(p) for p in cli_pools]
    for p, c in zip(pools, cli_pools):
        for k in ("id", "name", "copies", "extent_size", "pg_count", "overcommit_pct",
                  "raw_capacity", "usable_capacity", "provisioned", "health"):
            assert p[k] == c[k], k
    assert api.call("GET", "/pools/{name}", name="default", expect=200).json["id"] == pools[0]["id"]
    assert api.call("GET", "/fault-sets", expect=200).json == cli_json(rc, "fault-set", "list")
    # SDCs: the CLI's keys and values, with their connection
    sdcs = api.call("GET", "/sdcs", expect=200).json
    for s, c in zip(sdcs, cli_json(rc, "sdc", "list")):
        assert {k: s[k] for k in c} == c
        assert s["connected"] and s["map_version"] > 0
    one = api.call("GET", "/sdcs/{name}", name=rc.sdc_name, expect=200).json
    assert one["guid"] == sdcs[0]["guid"]
    assert api.call("GET", "/mappings", expect=200).json == []
    assert api.call("GET", "/volumes", expect=200).json == cli_json(rc, "volume", "list")
    mdms = api.call("GET", "/mdms", expect=200).json
    assert len(mdms) == 1 and mdms[0]["self"] and mdms[0]["term"] >= 1


def test_cli_volume_appears(api, rc):
    rc.cairn("volume", "create", "cv1", "--size", "8M", "--thick")
    r = api.call("GET", "/volumes/{name}", name="cv1", expect=200).json
    assert r == cli_json(rc, "volume", "show", "cv1")
    assert r["size"] == 8 << 20 and r["thick"] and r["pool"] == "default"
    assert any(v["name"] == "cv1" for v in api.call("GET", "/volumes", expect=200).json)


# ---- changes ----

def test_fault_sets(api, rc):
    fs = api.call("POST", "/fault-sets", body={"name": "rack9"}, expect=201).json
    assert fs["name"] == "rack9" and fs["sds_count"] == 0 and fs["sds"] == []
    assert api.call("GET", "/fault-sets/{name}", name="rack9", expect=200).json == fs
    assert fs in api.call("GET", "/fault-sets", expect=200).json
    assert api.error("POST", "/fault-sets", 409, body={"name": "rack9"}) == \
        cli_error(rc, "fault-set", "add", "rack9")
    assert api.error("POST", "/fault-sets", 400, body={"name": "bad name"}) == \
        cli_error(rc, "fault-set", "add", "bad name")
    assert api.call("DELETE", "/fault-sets/{name}", name="rack9", expect=200).json == {"info": "ok"}
    assert api.error("DELETE", "/fault-sets/{name}", 404, name="rack9") == \
        cli_error(rc, "fault-set", "remove", "rack9")
    api.error("GET", "/fault-sets/{name}", 404, name="rack9")


def test_pools(api, rc):
    p = api.call("POST", "/pools", body={"name": "p2", "copies": 3, "pgs": 64}, expect=201).json
    assert p["name"] == "p2" and p["copies"] == 3
    assert "p2" in {q["name"] for q in cli_json(rc, "pool", "list")}
    assert api.call("GET", "/pools/{name}", name="p2", expect=200).json["id"] == p["id"]
    assert api.error("POST", "/pools", 409, body={"name": "p2"}) == \
        cli_error(rc, "pool", "create", "p2")
    assert api.error("POST", "/pools", 400, body={"name": "p3", "copies": 5}) == \
        cli_error(rc, "pool", "create", "p3", "--copies", "5")
    r = api.call("PATCH", "/pools/{name}", name="default", body={"overcommit_pct": 250},
                 expect=200).json
    assert r["overcommit_pct"] == 250 and r["name"] == "default"
    assert cli_json(rc, "pool", "list")[0]["overcommit_pct"] == 250
    assert api.error("PATCH", "/pools/{name}", 400, name="default",
                     body={"overcommit_pct": 50}) == \
        cli_error(rc, "pool", "set", "default", "--overcommit", "50")
    assert api.error("PATCH", "/pools/{name}", 404, name="nope",
                     body={"overcommit_pct": 200}) == \
        cli_error(rc, "pool", "set", "nope", "--overcommit", "200")
    assert "overcommit_pct" in api.error("PATCH", "/pools/{name}", 400, name="default", body={})
    api.error("GET", "/pools/{name}", 404, name="nope")
    # a pool with no devices has no placement: the cluster's data is not all placeable
    assert api.call("GET", "/status", expect=200).json["health"] == "error"


def test_volume_over_rest_and_nbd(api, rc):
    v = api.call("POST", "/volumes", body={"name": "rv1", "size": "64M"}, expect=201).json
    assert (v["name"], v["size"], v["pool"], v["thick"], v["mapped_to"]) == \
        ("rv1", 64 << 20, "default", False, [])
    assert v["io"] == {"read_iops": 0, "write_iops": 0, "read_bytes_per_sec": 0,
                       "write_bytes_per_sec": 0, "read_latency_us": 0, "write_latency_us": 0}
    cli = {x["name"]: x for x in cli_json(rc, "volume", "list")}
    assert cli["rv1"]["size"] == 64 << 20
    # names in paths are percent-decoded
    assert api.call("GET", "/volumes/{name}", name="rv1", expect=200).json["id"] == v["id"]
    assert api.client.get(API + "/volumes/rv%31").json["id"] == v["id"]
    g = api.call("PATCH", "/volumes/{name}", name="rv1", body={"size": 128 << 20}, expect=200).json
    assert g["size"] == 128 << 20
    m = api.call("POST", "/mappings", body={"volume": "rv1", "sdc": rc.sdc_name},
                 expect=201).json
    assert m == {"volume": "rv1", "sdc": rc.sdc_name, "read_only": False,
                 "access": "single-writer", "writer": "", "writer_generation": 0}
    assert api.call("GET", "/mappings", expect=200).json == [m]
    assert api.call("GET", "/mappings/{volume}/{sdc}", volume="rv1", sdc=rc.sdc_name,
                    expect=200).json == m
    assert "rv1" in api.call("GET", "/sdcs/{name}", name=rc.sdc_name, expect=200).json["volumes"]
    assert api.call("GET", "/volumes/{name}", name="rv1", expect=200).json["mapped_to"] == \
        [{"sdc": rc.sdc_name, "read_only": False, "access": "single-writer"}]
    rc.wait_export("rv1")
    h = nbd.NBD()
    h.connect_uri(rc.uri("rv1"))
    try:
        assert h.get_size() == 128 << 20
        data = os.urandom(1 << 20)
        for off in (0, 100 << 20):
            h.pwrite(data, off)
        h.flush()
        for off in (0, 100 << 20):
            assert h.pread(len(data), off) == data
        assert h.pread(4096, 50 << 20) == bytes(4096)
    finally:
        h.shutdown()
    assert api.error("DELETE", "/volumes/{name}", 409, name="rv1") == \
        cli_error(rc, "volume", "remove", "rv1")
    assert api.call("DELETE", "/mappings/{volume}/{sdc}", volume="rv1", sdc=rc.sdc_name,
                    expect=200).json == {"info": "ok"}
    assert api.error("DELETE", "/mappings/{volume}/{sdc}", 404, volume="rv1",
                     sdc=rc.sdc_name) == \
        cli_error(rc, "volume", "unmap", "rv1", "--sdc", rc.sdc_name)
    api.error("GET", "/mappings/{volume}/{sdc}", 404, volume="rv1", sdc=rc.sdc_name)
    assert api.call("DELETE", "/volumes/{name}", name="rv1", expect=200).json == {"info": "ok"}
    api.error("GET", "/volumes/{name}", 404, name="rv1")
    assert "rv1" not in {x["name"] for x in cli_json(rc, "volume", "list")}


def test_errors_are_the_cli_s(api, rc):
    rc.cairn("volume", "create", "dup", "--size", "8M")
    assert api.error("POST", "/volumes", 409, body={"name": "dup", "size": "8M"}) == \
        cli_error(rc, "volume", "create", "dup", "--size", "8M") == \
        "a volume named 'dup' already exists"
    assert api.error("GET", "/volumes/{name}", 404, name="nope") == \
        cli_error(rc, "volume", "show", "nope")
    assert api.error("DELETE", "/volumes/{name}", 404, name="nope") == \
        cli_error(rc, "volume", "remove", "nope")
    assert api.error("PATCH", "/volumes/{name}", 404, name="nope", body={"size": "16M"}) == \
        cli_error(rc, "volume", "grow", "nope", "--size", "16M")
    assert api.error("PATCH", "/volumes/{name}", 400, name="dup", body={"size": "4M"}) == \
        cli_error(rc, "volume", "grow", "dup", "--size", "4M")
    assert api.error("POST", "/volumes", 400, body={"name": "v", "size": "lots"}) == \
        cli_error(rc, "volume", "create", "v", "--size", "lots")
    assert api.error("POST", "/volumes", 400, body={"name": "v", "size": 1000}) == \
        cli_error(rc, "volume", "create", "v", "--size", "1000")
    assert api.error("POST", "/volumes", 404, body={"name": "v", "size": "8M", "pool": "no"}) == \
        cli_error(rc, "volume", "create", "v", "--size", "8M", "--pool", "no")
    assert api.error("POST", "/mappings", 404, body={"volume": "dup", "sdc": "nosdc"}) == \
        cli_error(rc, "volume", "map", "dup", "--sdc", "nosdc")
    # the shape of the input
    assert api.error("POST", "/volumes", 400, raw=b'{"name": "v", ').startswith("invalid JSON")
    assert api.error("POST", "/volumes", 400, raw=b"").startswith("invalid JSON")
    assert "JSON object" in api.error("POST", "/volumes", 400, body=["v"])
    err = api.error("POST", "/volumes", 400, body={"name": "v", "sise": "8M"})
    assert "unknown field 'sise'" in err, err
    assert api.error("POST", "/volumes", 400, body={"name": "v"}) == "missing field 'size'"
    assert "'thick'" in api.error("POST", "/volumes", 400,
                                  body={"name": "v", "size": "8M", "thick": "yes"})
    assert "'size'" in api.error("POST", "/volumes", 400, body={"name": "v", "size": -4096})
    assert "'size'" in api.error("POST", "/volumes", 400, body={"name": "v", "size": 1.5})
    assert api.error("POST", "/volumes", 400,
                     raw=b'{"name": "a", "name": "b", "size": "8M"}').startswith("invalid JSON")
    r = api.call("POST", "/volumes", raw=b"x" * ((1 << 20) + 1), expect=413)
    # nothing above changed the cluster
    assert {v["name"] for v in cli_json(rc, "volume", "list")} == {"cv1", "dup"}
    assert r.content_type.startswith("text/plain")
    rc.cairn("volume", "remove", "dup")


def test_bodies_must_be_json(api, rc):
    """A body not labelled application/json is refused (415) before it is
    read: a page of another origin can send text/plain or a form without a
    CORS preflight, never application/json."""
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                  "application/jsonp"):
        r = api.client.request("POST", API + "/volumes",
                               raw=b'{"name": "csrf", "size": "8M"}',
                               headers={"Content-Type": ctype})
        assert r.status == 415, (ctype, r)
        assert "application/json" in r.json["error"]
    r = api.client.request("POST", API + "/volumes", raw=b'{"name": "csrf", "size": "8M"}',
                           headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 201, r
    api.call("DELETE", "/volumes/{name}", expect=200, name="csrf")
    assert "csrf" not in {v["name"] for v in cli_json(rc, "volume", "list")}


def test_methods_and_paths(api):
    """Every documented path answers 405 (with the documented methods in
    Allow) to the methods it does not document; an undocumented path is
    404."""
    samples = {"name": "default", "volume": "cv1", "sdc": "sdc1"}
    for template in api.spec.doc["paths"]:
        documented = api.spec.methods(template)
        path = API + template.format(**samples)
        for m in METHODS:
            if m in documented:
                continue
            r = api.client.request(m, path, body={} if m in ("POST", "PUT", "PATCH") else None)
            assert r.status == 405, (m, path, r)
            assert set(r.headers["Allow"].split(", ")) - {"HEAD"} == documented, (m, path)
            jsonschema.validate(r.json, api.spec.schema("Error"))
    for path in ("/api/v1", "/api/v1/", "/api/v1/nothing", "/api/v1/volumes/cv1/extra",
                 "/api/v1/volumes/", "/api/v2/status", "/api//status", "/api"):
        r = api.client.get(path)
        assert r.status == 404, (path, r)
        jsonschema.validate(r.json, api.spec.schema("Error"))


def test_maintenance(api, rc):
    s = api.call("POST", "/sds/{name}/maintenance", name="sds1", body={"enter": True},
                 expect=200).json
    assert s["name"] == "sds1" and s["state"] == "maintenance"
    assert {x["name"]: x["state"] for x in cli_json(rc, "sds", "list")}["sds1"] == "maintenance"
    s = api.call("POST", "/sds/{name}/maintenance", name="sds1", body={"enter": False},
                 expect=200).json
    assert s["state"] == "up"
    assert api.error("POST", "/sds/{name}/maintenance", 409, name="sds1",
                     body={"enter": False}) == cli_error(rc, "sds", "maintenance", "exit", "sds1")
    assert api.error("POST", "/sds/{name}/maintenance", 404, name="nope",
                     body={"enter": True}) == cli_error(rc, "sds", "maintenance", "enter", "nope")
    assert "'enter'" in api.error("POST", "/sds/{name}/maintenance", 400, name="sds1",
                                  body={"enter": "yes"})
    assert api.error("POST", "/sds/{name}/maintenance", 400, name="sds1",
                     body={}) == "missing field 'enter'"
    api.error("GET", "/sds/{name}", 404, name="nope")


def test_devices(api, rc):
    path = os.path.join(rc.dir, "extra3.img")
    with open(path, "wb") as f:
        f.truncate(2 << 30)
    d = api.call("POST", "/devices", body={"sds": "sds3", "path": path}, expect=201).json
    assert (d["sds"], d["path"], d["pool"], d["capacity"] > 0) == ("sds3", path, "default", True)
    assert d["id"] in {x["id"] for x in api.call("GET", "/devices", expect=200).json}
    assert api.error("POST", "/devices", 409, body={"sds": "sds3", "path": path}) == \
        cli_error(rc, "device", "add", "--sds", "sds3", "--device", path)
    assert api.error("POST", "/devices", 404, body={"sds": "nope", "path": path}) == \
        cli_error(rc, "device", "add", "--sds", "nope", "--device", path)
    assert api.error("DELETE", "/devices", 404, query={"sds": "sds3", "path": "/no/such"}) == \
        cli_error(rc, "device", "remove", "--sds", "sds3", "--device", "/no/such")
    api.error("DELETE", "/devices", 400, query={"sds": "sds3"})
    api.error("DELETE", "/devices", 400, query={"sds": "sds3", "path": path, "force": "maybe"})
    r = api.call("DELETE", "/devices", query={"sds": "sds3", "path": path}, expect=200).json
    assert r["info"].startswith("draining")
    wait_for("the device drained and forgotten",
             lambda: path not in {x["path"] for x in api.call("GET", "/devices").json},
             timeout=120, interval=0.2)


def test_sds_add_remove(api, rc):
    dev = os.path.join(rc.dir, "dev4.img")
    with open(dev, "wb") as f:
        f.truncate(4 << 30)
    assert api.error("POST", "/sds", 400,
                     body={"name": "sds4", "addr": "nope", "devices": [dev]}) == \
        cli_error(rc, "sds", "add", "--name", "sds4", "--addr", "nope", "--device", dev)
    body = {"name": "sds4", "addr": rc.sds_addrs[3], "devices": [dev]}
    # not running yet: the MDM cannot probe its devices
    assert api.error("POST", "/sds", 409, body=body) == \
        cli_error(rc, "sds", "add", "--name", "sds4", "--addr", rc.sds_addrs[3], "--device", dev)
    rc.start_sds(3)
    r = wait_for("sds4 added over REST", lambda: (lambda r: r if r.status == 201 else None)(
        api.call("POST", "/sds", body=body)))
    rc.members.add(3)
    s = r.json
    assert s["name"] == "sds4" and s["addr"] == rc.sds_addrs[3]
    assert [d["path"] for d in s["devices"]] == [dev]
    rc.wait_sds_connected()
    assert api.error("POST", "/sds", 409, body=body) == \
        cli_error(rc, "sds", "add", "--name", "sds4", "--addr", rc.sds_addrs[3], "--device", dev)
    assert api.error("DELETE", "/sds/{name}", 404, name="nope") == \
        cli_error(rc, "sds", "remove", "nope")
    api.error("DELETE", "/sds/{name}", 400, name="sds4", query={"force": "perhaps"})
    r = api.call("DELETE", "/sds/{name}", name="sds4", expect=200).json
    assert r["info"].startswith("draining")
    wait_for("sds4 drained and forgotten",
             lambda: api.call("GET", "/sds/{name}", name="sds4").status == 404,
             timeout=180, interval=0.2)
    rc.forget_sds(3)


def test_bad_input_leaves_the_mdm_standing(api, rc):
    c = api.client
    long_name = "x" * 5000
    for method, path, raw in [
        ("GET", API + "/volumes/" + long_name, None),
        ("GET", API + "/volumes/%ff%fe", None),
        ("GET", API + "/volumes/%00", None),
        ("DELETE", API + "/sds/%c3%28?force=%ff", None),
        ("POST", API + "/volumes", b'{"name": "\\u0000", "size": 1}'),
        ("POST", API + "/volumes", b'{"name": "' + b"\xff\xfe" + b'", "size": 1}'),
        ("POST", API + "/volumes", b"[" * 100000),
        ("POST", API + "/volumes", b'{"name": "v", "size": 1e400}'),
        ("POST", API + "/volumes", b'{"name": "v", "size": 99999999999999999999999}'),
        ("POST", API + "/volumes", json.dumps({"name": long_name, "size": "8M"}).encode()),
        ("POST", API + "/sds", json.dumps({"name": "s", "addr": "1:2",
                                           "devices": ["/d"] * 1000}).encode()),
        ("POST", API + "/sds", json.dumps({"name": "s", "addr": "1:2", "devices": [1]}).encode()),
        ("POST", API + "/pools", b'{"name": "p", "copies": 4294967296}'),
        ("PATCH", API + "/pools/default", b'{"overcommit_pct": null}'),
        ("POST", API + "/mappings", b'{"volume": {}, "sdc": []}'),
        ("DELETE", API + "/devices?sds=&path=", None),
    ]:
        r = c.request(method, path, raw=raw)
        assert 400 <= r.status < 500, (method, path[:80], r)
        assert "error" in r.json
    st = api.call("GET", "/status", expect=200).json
    assert {v["name"] for v in st["volumes"]} == {"cv1"}
    assert rc.daemons["mdm"].alive()


def pb_str(field, text):
    """A protobuf string field (text under 128 bytes)."""
    b = text.encode()
    tag, key = field << 3 | 2, b""
    while tag >= 0x80:
        key += bytes([tag & 0x7f | 0x80])
        tag >>= 7
    return key + bytes([tag, len(b)]) + b


def test_approve_sdc(api, rc):
    """A second SDC registers pending (restricted mode, the default) and
    cannot be mapped; a monitor token may not approve it, an admin token
    does, as `cairn sdc approve` would; the CLI sees it approved, and it
    serves a volume mapped to it."""
    port = free_ports(1)[0]
    d = rc._daemon("sdc2", [
        f"{rc.build}/client/cairn-sdc", "--mdm", rc.mdm_addr, "--data-dir", f"{rc.dir}/sdc2",
        "--name", "sdc2", "--nbd-listen", f"127.0.0.1:{port}",
        "--credentials", rc.credential("sdc", "sdc2")])
    d.start()
    try:
        wait_for("sdc2 registered", lambda: any(
            s["name"] == "sdc2" for s in api.call("GET", "/sdcs", expect=200).json))
        assert api.call("GET", "/sdcs/{name}", name="sdc2", expect=200).json["state"] == "pending"
        mon = RestClient(rc.http_url, rc.http_monitor_token)
        api.call("POST", "/sdcs/{name}/approve", name="sdc2", client=mon, expect=403)
        assert api.call("GET", "/sdcs/{name}", name="sdc2", expect=200).json["state"] == "pending"
        api.call("POST", "/volumes", body={"name": "apv", "size": "16M"}, expect=201)
        msg = api.error("POST", "/mappings", 409, body={"volume": "apv", "sdc": "sdc2"})
        assert msg == cli_error(rc, "volume", "map", "apv", "--sdc", "sdc2"), msg
        assert "pending approval" in msg, msg
        msg = api.error("POST", "/sdcs/{name}/approve", 404, name="nosuch")
        assert msg == cli_error(rc, "sdc", "approve", "nosuch"), msg
        one = api.call("POST", "/sdcs/{name}/approve", name="sdc2", expect=200).json
        assert one["name"] == "sdc2" and one["state"] == "approved"
        cli = next(s for s in cli_json(rc, "sdc", "list") if s["name"] == "sdc2")
        assert cli["state"] == "approved"
        # approved, it can be mapped, and serves the volume
        api.call("POST", "/mappings", body={"volume": "apv", "sdc": "sdc2"}, expect=201)
        uri = f"nbd://127.0.0.1:{port}/apv"
        sock = f"nbd+unix:///?socket={rc.dir}/sdc2/nbd.sock"

        def exported():
            r = subprocess.run(["nbdinfo", "--list", "--json", sock], capture_output=True,
                               text=True, timeout=30)
            return r.returncode == 0 and any(e["export-name"] == "apv"
                                             for e in json.loads(r.stdout)["exports"])
        wait_for("sdc2 serves apv", exported)
        data = os.urandom(1 << 20)
        h = nbd.NBD()
        h.connect_uri(uri)
        try:
            h.pwrite(data, 4096)
            h.flush()
            assert h.pread(len(data), 4096) == data
        finally:
            h.shutdown()
        # approving again changes nothing
        assert api.call("POST", "/sdcs/{name}/approve", name="sdc2",
                        expect=200).json["state"] == "approved"
        # an admin credential's own word for who it acts for is not taken:
        # MgmtRequest{op: OP_SDC_APPROVE, sdc: "sdc2", via: "forged"}
        c = Conn(rc.mdm_addr, rc.credential("admin", "admin"))
        status, _, _ = c.request(FT_MGMT, b"\x08\x17" + pb_str(10, "sdc2") + pb_str(24, "forged"))
        assert status == 0
        c.close()
        # the audit log: the REST API's changes say for whom, the CLI's do not
        with open(os.path.join(rc.dir, "mdm", "audit.log")) as f:
            lines = [json.loads(ln) for ln in f]
        refused = [e for e in lines if e["op"] == "http"
                   and e["request"]["path"] == API + "/sdcs/sdc2/approve"]
        assert len(refused) == 1, refused
        e = refused[0]
        assert (e["who"]["role"], e["request"]["method"], e["result"], e["status"]) == (
            "monitor", "POST", "error", -13), e
        assert re.fullmatch(r"REST API, monitor token, from 127\.0\.0\.1:\d+",
                            e["who"]["via"]), e
        assert "monitor token" in e["message"], e
        mine = [e for e in lines
                if e["op"] == "sdc_approve" and e["request"]["sdc"] in ("nosuch", "sdc2")]
        assert [(e["who"]["role"], e["request"]["sdc"], e["result"]) for e in mine] == [
            ("mdm", "nosuch", "error"), ("admin", "nosuch", "error"), ("mdm", "sdc2", "ok"),
            ("mdm", "sdc2", "ok"), ("admin", "sdc2", "ok")], mine
        for e in mine:
            if e["who"]["role"] == "mdm":
                assert re.fullmatch(r"REST API, admin token, from 127\.0\.0\.1:\d+",
                                    e["who"]["via"]), e
            else:
                assert "via" not in e["who"] and "via" not in e["request"], e
        api.call("DELETE", "/mappings/{volume}/{sdc}", volume="apv", sdc="sdc2", expect=200)
        api.call("DELETE", "/volumes/{name}", name="apv", expect=200)
    finally:
        d.stop()
        d.check_log()


def test_every_documented_route_is_served(api):
    """Last: each documented operation answered with success above, and the
    server's route table (mgmt/rest_routes.c) lists exactly the documented
    operations (openapi.yaml is served by rest_api.c itself)."""
    documented = api.spec.routes()
    src = os.path.join(os.path.dirname(__file__), "../../mgmt/rest_routes.c")
    with open(src) as f:
        table = {(m, API + p) for m, p in re.findall(r'\{"([A-Z]+)", API "([^"]*)"', f.read())}
    as_stars = {(m, re.sub(r"\{[^}]+\}", "*", p)) for m, p in documented}
    assert table | {("GET", API + "/openapi.yaml"), ("GET", API + "/whoami")} == as_stars
    documented -= {r for r in documented
                   if "/snapshots" in r[1] or r[1].endswith(("/revert", "/flatten"))}
    assert api.covered == documented, f"not exercised: {documented - api.covered}; (snapshots: test_rest_snapshots.py)"


def test_shutdown_answers_waiting_requests(tmp_path):
    """A request waiting for the MDM (here a device probe on a stopped SDS)
    is answered 503 in JSON when the MDM shuts down, and the MDM still stops
    cleanly."""
    import signal
    import socket
    c = Cluster(tmp_path, sds_sizes=(4 << 30, 4 << 30, 4 << 30), http=True)
    c.start()
    sds3 = c.daemons["sds3"].proc.pid
    try:
        client = RestClient(c.http_url, c.http_admin_token)
        wait_for("the REST API", lambda: client.get(API + "/status").status == 200)
        dev = os.path.join(c.dir, "late.img")
        with open(dev, "wb") as f:
            f.truncate(1 << 30)
        os.kill(sds3, signal.SIGSTOP)  # its probe waits for it
        host, port = c.http_url[len("http://"):].split(":")
        s = socket.create_connection((host, int(port)), timeout=30)
        body = json.dumps({"sds": "sds3", "path": dev}).encode()
        s.sendall(b"POST " + API.encode() + b"/devices HTTP/1.1\r\nHost: cairn\r\n"
                  b"Authorization: Bearer " + c.http_admin_token.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        # a request sent after it is answered: the MDM has read the first one
        assert client.get(API + "/status").status == 200
        c.daemons["mdm"].stop()
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer
        assert json.loads(text) == {"error": "the MDM is shutting down"}
    finally:
        os.kill(sds3, signal.SIGCONT)
        c.shutdown()
