#!/bin/sh
# Run a command inside a lab host, as if logged in there:
#
#   lab-exec.sh LAB HOST COMMAND [ARG...]
#   e.g. lab-exec.sh devlab h1 virsh list --all
#
# virsh (qemu:///system) then talks to that host's libvirtd.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
host=$2
shift 2
is_mountpoint "$LAB_NS_DIR/$host.mnt" || {
	echo "lab-exec: lab '$LAB' has no host '$host'" >&2
	exit 2
}
host_enter "$host" "$@"
