"""The web dashboard (mgmt/web/, served by cairn-mdm --http-listen) in a real
browser, headless Chromium driven by Selenium, against a real cluster: the
page shows what `cairn status --json` shows, its forms create, grow, map,
unmap and remove volumes (each through its confirmation dialog) as the CLI
then sees, an SDS killed with SIGKILL turns down in the page, a volume under
a running writer charts non-zero IOPS, and the browser asks no host but the
MDM and logs no error. Signing in: before a token is given the page shows
only its sign-in form and asks the API for nothing; a wrong token is
refused with a message; a monitor token shows the cluster with every
change control disabled; a token refused later signs the page out. Every
wait is explicit (WebDriverWait on a condition). The page loaded from a
follower of a 3-MDM cluster, and through a leader's kill -9, is
test_rest_cluster.py's (it uses this file's Browser).

CAIRN_SCREENSHOTS=DIR saves the main views there (overview, sds, volumes,
create-volume); docs/img/ holds copies made that way. The Snapshots view
is test_dashboard_snapshots.py's (it uses this file's Browser)."""
import json
import os
import random
import signal
import threading
import urllib.request

import nbd
import pytest
from selenium import webdriver
from selenium.common.exceptions import (ElementClickInterceptedException, NoSuchElementException,
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from cluster import Cluster, wait_for

CHROMEDRIVER = os.environ.get("CAIRN_CHROMEDRIVER", "/usr/bin/chromedriver")
SHOTS = os.environ.get("CAIRN_SCREENSHOTS")
LOAD_SIZE = 1 << 30
GiB = 1 << 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dashboard"), http=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


class Writer(threading.Thread):
    """4 KiB writes (and a read after every fourth) at random offsets of a
    volume through its NBD export, paced at about `iops`, until stopped."""

    def __init__(self, uri, size, iops=400):
        super().__init__(daemon=True)
        self.uri, self.size, self.iops = uri, size, iops
        self.stopping = threading.Event()
        self.ops = 0
        self.error = None

    def run(self):
        try:
            h = nbd.NBD()
            h.connect_uri(self.uri)
            buf = os.urandom(4096)
            rnd = random.Random(7)
            blocks = self.size // 4096
            while not self.stopping.is_set():
                off = rnd.randrange(blocks) * 4096
                h.pwrite(buf, off)
                if self.ops % 4 == 0:
                    h.pread(4096, off)
                self.ops += 1
                if self.ops % 20 == 0:
                    self.stopping.wait(20 / self.iops)  # pacing, not a wait for a state
            h.shutdown()
        except Exception as e:  # noqa: BLE001 - reported by stop()
            self.error = e

    def stop(self):
        self.stopping.set()
        self.join(60)
        assert not self.is_alive(), "the writer did not stop"
        assert self.error is None, f"the writer failed: {self.error}"


@pytest.fixture(scope="module")
def writer(cluster):
    cluster.create_volume("load", LOAD_SIZE)  # mapped to sdc1, export listed
    w = Writer(cluster.uri("load"), LOAD_SIZE)
    w.start()
    yield w
    w.stop()


class Browser:
    """A headless Chromium on the dashboard, with its console and network
    logs kept for the last test."""

    def __init__(self, url):
        o = webdriver.ChromeOptions()
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                  "--no-first-run", "--disable-background-networking", "--disable-extensions"):
            o.add_argument(a)
        o.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
        self.url = url
        self.console = []      # every console entry
        self.requests = []     # every URL the page asked for
        self.expected = []     # (substring) console errors a test caused on purpose

    def collect(self):
        self.console += self.d.get_log("browser")
        for e in self.d.get_log("performance"):
            m = json.loads(e["message"])["message"]
            if m["method"] == "Network.requestWillBeSent":
                self.requests.append(m["params"]["request"]["url"])
            elif m["method"] == "Network.webSocketCreated":
                self.requests.append(m["params"]["url"])

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def wait(self, what, pred, timeout=20):
        """pred() until true, re-tried over a table redrawn under it."""
        return WebDriverWait(self.d, timeout, poll_frequency=0.2,
                             ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
                             ).until(lambda _: pred(), message=f"waiting for {what}")

    def click(self, css):
        def clicked():
            self.d.find_element(By.CSS_SELECTOR, css).click()
            return True
        WebDriverWait(self.d, 10, poll_frequency=0.1,
                      ignored_exceptions=(StaleElementReferenceException, NoSuchElementException,
                                          ElementClickInterceptedException)
                      ).until(lambda _: clicked(), message=f"clicking {css}")

    def fill(self, css, text):
        e = self.d.find_element(By.CSS_SELECTOR, css)
        e.clear()
        e.send_keys(text)

    def tab(self, name):
        self.click(f'.tabs a[data-tab="{name}"]')
        self.wait(f"the {name} view", lambda: self.js(
            "const v = document.querySelector(`.view[data-view='${arguments[0]}']`);"
            "return !v.hidden && v.querySelector('table, .empty, .card') !== null;", name))

    def dialog_open(self, dlg):
        return self.js("return document.getElementById(arguments[0]).open", dlg)

    def confirm(self):
        """Press Confirm in the confirmation dialog and wait for it to close
        (the action succeeded)."""
        self.wait("the confirmation dialog", lambda: self.dialog_open("dlg-confirm"))
        self.click("#confirm-ok")
        self.wait("the action to succeed", lambda: not self.dialog_open("dlg-confirm")
                  or self.js("return !document.getElementById('confirm-error').hidden"))
        err = self.js("return document.getElementById('confirm-error').hidden ? ''"
                      " : document.getElementById('confirm-error').textContent")
        assert not err, f"the action failed in the page: {err}"

    def shot(self, name):
        if SHOTS:
            os.makedirs(SHOTS, exist_ok=True)
            self.js("window.scrollTo(0, 0); document.querySelectorAll('.toast').forEach(t => t.remove())")
            self.d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))

    def sds_rows(self):
        return self.js("return [...document.querySelectorAll('#sds-list tr.sds-row')].map(r => ("
                       "{name: r.dataset.sds, state: r.dataset.state,"
                       " badge: r.querySelector('.sds-state .badge').textContent.trim()}))")

    def volume_rows(self):
        return {r["name"]: r for r in self.js(
            "return [...document.querySelectorAll('#volume-list tr.vol-row')].map(r => ("
            "{name: r.dataset.volume, size: Number(r.dataset.size),"
            " writer: r.querySelector('td.writer').dataset.writer,"
            " writer_text: r.querySelector('td.writer').textContent.trim(),"
            " access: Object.fromEntries([...r.querySelectorAll('.chip.map')].map(c => [c.dataset.sdc, c.dataset.access])),"
            " maps: [...r.querySelectorAll('.chip.map')].map(c => c.textContent.replace('×', '').trim())}))")}

    def sign_in(self, token):
        """Sign in through the form, and wait until the page shows it."""
        self.wait("the sign-in form", lambda: self.js(
            "return !document.getElementById('signin').hidden"))
        self.fill("#signin-token", token)
        self.click("#signin-submit")
        self.wait("signed in", lambda: self.js(
            "return document.body.classList.contains('signed-in')"))

    def signed_out(self):
        """The form shows, and nothing else of the page."""
        return self.js(
            "return !document.getElementById('signin').hidden"
            " && !document.body.classList.contains('signed-in')"
            " && [...document.querySelectorAll('.needs-auth')].every(e => e.offsetParent === null)")

    def banner(self):
        return self.js("const b = document.getElementById('banner');"
                       "return {health: b.dataset.health, text: b.textContent.trim()}")


