#!/bin/sh
# Build and install coppice-idmap (the jail driver's idmapped-mount helper; see coppice-idmap.c).
# Idempotent: rebuilds only when the source is newer than the installed binary.
set -eu
cd "$(dirname "$0")"
DEST=${COPPICE_IDMAP:-/usr/local/lib/coppice/coppice-idmap}
if [ -x "$DEST" ] && [ -z "$(find coppice-idmap.c -newer "$DEST")" ]; then exit 0; fi
mkdir -p "$(dirname "$DEST")"
tmp=$(mktemp)
cc -O2 -Wall -Wextra -Werror -o "$tmp" coppice-idmap.c
install -m 0755 "$tmp" "$DEST"
rm -f "$tmp"
printf 'setup: built %s\n' "$DEST" >&2
