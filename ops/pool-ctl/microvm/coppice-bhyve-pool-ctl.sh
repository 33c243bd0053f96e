#!/bin/bash
# coppice-bhyve-pool-ctl.sh — microVM implementation of the pool-ctl contract for Linux
# (notes/pool-ctl-contract.md; same verbs, output and exit codes as ../linux/ and ../freebsd/).
#
# A guest is a QEMU `microvm` running its own kernel (Debian's cloud kernel, ops/microvm/
# fetch-kernel.sh) with our initramfs (ops/microvm/build-initramfs.sh), which mounts the guest's
# disk as root and execs the image's sshd:
#   - disk: a qcow2 overlay over the template image <TEMPLATES_ROOT>/<t>.img (ops/bhyve/
#     build-image.sh), removed on release. The image is pinned by a hard link (or copy) under
#     $STATE/templates/<t>/, so a rebuilt image never changes under a running overlay;
#   - network: one tap <vm>t on bridge $BRIDGE, the address from $SUBNET, gateway .1, all passed
#     on the kernel command line together with the public half of the pool key (root's
#     authorized_keys in the overlay), so one initramfs serves every guest;
#   - acceleration: KVM when a probe boot under KVM reaches our init, else TCG (COPPICE_MICROVM_ACCEL
#     forces one). The result is cached per kernel, QEMU and host kernel in $STATE/accel.
# Warm boots guests until sshd answers, then SIGSTOPs the qemu process; checkout SIGCONTs it.
# Isolation on the bridge (firewall.sh): no guest to guest, no guest to host service, no
# spoofing, no egress; the host's SSH into a guest (and its replies) is all that passes.
#
# Verbs: warm <template> --count N | checkout <template> [--owner ID] | release <vm>
#        | pause <vm> | resume <vm> | drain <template> | list [--json]
# checkout exits 3 when no guest is ready. list --json adds "accel" (top level: the last probe;
# per vm: what it runs under).
#
# Env: COPPICE_POOL_CTL_STATE (/var/lib/coppice/pool-ctl), COPPICE_BHYVE_TEMPLATES_ROOT
# (/var/lib/coppice/bhyve), COPPICE_POOL_CTL_SUBNET (10.77.0.0/24; a /24), COPPICE_POOL_CTL_BRIDGE
# (cpcbr0), COPPICE_POOL_CTL_PREFIX (cpcvm; vm and tap names), COPPICE_POOL_KEY
# (/root/coppice-signing/pool-key), COPPICE_POOL_CTL_BOOT_TIMEOUT (120 s per guest; TCG is slow),
# COPPICE_MICROVM_CACHE (kernel + initramfs; $STATE/cache), COPPICE_MICROVM_ACCEL (auto|kvm|tcg),
# COPPICE_MICROVM_KVM_PROBE_TIMEOUT (10 s), COPPICE_MICROVM_MEM_MIB (256), COPPICE_MICROVM_VCPUS (1),
# COPPICE_MICROVM_BOOT_PARALLEL (guests booting at once during a warm; host CPUs).
# Per template, <TEMPLATES_ROOT>/<t>.microvm may set `memory_mib=N` and `vcpus=N` (one per line).
#
# qemu processes are only ever signalled by the pids recorded at boot (checked against their start
# time). One flock serialises state changes; booting runs outside it so checkout stays fast.
set -euo pipefail

