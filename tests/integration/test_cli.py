"""The cairn CLI against a real cluster: options and global options in any
order, the usage text, and the exit codes and messages of bad invocations
(which must leave the cluster as it was)."""
import json
import os
import subprocess

from cluster import BUILD, free_ports, lone_credential, wait_for

CAIRN = f"{BUILD}/mgmt/cairn"

# The usage text, byte for byte: it is generated from the command table.
USAGE = """\
usage: cairn [--mdm ADDR[,ADDR...]] [--mdm-timeout SECONDS] [--local]
             [--credentials FILE] [--json] COMMAND
       cairn --help | --version

  status [--watch [--interval SECONDS]]      cluster overview;
                                             --watch: redrawn every SECONDS (2)
  top [--interval SECONDS] [--count N]       live per-volume IOPS, bandwidth, latency;
                                             --count: stop after N refreshes
  rebuild wait [--timeout SECONDS]           until every PG has all its copies
  rebalance wait [--timeout SECONDS]         until no copy is left to move
  credentials init-ca FILE                   make the cluster's CA key (once; keep it safe)
  credentials issue --ca FILE --role ROLE --name NAME --out FILE
                                             a credential signed by the CA;
                                             ROLE: mdm, sds, sdc, admin or monitor
  credentials show FILE
  pool create NAME [--copies 2|3] [--pgs N] [--overcommit PCT]
  pool set NAME --overcommit PCT
  pool list
  sds add --name NAME --addr HOST:PORT --device PATH [--device PATH]...
          [--fault-set NAME] [--pool NAME]
  sds list
  sds maintenance enter|exit NAME            take an SDS out for a reboot without a rebuild
  sds remove NAME [--force]                  drain its copies elsewhere, then forget it;
                                             --force: forget it now, rebuild its copies
  device add --sds NAME --device PATH [--device PATH]... [--pool NAME]
  device remove --sds NAME --device PATH [--force]
  device list
  fault-set add|remove NAME                  SDSs that may fail together (--fault-set)
  fault-set list
  volume create NAME --size SIZE [--pool NAME] [--thick]
  volume list
  volume show NAME
  volume grow NAME --size SIZE
  volume remove NAME
  volume check-copies NAME                   compare every copy of every extent
  volume locate NAME --offset BYTES          the PG, epoch and copies holding an offset
  volume map NAME --sdc SDC [--read-only] [--access MODE] [--takeover]
                                             MODE: single-writer (default) or shared
  volume unmap NAME --sdc SDC
  volume revert NAME --to SNAPSHOT           back to a snapshot's data (not mapped read-write)
  volume clone VOLUME@SNAPSHOT NEWVOL        writable at once, sharing the snapshot's data
  volume flatten NAME [--rate MIB/S] [--wait]
                                             copy what a clone shares into it, in the background;
                                             --rate: per SDS (64); --wait: with progress, until done
  volume copy SRC[@SNAPSHOT] DST [--rate MIB/S] [--wait]
                                             made by the SDSs (no client); of SRC now, or of a snapshot
  snapshot create VOLUME NAME | --group NAME VOLUME...
                                             crash-consistent; --group: one cut across the volumes
  snapshot list [VOLUME]
  snapshot show VOLUME@NAME
  snapshot remove VOLUME@NAME                its data is merged into the next newer layer
  sdc list
  sdc approve NAME                           let a new SDC be mapped (restricted mode)
  mdm list                                   the MDM cluster: each MDM's role, term, indexes
  mdm add --id N --addr HOST:PORT --raft-addr HOST:PORT
                                             add an MDM started with --join;
                                             returns once it is a voter
  mdm remove ID                              refused if it would lose quorum
  mdm transfer-leadership [ID]               hand leadership to ID (or the most
                                             up-to-date voter)
  cluster set --restricted-sdc on|off        on: a new SDC waits for sdc approve

SIZE takes K, M, G, T, P suffixes (powers of 1024). --json prints JSON.
The MDM address also comes from $CAIRN_MDM; given several (a,b,c),
cairn finds the leader; --mdm-timeout: how long it waits for a leader
(an election) and its answer, in all (30). --local: a query is answered
by the MDM asked, from its own copy of the state. The credential
(--credentials FILE) comes from $CAIRN_CREDENTIALS.
"""

OK_JSON = '{"ok":true}\n'


