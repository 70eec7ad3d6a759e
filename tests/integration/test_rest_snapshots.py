"""Snapshots over the REST API (docs/snapshots.md, "Over the REST API"):
GET/POST /api/v1/snapshots, GET/DELETE /api/v1/snapshots/VOL@NAME, POST
/api/v1/volumes/NAME/revert, POST /api/v1/snapshots/VOL@NAME/clone and
POST /api/v1/volumes/NAME/flatten, with the fields of `cairn --json
snapshot list` and the MDM's errors as HTTP statuses. A clone made over
REST reads the snapshot's data, blocks the snapshot's removal until it is
flattened over REST, and keeps the data once flattened. A snapshot taken over REST
holds what was written before it (read back over NBD from its export,
mapped through POST /api/v1/mappings) while the volume has changed since.
Every answer is checked against docs/openapi.yaml."""
import json
import os
import re

import nbd
import pytest

from cluster import Cluster, wait_for
from rest_client import OpenApi, RestClient

API = "/api/v1"
MB = 1 << 20


@pytest.fixture(scope="module")
def rc(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("rest-snap"), http=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


class Api:
    def __init__(self, rc):
        self.client = RestClient(rc.http_url, rc.http_admin_token)
        self.spec = OpenApi.load()
        self.covered = set()

    def call(self, method, template, expect, body=None, query="", **params):
        r = self.client.request(method, API + template.format(**params) + query, body=body)
        assert r.status == expect, (method, template, body, r)
        self.spec.validate(method, template, r)
        if 200 <= r.status < 300:
            self.covered.add((method, API + template))
        return r.json


@pytest.fixture(scope="module")
def api(rc):
    a = Api(rc)
    wait_for("the REST API", lambda: a.client.get(API + "/status").status == 200)
    return a


def cli_json(rc, *args):
    return json.loads(rc.cairn(*args, json_out=True).stdout)


def read_all(rc, name, size):
    h = nbd.NBD()
    h.connect_uri(rc.uri(name))
    out = b"".join(h.pread(MB, off) for off in range(0, size, MB))
    ro = h.is_read_only()
    h.shutdown()
    return out, ro


def test_create_list_show_remove_and_data(api, rc):
    rc.create_volume("rv", 8 * MB)
    before = os.urandom(8 * MB)
    h = nbd.NBD()
    h.connect_uri(rc.uri("rv"))
    h.pwrite(before, 0)
    h.flush()
    s = api.call("POST", "/snapshots", 201, body={"volume": "rv", "name": "s1"})
    assert s["volume"] == "rv" and s["name"] == "s1" and s["size"] == 8 * MB, s
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["created"]), s
    after = os.urandom(MB)
    h.pwrite(after, 0)
    h.flush()
    h.shutdown()
    # the same objects as the CLI's (sizes come from heartbeats: compare keys)
    lst = api.call("GET", "/snapshots", 200)
    cli = cli_json(rc, "snapshot", "list")
    assert [(x["volume"], x["name"], x["id"]) for x in lst] == \
        [(x["volume"], x["name"], x["id"]) for x in cli]
    assert set(lst[0]) == set(cli[0])
    def ids(x):  # sizes move with each heartbeat
        return [(e["volume"], e["name"], e["id"], e["size"], e["created"]) for e in x]
    assert ids(api.call("GET", "/snapshots", 200, query="?volume=rv")) == ids(lst)
    assert api.call("GET", "/snapshots/{volume}", 200, volume="rv@s1")["id"] == s["id"]
    # a volume with a snapshot: the same object as the CLI's, snapshot count included
    vol = api.call("GET", "/volumes/{name}", 200, name="rv")
    vol.pop("io"), vol.pop("flatten_progress")
    shown = cli_json(rc, "volume", "show", "rv")
    shown.pop("io"), shown.pop("flatten_progress")
    assert vol == shown and vol["snapshots"] == 1 and vol["clone_of"] == "", (vol, shown)
    # mapped through the mappings route: read-only, named VOL@SNAP
    m = api.call("POST", "/mappings", 201, body={"volume": "rv@s1", "sdc": rc.sdc_name})
    assert m["volume"] == "rv@s1" and m["read_only"] and m["snapshot"] == "s1", m
    assert api.call("GET", "/snapshots/{volume}", 200, volume="rv@s1")["mapped_to"] == [rc.sdc_name]
    rc.wait_export("rv@s1")
    data, ro = read_all(rc, "rv@s1", 8 * MB)
    assert ro and data == before
    h = nbd.NBD()
    h.connect_uri(rc.uri("rv"))
    assert h.pread(MB, 0) == after
    h.shutdown()
    # mapped: removal refused (409); unmapped: removed
    r = api.call("DELETE", "/snapshots/{volume}", 409, volume="rv@s1")
    assert "mapped" in r["error"], r
    api.call("DELETE", "/mappings/{volume}/{sdc}", 200, volume="rv@s1", sdc=rc.sdc_name)
    api.call("DELETE", "/snapshots/{volume}", 200, volume="rv@s1")
    api.call("GET", "/snapshots/{volume}", 404, volume="rv@s1")
    assert api.call("GET", "/snapshots", 200, query="?volume=rv") == []


