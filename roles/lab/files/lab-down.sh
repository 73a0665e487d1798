#!/bin/sh
# Tear a lab down completely; safe on a lab that is half up, already down or
# never existed.
#
#   lab-down.sh LAB
#
# Only what the lab started is stopped: the processes found inside the lab's
# own namespaces (its daemons, their QEMU guests, ssh sessions and proxies),
# matched by namespace identity rather than by name.  Then the namespace
# files are unmounted, the network namespaces deleted and the state
# directory removed.  Prints "changed" when there was anything to remove.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
changed=false

lab_netns() {
	ip netns list 2>/dev/null | awk -v lab="$LAB" \
		'$1 ~ "^" lab "-(ctl|h[0-9]+)$" { print $1 }'
}

# Namespace files of this lab that are really mounted (a stale plain file
# left by a crash identifies nothing).
lab_ns_files() {
	for f in "$LAB_NS_DIR"/*.mnt; do
		is_mountpoint "$f" && echo "mnt $f"
	done
	for ns in $(lab_netns); do
		is_mountpoint "/run/netns/$ns" && echo "net /run/netns/$ns"
	done
	return 0
}

lab_pids() {
	lab_ns_files | while read -r type file; do
		pids_in_ns "$type" "$file"
	done | sort -un
}

pids=$(lab_pids)
if [ -n "$pids" ]; then
	changed=true
	echo "$pids" | xargs kill -TERM 2>/dev/null || true
	tries=0
	while pids=$(lab_pids) && [ -n "$pids" ] && [ "$tries" -lt 50 ]; do
		sleep 0.2
		tries=$((tries + 1))
	done
	if [ -n "$pids" ]; then
		echo "$pids" | xargs kill -KILL 2>/dev/null || true
		sleep 0.5
	fi
	pids=$(lab_pids)
	if [ -n "$pids" ]; then
		echo "lab-down: processes still alive in lab $LAB: $pids" >&2
		exit 1
	fi
fi

for f in "$LAB_NS_DIR"/*.mnt "$LAB_NS_DIR"/*.uts; do
	if is_mountpoint "$f"; then
		umount "$f"
		changed=true
	fi
done
if is_mountpoint "$LAB_NS_DIR"; then
	umount "$LAB_NS_DIR"
	changed=true
fi
for ns in $(lab_netns); do
	ip netns delete "$ns"
	changed=true
done
if [ -e "$LAB_STATE" ]; then
	rm -rf "$LAB_STATE"
	changed=true
fi
rmdir "$LAB_RUN_ROOT" 2>/dev/null || true
if $changed; then echo changed; fi
