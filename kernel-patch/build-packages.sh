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
# Slow: Debian's full configuration takes well over an hour on 2 cores.
# Cached by (Debian version, series content): a rerun prints the paths.
# Needs ~25 GB of disk under the cache.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

localversion=-presplit

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
	make -s -C "$tree" O="$build" olddefconfig >&2
}

fetch_debian
hash=$(series_hash)
out="$KP_CACHE/$DEB_VERSION/packages-$hash"
release="${DEB_VERSION%%-*}$localversion"

if [ ! -e "$out/.done" ]; then
	rm -rf "$out"
	# A private copy: an out-of-tree build needs a source tree that nothing
	# else builds in, and PATCHED_SRC is where others build the selftests.
	src="$out/linux-source-6.12"
	cp -a --reflink=auto "$(pristine_source)" "$src"
	apply_series "$src"
	configure "$src" "$out/build"
	log "building kernel packages in $out (this takes long)"
	# bindeb-pkg puts the packages in the parent of the build directory.
	make -C "$src" O="$out/build" -j"$KP_JOBS" \
		KDEB_PKGVERSION="$DEB_VERSION+presplit.${hash:0:8}" \
		bindeb-pkg >&2
	ls "$out"/linux-image-"$release"_*.deb >/dev/null ||
		die "no linux-image package was built"
	touch "$out/.done"
fi

echo "PACKAGES_DIR='$out'"
echo "KERNEL_RELEASE='$release'"
echo "DEB_VERSION='$DEB_VERSION'"