def test_group_snapshot(api, rc):
    for v in ("ga", "gb"):
        rc.create_volume(v, 8 * MB)
    got = api.call("POST", "/snapshots", 201, body={"group": "g1", "volumes": ["ga", "gb"]})
    assert [(x["volume"], x["name"], x["group"]) for x in got] == \
        [("ga", "g1", "g1"), ("gb", "g1", "g1")], got
    assert {x["volume"] for x in cli_json(rc, "snapshot", "list") if x["group"] == "g1"} == \
        {"ga", "gb"}


def test_revert(api, rc):
    rc.create_volume("rev", 8 * MB)
    h = nbd.NBD()
    h.connect_uri(rc.uri("rev"))
    first = os.urandom(MB)
    h.pwrite(first, 0)
    h.flush()
    h.shutdown()
    api.call("POST", "/snapshots", 201, body={"volume": "rev", "name": "base"})
    h = nbd.NBD()
    h.connect_uri(rc.uri("rev"))
    h.pwrite(os.urandom(MB), 0)
    h.flush()
    h.shutdown()
    r = api.call("POST", "/volumes/{name}/revert", 409, body={"to": "base"}, name="rev")
    assert "mapped" in r["error"], r
    api.call("DELETE", "/mappings/{volume}/{sdc}", 200, volume="rev", sdc=rc.sdc_name)
    api.call("POST", "/volumes/{name}/revert", 404, body={"to": "nope"}, name="rev")
    v = api.call("POST", "/volumes/{name}/revert", 200, body={"to": "base"}, name="rev")
    assert v["name"] == "rev"
    api.call("POST", "/mappings", 201, body={"volume": "rev", "sdc": rc.sdc_name})
    rc.wait_export("rev")
    h = nbd.NBD()
    h.connect_uri(rc.uri("rev"))
    assert h.pread(MB, 0) == first
    h.shutdown()


@pytest.mark.parametrize("body,status,words", [
    ({}, 400, "missing field 'volume'"),
    ({"volume": "rv"}, 400, "missing field 'name'"),
    ({"group": "g"}, 400, "missing field 'volumes'"),
    ({"volume": "rv", "group": "g", "volumes": ["rv"]}, 400, "either"),
    ({"volume": "rv", "name": 5}, 400, "must be a string"),
    ({"volume": "rv", "name": "s", "extra": 1}, 400, "unknown field"),
    ({"volume": "nosuch", "name": "s"}, 404, "no volume named 'nosuch'"),
    ({"volume": "rv", "name": "ro"}, 400, "invalid snapshot name"),
    ({"volume": "rv", "name": "a/b"}, 400, "invalid snapshot name"),
    ({"volume": "rv", "name": ""}, 400, "missing field 'name'"),
])
def test_bad_create(api, rc, body, status, words):
    if "rv" not in {v["name"] for v in rc.status()["volumes"]}:
        rc.create_volume("rv", 8 * MB)
    r = api.call("POST", "/snapshots", status, body=body)
    assert words in r["error"], r