STATE=${COPPICE_POOL_CTL_STATE:-/var/lib/coppice/pool-ctl}
TEMPLATES_ROOT=${COPPICE_BHYVE_TEMPLATES_ROOT:-/var/lib/coppice/bhyve}
SUBNET=${COPPICE_POOL_CTL_SUBNET:-10.77.0.0/24}
BRIDGE=${COPPICE_POOL_CTL_BRIDGE:-cpcbr0}
PREFIX=${COPPICE_POOL_CTL_PREFIX:-cpcvm}
KEY=${COPPICE_POOL_KEY:-/root/coppice-signing/pool-key}
BOOT_TIMEOUT=${COPPICE_POOL_CTL_BOOT_TIMEOUT:-120}
CACHE=${COPPICE_MICROVM_CACHE:-$STATE/cache}
ACCEL=${COPPICE_MICROVM_ACCEL:-auto}
KVM_PROBE_TIMEOUT=${COPPICE_MICROVM_KVM_PROBE_TIMEOUT:-10}
DEF_MEM=${COPPICE_MICROVM_MEM_MIB:-256}
DEF_VCPUS=${COPPICE_MICROVM_VCPUS:-1}
PARALLEL=${COPPICE_MICROVM_BOOT_PARALLEL:-$(nproc)}
SELF=$(readlink -f "$0")
OPS_MICROVM=${COPPICE_MICROVM_OPS:-$(dirname "$SELF")/../../microvm}
QEMU=qemu-system-x86_64
# The microvm machine with the legacy timer/interrupt devices the kernel needs (without pit it
# stops at TSC calibration); ACPI stays on: it is how the guest finds its virtio-mmio devices.
MACHINE_OPTS=isa-serial=on,pit=on,pic=on,rtc=on
BOOT_EXTRA='' # extra kernel parameters for this warm's guests

die() { local code=$1; shift; echo "pool-ctl: $*" >&2; exit "$code"; }
say() { echo "pool-ctl: $*" >&2; }

[[ $SUBNET =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || die 2 "COPPICE_POOL_CTL_SUBNET must be a /24 like 10.77.0.0/24, got '$SUBNET'"
NET3=${BASH_REMATCH[1]}
GW="$NET3.1"
# IFNAMSIZ is 16: prefix + 5-digit counter + 't' must fit in 15.
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,7}$ ]] || die 2 "COPPICE_POOL_CTL_PREFIX must be 1-8 of [a-z0-9], got '$PREFIX'"
[[ $BRIDGE =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die 2 "bad bridge name '$BRIDGE'"
[[ $ACCEL =~ ^(auto|kvm|tcg)$ ]] || die 2 "COPPICE_MICROVM_ACCEL must be auto, kvm or tcg, got '$ACCEL'"
[[ $BOOT_TIMEOUT =~ ^[0-9]{1,4}$ ]] || die 2 "COPPICE_POOL_CTL_BOOT_TIMEOUT must be seconds"
[[ $PARALLEL =~ ^[1-9][0-9]{0,2}$ ]] || die 2 "COPPICE_MICROVM_BOOT_PARALLEL must be 1..999, got '$PARALLEL'"
[[ $KVM_PROBE_TIMEOUT =~ ^[0-9]{1,3}$ ]] || die 2 "COPPICE_MICROVM_KVM_PROBE_TIMEOUT must be seconds"

valid_template() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$ ]]; }
valid_vm() { [[ $1 =~ ^${PREFIX}[0-9]{1,5}$ ]]; }
valid_mem() { [[ $1 =~ ^[0-9]{2,6}$ ]] && [ "$1" -ge 64 ] && [ "$1" -le 65536 ]; }
valid_vcpus() { [[ $1 =~ ^[0-9]{1,2}$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 64 ]; }
valid_mem "$DEF_MEM" || die 2 "COPPICE_MICROVM_MEM_MIB must be 64..65536, got '$DEF_MEM'"
valid_vcpus "$DEF_VCPUS" || die 2 "COPPICE_MICROVM_VCPUS must be 1..64, got '$DEF_VCPUS'"

# ---- locking: fd 9 is opened per critical section and closed to unlock, so background children
# (qemu above all) never inherit a held lock.
lock() { mkdir -p "$STATE/vms" "$STATE/templates"; exec 9>"$STATE/lock"; flock 9; }
unlock() { exec 9>&-; }

# ---- per-guest records: one small file per field under $STATE/vms/<vm>/, read with builtins only.
vmdir() { echo "$STATE/vms/$1"; }
get() { local f="$STATE/vms/$1/$2" v=''; if [ -f "$f" ]; then IFS= read -r v < "$f" || true; fi; printf '%s' "$v"; }
put() { local d="$STATE/vms/$1"; printf '%s\n' "$3" > "$d/$2.tmp" && mv -f "$d/$2.tmp" "$d/$2"; }

declare -a VMS=()
declare -A TPL=() IP=() ST=() OWN=() PID=() PST=() WPID=() WST=() ACC=()
scan() {
  local d vm f v
  VMS=(); TPL=(); IP=(); ST=(); OWN=(); PID=(); PST=(); WPID=(); WST=(); ACC=()
  for d in "$STATE"/vms/*/; do
    [ -d "$d" ] || continue
    d=${d%/}; vm=${d##*/}
    VMS+=("$vm")
    for f in template ip state owner pid pid_start warm_pid warm_start accel; do
      v=''
      if [ -f "$d/$f" ]; then IFS= read -r v < "$d/$f" || true; fi
      case $f in
        template) TPL[$vm]=$v ;; ip) IP[$vm]=$v ;; state) ST[$vm]=$v ;; owner) OWN[$vm]=$v ;;
        pid) PID[$vm]=$v ;; pid_start) PST[$vm]=$v ;; warm_pid) WPID[$vm]=$v ;; warm_start) WST[$vm]=$v ;;
        accel) ACC[$vm]=$v ;;
      esac
    done
  done
}

