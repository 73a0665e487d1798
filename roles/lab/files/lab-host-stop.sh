#!/bin/sh
# Stop daemons of lab host HOST, the way an admin restart or a crash would.
#
#   lab-host-stop.sh LAB HOST stop|kill DAEMON...
#
# DAEMON is libvirtd, sshd or virtlogd.  "stop" sends SIGTERM to the daemon
# itself (its pid file) and waits until it is gone, as `systemctl stop` would:
# ssh sessions and guests keep running.  "kill" SIGKILLs every process of
# that name in the host (an sshd's sessions too), as when the host's
# management plane dies; guests (QEMU) keep running either way, as they do
# when libvirtd crashes.  lab-host-up.sh starts what is missing again.
# A namespace cannot be rebooted, so this is as close to a reboot of a lab
# host as the lab gets.  Prints "changed" when it stopped anything.
set -eu
. "$(dirname "$0")/lab-lib.sh"
lab_init "$1"
host=$2
how=$3
shift 3
dir=$(host_dir "$host")
is_mountpoint "$LAB_NS_DIR/$host.mnt" || {
	echo "lab-host-stop: lab '$LAB' has no host '$host'" >&2
	exit 2
}
case "$how" in
stop | kill) ;;
*)
	echo "lab-host-stop: want stop or kill, not '$how'" >&2
	exit 2
	;;
esac

# PIDs of processes named $1 inside this host (matched by mount namespace).
host_pids_named() {
	for _pid in $(pids_in_ns mnt "$LAB_NS_DIR/$host.mnt"); do
		[ "$(cat "/proc/$_pid/comm" 2>/dev/null)" = "$1" ] && echo "$_pid"
	done
	return 0
}

changed=false
for daemon in "$@"; do
	case "$daemon" in
	libvirtd | sshd | virtlogd) ;;
	*)
		echo "lab-host-stop: unknown daemon '$daemon' (libvirtd, sshd, virtlogd)" >&2
		exit 2
		;;
	esac
	if [ "$how" = kill ]; then
		pids=$(host_pids_named "$daemon")
		signal=KILL
	else
		pid=$(cat "$dir/run-libvirt/$daemon.pid" 2>/dev/null || true)
		pids=$(host_pids_named "$daemon" | grep -x "${pid:-none}" || true)
		signal=TERM
	fi
	[ -n "$pids" ] || continue
	# shellcheck disable=SC2086 # one PID per word
	kill -s "$signal" $pids 2>/dev/null || true
	changed=true
	tries=0
	for pid in $pids; do
		while [ -e "/proc/$pid" ] && [ "$tries" -lt 100 ]; do
			sleep 0.1
			tries=$((tries + 1))
		done
		if [ -e "/proc/$pid" ]; then
			echo "lab-host-stop: $daemon ($pid) in $host did not exit" >&2
			exit 1
		fi
	done
	# A killed daemon leaves its pid file; lab-host-up.sh checks the pid anyway.
done
if $changed; then echo changed; fi