def test_bad_names_and_conflict(api, rc):
    if "rv" not in {v["name"] for v in rc.status()["volumes"]}:
        rc.create_volume("rv", 8 * MB)
    api.call("POST", "/snapshots", 201, body={"volume": "rv", "name": "dup"})
    r = api.call("POST", "/snapshots", 409, body={"volume": "rv", "name": "dup"})
    assert "already has a snapshot named 'dup'" in r["error"], r
    api.call("GET", "/snapshots/{volume}", 404, volume="rv")
    api.call("GET", "/snapshots/{volume}", 404, volume="nosuch@x")
    api.call("GET", "/snapshots/{volume}", 404, volume="rv@nosuch")
    api.call("GET", "/snapshots", 404, query="?volume=nosuch")
    api.call("DELETE", "/snapshots/{volume}", 400, volume="rv")
    api.call("DELETE", "/snapshots/{volume}", 404, volume="rv@nosuch")
    api.call("POST", "/volumes/{name}/revert", 400, body={}, name="rv")


def test_clone_and_flatten(api, rc):
    rc.create_volume("cs", 8 * MB)
    data = os.urandom(MB)
    h = nbd.NBD()
    h.connect_uri(rc.uri("cs"))
    h.pwrite(data, 0)
    h.flush()
    h.shutdown()
    api.call("POST", "/snapshots", 201, body={"volume": "cs", "name": "base"})
    v = api.call("POST", "/snapshots/{volume}/clone", 201, body={"name": "cc"}, volume="cs@base")
    assert (v["name"], v["size"], v["thick"], v["clone_of"], v["flattening"]) == \
        ("cc", 8 * MB, False, "cs@base", False), v
    assert cli_json(rc, "volume", "show", "cc")["clone_of"] == "cs@base"
    # refusals, with the MDM's (or the CLI's) words
    r = api.call("POST", "/snapshots/{volume}/clone", 409, body={"name": "cc"}, volume="cs@base")
    assert "already exists" in r["error"], r
    r = api.call("POST", "/snapshots/{volume}/clone", 400, body={"name": "x"}, volume="cs")
    assert "VOLUME@SNAPSHOT" in r["error"], r
    api.call("POST", "/snapshots/{volume}/clone", 404, body={"name": "x"}, volume="cs@nope")
    r = api.call("POST", "/snapshots/{volume}/clone", 400, body={}, volume="cs@base")
    assert "missing field 'name'" in r["error"], r
    r = api.call("DELETE", "/snapshots/{volume}", 409, volume="cs@base")
    assert "clone" in r["error"] and "cc" in r["error"], r
    r = api.call("POST", "/volumes/{name}/flatten", 400, body={}, name="cs")
    assert "not a clone" in r["error"], r
    r = api.call("POST", "/volumes/{name}/flatten", 400, body={"rate": 0}, name="cc")
    assert "'rate' must be above 0" in r["error"], r
    r = api.call("POST", "/volumes/{name}/flatten", 400, body={"rate": True}, name="cc")
    assert "must be a number of bytes" in r["error"], r
    api.call("POST", "/volumes/{name}/flatten", 404, body={}, name="nosuch")
    assert not cli_json(rc, "volume", "show", "cc").get("flattening")
    # the clone reads the snapshot's data, before and after its flatten
    api.call("POST", "/mappings", 201, body={"volume": "cc", "sdc": rc.sdc_name})
    rc.wait_export("cc")
    assert read_all(rc, "cc", MB) == (data, False)
    v = api.call("POST", "/volumes/{name}/flatten", 200, body={"rate": "32M"}, name="cc")
    assert v["flattening"] or v.get("clone_of", "") == "", v  # (unless already through)
    wait_for("cc flattened", lambda: not api.call("GET", "/volumes/{name}", 200, name="cc")
             .get("clone_of"))
    assert read_all(rc, "cc", MB) == (data, False)
    # it shares nothing now: the snapshot, and its volume, can go
    api.call("DELETE", "/snapshots/{volume}", 200, volume="cs@base")
    api.call("DELETE", "/mappings/{volume}/{sdc}", 200, volume="cs", sdc=rc.sdc_name)
    api.call("DELETE", "/volumes/{name}", 200, name="cs")
    assert read_all(rc, "cc", MB) == (data, False)


def test_every_snapshot_route_is_exercised(api):
    """Last: every documented snapshot operation answered with success."""
    mine = {(m, p) for m, p in api.spec.routes()
            if "/snapshots" in p or p.endswith(("/revert", "/flatten"))}
    assert len(mine) == 7 and mine <= api.covered, mine - api.covered
