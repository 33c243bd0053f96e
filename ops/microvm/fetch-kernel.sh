#!/bin/sh
# fetch-kernel.sh [CACHE_DIR]
#
# Puts a Debian cloud kernel (vmlinuz + its modules) for microVM guests into
# <CACHE_DIR>/kernel/<release>/ and prints that directory. The kernel is never installed on the
# host: `apt-get download` fetches ONE named package (a glob would match every kernel in the
# archive) and `dpkg-deb -x` unpacks it. Idempotent: a kernel already in the cache is reused.
#
# Layout of the printed directory: vmlinuz, release (the `uname -r` of the guest), config, modules/
# (the package's lib/modules/<release>).
#
# Env: COPPICE_MICROVM_KERNEL_PKG (default: what linux-image-cloud-amd64 depends on, e.g.
# linux-image-6.1.0-57-cloud-amd64). CACHE_DIR defaults to $COPPICE_MICROVM_CACHE, else the
# pool-ctl's: $COPPICE_POOL_CTL_STATE/cache (/var/lib/coppice/pool-ctl/cache).
set -eu

cache=${1:-${COPPICE_MICROVM_CACHE:-${COPPICE_POOL_CTL_STATE:-/var/lib/coppice/pool-ctl}/cache}}
log() { echo "fetch-kernel: $*" >&2; }

pkg=${COPPICE_MICROVM_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
  pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | sed -n 's/^ *Depends: \(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n 1) || true
  # Offline or no apt lists: use the kernel fetched last, if there is one.
  if [ -z "$pkg" ] && [ -f "$cache/kernel/current" ]; then pkg=$(cat "$cache/kernel/current"); fi
  [ -n "$pkg" ] || { log "cannot resolve linux-image-cloud-amd64 (apt-get update?) and nothing cached"; exit 1; }
fi
case $pkg in
  linux-image-[0-9]*-amd64) ;;
  *) log "COPPICE_MICROVM_KERNEL_PKG must name one linux-image-<version>-amd64 package, got '$pkg'"; exit 2 ;;
esac
case $pkg in *[!A-Za-z0-9.+-]*) log "bad package name '$pkg'"; exit 2 ;; esac
release=${pkg#linux-image-}
dir="$cache/kernel/$release"

mkdir -p "$cache/kernel"
# One fetcher per cache at a time; a concurrent second run waits, then finds the kernel there.
exec 8>"$cache/kernel/.lock"
flock 8

if [ -f "$dir/.complete" ]; then
  printf '%s\n' "$pkg" > "$cache/kernel/current"
  echo "$dir"
  exit 0
fi

stage=$(mktemp -d "$cache/kernel/.stage-$release.XXXXXX")
cleanup() { rm -rf --one-file-system "$stage"; }
trap cleanup EXIT

log "downloading $pkg"
# apt drops to the _apt user for downloads; let it write into the stage dir.
chown _apt "$stage" 2>/dev/null || true
(cd "$stage" && apt-get download -q "$pkg" >&2)
deb=$(find "$stage" -maxdepth 1 -name '*.deb' | head -n 1)
[ -n "$deb" ] || { log "apt-get download $pkg produced no .deb"; exit 1; }
dpkg-deb -x "$deb" "$stage/x"

[ -f "$stage/x/boot/vmlinuz-$release" ] || { log "$pkg has no boot/vmlinuz-$release"; exit 1; }
moddir="$stage/x/lib/modules/$release"
[ -d "$moddir" ] || { log "$pkg has no lib/modules/$release"; exit 1; }
# No depmod here (kmod need not be on the host): build-initramfs.sh reads each module's own
# depends= field instead of modules.dep.

mkdir -p "$stage/out"
mv "$stage/x/boot/vmlinuz-$release" "$stage/out/vmlinuz"
[ ! -f "$stage/x/boot/config-$release" ] || mv "$stage/x/boot/config-$release" "$stage/out/config"
mv "$moddir" "$stage/out/modules"
printf '%s\n' "$release" > "$stage/out/release"
: > "$stage/out/.complete"
rm -rf --one-file-system "$dir"
mv "$stage/out" "$dir"
printf '%s\n' "$pkg" > "$cache/kernel/current"
log "cached $dir"
echo "$dir"
