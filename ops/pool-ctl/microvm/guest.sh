#!/bin/bash
# shellcheck shell=bash disable=SC2153  # the settings (ACCEL, STATE, ...) come from the sourcing script
# guest.sh — what makes one microVM guest; sourced by coppice-bhyve-pool-ctl.sh (uses its settings,
# records and helpers): the pinned template image, per-template memory/vCPUs, the kernel and
# initramfs, the KVM/TCG probe, and boot_guest (tap, qcow2 overlay, qemu, wait for sshd, SIGSTOP).

# Pin the template image: guests' overlays name this path as their backing file, and a hard link
# keeps the inode even when build-image.sh renames a new image over the original.
pin_template() {
  local t=$1 img="$TEMPLATES_ROOT/$1.img" dir id pinned
  dir="$STATE/templates/$t"
  id=$(stat -c '%d-%i-%Y-%s' "$img")
  pinned="$dir/$id.img"
  mkdir -p "$dir"
  if [ ! -f "$pinned" ]; then
    ln "$img" "$pinned.tmp" 2>/dev/null || cp --reflink=auto "$img" "$pinned.tmp"
    mv -f "$pinned.tmp" "$pinned"
  fi
  echo "$pinned"
}

# template_conf <t> -> "MEM VCPUS" from <t>.microvm (key=value lines; never sourced).
template_conf() {
  local f="$TEMPLATES_ROOT/$1.microvm" mem=$DEF_MEM vcpus=$DEF_VCPUS k v
  if [ -f "$f" ]; then
    while IFS='=' read -r k v; do
      case $k in
        memory_mib) valid_mem "$v" || die 1 "$f: memory_mib must be 64..65536, got '$v'"; mem=$v ;;
        vcpus) valid_vcpus "$v" || die 1 "$f: vcpus must be 1..64, got '$v'"; vcpus=$v ;;
        ''|'#'*) ;;
        *) die 1 "$f: unknown setting '$k' (memory_mib, vcpus)" ;;
      esac
    done < "$f"
  fi
  echo "$mem $vcpus"
}

# Kernel + initramfs, fetched/built once into the cache; prints the kernel dir.
ensure_kernel() {
  local kdir
  kdir=$(sh "$OPS_MICROVM/fetch-kernel.sh" "$CACHE" | tail -n 1) || die 1 "fetch-kernel.sh failed"
  sh "$OPS_MICROVM/build-initramfs.sh" "$kdir" >/dev/null || die 1 "build-initramfs.sh failed"
  echo "$kdir"
}

# probe_accel <kernel dir>: kvm if a guest under KVM reaches our init within the probe deadline,
# else tcg. (On some hosts /dev/kvm creates VMs and vCPUs, yet a guest hangs in real mode.)
probe_accel() {
  local kdir=$1 key cached="" k2="" marker log pid i last
  if [ "$ACCEL" != auto ]; then echo "$ACCEL"; return 0; fi
  key="$(cat "$kdir/release") $($QEMU --version | head -n 1) $(uname -r)"
  if [ -f "$STATE/accel" ]; then
    { IFS= read -r cached; IFS= read -r k2; } < "$STATE/accel" || true
    if [ "${k2:-}" = "$key" ] && [[ $cached =~ ^(kvm|tcg)$ ]]; then echo "$cached"; return 0; fi
  fi
  cached=tcg
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    marker="probe$$"; log=$(mktemp "$STATE/.kvm-probe.XXXXXX")
    setsid "$QEMU" -M "microvm,accel=kvm,$MACHINE_OPTS" -cpu max -m 128 -smp 1 -nodefaults -no-user-config \
      -display none -monitor none -serial "file:$log" -no-reboot -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.gz" \
      -append "console=ttyS0 panic=-1 reboot=t quiet coppice.mode=marker coppice.marker=$marker" \
      </dev/null >/dev/null 2>&1 9>&- &
    pid=$!
    for ((i = 0; i < KVM_PROBE_TIMEOUT * 10; i++)); do
      if grep -q "coppice-init: marker $marker" "$log" 2>/dev/null; then cached=kvm; break; fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    last=$(grep -a -v '^\[' "$log" | tail -n 1 || true)
    [ "$cached" = kvm ] || say "KVM probe: no guest init within ${KVM_PROBE_TIMEOUT}s (console: ${last:-empty}); using TCG"
    rm -f "$log"
  fi
  printf '%s\n%s\n' "$cached" "$key" > "$STATE/accel"
  echo "$cached"
}

