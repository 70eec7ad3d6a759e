"""The dashboard's Snapshots view (mgmt/web/snapshots.js) in headless
Chromium against a real cluster, as test_dashboard.py drives the rest of
the page (its Browser): a snapshot taken, reverted, cloned and removed
through the page, and a clone flattened there, each as the REST API (and,
for the revert, the data read back over NBD) then sees; the MDM's refusals
(a duplicate name, a revert while mapped read-write, the removal of a
snapshot a clone reads through) in the dialog, in the CLI's words; a slow
flatten's progress; and no console error but the refusals caused on
purpose. Every wait is explicit.

CAIRN_SCREENSHOTS=DIR saves snapshots.png there (docs/img/ has a copy)."""
import json
import os
import urllib.request

import nbd
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from cluster import Cluster, wait_for
from test_dashboard import Browser, api_get, volumes

MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("dashboard-snap"), http=True)
    try:
        c.start()
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def page(cluster):
    b = Browser(cluster.http_url)
    try:
        b.d.get(cluster.http_url + "/")
        b.sign_in(cluster.http_admin_token)
        yield b
    finally:
        b.d.quit()


def snapshots(cluster, volume):
    """VOL@NAME -> the snapshot, as the REST API lists them."""
    return {f"{s['volume']}@{s['name']}": s for s in api_get(cluster, f"snapshots?volume={volume}")}


def nbd_io(cluster, vol, data=None, length=MiB):
    """Write data at offset 0 of vol's export, or read length bytes there."""
    h = nbd.NBD()
    h.connect_uri(cluster.uri(vol))
    try:
        if data is None:
            return h.pread(length, 0)
        h.pwrite(data, 0)
        h.flush()
    finally:
        h.shutdown()