def raw(*args, env=None, cluster=None):
    """The cairn binary with exactly these arguments (no --mdm added), and a
    credential in $CAIRN_CREDENTIALS: the cluster's admin one, or one of
    another CA (enough for commands that never reach an MDM)."""
    e = dict(os.environ)
    e.pop("CAIRN_MDM", None)
    e["CAIRN_CREDENTIALS"] = (cluster.credential("admin", "admin") if cluster
                              else lone_credential())
    e.update(env or {})
    return subprocess.run([CAIRN] + list(args), capture_output=True, text=True, timeout=60,
                          env=e)


def ok(cluster, *args):
    r = cluster.cairn(*args)
    return r.stdout


def volume(cluster, name):
    return json.loads(ok(cluster, "--json", "volume", "show", name))


def volume_names(cluster):
    return {v["name"] for v in cluster.status()["volumes"]}


def test_usage(cluster):
    for args in ([], ["--help"], ["volume", "create", "--help"], ["--json", "--help", "status"]):
        r = raw(*args)
        assert r.returncode == 2, (args, r.returncode)
        assert r.stderr == USAGE, (args, r.stderr)
        assert r.stdout == ""


def test_volume_options_in_any_order(cluster):
    assert ok(cluster, "volume", "create", "--size", "8M", "cli1", "--thick") == "ok\n"
    assert ok(cluster, "volume", "create", "cli2", "--size=8M", "--pool", "default") == "ok\n"
    assert ok(cluster, "--json", "volume", "create", "--size", "4M", "cli3") == OK_JSON
    v = volume(cluster, "cli1")
    assert v["size"] == 8 << 20 and v["thick"] and v["pool"] == "default", v
    assert not volume(cluster, "cli2")["thick"]
    assert volume(cluster, "cli3")["size"] == 4 << 20

    # --json before, between and after
    shows = [ok(cluster, *a) for a in (["--json", "volume", "show", "cli1"],
                                       ["volume", "--json", "show", "cli1"],
                                       ["volume", "show", "--json", "cli1"],
                                       ["volume", "show", "cli1", "--json"])]
    assert len(set(shows)) == 1 and json.loads(shows[0])["name"] == "cli1", shows
    text = ok(cluster, "volume", "show", "cli1")
    assert text.splitlines()[0].split() == ["VOLUME", "POOL", "SIZE", "TYPE", "MAPPED", "TO"]
    assert text.splitlines()[1].split()[0] == "cli1" and "thick" in text, text

    sdc = cluster.sdc_name
    assert ok(cluster, "volume", "map", "cli1", "--sdc", sdc, "--read-only") == "ok\n"
    assert ok(cluster, "volume", "map", "--read-only", "--sdc", sdc, "cli2") == "ok\n"
    assert ok(cluster, "volume", "map", "cli3", f"--sdc={sdc}", "--json") == OK_JSON
    assert volume(cluster, "cli1")["mapped_to"] == [{"sdc": sdc, "read_only": True, "access": "single-writer"}]
    assert volume(cluster, "cli2")["mapped_to"] == [{"sdc": sdc, "read_only": True, "access": "single-writer"}]
    assert volume(cluster, "cli3")["mapped_to"] == [{"sdc": sdc, "read_only": False, "access": "single-writer"}]
    sdcs = json.loads(ok(cluster, "sdc", "list", "--json"))
    assert {"cli1", "cli2", "cli3"} <= set(next(s for s in sdcs if s["name"] == sdc)["volumes"])

    assert ok(cluster, "volume", "grow", "--size", "12M", "cli3") == "ok\n"
    assert volume(cluster, "cli3")["size"] == 12 << 20
    loc = json.loads(ok(cluster, "volume", "locate", "--offset", "5M", "--json", "cli1"))
    assert loc["extent"] == 5 and len(loc["copies"]) == 2, loc
    r = cluster.cairn("volume", "check-copies", "--json", "cli3")
    assert json.loads(r.stdout)["mismatches"] == 0, r.stdout

    assert ok(cluster, "volume", "unmap", "--sdc", sdc, "cli1") == "ok\n"
    assert ok(cluster, "volume", "unmap", "cli2", "--json", "--sdc", sdc) == OK_JSON
    assert ok(cluster, "--json", "volume", "unmap", f"--sdc={sdc}", "cli3") == OK_JSON
    assert volume(cluster, "cli1")["mapped_to"] == []
    assert ok(cluster, "volume", "remove", "--json", "cli1") == OK_JSON
    assert ok(cluster, "--json", "volume", "remove", "cli2") == OK_JSON
    assert ok(cluster, "volume", "remove", "cli3", "--json") == OK_JSON
    assert not {"cli1", "cli2", "cli3"} & volume_names(cluster)


