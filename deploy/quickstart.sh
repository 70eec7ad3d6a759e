#!/usr/bin/env bash
# Cairn quick start: a whole cluster on this machine.
#
#   deploy/quickstart.sh up [--mdms 1|3|5]
#                                 install dependencies, build, start 1 MDM (or a
#                                 cluster of 3 or 5), 3 SDSs (4, 6 and 8 GiB
#                                 file-backed devices) and 1 SDC, create and map
#                                 the 8 GiB volume "demo"
#   deploy/quickstart.sh status   show the cluster
#   deploy/quickstart.sh down     stop every daemon (data is kept; "up" again resumes)
#   deploy/quickstart.sh purge    stop and delete all state
#
# All state lives in $CAIRN_QS_DIR (default: .qs in the repository); ports:
# $CAIRN_NBD_PORT (NBD, default 10809) and $CAIRN_QS_PORT_BASE (default 6600:
# the MDM on 6611, its Raft port 6612 (MDM N of a cluster: 66N1, 66N2), the
# SDSs on 6701-6703, the REST API and
# dashboard on 6680, Prometheus metrics of the MDM on 6691, of the SDSs on
# 6791-6793, of the SDC on 6891). Everything listens on 127.0.0.1 only.
# The HTTP ports want a token: $CAIRN_QS_DIR/http-tokens (an admin and a
# monitor token, for the REST API and the dashboard) and metrics.token (for
# /metrics) are made on the first "up", mode 0600, and kept.
# Every RPC link is authenticated: $CAIRN_QS_DIR/credentials holds the
# cluster's CA and a credential per daemon and for the CLI (admin.cred).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
qs=${CAIRN_QS_DIR:-$top/.qs}
build=${CAIRN_BUILD:-$top/build}
PORT_BASE=${CAIRN_QS_PORT_BASE:-6600} # MDM +11, Raft +12, SDSs +101..+103
MDM=127.0.0.1:$((PORT_BASE + 11))
RAFT=127.0.0.1:$((PORT_BASE + 12))
mdm_addr() { echo "127.0.0.1:$((PORT_BASE + 10 * $1 + 1))"; }  # MDM i's request port
mdm_raft() { echo "127.0.0.1:$((PORT_BASE + 10 * $1 + 2))"; }
# how many MDMs: --mdms on the first up, kept in $qs/mdms for the next
N_MDMS=1
[ -f "$qs/mdms" ] && N_MDMS=$(cat "$qs/mdms")
mdm_list() {
  local l="$MDM" i
  for ((i = 2; i <= N_MDMS; i++)); do l="$l,$(mdm_addr "$i")"; done
  echo "$l"
}
NBD_PORT=${CAIRN_NBD_PORT:-10809}
HTTP=127.0.0.1:$((PORT_BASE + 80))
MDM_METRICS=127.0.0.1:$((PORT_BASE + 91))
sds_metrics() { echo "127.0.0.1:$((PORT_BASE + 190 + $1))"; }
SDC_METRICS=127.0.0.1:$((PORT_BASE + 291))
SDS_SIZES=(4G 6G 8G)
CREDS=$qs/credentials
cairn() { "$build/mgmt/cairn" --mdm "$(mdm_list)" --credentials "$CREDS/admin.cred" "$@"; }

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

# 32 random bytes, in hex
new_token() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

# The token files, made once (a scrape configuration or a browser tab that
# holds a token keeps working across down and up). Written through a
# temporary file under umask 077, so no other user can ever read them.
make_tokens() {
  (
    umask 077
    if [ ! -s "$qs/http-tokens" ]; then
      {
        echo "# cairn-mdm --http-tokens: the REST API and the dashboard."
        echo "# admin: everything; monitor: read only (GET)."
        echo "admin $(new_token)"
        echo "monitor $(new_token)"
      } >"$qs/http-tokens.tmp"
      mv "$qs/http-tokens.tmp" "$qs/http-tokens"
    fi
    if [ ! -s "$qs/metrics.token" ]; then
      new_token >"$qs/metrics.token.tmp"
      echo >>"$qs/metrics.token.tmp"
      mv "$qs/metrics.token.tmp" "$qs/metrics.token"
    fi
  )
  chmod 600 "$qs/http-tokens" "$qs/metrics.token"
}

