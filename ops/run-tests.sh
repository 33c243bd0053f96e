#!/bin/sh
# Quick start: set everything up, then run the whole test suite (CI runs exactly this).
set -eu
cd "$(dirname "$0")/.."
sh ops/setup.sh
exec npm test