def test_snapshot_actions_through_the_page(cluster, page):
    """Take a snapshot, revert to it and remove it through the Snapshots
    view, each seen by the REST API (and the revert by the data read
    back); a duplicate name and a revert of a volume mapped read-write
    show the MDM's refusal, the CLI's words, in the dialog; a clone made
    in the page shows its source (and blocks the snapshot's removal) until
    it is flattened in the page; a slow flatten shows its progress."""
    cluster.create_volume("snapv", 64 * MiB)  # mapped read-write to sdc1
    first, second = os.urandom(MiB), os.urandom(MiB)
    nbd_io(cluster, "snapv", first)
    page.tab("snapshots")

    def snap_rows():
        return {r["snap"]: r for r in page.js(
            "return [...document.querySelectorAll('#snapshot-list tr.snap-row')].map(r => ("
            "{snap: r.dataset.snap, size: Number(r.dataset.size), written: Number(r.dataset.written),"
            " size_text: r.querySelector('.snap-size').textContent, created: r.dataset.created}))")}

    def take(name):
        page.click("#btn-snap-create")
        page.wait("the snapshot dialog", lambda: page.dialog_open("dlg-snap"))
        Select(page.d.find_element(By.ID, "snap-volume")).select_by_value("snapv")
        page.fill("#snap-name", name)
        page.click("#snap-submit")
        page.wait("the confirmation", lambda: page.dialog_open("dlg-confirm"))
        body = page.d.find_element(By.ID, "confirm-body").text
        assert f"snapshot {name} of volume snapv" in body, body

    def refused(expected):
        """Confirm, and wait for the API's refusal in the dialog."""
        page.click("#confirm-ok")
        page.wait("the API's error in the dialog", lambda: page.js(
            "const e = document.getElementById('confirm-error'); return !e.hidden && e.textContent"))
        msg = page.d.find_element(By.ID, "confirm-error").text
        assert expected in msg, (expected, msg)
        assert page.dialog_open("dlg-confirm")
        page.click("#confirm-cancel")
        page.wait("the dialog closed", lambda: not page.dialog_open("dlg-confirm"))

    # take: the snapshot is in the API's list, and in the page with its size
    take("s1")
    page.confirm()
    wait_for("snapv@s1 in the API", lambda: "snapv@s1" in snapshots(cluster, "snapv"))
    assert snapshots(cluster, "snapv")["snapv@s1"]["size"] == 64 * MiB
    page.wait("snapv@s1 in the page", lambda: snap_rows().get("snapv@s1", {}).get("size") == 64 * MiB)
    row = snap_rows()["snapv@s1"]
    assert row["size_text"] == "64 MiB" and row["created"] == \
        snapshots(cluster, "snapv")["snapv@s1"]["created"], row
    # its written bytes (what was written before it), as the SDSs report them
    page.wait("s1's written bytes in the page", lambda: snap_rows()["snapv@s1"]["written"] >= MiB,
              timeout=30)

    # the same name again: the MDM's refusal, as the CLI prints it
    cli_msg = cluster.cairn("snapshot", "create", "snapv", "s1", check=False).stderr.strip()
    assert cli_msg.startswith("cairn: ") and "already has a snapshot named 's1'" in cli_msg, cli_msg
    take("s1")
    page.expected.append("api/v1/snapshots")  # the browser logs the refused request (409)
    refused(cli_msg[len("cairn: "):])
    assert list(snapshots(cluster, "snapv")) == ["snapv@s1"]

    # revert while the volume is mapped read-write: refused, with the reason
    nbd_io(cluster, "snapv", second)
    revert = 'button[data-action="snap-revert"][data-volume="snapv"][data-snapshot="s1"]'
    cli_msg = cluster.cairn("volume", "revert", "snapv", "--to", "s1", check=False).stderr.strip()
    assert cli_msg.startswith("cairn: ") and "mapped" in cli_msg, cli_msg
    page.click(revert)
    page.wait("the revert confirmation", lambda: page.dialog_open("dlg-confirm"))
    assert "mapped read-write to " + cluster.sdc_name in page.d.find_element(By.ID, "confirm-body").text
    page.expected.append("api/v1/volumes/snapv/revert")
    refused(cli_msg[len("cairn: "):])
    assert nbd_io(cluster, "snapv") == second  # nothing reverted

    # unmapped, the revert goes through: the volume reads what s1 holds
    cluster.cairn("volume", "unmap", "snapv", "--sdc", cluster.sdc_name)
    page.click(revert)
    page.confirm()
    cluster.cairn("volume", "map", "snapv", "--sdc", cluster.sdc_name)
    cluster.wait_export("snapv")
    assert nbd_io(cluster, "snapv") == first
    assert "snapv@s1" in snapshots(cluster, "snapv")

    # a clone made in the page: the API has it reading through s1, the page
    # shows its source among the clones and on its volume row, and s1
    # cannot go while it does (the refusal names it)
    page.click('button[data-action="snap-clone"][data-volume="snapv"][data-snapshot="s1"]')
    page.wait("the clone dialog", lambda: page.dialog_open("dlg-clone"))
    page.fill("#clone-name", "snapc")
    page.click("#clone-submit")
    page.wait("the confirmation", lambda: page.dialog_open("dlg-confirm"))
    body = page.d.find_element(By.ID, "confirm-body").text
    assert "snapv@s1" in body and "snapc" in body, body
    page.confirm()
    wait_for("snapc, a clone of snapv@s1, in the API",
             lambda: api_get(cluster, "volumes/snapc").get("clone_of") == "snapv@s1")
    assert volumes(cluster)["snapc"]["size"] == 64 * MiB
    page.wait("snapc among the clones", lambda: page.js(
        "const r = document.querySelector('#clone-list tr.clone-row[data-volume=snapc]');"
        "return r && r.dataset.cloneOf") == "snapv@s1")
    remove = 'button[data-action="snap-remove"][data-volume="snapv"][data-snapshot="s1"]'
    page.click(remove)
    page.wait("the remove confirmation", lambda: page.dialog_open("dlg-confirm"))
    refused("volume 'snapc' is a clone of snapshot 'snapv@s1'")
    assert "snapv@s1" in snapshots(cluster, "snapv")
    page.tab("volumes")
    page.wait("snapc's source on its row", lambda: page.js(
        "const c = document.querySelector('tr.vol-row[data-volume=snapc] .clone-of');"
        "return c && c.dataset.cloneOf") == "snapv@s1")

    # a flatten under way (a slow one, through the API) shows its progress
    # on the volume's row and among the clones
    cluster.cairn("volume", "clone", "snapv@s1", "snapd")
    req = urllib.request.Request(
        cluster.http_url + "/api/v1/volumes/snapd/flatten", data=b'{"rate": "64K"}', method="POST",
        headers={"Authorization": f"Bearer {cluster.http_admin_token}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.load(r)["name"] == "snapd"
    page.wait("snapd flattening on its row", lambda: page.js(
        "const f = document.querySelector('tr.vol-row[data-volume=snapd] .flatten');"
        "return f && f.textContent.startsWith('flattening ') && f.textContent.endsWith('%')"))
    page.tab("snapshots")
    page.wait("snapd flattening among the clones", lambda: page.js(
        "const r = document.querySelector('#clone-list tr.clone-row[data-volume=snapd]');"
        "return r && r.dataset.flattening === '1' && r.querySelector('.flatten-pct') !== null"
        " && r.querySelector('[data-action=snap-flatten]').disabled"))
    page.shot("snapshots")

    # flatten snapc in the page: it stops being a clone, in the API and the page
    page.click('button[data-action="snap-flatten"][data-volume="snapc"]')
    page.wait("the flatten confirmation", lambda: page.dialog_open("dlg-confirm"))
    assert "a clone of snapv@s1" in page.d.find_element(By.ID, "confirm-body").text
    page.confirm()
    wait_for("snapc flattened in the API", lambda: not api_get(cluster, "volumes/snapc").get("clone_of"),
             timeout=60)
    page.wait("snapc gone from the clones", lambda: page.js(
        "return document.querySelector('#clone-list tr.clone-row[data-volume=snapc]') === null"))
    cluster.cairn("volume", "remove", "snapc")
    cluster.cairn("volume", "remove", "snapd")  # (still flattening)
    page.wait("snapd gone from the clones", lambda: page.js(
        "return document.querySelector('#clone-list tr.clone-row[data-volume=snapd]') === null"))

    # remove: gone from the API's list and from the page
    page.wait("snapv@s1 in the page", lambda: "snapv@s1" in snap_rows())
    page.click(remove)
    page.confirm()
    wait_for("snapv@s1 gone from the API", lambda: "snapv@s1" not in snapshots(cluster, "snapv"))
    page.wait("snapv@s1 gone from the page", lambda: "snapv@s1" not in snap_rows())
    assert nbd_io(cluster, "snapv") == first  # the volume keeps its data


def test_no_console_error(cluster, page):
    """Last: the JS console logged no error but the refusals caused above."""
    page.collect()
    assert any("/api/v1/snapshots" in u for u in page.requests), page.requests
    errors = [e for e in page.console if e["level"] == "SEVERE"
              and not any(x in e["message"] and "409" in e["message"] for x in page.expected)]
    assert not errors, f"console errors: {errors}"