@pytest.fixture(scope="module")
def page(cluster):
    b = Browser(cluster.http_url)
    try:
        b.d.get(cluster.http_url + "/")
        b.sign_in(cluster.http_admin_token)
        assert b.js("return document.getElementById('who-role').textContent") == "admin"
        yield b
    finally:
        b.d.quit()


def api_get(cluster, path):
    req = urllib.request.Request(cluster.http_url + "/api/v1/" + path,
                                 headers={"Authorization": f"Bearer {cluster.http_admin_token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def api_status(cluster):
    return api_get(cluster, "status")


def volumes(cluster):
    return {v["name"]: v for v in json.loads(cluster.cairn("volume", "list", json_out=True).stdout)}


def test_sign_in(cluster):
    """A browser of its own: signed out, wrong token, monitor token, a
    token refused later, sign out."""
    cluster.create_volume("ro-vol", 64 << 20)  # mapped to the SDC: an unmap control to show
    st = api_status(cluster)
    secrets = [st["cluster_id"], "ro-vol", cluster.sdc_name, "sds1"]

    def shows_no_data():
        text = b.js("return document.documentElement.outerHTML")
        return not any(x in text for x in secrets)
    b = Browser(cluster.http_url)
    try:
        b.d.get(cluster.http_url + "/")
        b.wait("the sign-in form alone", b.signed_out)
        assert shows_no_data()
        assert b.js("return sessionStorage.getItem('cairn-token')") is None
        b.collect()
        assert [u for u in b.requests if "/api/" in u] == [], b.requests  # asked for nothing
        # a wrong token: refused, with a message; still nothing shown
        b.fill("#signin-token", "f" * 64)
        b.click("#signin-submit")
        b.wait("the refusal", lambda: b.js(
            "const e = document.getElementById('signin-error'); return !e.hidden && e.textContent"))
        msg = b.js("return document.getElementById('signin-error').textContent")
        assert "does not accept this token (401" in msg, msg
        assert b.signed_out() and shows_no_data()
        assert b.js("return sessionStorage.getItem('cairn-token')") is None
        # a monitor token: the cluster, read-only
        b.fill("#signin-token", "")
        b.sign_in(cluster.http_monitor_token)
        assert b.js("return document.getElementById('who-role').textContent") == \
            "monitor · read-only"
        assert b.js("return document.body.classList.contains('read-only')")
        b.tab("volumes")
        b.wait("ro-vol listed", lambda: "ro-vol" in b.volume_rows())
        controls = b.js(
            "return [...document.querySelectorAll('#btn-create, [data-action=grow],"
            " [data-action=map], [data-action=remove], [data-action=unmap]')]"
            ".map(e => [e.dataset.action, e.disabled])")
        assert {a for a, _ in controls} == {"create", "grow", "map", "remove", "unmap"}, controls
        assert all(d for _, d in controls), controls
        b.tab("snapshots")
        assert b.js("return document.getElementById('btn-snap-create').disabled")
        b.tab("volumes")
        b.js("document.querySelector('[data-action=remove][data-volume=\"ro-vol\"]')"
             ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
        assert not b.dialog_open("dlg-confirm")
        assert "ro-vol" in volumes(cluster)
        # the token refused while signed in (as after the MDM's tokens
        # changed): the next poll's 401 signs the page out, with why
        b.js("sessionStorage.setItem('cairn-token', 'e'.repeat(64))")
        b.wait("signed out by the 401", lambda: b.signed_out() and b.js(
            "return document.getElementById('signin-error').textContent").startswith(
            "The MDM refused the token (401"))
        assert shows_no_data()
        assert b.js("return sessionStorage.getItem('cairn-token')") is None
        # signed in again, and out with the link
        b.sign_in(cluster.http_admin_token)
        b.tab("volumes")
        b.wait("ro-vol listed", lambda: "ro-vol" in b.volume_rows())
        assert not b.js("return document.getElementById('btn-create').disabled")
        b.click("#signout")
        b.wait("signed out", lambda: b.signed_out() and b.js(
            "return document.getElementById('signin-error').textContent") == "Signed out.")
        assert shows_no_data()
        assert b.js("return sessionStorage.getItem('cairn-token')") is None
    finally:
        b.d.quit()
        cluster.cairn("volume", "unmap", "ro-vol", "--sdc", cluster.sdc_name)
        cluster.cairn("volume", "remove", "ro-vol")


def test_page_shows_the_clusters_sdss_and_volumes(cluster, page):
    cluster.create_volume("vol-a", 2 * GiB, map_it=False)
    cluster.create_volume("vol-b", 512 << 20, thick=True, map_it=False)
    page.wait("the health banner", lambda: page.banner()["health"] == "ok")
    st = cluster.status()
    page.tab("sds")
    names = {s["name"] for s in st["sds"]}
    page.wait("every SDS listed and up", lambda: {r["name"]: r["state"] for r in page.sds_rows()}
              == {n: "up" for n in names})
    paths = {d["path"] for s in st["sds"] for d in s["devices"]}
    assert set(page.js("return [...document.querySelectorAll('#sds-list tr.dev-row')]"
                       ".map(r => r.dataset.device)")) == paths
    page.tab("volumes")
    cli = volumes(cluster)
    page.wait("every volume listed", lambda: {n: r["size"] for n, r in page.volume_rows().items()}
              == {n: v["size"] for n, v in cli.items()})
    page.tab("sdcs")
    page.wait("every SDC listed", lambda: set(page.js(
        "return [...document.querySelectorAll('#sdc-list tr[data-sdc]')].map(r => r.dataset.sdc)"))
        == {s["name"] for s in st["sdcs"]})
    page.tab("mdms")
    mdms = st.get("mdms") or api_status(cluster)["mdms"]  # (the CLI's JSON may not list them)
    page.wait("every MDM listed with its role and term", lambda: page.js(
        "return [...document.querySelectorAll('#mdm-list tr[data-mdm]')].map(r => ["
        " Number(r.dataset.mdm), r.cells[1].textContent.trim(), Number(r.cells[3].textContent)])")
        == [[m["id"], m["role"], m["term"]] for m in mdms])
    page.tab("overview")
    pools = {p["name"] for p in st["pools"]}
    page.wait("every pool's capacity", lambda: set(page.js(
        "return [...document.querySelectorAll('#pools .pool')].map(p => p.dataset.pool)")) == pools)


def test_volume_iops_chart_moves_under_a_writer(cluster, page, writer):
    page.tab("volumes")
    page.wait("the load volume", lambda: "load" in page.volume_rows())
    page.click('button[data-action="select"][data-volume="load"]')
    page.wait("the load volume's charts", lambda: page.js(
        "return document.getElementById('volume-detail').dataset.volume") == "load")

    def chart(name):
        return page.js("const c = document.getElementById(arguments[0]);"
                       "return {read: Number(c.dataset.read), write: Number(c.dataset.write),"
                       " points: Number(c.dataset.points), lines: c.querySelectorAll('path.line').length,"
                       " legend: c.querySelector('.chart-head').textContent}", name)
    page.wait("non-zero write IOPS in the chart", lambda: chart("chart-vol-iops")["write"] > 0, timeout=30)
    c = chart("chart-vol-iops")
    assert c["lines"] == 2 and "IOPS" in c["legend"]
    page.wait("a write latency in the chart", lambda: chart("chart-vol-lat")["write"] > 0)
    if SHOTS:  # a chart with some history to show
        page.wait("a minute of points", lambda: chart("chart-vol-iops")["points"] >= 40, timeout=60)
    page.wait("the I/O of the volume in its row", lambda: page.js(
        "return document.querySelector('td[data-live=iops][data-volume=load]').textContent") != "0 / 0")
    page.shot("volumes")
    assert writer.is_alive() and writer.ops > 0


def test_volume_actions_through_the_page(cluster, page):
    page.tab("volumes")
    # create: fill the form, submit, confirm in the dialog
    page.click("#btn-create")
    page.wait("the create dialog", lambda: page.dialog_open("dlg-create"))
    page.fill("#create-name", "web1")
    page.fill("#create-size", "3G")
    Select(page.d.find_element(By.ID, "create-pool")).select_by_value("default")
    page.shot("create-volume")
    page.click("#create-submit")
    page.wait("the confirmation", lambda: page.dialog_open("dlg-confirm"))
    assert "3 GiB" in page.d.find_element(By.ID, "confirm-body").text
    page.confirm()
    wait_for("web1 in the CLI", lambda: volumes(cluster).get("web1", {}).get("size") == 3 * GiB)
    assert volumes(cluster)["web1"]["thick"] is False
    page.wait("web1 in the page", lambda: page.volume_rows().get("web1", {}).get("size") == 3 * GiB)

    # a refusal shows the API's message, the one the CLI prints
    cli_msg = cluster.cairn("volume", "create", "web1", "--size", "1G", check=False).stderr.strip()
    assert cli_msg.startswith("cairn: "), cli_msg
    page.click("#btn-create")
    page.wait("the create dialog", lambda: page.dialog_open("dlg-create"))
    page.fill("#create-name", "web1")
    page.fill("#create-size", "1G")
    page.click("#create-submit")
    page.wait("the confirmation", lambda: page.dialog_open("dlg-confirm"))
    page.click("#confirm-ok")
    page.expected.append("api/v1/volumes")  # the browser logs the failed request
    page.wait("the API's error in the dialog", lambda: page.js(
        "const e = document.getElementById('confirm-error'); return !e.hidden && e.textContent"))
    assert cli_msg[len("cairn: "):] in page.d.find_element(By.ID, "confirm-error").text
    page.click("#confirm-cancel")
    page.wait("the dialog closed", lambda: not page.dialog_open("dlg-confirm"))

    # grow
    page.click('button[data-action="grow"][data-volume="web1"]')
    page.wait("the grow dialog", lambda: page.dialog_open("dlg-grow"))
    page.fill("#grow-size", "5G")
    page.click("#grow-submit")
    page.confirm()
    wait_for("web1 grown in the CLI", lambda: volumes(cluster)["web1"]["size"] == 5 * GiB)
    page.wait("web1 grown in the page", lambda: page.volume_rows()["web1"]["size"] == 5 * GiB)

    # map read-only, then unmap
    page.click('button[data-action="map"][data-volume="web1"]')
    page.wait("the map dialog", lambda: page.dialog_open("dlg-map"))
    Select(page.d.find_element(By.ID, "map-sdc")).select_by_value(cluster.sdc_name)
    page.click("#map-ro")
    page.click("#map-submit")
    page.confirm()
    wait_for("web1 mapped read-only in the CLI", lambda: volumes(cluster)["web1"]["mapped_to"]
             == [{"sdc": cluster.sdc_name, "read_only": True, "access": "single-writer"}])
    page.wait("the mapping in the page", lambda: page.volume_rows()["web1"]["maps"] == [f"{cluster.sdc_name} RO"])
    page.click(f'button[data-action="unmap"][data-volume="web1"][data-sdc="{cluster.sdc_name}"]')
    page.confirm()
    wait_for("web1 unmapped in the CLI", lambda: volumes(cluster)["web1"]["mapped_to"] == [])
    page.wait("no mapping in the page", lambda: page.volume_rows()["web1"]["maps"] == [])

    # remove
    page.click('button[data-action="remove"][data-volume="web1"]')
    page.confirm()
    wait_for("web1 gone from the CLI", lambda: "web1" not in volumes(cluster))
    page.wait("web1 gone from the page", lambda: "web1" not in page.volume_rows())


def test_volumes_show_writer_and_access(cluster, page):
    """A volume claimed by an NBD client's read-write open shows its writer
    SDC (and generation), its mapping marked writer and a read-only one
    RO; a shared volume shows no writer and its mappings shared; as the
    CLI's JSON has them."""
    cluster.add_sdc("sdcb")
    cluster.create_volume("att", 256 << 20)  # mapped to sdc1, single-writer
    cluster.cairn("volume", "map", "att", "--sdc", "sdcb", "--read-only")
    cluster.create_volume("atts", 256 << 20, map_it=False)
    for sdc in (cluster.sdc_name, "sdcb"):
        cluster.cairn("volume", "map", "atts", "--sdc", sdc, "--access", "shared")
    cluster.wait_export("att")
    h = nbd.NBD()
    h.connect_uri(cluster.uri("att"))  # read-write: claims the volume for sdc1
    try:
        h.pwrite(b"w" * 4096, 0)
        cli = volumes(cluster)
        assert cli["att"]["writer"] == cluster.sdc_name and cli["atts"]["writer"] == ""
        page.tab("volumes")
        page.wait("att's writer in the page",
                  lambda: page.volume_rows().get("att", {}).get("writer") == cluster.sdc_name)
        rows = page.volume_rows()
        att, atts = rows["att"], rows["atts"]
        assert att["writer_text"] == f"{cluster.sdc_name} g{cli['att']['writer_generation']}", att
        assert att["access"] == {cluster.sdc_name: "single-writer", "sdcb": "read-only"}, att
        assert sorted(att["maps"]) == sorted([f"{cluster.sdc_name} writer", "sdcb RO"]), att
        assert (atts["writer"], atts["writer_text"]) == ("", "none"), atts
        assert atts["access"] == {cluster.sdc_name: "shared", "sdcb": "shared"}, atts
        assert sorted(atts["maps"]) == sorted([f"{cluster.sdc_name} shared", "sdcb shared"]), atts
        # the writer moves with a takeover, and the page follows
        cluster.cairn("volume", "map", "att", "--sdc", "sdcb", "--takeover")
        page.wait("att's new writer in the page",
                  lambda: page.volume_rows()["att"]["writer"] == "sdcb")
        att = page.volume_rows()["att"]
        assert att["access"] == {cluster.sdc_name: "single-writer", "sdcb": "single-writer"}, att
        assert sorted(att["maps"]) == sorted([cluster.sdc_name, "sdcb writer"]), att
    finally:
        h.shutdown()


def test_killed_sds_shows_down(cluster, page, writer):
    page.tab("sds")
    cluster.daemons["sds2"].stop(signal.SIGKILL)
    page.wait("sds2 down in the page", lambda: {r["name"]: (r["state"], r["badge"]) for r in page.sds_rows()}
              .get("sds2") == ("down", "down"), timeout=30)
    assert next(s for s in cluster.status()["sds"] if s["name"] == "sds2")["state"] == "down"
    page.wait("the banner naming sds2", lambda: page.banner()["health"] in ("degraded", "error")
              and "sds2" in page.banner()["text"])
    page.shot("sds")
    # the rebuild that follows, in progress on the overview (unless it was
    # over before the page could show it)
    page.tab("overview")

    def rebuild():
        job = page.js("const j = document.querySelector('[data-job=rebuild]');"
                      "return {left: Number(j.dataset.bytesLeft), pct: j.querySelector('.job-pct').textContent}")
        if job["left"] > 0:
            return job
        p = cluster.status()["pools"][0]  # over: every PG has its copies back
        return {"over": True} if p["pgs_fully_protected"] == p["pg_count"] else None
    job = page.wait("the rebuild in the page", rebuild, timeout=30)
    assert job.get("over") or job["pct"].endswith("%"), job
    if SHOTS:  # the overview while the rebuild runs, if it is still running
        try:
            page.wait("a rebuild in progress, at a known rate", lambda: page.js(
                "const j = document.querySelector('[data-job=rebuild]').dataset;"
                "return Number(j.bytesLeft) > 0 && Number(j.rate) > 0"), timeout=15)
        except TimeoutException:
            pass
        page.shot("overview")
    cluster.start_sds(1)
    page.tab("sds")
    page.wait("sds2 up again in the page", lambda: {r["name"]: r["state"] for r in page.sds_rows()}
              .get("sds2") == "up", timeout=30)
    wait_for("sds2 up in the CLI", lambda: next(s for s in cluster.status()["sds"]
                                                if s["name"] == "sds2")["state"] == "up")
    # and the cluster healthy again once every PG has its copies back
    page.wait("the banner healthy again", lambda: page.banner()["health"] == "ok", timeout=90)
    p = cluster.status()["pools"][0]
    assert p["pgs_fully_protected"] == p["pg_count"], p


def test_no_other_host_and_no_console_error(cluster, page):
    page.collect()
    origin = cluster.http_url + "/"
    assert page.requests, "the performance log recorded no request"
    others = [u for u in page.requests if not u.startswith(origin)]
    assert not others, f"requests to other hosts: {others}"
    # nor any reference to one in the page itself
    refs = page.js("return [...document.querySelectorAll('[src], [href]')]"
                   ".map(e => e.src || e.href)")
    assert all(r.startswith(origin) for r in refs), refs
    errors = [e for e in page.console if e["level"] == "SEVERE"
              and not any(x in e["message"] and "409" in e["message"] for x in page.expected)]
    assert not errors, f"console errors: {errors}"
