#!/bin/sh
# Build (once) the lab guest's boot files and print where they are:
#
#   build-guest-image.sh DEB_DIR CACHE_DIR
#   -> KERNEL=<path to vmlinuz>  INITRD=<path to initrd.img>
#
# The kernel is Debian's, extracted from the cached linux-image-*-unsigned
# package in DEB_DIR (see kernel-patch/fetch-debian.sh).  The initramfs holds
# busybox (static, also as /bin/sh), this directory's guest-init.sh as /init, the workload
# compiled with gcc -static, and the kernel's virtio_blk module (for guests with a disk).
# The workload is kept beside them as presplit-guest, which makes backing images
# (lab-guest-disk.sh).  Results are cached in CACHE_DIR under a key of
# every input, so a changed workload builds a new image and an unchanged one
# costs nothing.  Builds go to a temporary folder and are renamed into place,
# so labs starting at the same time never see a half-written image.
set -eu

deb_dir=$1
cache_dir=$2
here=$(cd "$(dirname "$0")" && pwd)

set -- "$deb_dir"/linux-image-*-unsigned_*.deb
image_deb=$1
[ -f "$image_deb" ] || {
	echo "build-guest-image: no linux-image-*-unsigned package in $deb_dir" >&2
	exit 1
}
key=$( { basename "$image_deb"; cat "$here/presplit-guest.c" "$here/guest-init.sh" "$0" \
	/bin/busybox; } | sha256sum | cut -c1-16)
out="$cache_dir/guest-$key"

if [ ! -s "$out/initrd.img" ]; then
	mkdir -p "$cache_dir"
	work=$(mktemp -d "$cache_dir/.build-XXXXXX")
	chmod 0755 "$work"
	trap 'rm -rf "$work"' EXIT
	dpkg-deb --fsys-tarfile "$image_deb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*' \
		'./lib/modules/*/kernel/drivers/block/virtio_blk.ko.xz'
	mv "$work"/boot/vmlinuz-* "$work/vmlinuz"
	root="$work/root"
	mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib/modules"
	# busybox insmod takes an uncompressed module.
	xz -dc "$work"/lib/modules/*/kernel/drivers/block/virtio_blk.ko.xz >"$root/lib/modules/virtio_blk.ko"
	cp /bin/busybox "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	gcc -O2 -static -Wall -Wextra -o "$root/bin/presplit-guest" "$here/presplit-guest.c"
	cp "$root/bin/presplit-guest" "$work/presplit-guest"
	install -m 0755 "$here/guest-init.sh" "$root/init"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.img")
	rm -rf "${root:?}" "${work:?}/boot" "${work:?}/lib"
	trap - EXIT
	if ! mv -T "$work" "$out" 2>/dev/null; then
		rm -rf "$work"	# another lab built the same image first
	fi
fi
echo "KERNEL=$out/vmlinuz"
echo "INITRD=$out/initrd.img"
echo "WORKLOAD=$out/presplit-guest"
