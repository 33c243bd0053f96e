#!/bin/sh
# Build <TEMPLATES_ROOT>/base-template: a Debian bookworm minbase root filesystem with bash, python3,
# sudo, procps, openssh-server and ca-certificates, plus user `user` (uid 1000, passwordless sudo).
# Jail sandboxes use it directly as their overlay lower layer; the bhyve image builder derives its
# disk image from it (hence openssh-server).
#
# Usage: build-base.sh [TEMPLATES_ROOT]     (default /var/lib/coppice/templates)
# Env:   MIRROR=<uri> overrides the mirror taken from this machine's apt sources.
#        TEMPLATE_NAME, EXTRA_PACKAGES (comma-separated) and OVERLAY_DIR (copied over the root
#        filesystem last) make a derived template, e.g. build-code-interpreter.sh.
#
# Idempotent and interrupt-safe: the build happens in <root>/.tmp-base.XXXXXX and is renamed into
# place with the marker .coppice-template written last; a finished template makes later runs exit at
# once ("cached"); a per-template lock serializes concurrent runs; stale temp dirs (and mounts that
# an interrupted debootstrap left inside them) are removed by the next run.
#
# SSH host keys are deliberately removed: every sandbox/guest made from this template would otherwise
# share them. Whoever boots sshd from it must run `ssh-keygen -A` first.
set -eu

NAME=${TEMPLATE_NAME:-base}
SUITE=bookworm
# git and python (python-is-python3), as E2B's base template has them.
PACKAGES=bash,python3,python-is-python3,git,sudo,procps,openssh-server,ca-certificates${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}
OVERLAY_DIR=${OVERLAY_DIR:-}
VERSION="coppice-$NAME-template 2 $PACKAGES${OVERLAY_DIR:+ overlay=$(find "$OVERLAY_DIR" -type f -exec cksum {} + | sort | cksum | cut -d' ' -f1)}"
FALLBACK_MIRROR=http://deb.debian.org/debian
ROOT=${1:-/var/lib/coppice/templates}
MARKER=.coppice-template

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Unmount everything at or under $1 (deepest first), then delete it without leaving its filesystem.
remove_tree() {
  [ -e "$1" ] || return 0
  awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
    sort -rn | cut -d' ' -f2- | while read -r mp; do
      umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "warning: cannot unmount $mp"
    done
  rm -rf --one-file-system -- "$1"
}

# One-line format: "deb [opts] URI SUITE COMPONENT...". Prints the first URI serving SUITE main.
mirror_from_list() {
  awk -v suite="$SUITE" '
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) != suite) next
      for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; exit }
    }' "$1"
}

# deb822 format (*.sources): stanzas separated by blank lines, "Key: value" fields.
mirror_from_sources() {
  awk -v suite="$SUITE" '
    BEGIN { RS = ""; FS = "\n" }
    {
      split("", f)
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^[ \t#]/ || index($i, ":") == 0) continue   # comments, continuation lines
        k = tolower(substr($i, 1, index($i, ":") - 1))
        v = substr($i, index($i, ":") + 1)
        f[k] = " " v " "
      }
      if (f["enabled"] ~ / no /) next
      if (f["types"] ~ /[ \t]deb[ \t]/ && f["suites"] ~ ("[ \t]" suite "[ \t]") && f["components"] ~ /[ \t]main[ \t]/) {
        split(f["uris"], u, " "); print u[1]; exit
      }
    }' "$1"
}

find_mirror() {
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    case $f in
      *.sources) uri=$(mirror_from_sources "$f") ;;
      *) uri=$(mirror_from_list "$f") ;;
    esac
    case $uri in
      http://* | https://* | file:/*) printf '%s\n' "$uri"; return 0 ;;
      *) ;; # empty, cdrom:, mirror+...: not usable by debootstrap
    esac
  done
  printf '%s\n' "$FALLBACK_MIRROR"
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap not found (apt install debootstrap)"

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
  # Ours, from an older builder (other packages or files): rebuild it; sandboxes running from
  # it keep their overlay lower layer open, so it is moved aside, not deleted under them.
  log "rebuilding $FINAL (was: $(head -c 200 "$FINAL/$MARKER"))"
  OLD="$ROOT/.old-$NAME.$$"
  mv -T -- "$FINAL" "$OLD"
fi
[ -e "$FINAL" ] && die "$FINAL exists without $MARKER (not ours, or foreign); remove it first"

for stale in "$ROOT/.tmp-$NAME".* "$ROOT/.old-$NAME".*; do
  [ "$stale" = "${OLD:-}" ] && continue
  [ -e "$stale" ] || continue
  log "removing stale partial build $stale"
  remove_tree "$stale"
done

MIRROR=${MIRROR:-$(find_mirror)}
TMP=$(mktemp -d "$ROOT/.tmp-$NAME.XXXXXX")
# Expand TMP now; it is fixed for this run.
# shellcheck disable=SC2064
trap "remove_tree '$TMP'; rm -f -- '$TMP.log'" EXIT
trap 'exit 130' INT TERM HUP

log "debootstrap $SUITE from $MIRROR into $TMP (about a minute)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$TMP" "$MIRROR" >"$TMP.log" 2>&1 ||
  { tail -n 30 "$TMP.log" >&2; die "debootstrap failed"; }
rm -f -- "$TMP.log"

chroot "$TMP" useradd --create-home --uid 1000 --user-group --shell /bin/bash user
printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\n' >"$TMP/etc/sudoers.d/coppice-user"
chmod 0440 "$TMP/etc/sudoers.d/coppice-user"
chroot "$TMP" visudo -cq -f /etc/sudoers.d/coppice-user || die "sudoers drop-in does not parse"

printf 'coppice\n' >"$TMP/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$TMP/etc/hosts"
rm -f -- "$TMP"/etc/ssh/ssh_host_*

# Lean: no package lists or caches, no docs/man pages (and none installed later, copyrights kept).
chroot "$TMP" apt-get clean
rm -rf -- "$TMP"/var/lib/apt/lists/* "$TMP"/var/cache/apt/*.bin "$TMP"/var/cache/debconf/*-old \
  "$TMP"/usr/share/man/* "$TMP"/usr/share/info/* "$TMP"/var/log/*.log "$TMP"/var/log/apt/* "$TMP"/tmp/*
find "$TMP/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
cat >"$TMP/etc/dpkg/dpkg.cfg.d/coppice-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF

# debootstrap unmounts what it mounted on success; make sure nothing stays mounted in the template.
if awk -v d="$TMP" 'index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
  die "mounts left under $TMP after debootstrap"
fi

if [ -n "$OVERLAY_DIR" ]; then
  cp -a -- "$OVERLAY_DIR/." "$TMP/"
  chown -R 0:0 -- "$TMP/etc/coppice" "$TMP/opt" 2>/dev/null || true
fi

printf '%s\n' "$VERSION" >"$TMP/$MARKER"
chmod 0755 "$TMP"
mv -T -- "$TMP" "$FINAL"
trap - EXIT
log "built $FINAL ($(du -sh "$FINAL" | cut -f1))"
