#!/usr/bin/env bash
# Cairn quick start: a whole cluster on this machine.
#
#   deploy/quickstart.sh up       install dependencies, build, start 1 MDM, 3 SDSs
#                                 (4, 6 and 8 GiB file-backed devices) and 1 SDC,
#                                 create and map the 8 GiB volume "demo"
#   deploy/quickstart.sh status   show the cluster
#   deploy/quickstart.sh down     stop every daemon (data is kept; "up" again resumes)
#   deploy/quickstart.sh purge    stop and delete all state
#
# All state lives in $CAIRN_QS_DIR (default: .qs in the repository); ports:
# $CAIRN_NBD_PORT (NBD, default 10809) and $CAIRN_QS_PORT_BASE (default 6600:
# the MDM on 6611, its Raft port 6612, the SDSs on 6701-6703, the REST API and
# dashboard on 6680, Prometheus metrics of the MDM on 6691, of the SDSs on
# 6791-6793, of the SDC on 6891). Everything listens on 127.0.0.1 only.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
qs=${CAIRN_QS_DIR:-$top/.qs}
build=${CAIRN_BUILD:-$top/build}
PORT_BASE=${CAIRN_QS_PORT_BASE:-6600} # MDM +11, Raft +12, SDSs +101..+103
MDM=127.0.0.1:$((PORT_BASE + 11))
RAFT=127.0.0.1:$((PORT_BASE + 12))
NBD_PORT=${CAIRN_NBD_PORT:-10809}
HTTP=127.0.0.1:$((PORT_BASE + 80))
MDM_METRICS=127.0.0.1:$((PORT_BASE + 91))
sds_metrics() { echo "127.0.0.1:$((PORT_BASE + 190 + $1))"; }
SDC_METRICS=127.0.0.1:$((PORT_BASE + 291))
SDS_SIZES=(4G 6G 8G)
cairn() { "$build/mgmt/cairn" --mdm "$MDM" "$@"; }

# A pid is alive if its process exists, is not a zombie (a daemon killed with
# -9 stays one until it is reaped, and kill -0 still succeeds on it) and is
# still a Cairn daemon (the pid was not reused).
alive() { # pid
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] && grep -qa cairn- "/proc/$1/cmdline" 2>/dev/null
}

running() { [ -f "$qs/$1.pid" ] && alive "$(cat "$qs/$1.pid")"; }

wait_until() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "quickstart: timed out waiting for $what (logs in $qs/*.log)" >&2
  exit 1
}

start() { # name, argv...
  local name=$1; shift
  if running "$name"; then return 0; fi
  rm -f "$qs/$name.pid"
  setsid "$@" --pidfile "$qs/$name.pid" >>"$qs/$name.log" 2>&1 </dev/null &
  wait_until "$name to start" test -s "$qs/$name.pid"
}

sds_connected() { # name
  cairn --json sds list | grep -q "\"name\":\"$1\"[^}]*\"connected\":true"
}

