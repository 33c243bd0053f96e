#!/bin/sh
# Everything a fresh Debian 12 host (as root, with Node 20) needs to run and test coppice:
# Debian packages, npm dependencies, and the built-in templates. Idempotent: a second run only
# checks. Used by ops/run-gateway.sh, ops/run-tests.sh and CI.
set -eu
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "run as root (runc, network namespaces and mounts need it)"; exit 1; }
command -v node >/dev/null 2>&1 || { log "Node.js 20 is required"; exit 1; }

# Debian packages: runtime (runc, tini, busybox-static, iproute2, nftables), template builders
# (debootstrap, e2fsprogs), the Linux pool-ctl (openssh-server/-client, util-linux), the microVM pool-ctl
# (qemu-system-x86, qemu-utils for qcow2 overlays, cpio for its initramfs), checks (shellcheck),
# the browser the page tests drive (chromium, through playwright-core), and the C helpers' toolchain
# (gcc, libc6-dev with its static libc.a, make).
PACKAGES="runc tini busybox-static iproute2 nftables debootstrap e2fsprogs util-linux procps \
openssh-server openssh-client shellcheck ca-certificates chromium gcc libc6-dev make \
qemu-system-x86 qemu-utils cpio"
missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  apt-get update -qq
  # No daemons get started by package scripts (sshd runs only inside pool guests).
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi

if [ ! -f node_modules/.package-lock.json ] || [ -n "$(find package-lock.json -newer node_modules/.package-lock.json)" ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The jail driver's idmapped-mount helper (user namespaces; needs gcc/libc6-dev, or any cc).
sh ops/idmap/build.sh
# The jail sandboxes' init and the gateway's channel into them (static: gcc, libc6-dev's libc.a, make).
sh ops/agent/build.sh

TEMPLATES_ROOT=${COPPICE_TEMPLATES_ROOT:-/var/lib/coppice/templates}
sh ops/templates/build-busybox.sh "$TEMPLATES_ROOT"
sh ops/templates/build-base.sh "$TEMPLATES_ROOT"
sh ops/templates/build-code-interpreter.sh "$TEMPLATES_ROOT"
log "ready (templates in $TEMPLATES_ROOT)"
