#!/bin/sh
# /init of the lab guest's initramfs: mount the basics and run the
# presplit-guest workload with the sizes given on the kernel command line
# (presplit.buf_mib=N presplit.dirty_mib_s=N, and for a guest with a disk
# presplit.disk_blocks_s=N: the workload then rewrites and verifies /dev/vda
# too).  The workload never returns;
# if it dies, init exits and the kernel panics, which the domain's
# <on_crash>/<on_reboot> turn into a stopped (visibly failed) domain.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
buf_mib=16
dirty_mib_s=0
disk_blocks_s=
for arg in $(/bin/busybox cat /proc/cmdline); do
	case "$arg" in
	presplit.buf_mib=*) buf_mib=${arg#*=} ;;
	presplit.dirty_mib_s=*) dirty_mib_s=${arg#*=} ;;
	presplit.disk_blocks_s=*) disk_blocks_s=${arg#*=} ;;
	esac
done
if [ -z "$disk_blocks_s" ]; then
	exec /bin/presplit-guest "$buf_mib" "$dirty_mib_s" </dev/null >/dev/ttyS0 2>&1
fi
# Debian's kernel has virtio-blk as a module; devtmpfs makes /dev/vda soon after.
/bin/busybox insmod /lib/modules/virtio_blk.ko
tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do
	/bin/busybox sleep 0.1
	tries=$((tries + 1))
done
exec /bin/presplit-guest "$buf_mib" "$dirty_mib_s" /dev/vda "$disk_blocks_s" </dev/null >/dev/ttyS0 2>&1
