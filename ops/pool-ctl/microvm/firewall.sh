#!/bin/bash
# shellcheck shell=bash
# firewall.sh — nftables isolation of the microVM guests on their bridge; sourced by
# coppice-bhyve-pool-ctl.sh (uses its BRIDGE, GW and say). Two tables per bridge, made with the
# bridge and deleted with it, whose rules never change per guest; a guest only adds/removes its
# (tap . MAC . address) element in @guests:
#   bridge cpcpool_<bridge>: anti-spoofing (a frame from a guest's tap must carry that guest's MAC
#     and IPv4 address, ARP likewise; IPv6 and everything else is dropped), and no frame is
#     forwarded between two ports of the bridge (guest to guest).
#   inet cpcpool_<bridge>: nothing a guest opens reaches the host (any address, any port): only
#     replies to connections the host opened (the gateway's SSH) are let in. Nothing is forwarded
#     from or to the bridge (no egress; the gateway answers allow_internet_access on its own).
# A drop in any table is final, so other tables on the host cannot loosen this.
fw_table() { local t=${BRIDGE//[^A-Za-z0-9_]/_}; echo "cpcpool_$t"; }
# The rules know a guest's tap by its interface group (this kernel's nft has no bridge-name match):
# one group per bridge, so two pools on one host never filter each other's guests.
FW_GROUP=${COPPICE_POOL_CTL_IFGROUP:-$(( 20000 + $(printf '%s' "$BRIDGE" | cksum | cut -d' ' -f1) % 40000 ))}
[[ $FW_GROUP =~ ^[0-9]{1,9}$ ]] || die 2 "COPPICE_POOL_CTL_IFGROUP must be a number"

ensure_firewall() {
  local t
  t=$(fw_table)
  nft list table bridge "$t" >/dev/null 2>&1 && nft list table inet "$t" >/dev/null 2>&1 && return 0
  fw_remove
  nft -f - <<EOF2
table bridge $t {
	set guests { type ifname . ether_addr . ipv4_addr; }
	counter spoofed { }
	counter guest_to_guest { }
	chain prerouting {
		type filter hook prerouting priority -300; policy accept;
		meta iifgroup != $FW_GROUP accept
		ether type ip iifname . ether saddr . ip saddr @guests accept
		ether type arp iifname . ether saddr . arp saddr ip @guests iifname . arp saddr ether . arp saddr ip @guests accept
		counter name spoofed drop
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		meta iifgroup $FW_GROUP counter name guest_to_guest drop
	}
}
table inet $t {
	counter to_host { }
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "$BRIDGE" ct state established,related accept
		iifname "$BRIDGE" counter name to_host drop
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		iifname "$BRIDGE" drop
		oifname "$BRIDGE" drop
	}
}
EOF2
}

fw_remove() {
  local t
  t=$(fw_table)
  nft delete table bridge "$t" 2>/dev/null || true
  nft delete table inet "$t" 2>/dev/null || true
}

# fw_guest add|delete <tap> <mac> <ip>
fw_guest() {
  nft "$1" element bridge "$(fw_table)" guests "{ \"$2\" . $3 . $4 }" 2>/dev/null \
    || { [ "$1" = delete ] || { say "nft: cannot add $2 to @guests"; return 1; }; }
}
