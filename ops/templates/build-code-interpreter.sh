#!/bin/sh
# Build <TEMPLATES_ROOT>/code-interpreter-template (and code-interpreter-v1-template, the name
# E2B's code-interpreter SDK asks for by default): the base template plus matplotlib and
# coppice's own code-interpreter server on port 49999 (stdlib Python, no Jupyter; started by
# /etc/coppice/start when a sandbox is created). See docs/code-interpreter.md.
#
# Usage: build-code-interpreter.sh [TEMPLATES_ROOT]     (default /var/lib/coppice/templates)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${1:-/var/lib/coppice/templates}
TEMPLATE_NAME=code-interpreter EXTRA_PACKAGES=python3-matplotlib OVERLAY_DIR="$HERE/code-interpreter/rootfs" \
  sh "$HERE/build-base.sh" "$ROOT"
# The alias: the same tree, hard-linked (read-only lower layers, so sharing inodes is safe).
ALIAS="$ROOT/code-interpreter-v1-template"
if [ ! -f "$ALIAS/.coppice-template" ] || ! cmp -s "$ALIAS/.coppice-template" "$ROOT/code-interpreter-template/.coppice-template"; then
  TMP="$ROOT/.tmp-code-interpreter-v1.$$"
  rm -rf -- "$TMP"
  cp -al -- "$ROOT/code-interpreter-template" "$TMP"
  [ -e "$ALIAS" ] && mv -T -- "$ALIAS" "$ROOT/.old-code-interpreter-v1.$$"
  mv -T -- "$TMP" "$ALIAS"
  printf '%s: linked %s\n' "${0##*/}" "$ALIAS" >&2
fi
