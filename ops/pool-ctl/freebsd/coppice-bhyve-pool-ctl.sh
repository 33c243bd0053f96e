#!/bin/sh
# coppice-bhyve-pool-ctl.sh — FreeBSD implementation of the pool-ctl contract (real bhyve guests).
#
# UNTESTED: no FreeBSD host was available when this was written. It passes `sh -n` and shellcheck
# and follows the recipes in notes/freebsd-recipes.md (vm-bhyve's boot sequence, cbsd's SIGSTOP
# pause), but it has never booted a guest. The Linux twin (../linux/) is the tested one; both
# print the same JSON (notes/pool-ctl-contract.md).
#
# Verbs: warm <template> --count N | checkout <template> [--owner ID] | release <vm>
#        | pause <vm> | resume <vm> | drain <template> | list [--json]
# checkout exits 3 when no guest is ready.
#
# Guests: <TEMPLATES_ROOT>/<template>.img is a bootable FreeBSD disk image. Each guest gets its own
# copy (a ZFS clone when COPPICE_POOL_CTL_ZFS names a dataset, else a plain copy: slow), a tap
# on $BRIDGE, and boots with bhyveload + bhyve. The address is handed to the guest in the loader
# environment (`bhyveload -e coppice.ip=... -e coppice.gw=...`); the image must carry an rc.d
# script that runs `ifconfig vtnet0 inet $(kenv coppice.ip)/24 && route add default $(kenv coppice.gw)`
# plus sshd with the pool key (UEFI guests have no kenv: use DHCP with the MAC set below instead).
# Warm guests are kept SIGSTOPped (kill -STOP of the bhyve process); checkout SIGCONTs them.
#
# Env: COPPICE_POOL_CTL_STATE (/var/db/coppice/pool-ctl), COPPICE_BHYVE_TEMPLATES_ROOT
# (/vms/templates), COPPICE_POOL_CTL_SUBNET (10.77.0.0/24), COPPICE_POOL_CTL_BRIDGE (bridge77),
# COPPICE_POOL_CTL_PREFIX (cpcvm), COPPICE_POOL_KEY (/root/coppice-signing/pool-key),
# COPPICE_POOL_CTL_ZFS (unset), COPPICE_POOL_CTL_MEM (256M), COPPICE_POOL_CTL_CPUS (1),
# COPPICE_POOL_CTL_BOOT_TIMEOUT (60 s).
set -eu

STATE=${COPPICE_POOL_CTL_STATE:-/var/db/coppice/pool-ctl}
TEMPLATES_ROOT=${COPPICE_BHYVE_TEMPLATES_ROOT:-/vms/templates}
SUBNET=${COPPICE_POOL_CTL_SUBNET:-10.77.0.0/24}
BRIDGE=${COPPICE_POOL_CTL_BRIDGE:-bridge77}
PREFIX=${COPPICE_POOL_CTL_PREFIX:-cpcvm}
KEY=${COPPICE_POOL_KEY:-/root/coppice-signing/pool-key}
ZFS=${COPPICE_POOL_CTL_ZFS:-}
MEM=${COPPICE_POOL_CTL_MEM:-256M}
CPUS=${COPPICE_POOL_CTL_CPUS:-1}
BOOT_TIMEOUT=${COPPICE_POOL_CTL_BOOT_TIMEOUT:-60}
SELF=$(realpath "$0")

die() { code=$1; shift; echo "pool-ctl: $*" >&2; exit "$code"; }
say() { echo "pool-ctl: $*" >&2; }

case $SUBNET in
  *.*.*.0/24) NET3=${SUBNET%.0/24} ;;
  *) die 2 "COPPICE_POOL_CTL_SUBNET must be a /24 like 10.77.0.0/24" ;;
esac
GW="$NET3.1"

valid_name() { case $1 in ''|*[!A-Za-z0-9._-]*|[.-]*) return 1 ;; esac; return 0; }
valid_vm() { case $1 in "$PREFIX"[0-9]*) valid_name "$1" ;; *) return 1 ;; esac; }

