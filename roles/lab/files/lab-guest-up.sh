#!/bin/sh
# Make sure lab guest NAME exists and runs somewhere in the lab:
#
#   lab-guest-up.sh LAB HOST NAME XML_FILE [CAPS_CACHE]
#
# If no lab host has NAME defined, define it (persistent) on HOST from
# XML_FILE.  A guest that exists on another host -- it was migrated -- is
# left where it is.  Then start it if it is not running.  Prints
# "changed" when it defined or started anything, then "host=<where>".
# A new emulator (a QEMU wrapper) makes libvirt probe it; CAPS_CACHE, as in
# lab-host-up.sh, then shares that probe with later hosts and labs.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
host=$2
name=$3
xml=$4
caps_cache=${5:-}
changed=false

where=$(guest_host "$name")
if [ -z "$where" ]; then
	host_enter "$host" virsh -q -c qemu:///system define "$xml" >/dev/null
	where=$host
	changed=true
fi
state=$(host_enter "$where" virsh -q -c qemu:///system domstate "$name")
if [ "$state" != running ]; then
	host_enter "$where" virsh -q -c qemu:///system start "$name" >/dev/null
	changed=true
fi
if [ -n "$caps_cache" ]; then
	publish_caps "$(host_dir "$where")/cache-libvirt/qemu/capabilities" "$caps_cache"
fi
if $changed; then echo changed; fi
echo "host=$where"
