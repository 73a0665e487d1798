#!/bin/sh
# Kill lab host VICTIM's libvirtd and sshd once GUEST's migration from SOURCE is
# really under way (a job is running on the source), so the destination dies in
# the middle of the wave rather than before it.
#
#   kill-when-migrating.sh LAB_SCRIPTS LAB SOURCE GUEST VICTIM
set -eu
scripts=$1 lab=$2 source=$3 guest=$4 victim=$5
# A hang guard: the migration normally starts within seconds of the hook.
deadline=$(($(date +%s) + 600))
until "$scripts/lab-exec.sh" "$lab" "$source" virsh -c qemu:///system domjobinfo "$guest" 2>/dev/null |
	grep -q '^Job type: *Unbounded'; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "kill-when-migrating: no migration of $guest on $source after 600 s" >&2
		exit 1
	fi
	sleep 0.2
done
# The guest dirties memory faster than its link carries (see side_effect.yml): the
# migration is still running however long this takes.
sleep 1
"$scripts/lab-host-stop.sh" "$lab" "$victim" kill libvirtd sshd
echo "killed libvirtd and sshd of $victim while $guest migrated"
