# shellcheck shell=bash
# The stock Debian kernel and the stock modules the guest loads, unpacked
# once per Debian version from the cached linux-image-*-unsigned package.

STOCK_MODULES="virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm arch/x86/kvm/kvm-amd"

# prepare_stock_kernel DEST: DEST/vmlinuz and DEST/modules/<name>.ko
# (uncompressed: busybox insmod cannot read .ko.xz).
prepare_stock_kernel() {
	local dest=$1 tmp=$1.tmp deb mod
	[ -f "$dest/vmlinuz" ] && return 0
	deb=$(echo "$DEB_DIR"/linux-image-"$KERNEL_ABI"-unsigned_*.deb)
	[ -f "$deb" ] || { echo "no linux-image package in $DEB_DIR" >&2; return 1; }
	rm -rf "$tmp"
	mkdir -p "$tmp/modules"
	dpkg-deb -x "$deb" "$tmp/deb"
	for mod in $STOCK_MODULES; do
		xz -dc "$tmp/deb/lib/modules/$KERNEL_ABI/kernel/$mod.ko.xz" \
			>"$tmp/modules/${mod##*/}.ko"
	done
	cp "$tmp/deb/boot/vmlinuz-$KERNEL_ABI" "$tmp/vmlinuz"
	rm -rf "$tmp/deb" "$dest"
	mv "$tmp" "$dest"
}

# patched_module NAME DIR: path of NAME.ko somewhere under DIR.
patched_module() {
	local path
	path=$(find "$2" -name "$1.ko" -print -quit)
	[ -n "$path" ] || { echo "no $1.ko under $2" >&2; return 1; }
	echo "$path"
}