probe_ssh() {
  ssh -F /dev/null -i "$KEY" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=2 -o BatchMode=yes -o LogLevel=ERROR -o ControlPath=none "root@$1" true </dev/null >/dev/null 2>&1
}
console_tail() { grep -a -v '^\[' "$(vmdir "$1")/console.log" 2>/dev/null | tail -n 1 || true; }

# boot_guest <vm> <kernel dir> <pub key base64>: tap, overlay disk, qemu; waits for SSH, then
# stops the guest. No lock held.
boot_guest() {
  local vm=$1 kdir=$2 keyb=$3 t ip d tap mac mem vcpus accel pid comm i t0 deadline h
  t=$(get "$vm" template); ip=$(get "$vm" ip); d=$(vmdir "$vm"); accel=$(get "$vm" accel)
  mem=$(get "$vm" memory_mib); vcpus=$(get "$vm" vcpus)
  tap="${vm}t"; h=${ip##*.}
  mac=$(printf '52:54:00:77:%02x:%02x' "$(( ${NET3##*.} ))" "$h")
  t0=$(date +%s%N)
  put "$vm" mac "$mac"
  fw_guest add "$tap" "$mac" "$ip"
  ip tuntap add dev "$tap" mode tap
  ip link set "$tap" group "$FW_GROUP" master "$BRIDGE" up
  forget_neighbour "$ip"
  qemu-img create -q -f qcow2 -F raw -b "$(get "$vm" backing)" "$d/disk.qcow2"
  # setsid: the guest must not share the caller's process group (the gateway kills that group when
  # pool-ctl hangs). No inherited fds: the lock stays ours and the caller's pipes get their EOF.
  setsid "$QEMU" -M "microvm,accel=$accel,$MACHINE_OPTS" -cpu max -m "$mem" -smp "$vcpus" \
    -nodefaults -no-user-config -display none -monitor none -serial "file:$d/console.log" -no-reboot \
    -pidfile "$d/qemu.pid" -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.gz" \
    -append "console=ttyS0 panic=-1 reboot=t $BOOT_EXTRA coppice.ip=$ip/24 coppice.gw=$GW coppice.name=$vm coppice.key=$keyb" \
    -drive "id=root,file=$d/disk.qcow2,format=qcow2,if=none" -device virtio-blk-device,drive=root \
    -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" -device "virtio-net-device,netdev=n0,mac=$mac" \
    </dev/null >>"$d/qemu.log" 2>&1 9>&- &
  pid=$!
  # setsid execs qemu in place (a background job is no group leader): wait for the exec so the
  # recorded start time is qemu's.
  for ((i = 0; i < 500; i++)); do
    comm=''; read -r comm < "/proc/$pid/comm" 2>/dev/null || true
    [[ $comm == qemu-system* ]] && break
    [ -n "$comm" ] || { echo "qemu for $vm exited at once: $(tail -n 1 "$d/qemu.log" 2>/dev/null)"; return 1; }
    sleep 0.01
  done
  put "$vm" pid "$pid"
  put "$vm" pid_start "$(starttime "$pid")"
  deadline=$((SECONDS + BOOT_TIMEOUT))
  until probe_ssh "$ip"; do
    vm_alive "$vm" || { echo "guest $vm exited while booting: $(console_tail "$vm") $(tail -n 1 "$d/qemu.log" 2>/dev/null)"; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "guest $vm: sshd did not answer on $ip within ${BOOT_TIMEOUT}s (console: $(console_tail "$vm"))"; return 1; }
    sleep 0.2
  done
  signal_vm STOP "$vm"
  say "warm $t: $vm ($ip, $accel, ${mem} MiB, $vcpus vCPU) ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}
