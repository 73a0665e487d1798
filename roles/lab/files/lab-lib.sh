# shellcheck shell=sh
# Shared names and helpers of the lab scripts (sourced, not run).
#
# Everything a lab creates is named after its lab name, so several labs
# (one per engineer, molecule, the demo) coexist on one machine:
#   network namespaces   <lab>-ctl, <lab>-h1, <lab>-h2, ...
#   state directory      /run/presplit-lab/<lab>/
#   host N's mount/UTS   <state>/ns/hN.mnt, <state>/ns/hN.uts (bind-mounted
#                        namespace files; <state>/ns is a private mount)
#   host N's files       <state>/hosts/hN/  (bound over /etc/libvirt,
#                        /var/lib/libvirt, /run/libvirt, ... inside host N)

LAB_RUN_ROOT=${LAB_RUN_ROOT:-/run/presplit-lab}

lab_init() {
	LAB=$1
	case "$LAB" in
	'' | *[!a-z0-9]* | [!a-z]*)
		echo "lab: invalid lab name '$LAB' (want [a-z][a-z0-9]*)" >&2
		exit 2
		;;
	esac
	LAB_STATE=$LAB_RUN_ROOT/$LAB
	LAB_NS_DIR=$LAB_STATE/ns
	# shellcheck disable=SC2034 # used by the scripts that source this file
	LAB_CTL_NETNS=$LAB-ctl
}

host_netns() { echo "$LAB-$1"; }
host_dir() { echo "$LAB_STATE/hosts/$1"; }

# Run a command inside lab host $1 (its network, mount and UTS namespaces).
# nsenter --mount resets the working directory, hence --wd.
host_enter() {
	_host=$1
	shift
	nsenter --net="/run/netns/$(host_netns "$_host")" \
		--mount="$LAB_NS_DIR/$_host.mnt" --uts="$LAB_NS_DIR/$_host.uts" \
		--wd=/ -- "$@"
}

# The lab host that has domain $1 defined (running or not), or nothing: a
# migrated guest is defined on its last host only.
guest_host() {
	for _f in "$LAB_NS_DIR"/h*.mnt; do
		_h=$(basename "$_f" .mnt)
		if host_enter "$_h" virsh -q -c qemu:///system dominfo "$1" >/dev/null 2>&1; then
			echo "$_h"
			return 0
		fi
	done
	return 0
}

is_mountpoint() { mountpoint -q "$1" 2>/dev/null; }

netns_exists() { [ -e "/run/netns/$1" ]; }

# The inode identifying a namespace file, e.g. net:[4026532345] -> 4026532345.
ns_inode() { stat -L -c %i "$1" 2>/dev/null; }

# PIDs of every process inside the namespace whose file is $2, of type $1
# (net or mnt): what the lab started there, and nothing else.
pids_in_ns() {
	_want=$(ns_inode "$2") || return 0
	[ -n "$_want" ] || return 0
	for _ns in /proc/[0-9]*/ns/"$1"; do
		_pid=${_ns#/proc/}
		_pid=${_pid%%/*}
		[ "$(stat -L -c %i "$_ns" 2>/dev/null)" = "$_want" ] && echo "$_pid"
	done
	return 0
}

# Copy libvirt QEMU capability probes from host cache directory $1 into the
# shared cache $2, each file atomically and only if the cache lacks it
# (other labs may be reading or publishing at the same moment).
publish_caps() {
	ls "$1"/*.xml >/dev/null 2>&1 || return 0
	mkdir -p "$2"
	for _probe in "$1"/*.xml; do
		_name=$(basename "$_probe")
		[ -e "$2/$_name" ] && continue
		cp "$_probe" "$2/.$_name.$$"
		mv "$2/.$_name.$$" "$2/$_name"
	done
}
