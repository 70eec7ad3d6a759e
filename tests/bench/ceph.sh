#!/usr/bin/env bash
# A throwaway Ceph cluster for the benchmark: one monitor and three
# BlueStore OSDs on sparse files, all on 127.0.0.1, no authentication, a pool
# "bench" with size=2 and an RBD image "img" in it.
#   ceph.sh up DIR IMAGE_MIB      ceph.sh down DIR
# Daemon pid files are DIR/*.pid (the harness reads their CPU time).
set -euo pipefail
cmd=$1
dir=$(realpath -m "$2")
conf=$dir/ceph.conf

down() {
  for f in "$dir"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

if [ "$cmd" = down ]; then
  down
  exit 0
fi

image_mib=$3
down
rm -rf "$dir"
mkdir -p "$dir/run"
port=$((20000 + RANDOM % 20000))
fsid=$(cat /proc/sys/kernel/random/uuid)
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = v1:127.0.0.1:$port
ms_bind_msgr2 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 2
osd_pool_default_min_size = 1
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
log_file = $dir/\$name.log
pid_file = $dir/\$name.pid
mon_data = $dir/\$name
osd_data = $dir/\$name
keyring = $dir/keyring
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $((8 * 1024 * 1024 * 1024))
bluestore_fsck_on_mount = false
osd_memory_target = 1610612736
mon_osd_full_ratio = 0.97
[client]
# no client-side write-back cache: every write is acknowledged by the OSDs,
# as with O_DIRECT on the device and with Cairn
rbd_cache = false
EOF
ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' \
  --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --addv a "[v1:127.0.0.1:$port]" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
ceph-mon -c "$conf" -i a
for i in 0 1 2; do
  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(timeout 60 ceph -c "$conf" osd create "$uuid")
  mkdir -p "$dir/osd.$id"
  ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" 2>>"$dir/mkfs.log"
  ceph-osd -c "$conf" -i "$id"
done
timeout 60 ceph -c "$conf" osd pool create bench 64 64 replicated >/dev/null
timeout 60 ceph -c "$conf" osd pool set bench size 2 >/dev/null
timeout 60 ceph -c "$conf" osd pool set bench min_size 1 >/dev/null
timeout 60 ceph -c "$conf" osd pool application enable bench rbd >/dev/null
# blocks until the pool's PGs are active (3 OSDs up)
timeout 300 rbd -c "$conf" create bench/img --size "$image_mib" --image-feature layering
echo "ceph: up in $dir (3 OSDs, pool bench size 2, image img of $image_mib MiB)"
