#!/bin/sh
# Quick start: set everything up, then run the gateway on its embedded default
# (Linux jail driver, built-in `base` template, 127.0.0.1:3000). Extra flags go to `coppice serve`.
set -eu
cd "$(dirname "$0")/.."
sh ops/setup.sh
exec node bin/coppice.mjs serve "$@"
