#!/bin/sh
# Build and install coppice-agent (the jail sandboxes' init and the gateway's channel into them; see
# agent/main.c). Static, libc only, so it runs in any rootfs it is bind-mounted into.
# Idempotent: rebuilds only when a source under agent/ is newer than the installed binary.
set -eu
cd "$(dirname "$0")/../../agent"
DEST=${COPPICE_AGENT:-/usr/local/lib/coppice/coppice-agent}
if [ -x "$DEST" ] && [ -z "$(find . -maxdepth 1 -type f \( -name '*.c' -o -name '*.h' -o -name Makefile \) -newer "$DEST")" ]; then
  exit 0
fi
mkdir -p "$(dirname "$DEST")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s CC="${CC:-cc}" OUT="$tmp/coppice-agent"
install -m 0755 "$tmp/coppice-agent" "$DEST"
printf 'setup: built %s\n' "$DEST" >&2