# pid_alive <pid> <starttime>: running (not a zombie) and the same process we recorded.
pid_alive() {
  local pid=$1 want=$2 line rest
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  read -r line < "/proc/$pid/stat" 2>/dev/null || return 1
  rest=${line##*) }
  # shellcheck disable=SC2086  # split the stat fields on purpose
  set -- $rest
  [ "$1" != Z ] && [ "$1" != X ] && [ "${20}" = "$want" ]
}
starttime() { local line rest; read -r line < "/proc/$1/stat"; rest=${line##*) }
  # shellcheck disable=SC2086
  set -- $rest; echo "${20}"; }
vm_alive() { pid_alive "$(get "$1" pid)" "$(get "$1" pid_start)"; }
# The VMM is one process: SIGSTOP freezes every vCPU and device thread of the guest at once.
signal_vm() { if vm_alive "$2"; then kill "-$1" "$(get "$2" pid)" 2>/dev/null || true; fi; }

ensure_bridge() {
  if ! ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$GW/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  ensure_firewall
}

# shellcheck source=ops/pool-ctl/microvm/firewall.sh
. "$(dirname "$SELF")/firewall.sh"
# shellcheck source=ops/pool-ctl/microvm/guest.sh
. "$(dirname "$SELF")/guest.sh"

alloc_vm() {
  local n=0 vm i
  if [ -f "$STATE/counter" ]; then read -r n < "$STATE/counter" || true; fi
  for ((i = 0; i < 99999; i++)); do
    n=$(( n % 99999 + 1 ))
    vm="$PREFIX$n"
    [ -e "$(vmdir "$vm")" ] || ip link show dev "${vm}t" >/dev/null 2>&1 || { echo "$n" > "$STATE/counter"; echo "$vm"; return 0; }
  done
  die 1 "no free guest name"
}
alloc_ip() {
  local used=" " vm h
  for vm in "${VMS[@]}"; do used+="${IP[$vm]} "; done
  for ((h = 2; h <= 254; h++)); do
    [[ $used == *" $NET3.$h "* ]] || { echo "$NET3.$h"; return 0; }
  done
  die 1 "no free address in $SUBNET"
}

# An address is reused at once: drop the neighbour entry still pointing at the previous guest's MAC.
forget_neighbour() { [ -z "$1" ] || ip neigh del "$1" dev "$BRIDGE" 2>/dev/null || true; }

# Tear a guest down: kill its qemu (by recorded pid), then tap, disk and record.
destroy_vm() {
  local vm=$1 d pid i
  d=$(vmdir "$vm")
  pid=$(get "$vm" pid)
  if vm_alive "$vm"; then kill -KILL "$pid" 2>/dev/null || true; fi
  # A warm killed between starting qemu and recording it: qemu's own pidfile names it, and its
  # command line (which holds this guest's disk path) proves it is ours.
  if [ -z "$pid" ] && [ -f "$d/qemu.pid" ]; then
    read -r pid < "$d/qemu.pid" || true
    if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "file=$d/disk.qcow2,"; then
      kill -KILL "$pid" 2>/dev/null || true
      put "$vm" pid "$pid"; put "$vm" pid_start "$(starttime "$pid" 2>/dev/null || echo gone)"
    fi
  fi
  for i in $(seq 1 100); do vm_alive "$vm" || break; sleep 0.05; done
  [ "$i" -lt 100 ] || say "destroy $vm: qemu pid $pid still alive after 5 s"
  ip link del "${vm}t" 2>/dev/null || true
  [ -z "$(get "$vm" mac)" ] || fw_guest delete "${vm}t" "$(get "$vm" mac)" "$(get "$vm" ip)"
  forget_neighbour "$(get "$vm" ip)"
  rm -rf --one-file-system "$d"
}

# Make the counts honest before any verb reads them (as in ../linux/): guests whose qemu died and
# guests left "booting" by a warm that was killed are destroyed; a dead checked-out guest is "dead".
reap_stale() {
  local vm alive
  scan
  for vm in "${VMS[@]}"; do
    alive=0; pid_alive "${PID[$vm]}" "${PST[$vm]}" && alive=1
    case ${ST[$vm]} in
      booting) pid_alive "${WPID[$vm]}" "${WST[$vm]}" || { say "reaping $vm (its warm died)"; destroy_vm "$vm"; } ;;
      available) [ "$alive" = 1 ] || { say "reaping $vm (guest died while warm)"; destroy_vm "$vm"; } ;;
      in_use|paused) [ "$alive" = 1 ] || put "$vm" state dead ;;
      dead) ;;
      *) say "reaping $vm (unreadable record)"; destroy_vm "$vm" ;;
    esac
  done
  scan
}

