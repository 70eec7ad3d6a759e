"""The cairn.storage Ansible collection (deploy/ansible) against a real
cluster: a playbook that makes a fault set, a pool, a device, a volume and
its mapping changes the cluster once and nothing the second time; an SDS
and an MDM are added, changed and removed the same way; --check removes
nothing; a bad task fails with the CLI's message, not a traceback;
ansible-doc reads every module."""
import json
import os
import re
import shutil
import subprocess

import pytest

from cluster import Cluster, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
COLLECTIONS = os.path.join(ROOT, "deploy/ansible")
MODULES = ["pool", "fault_set", "sds", "device", "volume", "mapping", "mdm", "sdc", "info"]
PYTHON = "/usr/bin/python3"


def test_ansible_is_installed():
    assert shutil.which("ansible-playbook"), "ansible-core is not installed (deploy/deps.sh test)"


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    # SDS 4 is left for the sds module to add
    cl = Cluster(tmp_path_factory.mktemp("ansible"), sds_sizes=(1 << 30,) * 4, pgs=32, initial=3)
    try:
        cl.start()
        yield cl
    finally:
        cl.shutdown()


def ansible_env(tmp):
    e = dict(os.environ)
    e.pop("CAIRN_MDM", None)
    e.pop("CAIRN_CREDENTIALS", None)
    e.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR="1",
             ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "ansible-local"),
             ANSIBLE_REMOTE_TEMP=os.path.join(tmp, "ansible-remote"),
             ANSIBLE_RETRY_FILES_ENABLED="0")
    return e


def play(c, tmp, name, tasks, *extra, env=None):
    """Run a one-play playbook of tasks (YAML text, indented by 4) on
    localhost; (exit code, output, (changed, failed) of the recap). env:
    the MDMs and credential come from it, not from module_defaults."""
    defaults = f"""\
  module_defaults:
    group/cairn.storage.all:
      cli_path: {c.build}/mgmt/cairn
      mdm: {json.dumps(c.mdm_addrs)}
      credentials: {c.credential("admin", "admin")}
"""
    path = os.path.join(tmp, f"{name}.yml")
    with open(path, "w") as f:
        f.write(f"""\
- hosts: localhost
  connection: local
  gather_facts: false
{"" if env else defaults}  tasks:
{tasks}""")
    r = subprocess.run(["ansible-playbook", "-i", "localhost,", "-e",
                        f"ansible_python_interpreter={PYTHON}", path, *extra],
                       capture_output=True, text=True, env=dict(ansible_env(tmp), **(env or {})),
                       timeout=120)
    out = r.stdout + r.stderr
    m = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", out)
    assert m, out
    return r.returncode, out, (int(m.group(1)), int(m.group(2)))


