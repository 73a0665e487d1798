#!/bin/sh
# Create (or complete) a lab's network: a controller namespace <lab>-ctl
# with bridge br0 at 192.0.2.1/24, and one namespace <lab>-hN per host with
# eth0 at 192.0.2.(10+N)/24, a veth whose other end is on the bridge.
#
#   lab-network-up.sh LAB HOST_COUNT
#
# Every link is created inside the lab's own namespaces (the veth is made in
# <lab>-ctl with its peer placed straight into the host's namespace), so the
# root namespace's network is never touched.  Idempotent: prints "changed"
# when it created anything.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
count=$2
changed=false

ensure_netns() {
	if ! netns_exists "$1"; then
		ip netns add "$1"
		changed=true
	fi
	ip -n "$1" link set lo up
}

has_link() { ip -n "$1" link show "$2" >/dev/null 2>&1; }

ensure_netns "$LAB_CTL_NETNS"
if ! has_link "$LAB_CTL_NETNS" br0; then
	ip -n "$LAB_CTL_NETNS" link add br0 type bridge
	ip -n "$LAB_CTL_NETNS" addr add 192.0.2.1/24 dev br0
	changed=true
fi
ip -n "$LAB_CTL_NETNS" link set br0 up

n=1
while [ "$n" -le "$count" ]; do
	host=h$n
	netns=$(host_netns "$host")
	ensure_netns "$netns"
	if ! has_link "$netns" eth0; then
		# A half-made pair from a crashed run: start that host's link afresh.
		ip -n "$LAB_CTL_NETNS" link del "v$host" 2>/dev/null || true
		ip -n "$LAB_CTL_NETNS" link add "v$host" type veth peer name eth0 netns "$netns"
		ip -n "$netns" addr add "192.0.2.$((10 + n))/24" dev eth0
		changed=true
	fi
	ip -n "$LAB_CTL_NETNS" link set "v$host" master br0 up
	ip -n "$netns" link set eth0 up
	n=$((n + 1))
done
if $changed; then echo changed; fi