# The cluster's CA and a credential for each component and for the CLI
# (admin, and monitor: read only), made once, every file mode 0600 in a
# directory of mode 0700. A real deployment keeps the CA off the cluster.
make_credentials() {
  mkdir -p -m 700 "$CREDS"
  local cli="$build/mgmt/cairn"
  [ -f "$CREDS/ca.key" ] || "$cli" credentials init-ca "$CREDS/ca.key" >/dev/null
  local mdms="" i
  for ((i = 1; i <= N_MDMS; i++)); do mdms="$mdms mdm:mdm$i"; done
  for rn in $mdms sds:sds1 sds:sds2 sds:sds3 sdc:quickstart admin:admin monitor:monitor; do
    local role=${rn%%:*} name=${rn#*:} file
    case $role in sds | sdc | mdm) file="$CREDS/$name.cred" ;; *) file="$CREDS/$role.cred" ;; esac
    [ -f "$file" ] || "$cli" credentials issue --ca "$CREDS/ca.key" --role "$role" --name "$name" \
      --out "$file" >/dev/null
  done
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
  make_tokens
  make_credentials
  local mtok="$qs/metrics.token"
  start mdm "$build/mgmt/cairn-mdm" --data-dir "$qs/mdm" --listen "$MDM" --raft-addr "$RAFT" \
    --credentials "$CREDS/mdm1.cred" \
    --http-listen "$HTTP" --http-tokens "$qs/http-tokens" \
    --metrics-listen "$MDM_METRICS" --metrics-token-file "$mtok"
  # MDM 1 alone (of a cluster restarted, it leads nothing until a second is up)
  wait_until "the MDM" "$build/mgmt/cairn" --mdm "$MDM" --credentials "$CREDS/admin.cred" \
    --local status
  # MDMs 2..N: a new one starts empty with --join and is added; one with a
  # data directory rejoins by itself
  for ((i = 2; i <= N_MDMS; i++)); do
    local join=()
    [ -d "$qs/mdm$i" ] || join=(--join)
    start "mdm$i" "$build/mgmt/cairn-mdm" --id "$i" --data-dir "$qs/mdm$i" --listen "$(mdm_addr "$i")" \
      --raft-addr "$(mdm_raft "$i")" --credentials "$CREDS/mdm$i.cred" "${join[@]}"
    if ! cairn --json mdm list | grep -q "\"id\":$i,"; then
      wait_until "MDM $i to join" cairn mdm add --id "$i" --addr "$(mdm_addr "$i")" \
        --raft-addr "$(mdm_raft "$i")"
    fi
  done
  for i in 1 2 3; do
    start "sds$i" "$build/server/cairn-sds" --name "sds$i" --listen "127.0.0.1:$((PORT_BASE + 100 + i))" \
      --mdm "$(mdm_list)" --data-dir "$qs/sds$i" --credentials "$CREDS/sds$i.cred" \
      --metrics-listen "$(sds_metrics "$i")" \
      --metrics-token-file "$mtok"
  done
  start sdc "$build/client/cairn-sdc" --mdm "$(mdm_list)" --data-dir "$qs/sdc" --name quickstart \
    --credentials "$CREDS/quickstart.cred" \
    --nbd-listen "127.0.0.1:$NBD_PORT" --metrics-listen "$SDC_METRICS" --metrics-token-file "$mtok"
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
  wait_until "the SDC to register" sh -c "'$build/mgmt/cairn' --mdm $(mdm_list) --credentials '$CREDS/admin.cred' sdc list | grep -q '^quickstart '"
  # restricted SDC mode: a new SDC gets no volume until it is approved
  cairn sdc approve quickstart >/dev/null
  cairn volume show demo >/dev/null 2>&1 || cairn volume create demo --size 8G
  cairn volume map demo --sdc quickstart >/dev/null # returns once the SDC serves it ...
  wait_until "the demo export" nbdinfo "nbd://127.0.0.1:$NBD_PORT/demo" # ... if it is connected
  # a scrape configuration for this cluster, from the one in deploy/; it
  # names the token file (Prometheus reads the token from it)
  sed -e "s/@MDM@/$MDM_METRICS/" -e "s/@SDS1@/$(sds_metrics 1)/" -e "s/@SDS2@/$(sds_metrics 2)/" \
    -e "s/@SDS3@/$(sds_metrics 3)/" -e "s/@SDC@/$SDC_METRICS/" \
    -e "s|@METRICS_TOKEN_FILE@|$mtok|" \
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

  MDMs:        $N_MDMS (cairn mdm list; up --mdms 3 or 5 runs a cluster of them)
  CLI:         export CAIRN_MDM=$(mdm_list) CAIRN_CREDENTIALS=$CREDS/admin.cred
               $build/mgmt/cairn status      (also: sds list, volume list, --json,
               status --watch, top, rebuild wait)
  credentials: $CREDS: the cluster's CA (ca.key) and one credential per daemon
               and for the CLI (admin.cred; monitor.cred: queries only), mode 0600;
               the CLI finds its credential in \$CAIRN_CREDENTIALS or --credentials FILE
  tokens:      $qs/http-tokens    (REST API and dashboard: an "admin" and a "monitor" token)
               $mtok   (Prometheus metrics); both mode 0600, kept across down and up
  dashboard:   http://$HTTP/   sign in with the admin token: the second word of the
               "admin" line of $qs/http-tokens (the monitor token gives a read-only view)
  REST API:    curl -H "Authorization: Bearer \$(awk '\$1 == "admin" {print \$2}' $qs/http-tokens)" \\
                 http://$HTTP/api/v1/status       (described by docs/openapi.yaml)
  metrics:     http://$MDM_METRICS/metrics (MDM), http://$(sds_metrics 1)/metrics .. $(sds_metrics 3) (SDSs),
               http://$SDC_METRICS/metrics (SDC), each with the token of $mtok:
               curl -H "Authorization: Bearer \$(cat $mtok)" http://$MDM_METRICS/metrics
  Prometheus:  prometheus --config.file=$qs/prometheus.yml --storage.tsdb.path=$qs/prometheus
               (Grafana: import deploy/grafana/cairn-dashboard.json)
  logs:        $qs/*.log
  stop:        deploy/quickstart.sh down      (keeps data)   |   deploy/quickstart.sh purge
MSG
}

down() {
  local any=0
  for name in sdc sds1 sds2 sds3 mdm5 mdm4 mdm3 mdm2 mdm; do
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
  up)
    if [ "${2:-}" = --mdms ]; then
      case "${3:-}" in
        1 | 3 | 5) ;;
        *) echo "quickstart: --mdms takes 1, 3 or 5" >&2; exit 2 ;;
      esac
      if [ "$3" -lt "$N_MDMS" ]; then
        echo "quickstart: this cluster has $N_MDMS MDMs; remove some with 'cairn mdm remove' first" >&2
        exit 2
      fi
      N_MDMS=$3
    elif [ -n "${2:-}" ]; then
      echo "quickstart: up takes only --mdms 1|3|5" >&2
      exit 2
    fi
    mkdir -p "$qs"
    echo "$N_MDMS" >"$qs/mdms"
    up
    ;;
  down) down ;;
  status) cairn status ;;
  purge) down; rm -rf "$qs"; echo "removed $qs" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
