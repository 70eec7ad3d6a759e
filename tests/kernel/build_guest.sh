#!/usr/bin/env bash
# Build (once, cached) a small guest for the kernel NBD client test: Debian's
# kernel and modules, busybox, nbd-client and mke2fs in an initramfs.
# Usage: build_guest.sh CACHE_DIR        prints nothing; leaves vmlinux, modules.txt
#                                        and a base initramfs tree in CACHE_DIR.
# Why it is built this way: the host kernel here may have no nbd module, so
# the test boots Debian's own kernel (the versioned package behind
# linux-image-amd64, unpacked, never installed; the .deb ships no modules.dep,
# hence depmod) under qemu/TCG. The uncompressed ELF vmlinux (cut at the first
# XZ magic) boots faster under TCG than the bzImage, as does an uncompressed
# cpio initramfs. modprobe -C /dev/null keeps the host's module options out of
# the insmod order it prints.
set -euo pipefail
cache=$1
mkdir -p "$cache"
cd "$cache"
[ -f done ] && exit 0
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "cannot find the kernel package behind linux-image-amd64" >&2; exit 1; }
ver=${pkg#linux-image-}
rm -rf kpkg root
mkdir -p kpkg
( cd kpkg && apt-get download -q "$pkg" >/dev/null )
dpkg-deb -x kpkg/*.deb kpkg/x
depmod -b kpkg/x "$ver"
# an uncompressed ELF kernel boots faster under TCG (PVH entry)
off=$(grep -abo $'\xfd7zXZ\x00' "kpkg/x/boot/vmlinuz-$ver" | head -1 | cut -d: -f1)
tail -c +$((off + 1)) "kpkg/x/boot/vmlinuz-$ver" | xz -dc > vmlinux 2>/dev/null || true
[ -s vmlinux ] || { echo "could not extract vmlinux" >&2; exit 1; }
modprobe -C /dev/null -d kpkg/x -S "$ver" -a --show-depends nbd virtio_net virtio_pci ext4 virtio_rng \
  | awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++' > modlist
mkdir -p root/bin root/sbin root/etc root/proc root/sys root/dev root/mnt root/tmp root/lib/modules
cp /bin/busybox root/bin/busybox
for a in $(root/bin/busybox --list); do [ -e "root/bin/$a" ] || ln -s busybox "root/bin/$a"; done
: > modules.txt
while read -r m; do
  b=$(basename "$m")
  case "$b" in *.xz) xz -dc "$m" > "root/lib/modules/${b%.xz}"; b=${b%.xz} ;; *) cp "$m" "root/lib/modules/$b" ;; esac
  echo "$b" >> modules.txt
done < modlist
cp modules.txt root/etc/modules.txt
for bin in /usr/sbin/nbd-client /sbin/mke2fs /usr/bin/md5sum; do
  [ -e "$bin" ] || bin=$(command -v "$(basename "$bin")")
  cp "$bin" "root/sbin/$(basename "$bin")"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "root$(dirname "$lib")"
    cp -L "$lib" "root$lib"
  done
done
cp /etc/mke2fs.conf root/etc/
rm -rf kpkg
touch done
