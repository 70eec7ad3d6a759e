"""A real Prometheus (Debian's package) scrapes every daemon of a running
cluster: every target is up, the series the docs and the Grafana dashboard
name exist, and counters move under load.

Prometheus is started on a port of its own with a scrape interval of one
second and a storage directory under the test's; it listens on loopback only.
Its configuration is the quick start's (deploy/prometheus/quickstart.yml,
filled in as deploy/quickstart.sh does), so the bearer token it sends from
its credentials_file is what proves that template right; one more job
scrapes the MDM without a token, and must find it refusing (401).
"""
import json
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request

import nbd
import pytest
import yaml

from cluster import Cluster, free_ports, wait_for

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

# Series each daemon must expose (a family is present if any sample has its
# name; histograms by their _count).
EXPECTED = {
    "cairn-mdm": ["cairn_mdm_raft_state", "cairn_mdm_raft_term", "cairn_mdm_raft_commit_index",
                  "cairn_mdm_raft_elections_total", "cairn_mdm_changes_applied_total",
                  "cairn_cluster_pgs", "cairn_cluster_sds", "cairn_cluster_pool_used_bytes",
                  "cairn_cluster_rebuild_bytes_left",
                  "cairn_cluster_rebuild_rate_bytes_per_second"],
    "cairn-sds": ["cairn_sds_device_reads_total", "cairn_sds_device_writes_total",
                  "cairn_sds_device_written_bytes_total", "cairn_sds_device_queue_depth",
                  "cairn_sds_device_errors_total", "cairn_sds_device_capacity_bytes",
                  "cairn_sds_device_used_bytes", "cairn_sds_device_free_bytes",
                  "cairn_sds_request_latency_seconds_count", "cairn_sds_rebuild_bytes_left"],
    "cairn-sdc": ["cairn_sdc_volume_reads_total", "cairn_sdc_volume_writes_total",
                  "cairn_sdc_volume_read_bytes_total", "cairn_sdc_volume_written_bytes_total",
                  "cairn_sdc_volume_write_latency_seconds_count",
                  "cairn_sdc_volume_read_latency_seconds_bucket"],
}


def quickstart_conf(c):
    """deploy/prometheus/quickstart.yml filled in for cluster c (as
    quickstart.sh fills it), scraping every second, plus the job
    "no-token": the MDM scraped without credentials."""
    with open(os.path.join(TOP, "deploy", "prometheus", "quickstart.yml")) as f:
        text = f.read()
    fill = {"@MDM@": c.metrics_addrs["mdm"], "@SDC@": c.metrics_addrs["sdc"],
            "@METRICS_TOKEN_FILE@": c.metrics_token_file}
    fill.update({f"@SDS{i + 1}@": c.metrics_addrs[f"sds{i + 1}"] for i in range(3)})
    for k, v in fill.items():
        text = text.replace(k, v)
    assert "@" not in text, text
    conf = yaml.safe_load(text)
    conf["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert all(j["authorization"] == {"type": "Bearer", "credentials_file": c.metrics_token_file}
               for j in conf["scrape_configs"])
    conf["scrape_configs"].append({"job_name": "no-token",
                                   "static_configs": [{"targets": [c.metrics_addrs["mdm"]]}]})
    return conf


class Prometheus:
    def __init__(self, workdir, conf):
        self.dir = os.path.join(workdir, "prometheus")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = os.path.join(self.dir, "prometheus.yml")
        with open(self.conf, "w") as f:
            json.dump(conf, f)  # JSON is YAML
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.conf}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path, **params):
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def ready(self):
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr):
        return self.get("/api/v1/query", query=expr)["result"]

    def value(self, expr):
        """The single value of expr now, or None when it has no sample."""
        res = self.query(expr)
        return float(res[0]["value"][1]) if res else None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        finally:
            self.log.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prom")
    c = Cluster(tmp, metrics=True)
    c.start()
    prom = None
    try:
        c.create_volume("pv", 256 << 20)
        prom = Prometheus(str(tmp), quickstart_conf(c))
        wait_for("Prometheus ready", prom.ready, timeout=60)
        yield c, prom
    finally:
        if prom:
            prom.stop()
        c.shutdown()


def test_every_target_up(env):
    c, prom = env

    def all_up():
        res = prom.query('up{job!="no-token"}')
        return len(res) == 5 and all(r["value"][1] == "1" for r in res)
    wait_for("every daemon scraped", all_up, timeout=60)
    res = {r["metric"]["instance"]: r["metric"]["job"] for r in prom.query('up{job!="no-token"}')}
    assert sorted(res.values()) == ["cairn-mdm", "cairn-sdc", "cairn-sds", "cairn-sds",
                                    "cairn-sds"]


def test_scrape_without_token_refused(env):
    """The same MDM, scraped without the token: down, for a 401, and none
    of its series reach Prometheus under that job."""
    c, prom = env

    def refused():
        t = [t for t in prom.get("/api/v1/targets")["activeTargets"]
             if t["labels"]["job"] == "no-token"]
        return len(t) == 1 and t[0]["health"] == "down" and t[0]["lastError"] and t[0]
    t = wait_for("the scrape without a token to fail", refused, timeout=60)
    assert "401" in t["lastError"], t["lastError"]
    assert prom.query('up{job="no-token"}')[0]["value"][1] == "0"
    assert prom.query('count({job="no-token",__name__=~"cairn_.*"})') == []


