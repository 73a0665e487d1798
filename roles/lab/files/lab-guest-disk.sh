#!/bin/sh
# Give lab guest NAME a local disk on HOST before it is first defined:
#
#   lab-guest-disk.sh LAB HOST NAME MIB [WORKLOAD]
#
# The image is /var/lib/libvirt/images/NAME.qcow2 inside HOST, a directory of
# that host alone (a local disk: migrating the guest needs copy_storage).
# With WORKLOAD (the presplit-guest binary build-guest-image.sh keeps), the
# image is a qcow2 top image over disk-base-<MIB>m.qcow2 beside WORKLOAD: a
# backing image every host sees at the same path, as an image cache, made
# once with the workload's generation-0 pattern (which the workload then
# verifies through the top image).  A guest defined on any lab host already
# keeps its disk where it is.  Prints "changed" when it made an image.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
host=$2
name=$3
mib=$4
workload=${5:-}

[ -z "$(guest_host "$name")" ] || exit 0
image=/var/lib/libvirt/images/$name.qcow2
host_enter "$host" mkdir -p /var/lib/libvirt/images
if [ -z "$workload" ]; then
	host_enter "$host" qemu-img create -q -f qcow2 "$image" "${mib}M"
	echo changed
	exit 0
fi
base=$(dirname "$workload")/disk-base-${mib}m.qcow2
if [ ! -s "$base" ]; then
	raw=$(mktemp "$base.XXXXXX")
	trap 'rm -f "$raw" "$raw.qcow2"' EXIT
	"$workload" --disk-pattern "$raw" "$mib"
	qemu-img convert -q -f raw -O qcow2 "$raw" "$raw.qcow2"
	chmod 0644 "$raw.qcow2"
	mv "$raw.qcow2" "$base"	# another lab may have made the same one: same bytes
fi
host_enter "$host" qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$image"
echo changed