up() {
  "$top/deploy/deps.sh" run
  echo "quickstart: building in $build"
  cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$build" -j"$(nproc)" >/dev/null
  mkdir -p "$qs"
  start mdm "$build/mgmt/cairn-mdm" --data-dir "$qs/mdm" --listen "$MDM" --raft-addr "$RAFT" \
    --http-listen "$HTTP" --metrics-listen "$MDM_METRICS"
  wait_until "the MDM" cairn status
  for i in 1 2 3; do
    start "sds$i" "$build/server/cairn-sds" --name "sds$i" --listen "127.0.0.1:$((PORT_BASE + 100 + i))" \
      --mdm "$MDM" --data-dir "$qs/sds$i" --metrics-listen "$(sds_metrics "$i")"
  done
  start sdc "$build/client/cairn-sdc" --mdm "$MDM" --data-dir "$qs/sdc" --name quickstart \
    --nbd-listen "127.0.0.1:$NBD_PORT" --metrics-listen "$SDC_METRICS"
  cairn pool list | grep -q '^default ' || cairn pool create default
  for i in 1 2 3; do
    dev="$qs/dev$i.img"
    if ! cairn sds list | grep -q "^sds$i "; then
      # sparse files: space is taken as extents are written
      [ -f "$dev" ] || truncate -s "${SDS_SIZES[$((i - 1))]}" "$dev"
      wait_until "sds$i to reach the MDM" cairn sds add --name "sds$i" --addr "127.0.0.1:$((PORT_BASE + 100 + i))" \
        --device "$dev"
    fi
    wait_until "sds$i to connect" sds_connected "sds$i"
  done
  wait_until "the SDC to register" sh -c "'$build/mgmt/cairn' --mdm $MDM sdc list | grep -q '^quickstart '"
  # restricted SDC mode: a new SDC gets no volume until it is approved
  cairn sdc approve quickstart >/dev/null
  cairn volume show demo >/dev/null 2>&1 || cairn volume create demo --size 8G
  cairn volume map demo --sdc quickstart >/dev/null # returns once the SDC serves it ...
  wait_until "the demo export" nbdinfo "nbd://127.0.0.1:$NBD_PORT/demo" # ... if it is connected
  # a scrape configuration for this cluster, from the one in deploy/
  sed -e "s/@MDM@/$MDM_METRICS/" -e "s/@SDS1@/$(sds_metrics 1)/" -e "s/@SDS2@/$(sds_metrics 2)/" \
    -e "s/@SDS3@/$(sds_metrics 3)/" -e "s/@SDC@/$SDC_METRICS/" \
    "$top/deploy/prometheus/quickstart.yml" >"$qs/prometheus.yml"
  cairn status
  cat <<MSG

Cairn is up. Volume "demo" (8 GiB, 2 copies) is exported by the SDC as NBD export "demo":

  inspect:     nbdinfo nbd://127.0.0.1:$NBD_PORT/demo
  copy in:     nbdcopy disk.img nbd://127.0.0.1:$NBD_PORT/demo
  kernel:      modprobe nbd && nbd-client 127.0.0.1 $NBD_PORT /dev/nbd0 -N demo -b 4096 -C 4
               (detach: nbd-client -d /dev/nbd0)
  unix socket: nbd-client -u $qs/sdc/nbd.sock /dev/nbd0 -N demo
               (faster on this host; as a URI: nbd+unix:///demo?socket=$qs/sdc/nbd.sock)
  QEMU/KVM:    qemu-system-x86_64 ... -drive file=nbd://127.0.0.1:$NBD_PORT/demo,format=raw,if=virtio
  fio:         fio --name=t --ioengine=nbd --uri=nbd://127.0.0.1:$NBD_PORT/demo --rw=randrw --bs=4k --iodepth=32 --size=1G

  CLI:         $build/mgmt/cairn --mdm $MDM status      (also: sds list, volume list, --json,
               status --watch, top, rebuild wait)
  dashboard:   http://$HTTP/
  REST API:    http://$HTTP/api/v1/status       (described by docs/openapi.yaml)
  metrics:     http://$MDM_METRICS/metrics (MDM), http://$(sds_metrics 1)/metrics .. $(sds_metrics 3) (SDSs),
               http://$SDC_METRICS/metrics (SDC)
  Prometheus:  prometheus --config.file=$qs/prometheus.yml --storage.tsdb.path=$qs/prometheus
               (Grafana: import deploy/grafana/cairn-dashboard.json)
  logs:        $qs/*.log
  stop:        deploy/quickstart.sh down      (keeps data)   |   deploy/quickstart.sh purge
MSG
}

down() {
  local any=0
  for name in sdc sds1 sds2 sds3 mdm; do
    if running "$name"; then
      any=1
      pid=$(cat "$qs/$name.pid")
      kill -TERM "$pid"
      for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
      if alive "$pid"; then
        echo "quickstart: $name did not stop; killing it" >&2
        kill -KILL "$pid"
      fi
      rm -f "$qs/$name.pid"
      echo "stopped $name"
    fi
  done
  [ $any = 1 ] || echo "quickstart: nothing running"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) cairn status ;;
  purge) down; rm -rf "$qs"; echo "removed $qs" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
