#!/usr/bin/env bash
# Build full Debian kernel packages (make bindeb-pkg) of the patched
# linux-source-6.12, configured exactly like Debian's image package (its
# /boot/config-*), for staging on hosts:
#
#   eval "$(kernel-patch/build-packages.sh)"
#   -> PACKAGES_DIR (linux-image-*.deb, linux-headers-*.deb, linux-libc-dev)
#      KERNEL_RELEASE (uname -r of the new kernel), DEB_VERSION
#
# The kernel release carries "-presplit" (LOCALVERSION) so that it installs
# next to Debian's kernel instead of replacing it, and the package version
# is Debian's with "+presplit.<series hash>" appended.  Debian's own signing
# certificates are not in the source package, so the build signs modules
# with a throw-away key, as any local build does.
#
# Slow: Debian's full configuration took roughly 2 h 40 min on 2 busy cores.
# Cached by (Debian version, series content): a rerun prints the paths, and
# a rerun after an interrupted build resumes it.  Needs ~32 GB of disk
# under the cache.
#
# PRESPLIT_PACKAGE_CONFIG=test builds a small kernel for test VMs instead
# (tests/kernel/run-packages.sh): Debian's configuration with every module
# dropped but those a QEMU test host needs (TEST_MODULES, the way
# "make localmodconfig" keeps the modules of a running host) and without
# debug info; 41 min on 2 busy cores under nice -n 19 (28 min of CPU),
# 2.8 GB.  Its release ends in "-presplit-test" and it is cached apart,
# keyed by the recipe too, so it can never pass for the real build.  Not
# for real hosts.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

config=${PRESPLIT_PACKAGE_CONFIG:-debian}
case "$config" in
debian) localversion=-presplit ;;
test) localversion=-presplit-test ;;
*) die "PRESPLIT_PACKAGE_CONFIG must be debian or test, not '$config'" ;;
esac

# The modules a Debian 12 test host under QEMU boots and stages with: KVM
# and what kvm_amd needs, virtio disk and network, ext4 for the root.
TEST_MODULES=(kvm kvm_amd kvm_intel irqbypass ccp virtio_blk virtio_net net_failover
	failover ext4 jbd2 mbcache crc16 crc32c_generic crc32c_intel libcrc32c autofs4 loop)

# Writes Debian's kernel configuration for this version to $1.
debian_config() {
	local deb
	deb=$(echo "$DEB_DIR"/linux-image-*-unsigned_*.deb)
	dpkg-deb --fsys-tarfile "$deb" |
		tar -xO "./boot/config-$KERNEL_ABI" >"$1"
}

# Prepares the build directory $2 for the source tree $1: Debian's config,
# our LOCALVERSION, no Debian certificates, new options at their defaults.
configure() {
	local tree=$1 build=$2
	mkdir -p "$build"
	debian_config "$build/.config"
	"$tree/scripts/config" --file "$build/.config" \
		--set-str LOCALVERSION "$localversion" \
		--disable LOCALVERSION_AUTO \
		--set-str SYSTEM_TRUSTED_KEYS "" \
		--set-str SYSTEM_REVOCATION_KEYS ""
	if [ "$config" = test ]; then
		trim_to_test_modules "$tree" "$build"
	fi
	make -s -C "$tree" O="$build" olddefconfig >&2
}

# Keeps, of the configuration in $2/.config, the built-in options and the
# modules of TEST_MODULES; drops debug info (most of the build time and
# disk, and a linux-image-dbg package nobody needs here).
trim_to_test_modules() {
	local tree=$1 build=$2 lsmod
	lsmod="$build/test-modules.lsmod"
	# localmodconfig reads the module names from lsmod's output format.
	{
		echo "Module Size Used by"
		printf '%s 0 0\n' "${TEST_MODULES[@]}"
	} >"$lsmod"
	make -s -C "$tree" O="$build" olddefconfig >&2
	# Its --oldconfig pass asks about options the trimming uncovers:
	# take every default.
	{ yes '' || true; } | make -s -C "$tree" O="$build" LSMOD="$lsmod" localmodconfig >&2
	"$tree/scripts/config" --file "$build/.config" \
		--disable DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT \
		--disable DEBUG_INFO_DWARF4 \
		--disable DEBUG_INFO_DWARF5 \
		--enable DEBUG_INFO_NONE
}

# Identifies this script's recipe for the test configuration.
test_config_hash() {
	{
		echo "${TEST_MODULES[*]}"
		declare -f configure trim_to_test_modules
	} | sha256sum | cut -c1-8
}

fetch_debian
hash=$(series_hash)
if [ "$config" = test ]; then
	out="$KP_CACHE/$DEB_VERSION/packages-test-$hash-$(test_config_hash)"
else
	out="$KP_CACHE/$DEB_VERSION/packages-$hash"
fi
release="${DEB_VERSION%%-*}$localversion"

src="$out/linux-source-6.12"
if [ ! -e "$out/.done" ]; then
	if [ -e "$out/.configured" ]; then
		# Same version, series and recipe (the path says so): make goes on
		# from what the interrupted build left, and kbuild rebuilds any
		# object whose command record is missing, as a killed compile's is.
		log "resuming the interrupted build in $out"
	else
		rm -rf "$out"
		mkdir -p "$out"
		# A private copy: an out-of-tree build needs a source tree that nothing
		# else builds in, and PATCHED_SRC is where others build the selftests.
		cp -a --reflink=auto "$(pristine_source)" "$src"
		apply_series "$src"
		configure "$src" "$out/build"
		touch "$out/.configured"
	fi
	log "building kernel packages ($config configuration) in $out (this takes long)"
	# bindeb-pkg puts the packages in the parent of the build directory.
	# zstd rather than dpkg-deb's default xz: with debug info the dbg
	# package holds gigabytes, which xz takes a long time over on 2 cores;
	# the Debian 12 hosts that stage these packages install zstd ones.
	make -C "$src" O="$out/build" -j"$KP_JOBS" \
		KDEB_PKGVERSION="$DEB_VERSION+presplit.${hash:0:8}" \
		KDEB_COMPRESS="${KDEB_COMPRESS:-zstd}" \
		bindeb-pkg >&2
	ls "$out"/linux-image-"$release"_*.deb >/dev/null ||
		die "no linux-image package was built"
	touch "$out/.done"
fi

echo "PACKAGES_DIR='$out'"
echo "KERNEL_RELEASE='$release'"
echo "PACKAGE_CONFIG='$config'"
echo "DEB_VERSION='$DEB_VERSION'"