count_vms() { # count_vms <template> <state...>, from the last scan
  local t=$1 vm n=0 s; shift
  for vm in "${VMS[@]}"; do
    [ "${TPL[$vm]}" = "$t" ] || continue
    for s in "$@"; do if [ "${ST[$vm]}" = "$s" ]; then n=$((n + 1)); fi; done
  done
  echo "$n"
}

# A warm interrupted by INT/TERM (the gateway's deadline, Ctrl-C) tears down what it was booting.
WARM_VMS=()
warm_abort() {
  local vm
  trap - INT TERM
  say "warm interrupted; destroying the guests it was booting"
  # shellcheck disable=SC2046  # the boot jobs of this warm, by their job pids
  kill $(jobs -p) 2>/dev/null || true
  lock
  for vm in "${WARM_VMS[@]}"; do
    if [ "$(get "$vm" state)" = booting ]; then destroy_vm "$vm"; fi
  done
  unlock
  exit 1
}

cmd_warm() {
  local t=${1:-} count='' vm failed=0 i msg='' avail kdir accel keyb conf have need pinned khz
  shift || true
  while [ $# -gt 0 ]; do
    case $1 in
      --count) count=${2:-}; shift 2 || die 2 "--count needs a value" ;;
      --count=*) count=${1#--count=}; shift ;;
      *) die 2 "warm: unknown argument '$1'" ;;
    esac
  done
  valid_template "$t" || die 2 "warm: bad template name '$t'"
  if ! [[ $count =~ ^[0-9]+$ ]] || [ "$count" -gt 250 ]; then die 2 "warm: --count must be 0..250"; fi
  [ -f "$TEMPLATES_ROOT/$t.img" ] || die 1 "warm: no image $TEMPLATES_ROOT/$t.img"
  [ -r "$KEY" ] || die 1 "warm: pool key $KEY not readable"
  conf=$(template_conf "$t")
  if [ -f "$KEY.pub" ]; then keyb=$(base64 -w0 "$KEY.pub"); else keyb=$(ssh-keygen -y -f "$KEY" | base64 -w0); fi
  mkdir -p "$STATE/vms" "$STATE/templates" "$CACHE"
  kdir=$(ensure_kernel)
  # The probe boots a guest for up to its deadline: under its own lock, not the state lock.
  accel=$( exec 8>"$STATE/accel.lock"; flock 8; probe_accel "$kdir" )
  # TCG: the guest's TSC is the host's; give the kernel its frequency (see ops/microvm/tsc-khz.sh).
  if [ "$accel" = tcg ]; then
    khz=$(sh "$OPS_MICROVM/tsc-khz.sh")
    [ -z "$khz" ] || BOOT_EXTRA="tsc_early_khz=$khz"
  fi

  lock
  reap_stale
  ensure_bridge
  pinned=$(pin_template "$t")
  have=$(count_vms "$t" available booting)
  need=$(( count - have ))
  trap warm_abort INT TERM
  for ((i = 0; i < need; i++)); do
    vm=$(alloc_vm)
    mkdir -p "$(vmdir "$vm")"
    put "$vm" template "$t"; put "$vm" ip "$(alloc_ip)"; put "$vm" state booting
    put "$vm" accel "$accel"; put "$vm" backing "$pinned"
    put "$vm" memory_mib "${conf% *}"; put "$vm" vcpus "${conf#* }"
    VMS+=("$vm"); IP[$vm]=$(get "$vm" ip)
    put "$vm" warm_pid "$$"; put "$vm" warm_start "$(starttime "$$")"
    WARM_VMS+=("$vm")
    say "warm $t: booting $vm ($(get "$vm" ip), $accel)"
  done
  unlock

  # Boot PARALLEL guests at a time (under TCG each keeps a host CPU busy while it boots; many more
  # at once only stretch every boot towards its deadline). Each failure message goes to stderr,
  # the guest is torn down.
  local -A by_pid=()
  local next=0 running=0 done_pid rc
  while [ "$next" -lt "${#WARM_VMS[@]}" ] || [ "$running" -gt 0 ]; do
    while [ "$next" -lt "${#WARM_VMS[@]}" ] && [ "$running" -lt "$PARALLEL" ]; do
      vm=${WARM_VMS[$next]}; next=$((next + 1))
      boot_guest "$vm" "$kdir" "$keyb" > "$(vmdir "$vm")/boot.err" 2>&1 &
      by_pid[$!]=$vm; running=$((running + 1))
    done
    rc=0; done_pid=''
    wait -n -p done_pid "${!by_pid[@]}" || rc=$?
    [ -n "$done_pid" ] || die 1 "warm $t: lost track of a boot job"
    vm=${by_pid[$done_pid]}; unset "by_pid[$done_pid]"; running=$((running - 1))
    if [ "$rc" = 0 ]; then
      cat "$(vmdir "$vm")/boot.err" >&2
      lock; put "$vm" state available; unlock
    else
      msg=$(tail -n 1 "$(vmdir "$vm")/boot.err" 2>/dev/null || true)
      say "warm $t: $vm failed: $msg"
      lock; destroy_vm "$vm"; unlock
      failed=$((failed + 1))
    fi
  done
  trap - INT TERM

  lock; scan; avail=$(count_vms "$t" available); unlock
  printf '{"template":"%s","available":%d}\n' "$t" "$avail"
  [ "$failed" = 0 ] || die 1 "warm $t: $failed of ${#WARM_VMS[@]} guests failed to boot (last: ${msg:-?})"
}

