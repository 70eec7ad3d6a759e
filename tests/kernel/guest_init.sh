#!/bin/sh
# /init of the test guest: attach the export with the kernel NBD client, make
# an ext4 file system, write, remount, verify. The host reads the markers.
# Real tools are called by absolute path: busybox prefers its own applets.
export PATH=/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.txt); do insmod /lib/modules/$m 2>/dev/null; done
. /etc/test.env
fail() { echo "STEP FAIL: $*"; echo "RESULT FAIL"; poweroff -f; }
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
echo "STEP boot OK"
/sbin/nbd-client 10.0.2.2 "$NBD_PORT" /dev/nbd0 -N "$EXPORT" -b 4096 -C 2 -t 30 || fail "nbd-client"
i=0; while [ "$(cat /sys/block/nbd0/size 2>/dev/null || echo 0)" = 0 ]; do i=$((i+1)); [ $i -gt 100 ] && fail "no size"; sleep 0.1; done
echo "STEP attach OK size=$(cat /sys/block/nbd0/size)"
/sbin/mke2fs -q -t ext4 -F /dev/nbd0 || fail "mkfs"
mount -t ext4 /dev/nbd0 /mnt || fail "mount"
dd if=/dev/urandom of=/mnt/big bs=1M count=24 2>/dev/null || fail "write big"
i=0; while [ $i -lt 50 ]; do echo "cairn line $i" > /mnt/small$i; i=$((i+1)); done
cp /etc/pattern /mnt/pattern || fail "write pattern"
sum1=$(md5sum /mnt/big | cut -d' ' -f1)
umount /mnt || fail "umount"
echo 3 > /proc/sys/vm/drop_caches
mount -t ext4 /dev/nbd0 /mnt || fail "remount"
sum2=$(md5sum /mnt/big | cut -d' ' -f1)
[ "$sum1" = "$sum2" ] || fail "big file differs after remount"
[ "$(cat /mnt/small49)" = "cairn line 49" ] || fail "small file differs"
cmp /mnt/pattern /etc/pattern 2>/dev/null || [ "$(md5sum < /mnt/pattern)" = "$(md5sum < /etc/pattern)" ] || fail "pattern differs"
echo "STEP verify OK $sum2"
umount /mnt || fail "final umount"
/sbin/nbd-client -d /dev/nbd0 || fail "detach"
echo "STEP detach OK"
# TLS: the export allowed only to alice is refused in plaintext, then
# attached with her certificate (nbd-client's TLS proxy), read and written
/sbin/nbd-client 10.0.2.2 "$NBD_PORT" /dev/nbd1 -N "$TLS_EXPORT" -b 4096 >/dev/null 2>&1 && fail "plaintext attach of $TLS_EXPORT was allowed"
echo "STEP tls-refused OK"
T=/etc/tls
/sbin/nbd-client 10.0.2.2 "$NBD_PORT" /dev/nbd1 -N "$TLS_EXPORT" -b 4096 -t 30 \
  -certfile $T/client-cert.pem -keyfile $T/client-key.pem -cacertfile $T/ca-cert.pem \
  -tlshostname localhost || fail "nbd-client with TLS"
i=0; while [ "$(cat /sys/block/nbd1/size 2>/dev/null || echo 0)" = 0 ]; do i=$((i+1)); [ $i -gt 100 ] && fail "no size (TLS)"; sleep 0.1; done
echo "STEP tls-attach OK size=$(cat /sys/block/nbd1/size)"
[ "$(dd if=/dev/nbd1 bs=1M count=1 2>/dev/null | md5sum)" = "$(md5sum < /etc/tls_in)" ] || fail "TLS read differs"
dd if=/etc/tls_out of=/dev/nbd1 bs=1M seek=1 conv=fsync 2>/dev/null || fail "TLS write"
echo 3 > /proc/sys/vm/drop_caches
[ "$(dd if=/dev/nbd1 bs=1M skip=1 count=1 2>/dev/null | md5sum)" = "$(md5sum < /etc/tls_out)" ] || fail "TLS read back differs"
echo "STEP tls-verify OK"
/sbin/nbd-client -d /dev/nbd1 || fail "TLS detach"
echo "STEP tls-detach OK"
echo "RESULT PASS"
poweroff -f
