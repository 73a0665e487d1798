#!/bin/sh
# Run inside a lab host's fresh mount and UTS namespaces (by lab-host-up.sh):
# bind the host's own files over the standard paths and set its hostname.
#
#   lab-host-mounts.sh HOST_DIR HOST
set -eu
dir=$1
host=$2

bind() {
	mkdir -p "$2"
	mount --bind "$1" "$2"
}

bind "$dir/etc-libvirt" /etc/libvirt
bind "$dir/lib-libvirt" /var/lib/libvirt
bind "$dir/run-libvirt" /run/libvirt
bind "$dir/log-libvirt" /var/log/libvirt
bind "$dir/cache-libvirt" /var/cache/libvirt
bind "$dir/root-ssh" /root/.ssh
# State the presplit.kvm roles keep on a host (rolling maintenance progress).
bind "$dir/lib-presplit-kvm" /var/lib/presplit-kvm
mount --bind "$dir/hosts" /etc/hosts
mount --bind "$dir/hostname" /etc/hostname
hostname "$host"

# libvirtd insists on its build-time QEMU user existing even when qemu.conf
# says root; give the host one without touching the machine's /etc/passwd.
cp /etc/passwd "$dir/passwd"
cp /etc/group "$dir/group"
grep -q "^libvirt-qemu:" "$dir/passwd" ||
	echo "libvirt-qemu:x:64055:64055:lab QEMU user:/var/lib/libvirt:/usr/sbin/nologin" >>"$dir/passwd"
grep -q "^libvirt-qemu:" "$dir/group" ||
	echo "libvirt-qemu:x:64055:" >>"$dir/group"
mount --bind "$dir/passwd" /etc/passwd
mount --bind "$dir/group" /etc/group

# This namespace began as a copy of the root one, including other labs'
# namespace files: drop those copies so they cannot keep another lab's
# namespaces alive after it is torn down.
awk '$5 ~ "^/run/(netns|presplit-lab)/" { print $5 }' /proc/self/mountinfo |
	sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done

# sshd's privilege separation directory.
mkdir -p /run/sshd
