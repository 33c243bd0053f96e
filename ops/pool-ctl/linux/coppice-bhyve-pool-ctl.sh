#!/bin/bash
# coppice-bhyve-pool-ctl.sh — Linux implementation of the pool-ctl contract
# (see notes/pool-ctl-contract.md; the FreeBSD twin in ../freebsd/ boots real bhyve guests).
#
# A "guest" here is a set of namespaces that looks like a machine whose / is the template image:
#   - network namespace <vm> with eth0 (a veth whose host end <vm>h sits on bridge $BRIDGE),
#     address from $SUBNET, default route via the bridge (.1);
#   - private mount, pid, uts and ipc namespaces; / is an overlay (writable upper per guest) on the
#     template image, which is loop-mounted read-only ONCE per template;
#   - PID 1 of the guest is the image's own /usr/sbin/sshd -D -e.
# The guest's mounts live only in its mount namespace, so they vanish with its last process: the
# host sees just the template mount, the bridge, and per guest a netns + veth.
# Warm guests are SIGSTOPped (every process of the guest pid namespace) and SIGCONTed at checkout.
#
# Verbs: warm <template> --count N | checkout <template> [--owner ID] | release <vm>
#        | pause <vm> | resume <vm> | drain <template> | list [--json]
# checkout exits 3 when no guest is ready (the gateway maps that to "pool empty", not a fault).
#
# Env: COPPICE_POOL_CTL_STATE (/var/lib/coppice/pool-ctl), COPPICE_BHYVE_TEMPLATES_ROOT
# (/var/lib/coppice/bhyve), COPPICE_POOL_CTL_SUBNET (10.77.0.0/24; a /24), COPPICE_POOL_CTL_BRIDGE
# (cpcbr0), COPPICE_POOL_CTL_PREFIX (cpcvm; vm, netns and veth names), COPPICE_POOL_KEY
# (/root/coppice-signing/pool-key), COPPICE_POOL_CTL_BOOT_TIMEOUT (30 s per guest).
#
# Processes are only ever signalled by the pids recorded at boot (checked against their start
# time, so a recycled pid is never hit). One flock serialises state changes; the slow part of
# warm (booting and probing sshd) runs outside it so checkout stays fast during a warm.
set -euo pipefail

STATE=${COPPICE_POOL_CTL_STATE:-/var/lib/coppice/pool-ctl}
TEMPLATES_ROOT=${COPPICE_BHYVE_TEMPLATES_ROOT:-/var/lib/coppice/bhyve}
SUBNET=${COPPICE_POOL_CTL_SUBNET:-10.77.0.0/24}
BRIDGE=${COPPICE_POOL_CTL_BRIDGE:-cpcbr0}
PREFIX=${COPPICE_POOL_CTL_PREFIX:-cpcvm}
KEY=${COPPICE_POOL_KEY:-/root/coppice-signing/pool-key}
BOOT_TIMEOUT=${COPPICE_POOL_CTL_BOOT_TIMEOUT:-30}
SELF=$(readlink -f "$0")

die() { local code=$1; shift; echo "pool-ctl: $*" >&2; exit "$code"; }
say() { echo "pool-ctl: $*" >&2; }

[[ $SUBNET =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] || die 2 "COPPICE_POOL_CTL_SUBNET must be a /24 like 10.77.0.0/24, got '$SUBNET'"
NET3=${BASH_REMATCH[1]}
GW="$NET3.1"
# IFNAMSIZ is 16: prefix + 5-digit counter + 'h' must fit in 15.
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,7}$ ]] || die 2 "COPPICE_POOL_CTL_PREFIX must be 1-8 of [a-z0-9], got '$PREFIX'"
[[ $BRIDGE =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die 2 "bad bridge name '$BRIDGE'"

valid_template() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$ ]]; }
valid_vm() { [[ $1 =~ ^${PREFIX}[0-9]{1,5}$ ]]; }

# ---- locking: fd 9 is opened per critical section and closed to unlock, so background children
# never inherit a held lock (flock locks belong to the open file description).
lock() { mkdir -p "$STATE/vms" "$STATE/templates"; exec 9>"$STATE/lock"; flock 9; }
unlock() { exec 9>&-; }

# ---- per-guest records: one small file per field under $STATE/vms/<vm>/. Reads use only shell
# builtins: list runs every 10 s and a fork per field made it cost ~50 ms per guest.
vmdir() { echo "$STATE/vms/$1"; }
get() { local f="$STATE/vms/$1/$2" v=''; if [ -f "$f" ]; then IFS= read -r v < "$f" || true; fi; printf '%s' "$v"; }
put() { local d="$STATE/vms/$1"; printf '%s\n' "$3" > "$d/$2.tmp" && mv -f "$d/$2.tmp" "$d/$2"; }
all_vms() { local d; for d in "$STATE"/vms/*/; do [ -d "$d" ] || continue; d=${d%/}; echo "${d##*/}"; done; return 0; }

