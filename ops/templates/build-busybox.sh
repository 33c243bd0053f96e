#!/bin/sh
# Build <TEMPLATES_ROOT>/busybox-template: a ~2 MB root filesystem made of the host's static busybox
# and its applet links, with users root and user (1000). Used by tests because it builds in well under
# a second; real workloads use base-template (build-base.sh).
#
# Usage: build-busybox.sh [TEMPLATES_ROOT]     (default /var/lib/coppice/templates)
#
# Idempotent and interrupt-safe: the build happens in <root>/.tmp-busybox.XXXXXX and is renamed into
# place with the marker .coppice-template written last; a finished template makes later runs exit at
# once ("cached"); a per-template lock serializes concurrent runs; stale temp dirs are removed.
set -eu

VERSION='coppice-busybox-template 1'
NAME=busybox
ROOT=${1:-/var/lib/coppice/templates}
BUSYBOX=${BUSYBOX:-/bin/busybox}
MARKER=.coppice-template

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (files are owned by uid 0 and 1000)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found (apt install busybox-static)"
# A dynamically linked busybox would need the host's libc inside the template.
if ! "$BUSYBOX" --list-full >/dev/null 2>&1 || LC_ALL=C ldd "$BUSYBOX" 2>/dev/null | grep -q '=>'; then
  die "$BUSYBOX must be a static busybox (busybox-static)"
fi

mkdir -p -- "$ROOT"
FINAL="$ROOT/$NAME-template"

# Serialize builders of this template; fd 9 stays open (and locked) until the script exits.
exec 9>"$ROOT/.lock-$NAME"
flock 9 || die "cannot lock $ROOT/.lock-$NAME"

if [ -f "$FINAL/$MARKER" ]; then
  if [ "$(cat "$FINAL/$MARKER")" = "$VERSION" ]; then
    log "cached: $FINAL"
    exit 0
  fi
  die "$FINAL was built by another builder version ($(cat "$FINAL/$MARKER")); remove it to rebuild"
fi
[ -e "$FINAL" ] && die "$FINAL exists without $MARKER (not ours, or foreign); remove it first"

for stale in "$ROOT/.tmp-$NAME".*; do
  [ -e "$stale" ] || continue
  log "removing stale partial build $stale"
  rm -rf --one-file-system -- "$stale"
done

TMP=$(mktemp -d "$ROOT/.tmp-$NAME.XXXXXX")
# Expand TMP now; it is fixed for this run.
# shellcheck disable=SC2064
trap "rm -rf --one-file-system -- '$TMP'" EXIT
trap 'exit 130' INT TERM HUP

cd "$TMP"
mkdir -p bin sbin usr/bin usr/sbin etc root home/user tmp proc sys dev var/tmp
cp "$BUSYBOX" bin/busybox
chmod 0755 bin/busybox
# Absolute links: they resolve inside the sandbox, where /bin/busybox is this copy.
"$BUSYBOX" --list-full | while read -r applet; do
  case $applet in
    */*) [ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet" ;;
    *) ;; # "linuxrc" and friends at the top level: not wanted in a rootfs
  esac
done

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
tty:x:5:
user:x:1000:
nogroup:x:65534:
EOF
printf 'busybox\n' >etc/hostname
chmod 0644 etc/passwd etc/group etc/hostname
chmod 0700 root
chmod 1777 tmp var/tmp
chown 1000:1000 home/user
chmod 0755 home/user

printf '%s\n' "$VERSION" >"$MARKER"
chmod 0755 "$TMP"
cd /
mv -T -- "$TMP" "$FINAL"
trap - EXIT
log "built $FINAL"
