#!/bin/sh
# /init of the lab guest's initramfs: mount the basics and run the
# presplit-guest workload with the sizes given on the kernel command line
# (presplit.buf_mib=N presplit.dirty_mib_s=N).  The workload never returns;
# if it dies, init exits and the kernel panics, which the domain's
# <on_crash>/<on_reboot> turn into a stopped (visibly failed) domain.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
buf_mib=16
dirty_mib_s=0
for arg in $(/bin/busybox cat /proc/cmdline); do
	case "$arg" in
	presplit.buf_mib=*) buf_mib=${arg#*=} ;;
	presplit.dirty_mib_s=*) dirty_mib_s=${arg#*=} ;;
	esac
done
exec /bin/presplit-guest "$buf_mib" "$dirty_mib_s" </dev/null >/dev/ttyS0 2>&1