def test_global_options_anywhere(cluster):
    mdm = cluster.mdm_addr
    for args in (["volume", "list", "--mdm", mdm, "--json"],
                 ["--json", "volume", "--mdm", mdm, "list"],
                 ["volume", "list", f"--mdm={mdm}", "--json"],
                 ["status", "--json", "--mdm", mdm],
                 ["--mdm", mdm, "status", "--json"]):
        r = raw(*args, cluster=cluster)
        assert r.returncode == 0, (args, r.stderr)
        json.loads(r.stdout)
    # the environment gives the address, --mdm overrides it
    r = raw("pool", "list", env={"CAIRN_MDM": mdm}, cluster=cluster)
    assert r.returncode == 0 and r.stdout.startswith("POOL "), r.stdout + r.stderr
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    r = raw("pool", "list", "--mdm", mdm, env={"CAIRN_MDM": dead}, cluster=cluster)
    assert r.returncode == 0, r.stderr
    r = raw("pool", "list", env={"CAIRN_MDM": dead}, cluster=cluster)
    assert r.returncode == 1 and f"cannot reach the MDM at {dead}" in r.stderr, r.stderr
    r = raw("volume", "list", "--mdm")
    assert r.returncode == 1 and r.stderr == "cairn: --mdm needs a value\n", r.stderr
    # text without --json, wherever the other options are
    r = raw("sds", "list", "--mdm", mdm, cluster=cluster)
    assert r.returncode == 0 and r.stdout.split()[:3] == ["SDS", "ADDRESS", "FAULT-SET"], r.stdout


def test_other_objects_options_in_any_order(cluster):
    assert ok(cluster, "fault-set", "add", "--json", "clirack") == OK_JSON
    listed = json.loads(ok(cluster, "fault-set", "list", "--json"))
    assert "clirack" in {f["name"] for f in listed}, listed
    assert "clirack" in ok(cluster, "fault-set", "list")
    assert ok(cluster, "--json", "fault-set", "remove", "clirack") == OK_JSON
    assert "clirack" not in ok(cluster, "fault-set", "list")

    assert ok(cluster, "pool", "create", "--pgs", "8", "clipool", "--copies=2") == "ok\n"
    assert ok(cluster, "pool", "set", "--overcommit=150", "clipool") == "ok\n"
    p = next(p for p in json.loads(ok(cluster, "--json", "pool", "list")) if p["name"] == "clipool")
    assert p["copies"] == 2 and p["overcommit_pct"] == 150, p

    devs = json.loads(ok(cluster, "device", "list", "--json"))
    assert {s["name"] for s in devs} >= {"sds1", "sds2", "sds3"}
    assert "sds1" in ok(cluster, "device", "list")

    assert ok(cluster, "sds", "maintenance", "--json", "enter", "sds3") == OK_JSON
    state = lambda: next(s["state"] for s in cluster.status()["sds"] if s["name"] == "sds3")
    assert state() == "maintenance"
    assert ok(cluster, "sds", "maintenance", "exit", "sds3", "--json") == OK_JSON
    wait_for("sds3 up again", lambda: state() == "up")