def test_ansible_doc(tmp_path):
    for m in MODULES:
        r = subprocess.run(["ansible-doc", f"cairn.storage.{m}"], capture_output=True,
                           text=True, env=ansible_env(str(tmp_path)), timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "cli_path" in r.stdout and "EXAMPLES" in r.stdout, r.stdout


def test_playbook(c, tmp_path):
    tmp = str(tmp_path)
    dev = os.path.join(c.dir, "sds1-extra.img")
    with open(dev, "wb") as f:
        f.truncate(1 << 30)
    tasks = """\
    - cairn.storage.fault_set: {name: rack1}
    - cairn.storage.pool: {name: fast, copies: 2, pgs: 16, overcommit: 250}
    - cairn.storage.device: {sds: sds1, path: DEV, pool: default}
    - cairn.storage.sds: {name: sds1, addr: "SDS1", devices: [DEV]}
    - cairn.storage.volume: {name: vol1, size: SIZE}
    - cairn.storage.mapping: {volume: vol1, sdc: SDC}
    - cairn.storage.mdm: {id: 1, addr: "MDM1", raft_addr: "RAFT1"}
    - cairn.storage.info:
      register: cluster
    - ansible.builtin.assert:
        that: "'vol1' in (cluster.volumes | map(attribute='name'))"
      when: not ansible_check_mode
"""
    for k, v in (("DEV", dev), ("SDS1", c.sds_addrs[0]), ("SDC", c.sdc_name),
                 ("MDM1", c.mdm_addrs[0]), ("RAFT1", c.raft_addr)):
        tasks = tasks.replace(k, v)
    # --check first: every change reported (the sds task's too, as the device
    # task made none), none made, and the mapping of a volume not there yet
    # is no failure
    rc, out, (changed, failed) = play(c, tmp, "make", tasks.replace("SIZE", "64M"), "--check")
    assert rc == 0 and failed == 0 and changed == 6, out
    assert json.loads(c.cairn("volume", "list", json_out=True).stdout) == []
    assert json.loads(c.cairn("fault-set", "list", json_out=True).stdout) == []
    assert "fast" not in [p["name"] for p in json.loads(c.cairn("pool", "list",
                                                                json_out=True).stdout)]
    # the sds and mdm tasks find theirs as asked: no change
    rc, out, (changed, failed) = play(c, tmp, "make", tasks.replace("SIZE", "64M"))
    assert rc == 0 and failed == 0 and changed == 5, out
    vol = json.loads(c.cairn("volume", "show", "vol1", json_out=True).stdout)
    assert vol["size"] == 64 << 20, vol
    tasks = tasks.replace("SIZE", "96M")  # grows it
    rc, out, (changed, failed) = play(c, tmp, "make", tasks)
    assert rc == 0 and failed == 0 and changed == 1, out
    vols = {v["name"]: v for v in json.loads(c.cairn("volume", "list", json_out=True).stdout)}
    assert vols["vol1"]["size"] == 96 << 20 and vols["vol1"]["pool"] == "default"
    assert vols["vol1"]["mapped_to"] == [{"sdc": c.sdc_name, "read_only": False,
                                          "access": "single-writer"}]
    assert "rack1" in [f["name"] for f in json.loads(c.cairn("fault-set", "list",
                                                             json_out=True).stdout)]
    pools = {p["name"]: p for p in json.loads(c.cairn("pool", "list", json_out=True).stdout)}
    assert pools["fast"]["copies"] == 2 and pools["fast"]["overcommit_pct"] == 250
    sds1 = [s for s in json.loads(c.cairn("sds", "list", json_out=True).stdout)
            if s["name"] == "sds1"][0]
    assert dev in [d["path"] for d in sds1["devices"]]

    rc, out, (changed, failed) = play(c, tmp, "make", tasks)
    assert rc == 0 and failed == 0 and changed == 0, out

    # --check: reported as changes, none made
    rc, out, (changed, failed) = play(c, tmp, "remove", """\
    - cairn.storage.mapping: {volume: vol1, sdc: %s, state: absent}
    - cairn.storage.volume: {name: vol1, state: absent}
    - cairn.storage.fault_set: {name: rack1, state: absent}
""" % c.sdc_name, "--check")
    assert rc == 0 and failed == 0 and changed == 3, out
    vol = json.loads(c.cairn("volume", "show", "vol1", json_out=True).stdout)
    assert vol["size"] == 96 << 20 and vol["mapped_to"], vol
    assert "rack1" in [f["name"] for f in json.loads(c.cairn("fault-set", "list",
                                                             json_out=True).stdout)]


def test_sdc_approved_already(c, tmp_path):
    """The cluster's SDC is approved (Cluster.start approves it): no change."""
    rc, out, (changed, failed) = play(c, str(tmp_path), "sdc",
                                      f"    - cairn.storage.sdc: {{name: {c.sdc_name}, wait: 0}}\n")
    assert rc == 0 and failed == 0 and changed == 0, out


def test_info_from_the_environment(c, tmp_path):
    """No mdm or credentials options: the CLI takes $CAIRN_MDM and
    $CAIRN_CREDENTIALS, as it does for an operator."""
    env = dict(CAIRN_MDM=c.mdm_list, CAIRN_CREDENTIALS=c.credential("admin", "admin"))
    rc, out, (changed, failed) = play(c, str(tmp_path), "info", """\
    - cairn.storage.info: {cli_path: %s/mgmt/cairn, gather: [sdcs, mdms]}
      register: i
    - ansible.builtin.assert:
        that:
          - i.status.cluster_id | length > 0
          - i.sdcs | map(attribute='name') | list == ['%s']
          - i.mdms | length == 1
          - i.pools is not defined
""" % (c.build, c.sdc_name), env=env)
    assert rc == 0 and failed == 0 and changed == 0, out


def sds_list(c):
    return {s["name"]: s for s in json.loads(c.cairn("sds", "list", json_out=True).stdout)}


def test_sds(c, tmp_path):
    tmp = str(tmp_path)
    c.start_sds(3)
    log = os.path.join(c.dir, "sds4.log")

    def connected():
        if not os.path.exists(log):
            return False
        with open(log) as f:
            return "connected to the MDM" in f.read()
    wait_for("sds4 connected to the MDM", connected)  # sds add has it probe its device
    dev = os.path.join(c.dir, "dev4.img")
    with open(dev, "wb") as f:
        f.truncate(1 << 30)
    add = """\
    - cairn.storage.fault_set: {name: rack4}
    - cairn.storage.sds: {name: sds4, addr: "%s", devices: [%s], fault_set: rack4, pool: default}
""" % (c.sds_addrs[3], dev)
    # --check: a device of an SDS an earlier task would add is a change too
    rc, out, (changed, failed) = play(
        c, tmp, "sds", add + "    - cairn.storage.device: {sds: sds4, path: %s-b}\n" % dev,
        "--check")
    assert rc == 0 and failed == 0 and changed == 3, out
    assert "sds4" not in sds_list(c)
    for want in (2, 0):
        rc, out, (changed, failed) = play(c, tmp, "sds", add)
        assert rc == 0 and failed == 0 and changed == want, out
    s = sds_list(c)["sds4"]
    assert s["fault_set"] == "rack4" and [d["path"] for d in s["devices"]] == [dev], s
    for on, state in ((True, "maintenance"), (False, "up")):
        rc, out, (changed, failed) = play(c, tmp, "maint", """\
    - cairn.storage.sds: {name: sds4, maintenance: %s}
""" % str(on).lower())
        assert rc == 0 and failed == 0 and changed == 1, out
        assert sds_list(c)["sds4"]["state"] == state
    # another address for it is refused with the reason
    rc, out, (changed, failed) = play(c, tmp, "readdr", """\
    - cairn.storage.sds: {name: sds4, addr: "127.0.0.1:1"}
""")
    assert failed == 1 and "remove and add it again to change it" in out, out
    remove = "    - cairn.storage.sds: {name: sds4, state: absent}\n"
    rc, out, (changed, failed) = play(c, tmp, "unsds", remove, "--check")
    assert rc == 0 and failed == 0 and changed == 1, out
    assert not sds_list(c)["sds4"]["removing"]
    rc, out, (changed, failed) = play(c, tmp, "unsds", remove)
    assert rc == 0 and failed == 0 and changed == 1, out
    assert "sds4" not in sds_list(c) or sds_list(c)["sds4"]["removing"]
    rc, out, (changed, failed) = play(c, tmp, "unsds", remove)
    assert rc == 0 and failed == 0 and changed == 0, out


@pytest.mark.parametrize("task,message", [
    ("cairn.storage.volume: {name: vol2, size: 64M, pool: nosuch}",
     "cairn: no storage pool named 'nosuch'"),
    ("cairn.storage.volume: {name: vol1, size: 32M}", "a volume cannot shrink"),
    ("cairn.storage.mapping: {volume: nosuch, sdc: sdc1}", "cairn: no volume named 'nosuch'"),
    ("cairn.storage.sdc: {name: nosuch, wait: 1}", "SDC 'nosuch' has not registered with the MDM"),
    ("cairn.storage.mapping: {volume: vol1, sdc: sdc1, access: shared}",
     "volume 'vol1' is mapped single-writer to SDC 'sdc1'; unmap it first to map it shared"),
])
def test_failure_is_the_cli_message(c, tmp_path, task, message):
    c.cairn("volume", "create", "vol1", "--size", "96M", check=False)  # for the shrink
    rc, out, (changed, failed) = play(c, str(tmp_path), "fail", f"    - {task}\n")
    assert rc != 0 and failed == 1 and changed == 0, out
    assert message in out, out
    assert "Traceback" not in out and "MODULE FAILURE" not in out, out


class LoneMdmCluster(Cluster):
    """Two MDM addresses, but start() leaves MDM 2 out: the test adds it."""

    def form_mdms(self):
        pass


def test_mdm_add_remove(tmp_path):
    c = LoneMdmCluster(tmp_path / "cluster", sds_sizes=(256 << 20,) * 3, pgs=16, mdms=2)
    c.start()
    try:
        tmp = str(tmp_path)
        c.start_peer_mdm(2)  # with --join
        add = '    - cairn.storage.mdm: {id: 2, addr: "%s", raft_addr: "%s"}\n' % (
            c.mdm_addrs[1], c.raft_addrs[1])
        for want in (1, 0):
            rc, out, (changed, failed) = play(c, tmp, "mdm", add)
            assert rc == 0 and failed == 0 and changed == want, out
        ms = {m["id"]: m for m in json.loads(c.cairn("mdm", "list", json_out=True).stdout)}
        assert ms[2]["member"] == "voter" and ms[2]["raft_addr"] == c.raft_addrs[1], ms
        remove = "    - cairn.storage.mdm: {id: 2, state: absent}\n"
        rc, out, (changed, failed) = play(c, tmp, "unmdm", remove, "--check")
        assert rc == 0 and failed == 0 and changed == 1, out
        assert 2 in [m["id"] for m in json.loads(c.cairn("mdm", "list", json_out=True).stdout)]
        if c.mdm_leader() == 2:  # a leader is not removed (the CLI says so)
            c.cairn("mdm", "transfer-leadership", "1")
        rc, out, (changed, failed) = play(c, tmp, "unmdm", remove)
        assert rc == 0 and failed == 0 and changed == 1, out
        assert [m["id"] for m in json.loads(c.cairn("mdm", "list", json_out=True).stdout)] == [1]
        c.daemons["mdm2"].stop()
    finally:
        c.shutdown()