# scan: load every record into VMS and the TPL/IP/ST/OWN/PID/PST maps, without forking.
declare -a VMS=()
declare -A TPL=() IP=() ST=() OWN=() PID=() PST=() WPID=() WST=()
scan() {
  local d vm f v
  VMS=(); TPL=(); IP=(); ST=(); OWN=(); PID=(); PST=(); WPID=(); WST=()
  for d in "$STATE"/vms/*/; do
    [ -d "$d" ] || continue
    d=${d%/}; vm=${d##*/}
    VMS+=("$vm")
    for f in template ip state owner pid pid_start warm_pid warm_start; do
      v=''
      if [ -f "$d/$f" ]; then IFS= read -r v < "$d/$f" || true; fi
      case $f in
        template) TPL[$vm]=$v ;; ip) IP[$vm]=$v ;; state) ST[$vm]=$v ;; owner) OWN[$vm]=$v ;;
        pid) PID[$vm]=$v ;; pid_start) PST[$vm]=$v ;; warm_pid) WPID[$vm]=$v ;; warm_start) WST[$vm]=$v ;;
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
proc_state() { local line; if read -r line < "/proc/$1/stat" 2>/dev/null; then line=${line##*) }; echo "state ${line%% *}"; else echo "gone"; fi; }
vm_alive() { pid_alive "$(get "$1" pid)" "$(get "$1" pid_start)"; }

# Every process in the guest's pid namespace (host pids), found by namespace, never by name.
guest_pids() { vm_alive "$1" || return 0; pgrep --ns "$(get "$1" pid)" --nslist pid || true; }

# Stop every process of the guest. A process forked between listing and stopping is caught by the
# next pass; stopped processes cannot fork, so this converges in two or three passes.
stop_guest() {
  local vm=$1 pass p st line rest new
  for pass in 1 2 3 4 5 6 7 8; do
    new=0
    for p in $(guest_pids "$vm"); do
      read -r line < "/proc/$p/stat" 2>/dev/null || continue
      rest=${line##*) }; st=${rest%% *}
      if [ "$st" != T ] && [ "$st" != Z ]; then kill -STOP "$p" 2>/dev/null || true; new=1; fi
    done
    [ "$new" = 0 ] && return 0
    [ "$pass" -gt 1 ] && sleep 0.01
  done
  say "stop $vm: processes still forking after 8 passes"
}
cont_guest() { local p; for p in $(guest_pids "$1"); do kill -CONT "$p" 2>/dev/null || true; done; }

ensure_bridge() {
  if ! ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$GW/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
}

tmpl_mnt() { echo "$STATE/templates/$1/mnt"; }
ensure_template_mount() {
  local t=$1 img="$TEMPLATES_ROOT/$1.img" mnt
  mnt=$(tmpl_mnt "$t")
  mkdir -p "$mnt"
  mountpoint -q "$mnt" || mount -o loop,ro "$img" "$mnt"
}

# Allocate a name that was not used recently (a stale handle must never release a newer guest)
# and the lowest free address.
alloc_vm() {
  local n=0 vm i
  if [ -f "$STATE/counter" ]; then read -r n < "$STATE/counter" || true; fi
  for ((i = 0; i < 99999; i++)); do
    n=$(( n % 99999 + 1 ))
    vm="$PREFIX$n"
    [ -e "$(vmdir "$vm")" ] || ip netns list | grep -q "^$vm\b" || { echo "$n" > "$STATE/counter"; echo "$vm"; return 0; }
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

# Addresses are reused at once: a neighbour entry still pointing at the previous guest's MAC would
# blackhole the new guest for up to ~45 s (REACHABLE -> STALE -> PROBE), so drop it.
forget_neighbour() { [ -z "$1" ] || ip neigh del "$1" dev "$BRIDGE" 2>/dev/null || true; }

# Tear a guest down: kill its pid-1 (the kernel then kills the whole pid namespace, and the mount
# namespace with the overlay goes with it), the launcher, then veth, netns and the record.
destroy_vm() {
  local vm=$1 d pid ppid i
  d=$(vmdir "$vm")
  pid=$(get "$vm" pid); ppid=$(get "$vm" launcher)
  if pid_alive "$pid" "$(get "$vm" pid_start)"; then kill -KILL "$pid" 2>/dev/null || true; fi
  if pid_alive "$ppid" "$(get "$vm" launcher_start)"; then kill -KILL "$ppid" 2>/dev/null || true; fi
  for i in $(seq 1 100); do
    pid_alive "$pid" "$(get "$vm" pid_start)" || pid_alive "$ppid" "$(get "$vm" launcher_start)" || break
    sleep 0.05
  done
  [ "$i" -lt 100 ] || say "destroy $vm: pid $pid still alive after 5 s"
  ip link del "${vm}h" 2>/dev/null || true
  ip netns del "$vm" 2>/dev/null || true
  forget_neighbour "$(get "$vm" ip)"
  rm -rf --one-file-system "$d"
}

# Make the counts honest before any verb reads them: guests whose sshd died, and guests left
# "booting" by a warm that was killed, are destroyed; a dead checked-out guest is marked "dead"
# (its owner still has to release it).
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

# ---- runs inside the guest's fresh namespaces as its pid 1; ends by exec'ing the image's sshd.
guest_init() {
  local vm=$1 lower=$2 d=$3 root="$3/root" n
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$d/upper,workdir=$d/work" "$root"
  mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
  mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
  mount -t tmpfs -o mode=755,size=1m,nosuid tmpfs "$root/dev"
  for n in null zero full random urandom tty; do : > "$root/dev/$n"; mount --bind "/dev/$n" "$root/dev/$n"; done
  mkdir "$root/dev/pts" "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$root/dev/pts"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
  ln -s pts/ptmx "$root/dev/ptmx"; ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"; ln -s /proc/self/fd/1 "$root/dev/stdout"; ln -s /proc/self/fd/2 "$root/dev/stderr"
  mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$root/run"
  mkdir -m 755 "$root/run/sshd"
  echo "$vm" > /proc/sys/kernel/hostname
  cd "$root"
  mkdir -p .oldroot
  pivot_root . .oldroot
  # From here on every command comes from the image.
  cd /
  umount -l /.oldroot
  rmdir /.oldroot
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /usr/sbin/sshd -D -e
}

probe_ssh() {
  ssh -F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=2 -o BatchMode=yes -o LogLevel=ERROR -o ControlPath=none "root@$1" true </dev/null >/dev/null 2>&1
}

# boot_guest <vm>: network, namespaces, sshd; waits for SSH, then stops the guest. No lock held.
boot_guest() {
  local vm=$1 t ip d launcher child i t0 deadline lower comm
  t=$(get "$vm" template); ip=$(get "$vm" ip); d=$(vmdir "$vm")
  t0=$(date +%s%N)
  mkdir -p "$d/upper" "$d/work" "$d/root"
  ip netns add "$vm"
  ip link add "${vm}h" type veth peer name "${vm}g" netns "$vm"
  ip link set "${vm}h" master "$BRIDGE" up
  forget_neighbour "$ip"
  ip -n "$vm" -batch - <<EOF
link set ${vm}g name eth0
addr add $ip/24 dev eth0
link set eth0 up
link set lo up
route add default via $GW
EOF
  # setsid: guests must not share the caller's process group (the gateway kills that group when
  # pool-ctl hangs). No inherited fds: the lock stays ours and the caller's pipes get their EOF.
  # No $(...) in this command line: it would run in the forked child before exec, and its
  # subshell would pass for the guest in the children lookup below.
  lower=$(tmpl_mnt "$t")
  setsid nsenter --net="/run/netns/$vm" \
    unshare --mount --uts --ipc --pid --fork --kill-child --propagation private \
    /bin/bash "$SELF" __guest-init "$vm" "$lower" "$d" \
    </dev/null >>"$d/console.log" 2>&1 9>&- &
  launcher=$!
  put "$vm" launcher "$launcher"
  put "$vm" launcher_start "$(starttime "$launcher")"
  # The guest's pid 1 is the only child of the launcher once the launcher has become unshare.
  child=
  for ((i = 0; i < 500; i++)); do
    comm=''
    read -r comm < "/proc/$launcher/comm" 2>/dev/null || true
    if [ "$comm" = unshare ]; then
      read -r child _ < "/proc/$launcher/task/$launcher/children" 2>/dev/null || true
      [ -n "$child" ] && break
    fi
    sleep 0.01
  done
  [ -n "$child" ] || { echo "guest launcher for $vm never forked: $(tail -n 1 "$d/console.log" 2>/dev/null)"; return 1; }
  put "$vm" pid "$child"
  put "$vm" pid_start "$(starttime "$child")"
  deadline=$((SECONDS + BOOT_TIMEOUT))
  until probe_ssh "$ip"; do
    vm_alive "$vm" || { echo "guest $vm (pid $child) exited while booting ($(proc_state "$child")): $(tail -n 1 "$d/console.log" 2>/dev/null)"; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "guest $vm: sshd did not answer on $ip within ${BOOT_TIMEOUT}s"; return 1; }
    sleep 0.05
  done
  stop_guest "$vm"
  say "warm $t: $vm ($ip) ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}

cmd_warm() {
  local t=${1:-} count='' vm vms=() pids=() failed=0 i msg='' avail
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

  lock
  reap_stale
  ensure_bridge
  ensure_template_mount "$t"
  local have need
  have=$(count_vms "$t" available booting)
  need=$(( count - have ))
  for ((i = 0; i < need; i++)); do
    vm=$(alloc_vm)
    mkdir -p "$(vmdir "$vm")"
    put "$vm" template "$t"; put "$vm" ip "$(alloc_ip)"; put "$vm" state booting
    VMS+=("$vm"); IP[$vm]=$(get "$vm" ip)
    put "$vm" warm_pid "$$"; put "$vm" warm_start "$(starttime "$$")"
    vms+=("$vm")
    say "warm $t: booting $vm ($(get "$vm" ip))"
  done
  unlock

  # Boot in parallel; each failure message goes to stderr, the guest is torn down.
  for vm in "${vms[@]}"; do
    boot_guest "$vm" > "$(vmdir "$vm")/boot.err" 2>&1 &
    pids+=($!)
  done
  for i in "${!vms[@]}"; do
    vm=${vms[$i]}
    if wait "${pids[$i]}"; then
      cat "$(vmdir "$vm")/boot.err" >&2
      lock; put "$vm" state available; unlock
    else
      msg=$(tail -n 1 "$(vmdir "$vm")/boot.err" 2>/dev/null || true)
      say "warm $t: $vm failed: $msg"
      lock; destroy_vm "$vm"; unlock
      failed=$((failed + 1))
    fi
  done

  lock; scan; avail=$(count_vms "$t" available); unlock
  printf '{"template":"%s","available":%d}\n' "$t" "$avail"
  [ "$failed" = 0 ] || die 1 "warm $t: $failed of ${#vms[@]} guests failed to boot (last: ${msg:-?})"
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
    cont_guest "$vm"
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
    pause:in_use|pause:paused) stop_guest "$vm"; put "$vm" state paused ;;
    resume:paused|resume:in_use) cont_guest "$vm"; put "$vm" state in_use ;;
    *) die 1 "$verb: guest $vm is $st, not checked out" ;;
  esac
}

cmd_drain() {
  local t=${1:-} vm mnt
  valid_template "$t" || die 2 "drain: bad template name '$t'"
  lock
  reap_stale
  for vm in "${VMS[@]}"; do
    if [ "${TPL[$vm]}" != "$t" ] || [ "${ST[$vm]}" != available ]; then continue; fi
    destroy_vm "$vm"
  done
  scan
  mnt=$(tmpl_mnt "$t")
  if [ "$(count_vms "$t" booting in_use paused dead)" = 0 ]; then
    if mountpoint -q "$mnt"; then umount "$mnt" || say "drain $t: umount $mnt failed"; fi
    rm -rf --one-file-system "$STATE/templates/$t"
  fi
  if [ "${#VMS[@]}" = 0 ] && ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE" || say "drain: could not delete bridge $BRIDGE"
  fi
}

cmd_list() {
  local json=0 vm t f sep='' ts=' ' owner
  [ "${1:-}" = --json ] && json=1
  lock
  reap_stale
  for f in "$TEMPLATES_ROOT"/*.img; do [ -f "$f" ] || continue; t=${f##*/}; t=${t%.img}; if valid_template "$t"; then ts+="$t "; fi; done
  for vm in "${VMS[@]}"; do t=${TPL[$vm]}; [[ $ts == *" $t "* ]] || ts+="$t "; done
  if [ "$json" = 0 ]; then
    for vm in "${VMS[@]}"; do
      printf '%s\t%s\t%s\t%s\t%s\n' "$vm" "${TPL[$vm]}" "${IP[$vm]}" "${ST[$vm]}" "${OWN[$vm]}"
    done
    return 0
  fi
  printf '{"templates":{'
  for t in $ts; do
    printf '%s"%s":{"available":%d,"in_use":%d}' "$sep" "$t" "$(count_vms "$t" available)" "$(count_vms "$t" in_use paused dead)"
    sep=,
  done
  printf '},"vms":['
  sep=''
  for vm in "${VMS[@]}"; do
    owner=${OWN[$vm]}
    printf '%s{"vm":"%s","template":"%s","ip":"%s","state":"%s"%s}' "$sep" "$vm" "${TPL[$vm]}" \
      "${IP[$vm]}" "${ST[$vm]}" "${owner:+,\"owner\":\"$owner\"}"
    sep=,
  done
  printf ']}\n'
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
  __guest-init) guest_init "$@" ;;
  *) die 2 "usage: $(basename "$0") warm <template> --count N | checkout <template> [--owner ID] | release <vm> | pause <vm> | resume <vm> | drain <template> | list --json" ;;
esac
