#!/bin/busybox sh
# shellcheck shell=dash
# /init of the microVM guests' initramfs (packed by build-initramfs.sh). Runs as the guest's pid 1
# under busybox: loads the virtio modules, then either prints a marker and powers off (a boot
# check), or mounts the per-guest disk /dev/vda as root, configures eth0 and switches to the
# image's sshd. Everything per guest comes from the kernel command line:
#   coppice.mode=marker|root   (default root)
#   coppice.marker=TOKEN       printed as "coppice-init: marker TOKEN ..." once init runs
#   coppice.ip=A.B.C.D/NN coppice.gw=A.B.C.D coppice.name=HOSTNAME
#   coppice.key=BASE64         an authorized_keys line for root (the gateway's pool key)
# Any failure prints "coppice-init: FAILED <why>" and powers the guest off, so the VMM exits and
# pool-ctl sees it at once instead of waiting for its boot deadline.
/bin/busybox mkdir -p /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

say() { echo "coppice-init: $*" > /dev/console; }
fail() { say "FAILED $*"; sync; reboot -f; sleep 10; exit 1; }

mount -t devtmpfs -o nosuid devtmpfs /dev || true
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys

mode=root marker='' ip='' gw='' name='' key=''
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
  case $arg in
    coppice.mode=*) mode=${arg#*=} ;;
    coppice.marker=*) marker=${arg#*=} ;;
    coppice.ip=*) ip=${arg#*=} ;;
    coppice.gw=*) gw=${arg#*=} ;;
    coppice.name=*) name=${arg#*=} ;;
    coppice.key=*) key=${arg#*=} ;;
  esac
done

while read -r m; do
  insmod "/lib/modules/$m.ko" || fail "insmod $m"
done < /lib/modules/order

mem=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo)
[ -z "$marker" ] || say "marker $marker release=$(uname -r) memtotal_kb=$mem uptime=$(cut -d' ' -f1 /proc/uptime)"
if [ "$mode" = marker ]; then sync; reboot -f; sleep 10; exit 0; fi

# The disk shows up once virtio_mmio has probed the ACPI-described devices.
i=0
while [ ! -b /dev/vda ]; do
  i=$((i + 1)); [ $i -le 100 ] || fail "no /dev/vda after 10 s"; sleep 0.1
done
mount -t ext4 -o rw,noatime /dev/vda /newroot || fail "mount /dev/vda"
say "root mounted"
[ -x /newroot/usr/sbin/sshd ] || fail "root image has no /usr/sbin/sshd"

if [ -n "$ip" ]; then
  i=0
  while [ ! -e /sys/class/net/eth0 ]; do
    i=$((i + 1)); [ $i -le 100 ] || fail "no eth0 after 10 s"; sleep 0.1
  done
  ip link set lo up
  ip addr add "$ip" dev eth0 || fail "ip addr add $ip"
  ip link set eth0 up
  [ -z "$gw" ] || ip route add default via "$gw" || fail "route via $gw"
  say "eth0 $ip"
fi
[ -z "$name" ] || { hostname "$name"; echo "$name" > /newroot/etc/hostname; }
if [ -n "$key" ]; then
  mkdir -p /newroot/root/.ssh && chmod 700 /newroot/root/.ssh
  echo "$key" | base64 -d > /newroot/root/.ssh/authorized_keys || fail "coppice.key is not base64"
  chmod 600 /newroot/root/.ssh/authorized_keys
fi

for d in dev proc sys run tmp; do mkdir -p "/newroot/$d"; done
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /newroot/run
mkdir -m 755 /newroot/run/sshd
say "switching root to sshd"
# sshd is the guest's pid 1 (as in the netns pool-ctl): it reaps what it forks, and the gateway
# only ever talks to the guest through it.
exec switch_root /newroot /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /usr/sbin/sshd -D -e
