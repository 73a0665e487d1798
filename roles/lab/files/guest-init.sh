#!/bin/sh
# /init of the lab guest's initramfs: mount the basics and run the
# presplit-guest workload with the sizes given on the kernel command line
# (presplit.buf_mib=N presplit.dirty_mib_s=N, and for a guest with a disk
# presplit.disk_blocks_s=N: the workload then rewrites and verifies /dev/vda
# too; presplit.fault_mib=N, for a guest with 2 vCPUs and a virtio balloon
# with free page reporting: a second thread keeps faulting in N MiB of memory
# the host has discarded, see presplit-guest.c).  The workload never returns;
# if it dies, init exits and the kernel panics, which the domain's
# <on_crash>/<on_reboot> turn into a stopped (visibly failed) domain.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
buf_mib=16
dirty_mib_s=0
disk_blocks_s=
fault_mib=
for arg in $(/bin/busybox cat /proc/cmdline); do
	case "$arg" in
	presplit.buf_mib=*) buf_mib=${arg#*=} ;;
	presplit.dirty_mib_s=*) dirty_mib_s=${arg#*=} ;;
	presplit.disk_blocks_s=*) disk_blocks_s=${arg#*=} ;;
	presplit.fault_mib=*) fault_mib=${arg#*=} ;;
	esac
done
fault=
if [ -n "$fault_mib" ]; then
	# Debian's kernel has virtio-balloon (and its free page reporting) as a
	# module: the faulter's freed memory reaches the host only through it.
	/bin/busybox insmod /lib/modules/virtio_balloon.ko
	# Per-CPU page lists as short as the kernel makes them: by default each
	# CPU keeps up to 1/8 of the zone's pages freed on it (14 MiB here), the
	# faulter's next round gets those back, and the balloon never reports
	# them (only 2-4 MiB of a 16 MiB round were, seen with strace on QEMU's
	# madvise(MADV_DONTNEED); with this, 14 MiB).
	echo 100000 >/proc/sys/vm/percpu_pagelist_high_fraction
	fault="--fault-mib $fault_mib"
fi
if [ -z "$disk_blocks_s" ]; then
	# shellcheck disable=SC2086 # $fault is an option and its value, or nothing
	exec /bin/presplit-guest $fault "$buf_mib" "$dirty_mib_s" </dev/null >/dev/ttyS0 2>&1
fi
# Debian's kernel has virtio-blk as a module; devtmpfs makes /dev/vda soon after.
/bin/busybox insmod /lib/modules/virtio_blk.ko
tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do
	/bin/busybox sleep 0.1
	tries=$((tries + 1))
done
# shellcheck disable=SC2086 # as above
exec /bin/presplit-guest $fault "$buf_mib" "$dirty_mib_s" /dev/vda "$disk_blocks_s" </dev/null >/dev/ttyS0 2>&1
