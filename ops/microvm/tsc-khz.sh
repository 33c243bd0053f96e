#!/bin/sh
# tsc-khz.sh: prints the host's TSC frequency in kHz, or nothing when it is not constant.
#
# Under TCG the guest's TSC is the host's, but the guest kernel measures its frequency against the
# emulated PIT, and on a loaded host the emulation is too slow for that window: "tsc: Unable to
# calibrate against PIT", TSC marked unstable, and the boot hangs (seen with 2+ guests booting at
# once on 2 host CPUs). Passing tsc_early_khz=<this> skips the calibration.
set -eu
grep -qw constant_tsc /proc/cpuinfo || exit 0
mhz=$(sed -n 's/^cpu MHz[[:space:]]*:[[:space:]]*\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1.\2/p' /proc/cpuinfo | head -n 1)
[ -n "$mhz" ] || exit 0
awk -v m="$mhz" 'BEGIN { k = int(m * 1000 + 0.5); if (k > 0) print k }'
