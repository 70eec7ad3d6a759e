#!/usr/bin/env bash
# What a new user sees when SDSs die: the quick start's cluster (three SDSs
# of 4, 6 and 8 GiB, two copies), a verifying 4 KiB QD16 random write load
# (fio over NBD on the 8 GiB volume 'demo'), and each SDS killed with -9 in
# turn and started again 8 s later (deploy/quickstart.sh up), a kill every
# 15 s. Prints the longest write, how many writes took over 0.1 / 0.5 / 1 /
# 2 s, and when each slow write was issued, against the kill times; and,
# from `cairn status` polled every 0.25 s, the PGs just before each kill
# (degraded: one in-sync copy) and the most with no live copy after it.
#
# Usage: tests/bench/quickstart_kills.sh [BUILD] [SIZE]
#   BUILD  a build directory (default build-plain; built by the quick start if
#          missing); SIZE the part of the volume the load writes (default 3G:
#          fio writes it once, then reads it all back and checks every block)
# The cluster lives in $CAIRN_QS_DIR (default /tmp/cairn-qs-kills), purged
# first; it is left running at the end for a look (quickstart.sh down).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
export CAIRN_BUILD=$(realpath -m "${1:-$top/build-plain}")
size=${2:-3G}
export CAIRN_QS_DIR=${CAIRN_QS_DIR:-/tmp/cairn-qs-kills}
out=$CAIRN_QS_DIR.out
rm -rf "$out" && mkdir -p "$out"
"$top/deploy/quickstart.sh" purge >/dev/null 2>&1 || true
"$top/deploy/quickstart.sh" up >"$out/up.log" 2>&1 || { tail -20 "$out/up.log"; exit 1; }
echo "== $(date '+%F %T'), commit $(git -C "$top" rev-parse --short HEAD), build $CAIRN_BUILD, $(nproc) CPUs, load average $(cut -d' ' -f1 /proc/loadavg)"
fio --name=load --ioengine=nbd --uri=nbd://127.0.0.1:10809/demo --rw=randwrite --bs=4k \
  --iodepth=16 --size="$size" --verify=crc32c --verify_state_save=0 --verify_fatal=1 \
  --do_verify=1 --output-format=json --write_lat_log="$out/lat" --log_avg_msec=0 \
  >"$out/fio.json" 2>"$out/fio.err" &
fio_pid=$!
start=$(date +%s.%N)
cli=("$CAIRN_BUILD/mgmt/cairn" --mdm 127.0.0.1:6611 --credentials "$CAIRN_QS_DIR/credentials/admin.cred")
(while kill -0 "$fio_pid" 2>/dev/null; do
  echo "$(date +%s.%N) $("${cli[@]}" --json status 2>/dev/null | tr -d '\n')"
  sleep 0.25 # the poll's interval
done) >"$out/status" &
: >"$out/kills"
for i in 1 2 3; do
  sleep 6 # not a readiness wait: the load's time before each kill
  pid=$(cat "$CAIRN_QS_DIR/sds$i.pid")
  echo "$(date +%s.%N) $i" >>"$out/kills"
  kill -9 "$pid"
  sleep 8 # the time the SDS stays dead
  "$top/deploy/quickstart.sh" up >>"$out/up.log" 2>&1
done
rc=0
wait "$fio_pid" || rc=$?
/usr/bin/python3 - "$out" "$start" "$rc" <<'PY'
import json, sys
out, start, rc = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
s = open(f"{out}/fio.json").read()
job = json.loads(s[s.index("{"):])["jobs"][0]
w = job["write"]
print(f"fio exit {rc}, error {job['error']}: {w['total_ios']} writes at {w['iops']:.0f} IOPS, "
      f"mean {w['clat_ns']['mean'] / 1e3:.0f} us, longest {w['clat_ns']['max'] / 1e9:.3f} s; "
      f"{job['read']['total_ios']} blocks read back and verified")
lat = [(int(r[0]), int(r[1])) for r in (l.split(",") for l in open(f"{out}/lat_clat.1.log"))
       if r[2].strip() == "1"]  # fio's own clock: ms since the job began, ns
print("writes over 0.1 / 0.5 / 1 / 2 s: " + " / ".join(
    str(sum(1 for _, x in lat if x > t * 1e9)) for t in (0.1, 0.5, 1, 2)))
polls = []
for line in open(f"{out}/status"):
    t, _, js = line.partition(" ")
    try:
        p = json.loads(js)["pools"][0]
    except (ValueError, KeyError, IndexError):
        continue
    polls.append((float(t), p["pgs_degraded"], p["pgs_no_copy"]))
for line in open(f"{out}/kills"):
    t, i = line.split()
    t = float(t)
    before = [d for at, d, _ in polls if at < t][-1:] or ["?"]
    after = max((n for at, _, n in polls if t <= at < t + 8), default="?")
    print(f"  sds{i} killed {t - start:5.1f} s into the load, started again 8 s later: "
          f"{before[0]} PGs degraded just before, up to {after} with no live copy after")
slow = sorted((t - x / 1e6, x) for t, x in lat if x > 0.3e9)
for t, x in slow[:1] + slow[-1:]:
    print(f"  a write issued {t / 1e3:5.1f} s in took {x / 1e9:.3f} s")
PY
