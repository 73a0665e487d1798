# shellcheck shell=bash
# The guest's initramfs: busybox, the init script, the plan, the stock and
# patched kvm modules and the test programs.

# make_initramfs OUT STOCK_DIR PLAN_FILE "SET=MODULES_DIR..." PROGRAM...
# Each SET becomes /lib/modules/SET (kvm.ko, kvm-amd.ko) for plan phases.
make_initramfs() {
	local out=$1 stock=$2 plan=$3 sets=$4 root set
	shift 4
	root=$(mktemp -d)
	mkdir -p "$root"/{bin,dev,proc,sys,tmp,tests,lib/modules/stock}
	cp /bin/busybox "$root/bin/busybox"
	# /init starts with #!/bin/sh, which must exist before it installs the
	# other busybox applets.
	ln -s busybox "$root/bin/sh"
	install -m 0755 "$KTEST_DIR/guest/init" "$root/init"
	cp "$plan" "$root/plan"
	cp "$stock"/modules/*.ko "$root/lib/modules/stock/"
	for set in $sets; do
		mkdir -p "$root/lib/modules/${set%%=*}"
		cp "$(patched_module kvm "${set#*=}")" \
		   "$(patched_module kvm-amd "${set#*=}")" "$root/lib/modules/${set%%=*}/"
	done
	cp "$@" "$root/tests/"
	(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$out"
	rm -rf "$root"
}
