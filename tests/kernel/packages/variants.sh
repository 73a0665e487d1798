# shellcheck shell=bash
# Broken kernel packages for run-packages.sh's rollback checks, made from the
# test build of kernel-patch/build-packages.sh (PRESPLIT_PACKAGE_CONFIG=test):
#
#   notdp  the same kernel with "kvm.tdp_mmu=N" built into its command line:
#          boots, KVM works, but without the TDP MMU KVM_CAP_SPLIT_HUGE_PAGES
#          is 0, so the role's check fails;
#   panic  the same kernel with "rdinit=/presplit-test-panic" built into its
#          command line: no init in the initramfs, no root device without
#          it, "VFS: Unable to mount root fs": a kernel panic at every boot.
#
# Each is an incremental build in a copy of the test build's directory
# against the same source tree (kbuild's command lines name the source by
# absolute path, so they stay the same and only what the configuration
# change touches is rebuilt).  Only CONFIG_CMDLINE and the release change:
# ~100 objects and the modules' vermagic, minutes.  Changing an option such
# as CONFIG_KVM instead rebuilds nearly everything (widely included headers
# test it), as long as the full build.  Its release is
# the test build's plus "-<name>", so it installs next to it.  Sourced;
# needs PACKAGES_DIR, KERNEL_RELEASE, DEB_VERSION of build-packages.sh.

# build_variant DEST NAME SCRIPTS_CONFIG_ARGS...: DEST/linux-image-*.deb of
# the variant NAME, configured with scripts/config ARGS; nothing if done.
build_variant() {
	local dest=$1 name=$2 src=$PACKAGES_DIR/linux-source-6.12
	shift 2
	[ -f "$dest/.done" ] && return 0
	rm -rf "$dest"
	mkdir -p "$dest"
	cp -a "$PACKAGES_DIR/build" "$dest/build"
	# bindeb-pkg writes its debian/ tree again, for the new release.
	rm -rf "$dest/build/debian"
	"$src/scripts/config" --file "$dest/build/.config" \
		--set-str LOCALVERSION "-presplit-test-$name" "$@"
	{
		make -s -C "$src" O="$dest/build" olddefconfig &&
			nice -n 19 make -C "$src" O="$dest/build" -j"$(nproc)" \
				KDEB_PKGVERSION="$DEB_VERSION+presplit.test.$name" bindeb-pkg
	} >"$dest/build.log" 2>&1 || {
		echo "building the $name variant failed: $dest/build.log" >&2
		return 1
	}
	ls "$dest/linux-image-$KERNEL_RELEASE-${name}_"*.deb >/dev/null
	# Only the packages are needed again.
	rm -rf "$dest/build"
	touch "$dest/.done"
}

# variant_dir CACHE NAME: where build_variant keeps NAME, keyed by the test
# build it derives from and by this file.
variant_dir() {
	echo "$1/variant-$2-$({
		basename "$PACKAGES_DIR"
		cat "${BASH_SOURCE[0]}"
	} | sha256sum | cut -c1-12)"
}