cmd_checkout() {
  local t=${1:-} owner='' vm
  shift || true
  while [ $# -gt 0 ]; do
    case $1 in
      --owner) owner=${2:-}; shift 2 || die 2 "--owner needs a value" ;;
      *) die 2 "checkout: unknown argument '$1'" ;;
    esac
  done
  valid_template "$t" || die 2 "checkout: bad template name '$t'"
  [ -z "$owner" ] || [[ $owner =~ ^[A-Za-z0-9_-]{1,64}$ ]] || die 2 "checkout: bad owner '$owner'"
  lock
  reap_stale
  for vm in "${VMS[@]}"; do
    if [ "${TPL[$vm]}" != "$t" ] || [ "${ST[$vm]}" != available ]; then continue; fi
    signal_vm CONT "$vm"
    put "$vm" state in_use
    [ -z "$owner" ] || put "$vm" owner "$owner"
    printf '{"vm":"%s","ip":"%s","template":"%s"}\n' "$vm" "${IP[$vm]}" "$t"
    return 0
  done
  die 3 "checkout: no ready guest for template $t (pool empty; warm it)"
}

cmd_release() {
  local vm=${1:-}
  valid_vm "$vm" || die 2 "release: bad vm name '$vm'"
  lock
  [ -d "$(vmdir "$vm")" ] || return 0
  destroy_vm "$vm"
}