def test_series_present(env):
    c, prom = env
    for job, names in EXPECTED.items():
        for name in names:
            wait_for(f"{name} from {job}",
                     lambda: prom.query(f'count({{__name__="{name}",job="{job}"}})'), timeout=30)
    # SDS series are labelled with their SDS; volume series with volume and SDC
    sds = {r["metric"]["sds"] for r in prom.query('cairn_sds_device_capacity_bytes')}
    assert sds == {"sds1", "sds2", "sds3"}
    vol = prom.query('cairn_sdc_volume_writes_total{volume="pv"}')
    assert len(vol) == 1 and vol[0]["metric"]["sdc"] == c.sdc_name
    # the MDM is the one leader of a one-MDM cluster
    assert prom.value('cairn_mdm_raft_state{role="leader"}') == 1
    assert prom.value('sum(cairn_cluster_pgs{state="protected"})') == 256


def test_counters_move_under_load(env):
    c, prom = env
    sel = '{volume="pv"}'

    def scraped_value(expr):
        v = prom.value(expr)
        return v if v is not None else None
    wait_for("the SDC's counters scraped",
             lambda: scraped_value(f"cairn_sdc_volume_writes_total{sel}") is not None, timeout=30)
    w0 = prom.value(f"cairn_sdc_volume_writes_total{sel}")
    b0 = prom.value(f"cairn_sdc_volume_written_bytes_total{sel}")
    d0 = prom.value("sum(cairn_sds_device_written_bytes_total)")
    r0 = prom.value(f"cairn_sdc_volume_reads_total{sel}")
    h = nbd.NBD()
    h.connect_uri(c.uri("pv"))
    blocks = 500
    data = os.urandom(4096)
    for i in range(blocks):
        h.pwrite(data, i * 4096)
    for i in range(blocks):
        assert h.pread(4096, i * 4096) == data
    h.shutdown()
    # Prometheus sees exactly the writes and reads the client made (the
    # client's own connect-time probes are reads of its own, so reads are
    # checked as at least).
    wait_for("the writes scraped",
             lambda: prom.value(f"cairn_sdc_volume_writes_total{sel}") == w0 + blocks,
             timeout=30)
    assert prom.value(f"cairn_sdc_volume_written_bytes_total{sel}") == b0 + blocks * 4096
    wait_for("the reads scraped",
             lambda: prom.value(f"cairn_sdc_volume_reads_total{sel}") >= r0 + blocks, timeout=30)
    # every byte reached both copies
    wait_for("the SDSs' device writes scraped",
             lambda: prom.value("sum(cairn_sds_device_written_bytes_total)")
             >= d0 + 2 * blocks * 4096, timeout=30)
    # the latency histogram counted every write, and rate() over it works
    assert prom.value(f"cairn_sdc_volume_write_latency_seconds_count{sel}") == w0 + blocks
    wait_for("a write rate", lambda: (prom.value(
        f"rate(cairn_sdc_volume_writes_total{sel}[30s])") or 0) > 0, timeout=30)
    q = prom.value("histogram_quantile(0.99, sum by (le) "
                   f"(rate(cairn_sdc_volume_write_latency_seconds_bucket{sel}[1m])))")
    assert q is not None and 0 < q < 10
    # changes made through the CLI are counted by the MDM
    before = prom.value('sum(cairn_mdm_changes_applied_total{op="volume_create"})') or 0
    c.cairn("volume", "create", "pv2", "--size", "16M")
    wait_for("the change counted", lambda: (prom.value(
        'sum(cairn_mdm_changes_applied_total{op="volume_create"})') or 0) == before + 1,
        timeout=30)


def test_grafana_dashboard_uses_real_series(env):
    """Every series a panel of deploy/grafana/cairn-dashboard.json queries
    is one Prometheus has, and each panel's query parses."""
    c, prom = env
    names = set(prom.get("/api/v1/label/__name__/values"))
    with open(os.path.join(TOP, "deploy", "grafana", "cairn-dashboard.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    for e in exprs:
        for name in set(re.findall(r"\bcairn_[a-z_]+\b", e)):
            assert name in names, f"{name} (in {e!r}) is not a series Prometheus has"
        prom.query(e)  # raises unless Prometheus accepts the query


def test_docs_list_exactly_the_series_served(env):
    """docs/metrics.md names every family the daemons serve, and nothing else."""
    c, prom = env
    served = set()
    for name in prom.get("/api/v1/label/__name__/values"):
        if not name.startswith("cairn_"):
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        served.add(base if f"{base}_bucket" in set(prom.get("/api/v1/label/__name__/values"))
                   else name)
    with open(os.path.join(TOP, "docs", "metrics.md")) as f:
        documented = set(re.findall(r"^\| `(cairn_[a-z_]+)` \|", f.read(), re.M))
    # families that only appear once something happened (a refused change, a
    # volume's other requests) may be absent from a fresh cluster's scrape
    sometimes = {"cairn_mdm_changes_refused_total", "cairn_sdc_volume_other_requests_total",
                 "cairn_sds_request_errors_total"}
    assert served - documented == set(), "served but not in docs/metrics.md"
    assert documented - served - sometimes == set(), "in docs/metrics.md but not served"
