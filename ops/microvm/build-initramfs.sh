#!/bin/sh
# build-initramfs.sh <KERNEL_DIR> [OUT]
#
# Builds the microVM guests' initramfs (default <KERNEL_DIR>/initrd.gz, KERNEL_DIR as printed by
# fetch-kernel.sh) and prints its path: busybox-static, the virtio modules the Debian cloud kernel
# has as modules (virtio_mmio, virtio_blk, virtio_net and what they depend on; ext4 is built in),
# and ops/microvm/guest-init.sh as /init. The init is generic: everything per guest comes from the
# kernel command line (see guest-init.sh), so one initramfs serves every guest of that kernel.
#
# Cached: the inputs (this script, guest-init.sh, busybox, the kernel release) are hashed into
# <OUT>.inputs; an unchanged second run prints the path and returns at once.
set -eu

usage() { echo "usage: $0 <KERNEL_DIR> [OUT]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
kdir=$1
out=${2:-$kdir/initrd.gz}
here=$(cd "$(dirname "$0")" && pwd)
init_src="$here/guest-init.sh"
busybox=${COPPICE_MICROVM_BUSYBOX:-/bin/busybox}
log() { echo "build-initramfs: $*" >&2; }

if [ ! -f "$kdir/release" ] || [ ! -d "$kdir/modules" ]; then log "$kdir is not a kernel dir from fetch-kernel.sh"; exit 1; fi
release=$(cat "$kdir/release")
# The guest runs it before any library exists: it must be the static build (busybox-static).
if ! "$busybox" --help >/dev/null 2>&1 || ldd "$busybox" >/dev/null 2>&1; then
  log "$busybox is not a static busybox (apt-get install busybox-static)"; exit 1
fi

inputs=$( { sha256sum "$0" "$init_src" "$busybox"; echo "$release"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then echo "$out"; exit 0; fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/coppice-initramfs.XXXXXX")
cleanup() { rm -rf --one-file-system "$stage"; }
trap cleanup EXIT
root="$stage/root"
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/newroot" "$root/lib/modules"
# The kernel opens /dev/console for init before devtmpfs is mounted.
mknod -m 600 "$root/dev/console" c 5 1
cp "$busybox" "$root/bin/busybox"
install -m 755 "$init_src" "$root/init"

# Module dependencies from each module's own depends= field (no depmod/modinfo needed on the
# host), loaded depth first so every module comes after what it needs.
ko_path() { # module name -> file (file names may use - where the module name has _)
  f=$(find "$kdir/modules/kernel" \( -name "$1.ko" -o -name "$(printf '%s' "$1" | tr '_' '-').ko" \) | head -n 1)
  [ -n "$f" ] && echo "$f"
}
: > "$stage/order"
add_module() {
  grep -qx "$1" "$stage/order" && return 0
  f=$(ko_path "$1") || { log "module $1 not in $kdir/modules"; exit 1; }
  deps=$(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -n 1 | tr ',' ' ')
  for d in $deps; do add_module "$d"; done
  # (sh has no locals: the recursion overwrote f)
  f=$(ko_path "$1")
  grep -qx "$1" "$stage/order" || { echo "$1" >> "$stage/order"; cp "$f" "$root/lib/modules/$1.ko"; }
}
for m in virtio_mmio virtio_blk virtio_net; do add_module "$m"; done
cp "$stage/order" "$root/lib/modules/order"
log "modules for $release: $(tr '\n' ' ' < "$stage/order")"

mkdir -p "$(dirname "$out")"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9 > "$out.tmp"
mv -f "$out.tmp" "$out"
echo "$inputs" > "$out.inputs"
log "built $out"
echo "$out"
