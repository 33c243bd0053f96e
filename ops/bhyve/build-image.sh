#!/bin/bash
# build-image.sh <name> [IMAGES_ROOT] [BASE_ROOTFS]
#
# Builds <IMAGES_ROOT>/<name>.img: an ext4 file holding the base rootfs prepared as a pool guest
# (the bhyve pass of the template registry discovers `<root>/<name>.img`). The guest is reached
# over SSH as root with the pool key, so the image gets:
#   - the public half of /root/coppice-signing/pool-key in /root/.ssh/authorized_keys;
#   - an sshd drop-in: key-only root login, UseDNS no, no PAM/motd (each costs time per exec),
#     MaxSessions raised (the gateway multiplexes execs as channels of ONE connection; the
#     default of 10 would cap concurrent execs), and `PerSourcePenalties no` when the image's
#     sshd knows the option (OpenSSH >= 9.8; Debian 12's 9.2 rejects it, so we probe);
#   - fresh host keys (not the ones the base happened to ship with);
#   - root's login shell set to /bin/sh, which reads no rc file for `sh -c` (lean shell).
#
# Cached: the inputs (this script, the public key, the base tree's names/sizes/mtimes) are
# hashed into <name>.img.inputs; an unchanged second run prints the path and returns at once.
#
# Env: COPPICE_POOL_KEY (default /root/coppice-signing/pool-key).
# Prints the image path on stdout; progress on stderr.
# A bash script; `sh build-image.sh` (dash on Debian, which has no pipefail) runs it under bash.
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail

usage() { echo "usage: $0 <name> [IMAGES_ROOT] [BASE_ROOTFS]" >&2; exit 2; }
if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage; fi
name=$1
images_root=${2:-/var/lib/coppice/bhyve}
base=${3:-/var/lib/coppice/templates/base-template}
key=${COPPICE_POOL_KEY:-/root/coppice-signing/pool-key}
here=$(cd "$(dirname "$0")" && pwd)

case $name in
  ''|*[!A-Za-z0-9._-]*|.*) echo "build-image: bad template name '$name'" >&2; exit 2 ;;
esac

log() { echo "build-image $name: $*" >&2; }

# The pool key pair: generated once, shared by every image and by the gateway's SSH shim.
if [ ! -f "$key" ]; then
  mkdir -p "$(dirname "$key")"
  chmod 700 "$(dirname "$key")"
  log "generating pool key $key"
  ssh-keygen -q -t ed25519 -N '' -C coppice-pool -f "$key"
fi
[ -f "$key.pub" ] || ssh-keygen -y -f "$key" > "$key.pub"

# build-base.sh [TEMPLATES_ROOT] builds <TEMPLATES_ROOT>/base-template, so it can only stand in for a
# base of that name.
if [ ! -d "$base" ]; then
  builder="$here/../templates/build-base.sh"
  [ -f "$builder" ] || { echo "build-image: base rootfs $base missing and $builder not found" >&2; exit 1; }
  [ "$(basename "$base")" = base-template ] || { echo "build-image: base rootfs $base missing (build-base.sh only makes */base-template)" >&2; exit 1; }
  log "base rootfs $base missing; running $builder"
  sh "$builder" "$(dirname "$base")" >&2
  [ -d "$base" ] || { echo "build-image: $builder did not produce $base" >&2; exit 1; }
fi

mkdir -p "$images_root"
img="$images_root/$name.img"
stamp="$img.inputs"

# One builder per image at a time; a concurrent second run waits, then finds the cache warm.
exec 9>"$images_root/.$name.lock"
flock 9

# Names, sizes and mtimes are enough to notice a rebuilt base without reading 300 MB.
inputs=$(
  {
    sha256sum "$0" "$key.pub"
    find "$base" -xdev -printf '%P %s %T@ %m %U %G\n' | LC_ALL=C sort
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$img" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
  echo "$img"
  exit 0
fi

stage=$(mktemp -d "$images_root/.stage-$name.XXXXXX")
cleanup() { rm -rf --one-file-system "$stage"; }
trap cleanup EXIT
root="$stage/rootfs"

log "staging $base"
cp -a "$base" "$root"

# Authorized key for root.
install -d -m 700 "$root/root/.ssh"
install -m 600 "$key.pub" "$root/root/.ssh/authorized_keys"

# sshd drop-in. Debian's sshd_config Includes sshd_config.d/*.conf first, and the first value
# of an option wins, so these override the main file.
install -d -m 755 "$root/etc/ssh/sshd_config.d"
conf="$root/etc/ssh/sshd_config.d/coppice.conf"
cat > "$conf" <<'EOF'
# coppice pool guest (written by ops/bhyve/build-image.sh)
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 256
MaxStartups 100:30:200
EOF

# Fresh host keys for this image.
rm -f "$root"/etc/ssh/ssh_host_*
ssh-keygen -q -A -f "$root" >&2

# PerSourcePenalties only exists from OpenSSH 9.8 on; older sshd refuses to start with it.
# (Capture first: with pipefail, `sshd -t | grep -q` reports sshd's failure, not grep's match.)
probe=$(chroot "$root" /usr/sbin/sshd -t -o PerSourcePenalties=no 2>&1 || true)
if printf '%s\n' "$probe" | grep -q 'Bad configuration option'; then
  log "sshd in the image predates PerSourcePenalties (OpenSSH < 9.8); not setting it"
else
  echo 'PerSourcePenalties no' >> "$conf"
fi

# Lean root shell: dash reads no rc file for `sh -c`, so an exec pays no shell startup cost.
sed -i 's#^\(root:[^:]*:0:0:[^:]*:[^:]*:\).*$#\1/bin/sh#' "$root/etc/passwd"

# The non-root exec user the gateway expects (the base normally has it already).
grep -q '^user:' "$root/etc/passwd" || chroot "$root" /usr/sbin/useradd -m -s /bin/bash user

# Mount points the pool guest mounts over; an ext4 image cannot grow them at run time.
for d in proc sys dev run tmp; do install -d "$root/$d"; done
chmod 1777 "$root/tmp"

# Size: contents plus a quarter, plus 64 MiB for filesystem metadata.
kib=$(du -sk --apparent-size "$root" | cut -f1)
size_kib=$(( kib + kib / 4 + 65536 ))
tmpimg="$stage/$name.img"
log "mkfs.ext4 ${size_kib} KiB"
truncate -s "${size_kib}K" "$tmpimg"
mkfs.ext4 -q -F -L "cpc-$name" -O ^has_journal -d "$root" "$tmpimg"

# Rename is atomic: a pool-ctl that has the old image loop-mounted keeps its inode.
mv -f "$tmpimg" "$img"
echo "$inputs" > "$stamp"
log "built $img"
echo "$img"
