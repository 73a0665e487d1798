#!/bin/sh
# Print the latest status line of a lab guest as seen on one host:
#
#   lab-guest-status.sh LAB HOST GUEST
#   -> presplit-guest seq=42 ... errors=0
#
# It reads the guest's serial console log, which that host's virtlogd writes
# to /var/log/libvirt/qemu/GUEST-console.log inside the host (the host's
# <state>/hosts/HOST/log-libvirt/ from outside).  Exit status 1 when the host
# has no status line for the guest yet.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
log="$(host_dir "$2")/log-libvirt/qemu/$3-console.log"
line=$(tail -c 65536 "$log" 2>/dev/null | grep -a '^presplit-guest seq=' | tail -n 1 | tr -d '\r')
[ -n "$line" ] || exit 1
echo "$line"