vmdir() { echo "$STATE/vms/$1"; }
get() { f="$(vmdir "$1")/$2"; if [ -f "$f" ]; then cat "$f"; fi; }
put() { d=$(vmdir "$1"); printf '%s\n' "$3" > "$d/$2.tmp" && mv -f "$d/$2.tmp" "$d/$2"; }
all_vms() { for d in "$STATE"/vms/*/; do [ -d "$d" ] && basename "$d"; done; return 0; }

# A pid is ours only if it is still the bhyve we started (same start time), never matched by name.
pstart() { ps -o lstart= -p "$1" 2>/dev/null || true; }
pid_alive() { [ -n "$1" ] && [ -n "$2" ] && [ "$(pstart "$1")" = "$2" ]; }
vm_alive() { pid_alive "$(get "$1" pid)" "$(get "$1" pid_start)"; }

# Critical sections run as `lockf <lock> $SELF __locked <verb> ...` (FreeBSD has lockf(1), not flock).
locked() { mkdir -p "$STATE/vms"; lockf -k -t 120 "$STATE/lock" "$SELF" __locked "$@"; }

ensure_bridge() {
  if ! ifconfig "$BRIDGE" >/dev/null 2>&1; then
    ifconfig bridge create name "$BRIDGE" >/dev/null
    ifconfig "$BRIDGE" inet "$GW/24" up
  fi
}

alloc_vm() {
  n=0
  [ -f "$STATE/counter" ] && n=$(cat "$STATE/counter")
  i=0
  while [ "$i" -lt 99999 ]; do
    n=$(( n % 99999 + 1 )); i=$((i + 1))
    if [ ! -e "$(vmdir "$PREFIX$n")" ] && [ ! -e "/dev/vmm/$PREFIX$n" ]; then echo "$n" > "$STATE/counter"; echo "$PREFIX$n"; return 0; fi
  done
  die 1 "no free guest name"
}
alloc_ip() {
  used=" "
  for vm in $(all_vms); do used="$used$(get "$vm" ip) "; done
  h=2
  while [ "$h" -le 254 ]; do
    case $used in *" $NET3.$h "*) ;; *) echo "$NET3.$h"; return 0 ;; esac
    h=$((h + 1))
  done
  die 1 "no free address in $SUBNET"
}

disk_create() { # disk_create <vm> <template>: per-guest copy of the template disk
  if [ -n "$ZFS" ]; then
    zfs list -H "$ZFS/templates/$2@base" >/dev/null 2>&1 || {
      zfs create -p -V "$(stat -f %z "$TEMPLATES_ROOT/$2.img")" -o volmode=dev "$ZFS/templates/$2"
      dd if="$TEMPLATES_ROOT/$2.img" of="/dev/zvol/$ZFS/templates/$2" bs=1m conv=sparse 2>/dev/null
      zfs snapshot "$ZFS/templates/$2@base"
    }
    zfs clone -o volmode=dev "$ZFS/templates/$2@base" "$ZFS/guests/$1"
    echo "/dev/zvol/$ZFS/guests/$1"
  else
    cp "$TEMPLATES_ROOT/$2.img" "$(vmdir "$1")/disk.img"
    echo "$(vmdir "$1")/disk.img"
  fi
}
disk_destroy() {
  if [ -n "$ZFS" ]; then zfs destroy "$ZFS/guests/$1" 2>/dev/null || true; fi
  rm -f "$(vmdir "$1")/disk.img"
}

destroy_vm() {
  vm=$1
  pid=$(get "$vm" pid)
  if pid_alive "$pid" "$(get "$vm" pid_start)"; then
    kill -CONT "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    i=0; while [ "$i" -lt 50 ] && pid_alive "$pid" "$(get "$vm" pid_start)"; do sleep 0.1; i=$((i + 1)); done
  fi
  if [ -e "/dev/vmm/$vm" ]; then bhyvectl --vm="$vm" --destroy 2>/dev/null || true; fi
  tap=$(get "$vm" tap)
  if [ -n "$tap" ]; then ifconfig "$tap" destroy 2>/dev/null || true; fi
  disk_destroy "$vm"
  rm -rf "$(vmdir "$vm")"
}

reap_stale() {
  for vm in $(all_vms); do
    case $(get "$vm" state) in
      booting) pid_alive "$(get "$vm" warm_pid)" "$(get "$vm" warm_start)" || destroy_vm "$vm" ;;
      available) vm_alive "$vm" || destroy_vm "$vm" ;;
      in_use|paused) vm_alive "$vm" || put "$vm" state dead ;;
      dead) ;;
      *) destroy_vm "$vm" ;;
    esac
  done
}

count_vms() { # count_vms <template> <state...>
  t=$1; shift; n=0
  for vm in $(all_vms); do
    [ "$(get "$vm" template)" = "$t" ] || continue
    st=$(get "$vm" state)
    for s in "$@"; do [ "$st" = "$s" ] && n=$((n + 1)); done
  done
  echo "$n"
}

probe_ssh() {
  ssh -F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=2 -o BatchMode=yes -o LogLevel=ERROR "root@$1" true </dev/null >/dev/null 2>&1
}

boot_guest() { # runs without the lock
  vm=$1; t=$(get "$vm" template); ip=$(get "$vm" ip); d=$(vmdir "$vm")
  disk=$(disk_create "$vm" "$t")
  tap=$(ifconfig tap create)
  put "$vm" tap "$tap"
  ifconfig "$BRIDGE" addm "$tap" up
  ifconfig "$tap" up
  h=${ip##*.}
  mac=$(printf '58:9c:fc:77:%02x:%02x' $((h / 256)) $((h % 256)))
  bhyveload -c stdio -m "$MEM" -d "$disk" -e autoboot_delay=0 -e "coppice.ip=$ip" -e "coppice.gw=$GW" "$vm" </dev/null >"$d/loader.log" 2>&1
  daemon -p "$d/bhyve.pid" -o "$d/console.log" \
    bhyve -c "$CPUS" -m "$MEM" -A -H -P -u -s 0,hostbridge -s 2,"virtio-net,$tap,mac=$mac" \
      -s 3,virtio-blk,"$disk" -s 31,lpc -l com1,stdio "$vm"
  i=0; while [ ! -s "$d/bhyve.pid" ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  pid=$(cat "$d/bhyve.pid" 2>/dev/null || true)
  [ -n "$pid" ] || { echo "bhyve for $vm did not start: $(tail -n 1 "$d/console.log" 2>/dev/null)"; return 1; }
  put "$vm" pid "$pid"; put "$vm" pid_start "$(pstart "$pid")"
  i=0
  until probe_ssh "$ip"; do
    vm_alive "$vm" || { echo "guest $vm exited while booting: $(tail -n 1 "$d/console.log" 2>/dev/null)"; return 1; }
    [ "$i" -lt $((BOOT_TIMEOUT * 5)) ] || { echo "guest $vm: sshd did not answer on $ip within ${BOOT_TIMEOUT}s"; return 1; }
    sleep 0.2; i=$((i + 1))
  done
  kill -STOP "$pid"
  say "warm $t: $vm ($ip) ready"
}

# ---- verbs that run under the lock
l_reserve() { # l_reserve <template> <count> <warm pid> <warm start>: prints the vms to boot
  ensure_bridge; reap_stale
  need=$(( $2 - $(count_vms "$1" available booting) ))
  while [ "$need" -gt 0 ]; do
    vm=$(alloc_vm); mkdir -p "$(vmdir "$vm")"
    put "$vm" template "$1"; put "$vm" ip "$(alloc_ip)"; put "$vm" state booting
    put "$vm" warm_pid "$3"; put "$vm" warm_start "$4"
    echo "$vm"; need=$((need - 1))
  done
}
l_set() { put "$1" state "$2"; }
l_destroy() { destroy_vm "$1"; }
l_count() { count_vms "$1" available; }
l_checkout() {
  reap_stale
  for vm in $(all_vms); do
    if [ "$(get "$vm" template)" != "$1" ] || [ "$(get "$vm" state)" != available ]; then continue; fi
    kill -CONT "$(get "$vm" pid)"
    put "$vm" state in_use
    [ -z "$2" ] || put "$vm" owner "$2"
    printf '{"vm":"%s","ip":"%s","template":"%s"}\n' "$vm" "$(get "$vm" ip)" "$1"
    return 0
  done
  die 3 "checkout: no ready guest for template $1 (pool empty; warm it)"
}
l_release() { [ -d "$(vmdir "$1")" ] || return 0; destroy_vm "$1"; }
l_pause_resume() {
  [ -d "$(vmdir "$2")" ] || die 1 "$1: no such vm $2"
  vm_alive "$2" || die 1 "$1: guest $2 is not running"
  case $1:$(get "$2" state) in
    pause:in_use|pause:paused) kill -STOP "$(get "$2" pid)"; put "$2" state paused ;;
    resume:paused|resume:in_use) kill -CONT "$(get "$2" pid)"; put "$2" state in_use ;;
    *) die 1 "$1: guest $2 is not checked out" ;;
  esac
}
l_drain() {
  reap_stale
  for vm in $(all_vms); do
    if [ "$(get "$vm" template)" = "$1" ] && [ "$(get "$vm" state)" = available ]; then destroy_vm "$vm"; fi
  done
  if [ -z "$(all_vms)" ] && ifconfig "$BRIDGE" >/dev/null 2>&1; then ifconfig "$BRIDGE" destroy || true; fi
}
l_list() {
  reap_stale
  ts=" "
  for f in "$TEMPLATES_ROOT"/*.img; do [ -f "$f" ] || continue; t=$(basename "$f" .img); valid_name "$t" && ts="$ts$t "; done
  for vm in $(all_vms); do t=$(get "$vm" template); case $ts in *" $t "*) ;; *) ts="$ts$t " ;; esac; done
  if [ "$1" != --json ]; then
    for vm in $(all_vms); do printf '%s\t%s\t%s\t%s\t%s\n' "$vm" "$(get "$vm" template)" "$(get "$vm" ip)" "$(get "$vm" state)" "$(get "$vm" owner)"; done
    return 0
  fi
  sep=''; printf '{"templates":{'
  for t in $ts; do
    printf '%s"%s":{"available":%d,"in_use":%d}' "$sep" "$t" "$(count_vms "$t" available)" "$(count_vms "$t" in_use paused dead)"; sep=,
  done
  sep=''; printf '},"vms":['
  for vm in $(all_vms); do
    o=$(get "$vm" owner)
    printf '%s{"vm":"%s","template":"%s","ip":"%s","state":"%s"%s}' "$sep" "$vm" "$(get "$vm" template)" "$(get "$vm" ip)" \
      "$(get "$vm" state)" "${o:+,\"owner\":\"$o\"}"; sep=,
  done
  printf ']}\n'
}

cmd_warm() {
  t=${1:-}; count=''
  [ $# -gt 0 ] && shift
  while [ $# -gt 0 ]; do
    case $1 in
      --count) count=${2:-}; [ $# -ge 2 ] || die 2 "--count needs a value"; shift 2 ;;
      --count=*) count=${1#--count=}; shift ;;
      *) die 2 "warm: unknown argument '$1'" ;;
    esac
  done
  valid_name "$t" || die 2 "warm: bad template name '$t'"
  case $count in ''|*[!0-9]*) die 2 "warm: --count must be a number" ;; esac
  [ -f "$TEMPLATES_ROOT/$t.img" ] || die 1 "warm: no image $TEMPLATES_ROOT/$t.img"
  kldstat -q -m vmm || kldload vmm
  vms=$(locked reserve "$t" "$count" "$$" "$(pstart "$$")")
  failed=0; pids=''
  for vm in $vms; do
    say "warm $t: booting $vm"
    boot_guest "$vm" > "$(vmdir "$vm")/boot.err" 2>&1 &
    pids="$pids $vm:$!"
  done
  for p in $pids; do
    vm=${p%%:*}
    if wait "${p#*:}"; then cat "$(vmdir "$vm")/boot.err" >&2; locked set "$vm" available
    else say "warm $t: $vm failed: $(tail -n 1 "$(vmdir "$vm")/boot.err")"; locked destroy "$vm"; failed=$((failed + 1)); fi
  done
  printf '{"template":"%s","available":%d}\n' "$t" "$(locked count "$t")"
  [ "$failed" = 0 ] || die 1 "warm $t: $failed guests failed to boot"
}

verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in
  warm) cmd_warm "$@" ;;
  checkout)
    t=${1:-}; owner=''
    [ "${2:-}" = --owner ] && owner=${3:-}
    valid_name "$t" || die 2 "checkout: bad template name '$t'"
    [ -z "$owner" ] || valid_name "$owner" || die 2 "checkout: bad owner"
    locked checkout "$t" "$owner" ;;
  release|pause|resume)
    valid_vm "${1:-}" || die 2 "$verb: bad vm name '${1:-}'"
    if [ "$verb" = release ]; then locked release "$1"; else locked pause_resume "$verb" "$1"; fi ;;
  drain) valid_name "${1:-}" || die 2 "drain: bad template name"; locked drain "$1" ;;
  list) locked list "${1:-}" ;;
  __locked) v=$1; shift; "l_$v" "$@" ;;
  *) die 2 "usage: $(basename "$0") warm <template> --count N | checkout <template> [--owner ID] | release <vm> | pause <vm> | resume <vm> | drain <template> | list --json" ;;
esac