# (arguments, exit code, text in stderr, whether the usage follows)
BAD = [
    (["--mdm-timeout", "0", "volume", "create", "bad1", "--size", "4M"], 1,
     "cairn: --mdm-timeout takes seconds, from 0.1 to 3600, not '0'", False),
    (["volume", "list", "--mdm-timeout", "5s"], 1,
     "cairn: --mdm-timeout takes seconds, from 0.1 to 3600, not '5s'", False),
    (["volume", "frobnicate"], 2, "cairn: unknown command 'volume frobnicate'", True),
    (["frob"], 2, "cairn: unknown command 'frob '", True),
    (["--bogus", "volume", "list"], 2, "cairn: unknown option '--bogus'", True),
    (["volume", "--bogus", "list"], 2, "cairn: unknown option '--bogus'", True),
    (["volume", "list", "--bogus"], 2, "cairn: unknown option '--bogus'", True),
    (["volume", "create", "bad1", "--size", "4M", "--device", "/x"], 2,
     "cairn: unknown option '--device'", True),
    (["volume", "create", "bad1", "--size"], 1, "cairn: --size needs a value", False),
    (["volume", "create", "bad1", "--size", "--thick"], 1, "cairn: --size needs a value", False),
    (["volume", "map", "bad1", "--sdc", "--read-only"], 1, "cairn: --sdc needs a value", False),
    (["volume", "list", "--mdm", "127.0.0.1:1"], 1, "cairn: --mdm given more than once", False),
    (["volume", "create", "bad1"], 1, "cairn: --size is required", False),
    (["volume", "create", "bad1", "--thick"], 1, "cairn: --size is required", False),
    (["volume", "map", "bad1"], 1, "cairn: --sdc is required", False),
    (["volume", "locate", "bad1"], 1, "cairn: --offset is required", False),
    (["sds", "add", "--addr", "127.0.0.1:1", "--device", "/x"], 1, "cairn: --name is required",
     False),
    (["sds", "add", "--name", "x", "--addr", "127.0.0.1:1"], 1,
     "cairn: at least one --device PATH is required", False),
    (["device", "add", "--sds", "sds1"], 1, "cairn: at least one --device PATH is required", False),
    (["device", "remove", "--device", "/x"], 1, "cairn: --sds and --device are required", False),
    (["pool", "set", "default"], 1, "cairn: pool set needs --overcommit PCT", False),
    (["pool", "set", "default", "--overcommit", "0"], 1, "cairn: pool set needs --overcommit PCT",
     False),
    (["volume", "remove", "bad1", "bad2"], 2, "cairn: unexpected argument 'bad2'", True),
    (["status", "extra"], 2, "cairn: unexpected argument 'extra'", True),
    (["volume", "create", "--size", "4M"], 2, "cairn: missing argument NAME", True),
    (["sds", "maintenance", "enter"], 2, "cairn: missing argument NAME", True),
    (["sds", "maintenance", "pause", "sds1"], 2,
     "cairn: sds maintenance takes enter or exit, not 'pause'", True),
    (["volume", "create", "bad1", "--size", "4M", "--size", "8M"], 1,
     "cairn: --size given more than once", False),
    (["volume", "create", "bad1", "--size", "4M", "--thick=yes"], 1,
     "cairn: --thick takes no value", False),
    (["volume", "create", "bad1", "--size", "4X"], 1,
     "cairn: invalid size '4X' (use e.g. 8G, 512M)", False),
    (["volume", "locate", "bad1", "--offset=-1"], 1,
     "cairn: invalid size '-1' (use e.g. 8G, 512M)", False),
    (["sds", "add", "--name", "x", "--addr", "nowhere", "--device", "/x"], 1,
     "cairn: invalid address 'nowhere' (want HOST:PORT)", False),
    # refusals by the MDM keep its words
    (["volume", "show", "bad1"], 1, "cairn: no volume named 'bad1'", False),
    (["volume", "remove", "--json", "bad1"], 1, "no volume", False),
]


def objects(st):
    """What a refused command could have changed (not the PGs: a rebuild may move them)."""
    return (sorted((v["name"], v["size"], json.dumps(v["mapped_to"])) for v in st["volumes"]),
            sorted((p["name"], p["copies"], p["overcommit_pct"]) for p in st["pools"]),
            sorted((s["name"], s["addr"], len(s["devices"])) for s in st["sds"]))


def test_bad_invocations(cluster):
    before = cluster.status()
    for args, rc, msg, usage in BAD:
        r = cluster.cairn(*args, check=False)
        assert r.returncode == rc, (args, r.returncode, r.stderr)
        assert msg in r.stderr, (args, r.stderr)
        assert r.stderr.startswith(msg if msg.startswith("cairn:") else "cairn: "), (args, r.stderr)
        assert ("usage: cairn" in r.stderr) == usage, (args, r.stderr)
        assert r.stdout == "", (args, r.stdout)
    assert objects(cluster.status()) == objects(before), "a refused command changed the cluster"
    assert "bad1" not in volume_names(cluster)


def test_mdm_unreachable():
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    for args in (["status"], ["volume", "create", "v", "--size", "4M", "--mdm", dead]):
        r = raw("--mdm", dead, *args) if args == ["status"] else raw(*args)
        assert r.returncode == 1, r
        assert r.stderr == (f"cairn: cannot reach the MDM at {dead}: connection refused "
                            "(is cairn-mdm running?)\n"), r.stderr