cmd_pause_resume() {
  local verb=$1 vm=${2:-} st
  valid_vm "$vm" || die 2 "$verb: bad vm name '$vm'"
  lock
  [ -d "$(vmdir "$vm")" ] || die 1 "$verb: no such vm $vm"
  vm_alive "$vm" || die 1 "$verb: guest $vm is not running"
  st=$(get "$vm" state)
  case $verb:$st in
    pause:in_use|pause:paused) signal_vm STOP "$vm"; put "$vm" state paused ;;
    resume:paused|resume:in_use) signal_vm CONT "$vm"; put "$vm" state in_use ;;
    *) die 1 "$verb: guest $vm is $st, not checked out" ;;
  esac
}

cmd_drain() {
  local t=${1:-} vm
  valid_template "$t" || die 2 "drain: bad template name '$t'"
  lock
  reap_stale
  for vm in "${VMS[@]}"; do
    if [ "${TPL[$vm]}" != "$t" ] || [ "${ST[$vm]}" != available ]; then continue; fi
    destroy_vm "$vm"
  done
  scan
  # The pinned image goes once no overlay of this template can still need it.
  if [ "$(count_vms "$t" booting in_use paused dead)" = 0 ]; then rm -rf --one-file-system "$STATE/templates/$t"; fi
  if [ "${#VMS[@]}" = 0 ] && ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE" || say "drain: could not delete bridge $BRIDGE"
  fi
  if [ "${#VMS[@]}" = 0 ]; then fw_remove; fi
}

cmd_list() {
  local json=0 vm t f sep='' ts=' ' owner accel=''
  [ "${1:-}" = --json ] && json=1
  lock
  reap_stale
  for f in "$TEMPLATES_ROOT"/*.img; do [ -f "$f" ] || continue; t=${f##*/}; t=${t%.img}; if valid_template "$t"; then ts+="$t "; fi; done
  for vm in "${VMS[@]}"; do t=${TPL[$vm]}; [[ $ts == *" $t "* ]] || ts+="$t "; done
  if [ "$json" = 0 ]; then
    for vm in "${VMS[@]}"; do
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$vm" "${TPL[$vm]}" "${IP[$vm]}" "${ST[$vm]}" "${ACC[$vm]}" "${OWN[$vm]}"
    done
    return 0
  fi
  if [ -f "$STATE/accel" ]; then IFS= read -r accel < "$STATE/accel" || true; fi
  printf '{"templates":{'
  for t in $ts; do
    printf '%s"%s":{"available":%d,"in_use":%d}' "$sep" "$t" "$(count_vms "$t" available)" "$(count_vms "$t" in_use paused dead)"
    sep=,
  done
  printf '},"vms":['
  sep=''
  for vm in "${VMS[@]}"; do
    owner=${OWN[$vm]}
    printf '%s{"vm":"%s","template":"%s","ip":"%s","state":"%s","accel":"%s"%s}' "$sep" "$vm" "${TPL[$vm]}" \
      "${IP[$vm]}" "${ST[$vm]}" "${ACC[$vm]}" "${owner:+,\"owner\":\"$owner\"}"
    sep=,
  done
  printf ']%s}\n' "${accel:+,\"accel\":\"$accel\"}"
}

verb=${1:-}
shift || true
case $verb in
  warm) cmd_warm "$@" ;;
  checkout) cmd_checkout "$@" ;;
  release) cmd_release "$@" ;;
  pause|resume) cmd_pause_resume "$verb" "$@" ;;
  drain) cmd_drain "$@" ;;
  list) cmd_list "$@" ;;
  *) die 2 "usage: $(basename "$0") warm <template> --count N | checkout <template> [--owner ID] | release <vm> | pause <vm> | resume <vm> | drain <template> | list --json" ;;
esac
