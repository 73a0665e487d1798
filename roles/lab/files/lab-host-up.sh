#!/bin/sh
# Bring up (or complete) lab host HOST: its mount and UTS namespaces, its
# private libvirt/ssh files bound over the standard paths inside them, and
# its virtlogd, libvirtd and sshd.
#
#   lab-host-up.sh LAB HOST [CAPS_CACHE]
#
# CAPS_CACHE is a directory shared by all hosts and runs holding libvirt's
# QEMU capabilities cache: probing QEMU costs ~25 s per libvirtd, reusing a
# probe ~1 s.  Hosts start with its probes and add the ones it lacks.
#
# Needs the host's network namespace (lab-network-up.sh) and its rendered
# files in <state>/hosts/HOST/ (the lab role's templates).  Idempotent:
# daemons already running in the host are left alone; prints "changed" when
# it created or started anything.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
host=$2
caps_cache=${3:-}
dir=$(host_dir "$host")
host_caps="$dir/cache-libvirt/qemu/capabilities"
changed=false

netns_exists "$(host_netns "$host")" || {
	echo "lab-host-up: no network namespace $(host_netns "$host")" >&2
	exit 1
}
[ -s "$dir/etc-libvirt/libvirtd.conf" ] || {
	echo "lab-host-up: $dir is not rendered" >&2
	exit 1
}

# Namespace files must live on a private mount, or the kernel refuses to
# bind a mount namespace there (it could otherwise propagate into itself).
mkdir -p "$LAB_NS_DIR"
if ! is_mountpoint "$LAB_NS_DIR"; then
	mount --bind "$LAB_NS_DIR" "$LAB_NS_DIR"
	mount --make-private "$LAB_NS_DIR"
fi
if ! is_mountpoint "$LAB_NS_DIR/$host.mnt" || ! is_mountpoint "$LAB_NS_DIR/$host.uts"; then
	# Half made by a crashed run: start from nothing.
	umount "$LAB_NS_DIR/$host.mnt" 2>/dev/null || true
	umount "$LAB_NS_DIR/$host.uts" 2>/dev/null || true
	touch "$LAB_NS_DIR/$host.mnt" "$LAB_NS_DIR/$host.uts"
	unshare --mount="$LAB_NS_DIR/$host.mnt" --uts="$LAB_NS_DIR/$host.uts" \
		--propagation private true
	changed=true
fi

marker="$dir/etc-libvirt/.presplit-lab-host"
if ! host_enter "$host" test -e /etc/libvirt/.presplit-lab-host; then
	echo "$LAB $host" >"$marker"
	host_enter "$host" "$(cd "$(dirname "$0")" && pwd)/lab-host-mounts.sh" "$dir" "$host"
	changed=true
fi

# $1 = pid file inside the host's /run/libvirt: is that daemon running, in
# this host?
running_in_host() {
	pid=$(cat "$dir/run-libvirt/$1" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ -e "/proc/$pid" ] &&
		[ "$(ns_inode "/proc/$pid/ns/mnt")" = "$(ns_inode "$LAB_NS_DIR/$host.mnt")" ]
}

if ! running_in_host virtlogd.pid; then
	host_enter "$host" virtlogd --daemon --pid-file /run/libvirt/virtlogd.pid \
		--config /etc/libvirt/virtlogd.conf
	changed=true
fi
if ! running_in_host libvirtd.pid; then
	if [ -n "$caps_cache" ] && ls "$caps_cache"/*.xml >/dev/null 2>&1; then
		mkdir -p "$host_caps"
		cp "$caps_cache"/*.xml "$host_caps"/
	fi
	host_enter "$host" libvirtd --daemon --listen --pid-file /run/libvirt/libvirtd.pid \
		--config /etc/libvirt/libvirtd.conf
	changed=true
fi
if ! running_in_host sshd.pid; then
	host_enter "$host" /usr/sbin/sshd -f "$dir/sshd/sshd_config"
	changed=true
fi

# libvirtd is ready when it answers on its socket with its domain
# capabilities (which makes it probe QEMU now, or load the cache).
tries=0
until host_enter "$host" virsh -q -c qemu:///system domcapabilities --virttype qemu >/dev/null 2>&1; do
	tries=$((tries + 1))
	if [ "$tries" -ge 120 ]; then
		echo "lab-host-up: libvirtd in $host does not answer; see $dir/log-libvirt/libvirtd.log" >&2
		exit 1
	fi
	sleep 0.5
done
if [ -n "$caps_cache" ]; then
	publish_caps "$host_caps" "$caps_cache"
fi

# A storage pool over the host's image directory, as a hypervisor has one:
# libvirt creates a disk copy there when a guest migrates with copy_storage.
virsh_host() { host_enter "$host" virsh -q -c qemu:///system "$@"; }
if ! virsh_host pool-info images >/dev/null 2>&1; then
	host_enter "$host" mkdir -p /var/lib/libvirt/images
	virsh_host pool-define-as images dir --target /var/lib/libvirt/images >/dev/null
	virsh_host pool-autostart images >/dev/null
	changed=true
fi
if ! virsh_host pool-info images | grep -q '^State: *running'; then
	virsh_host pool-start images >/dev/null
	changed=true
fi
if $changed; then echo changed; fi
