#!/usr/bin/env bash
# Build replacement kvm.ko, kvm-amd.ko and kvm-intel.ko with the series
# applied, for the Debian 6.12 kernel that fetch-debian.sh selects, using
# that kernel's headers package as the build tree.
#
#   eval "$(kernel-patch/build-modules.sh)"
#   -> MODULES_DIR  (kvm.ko kvm-amd.ko kvm-intel.ko)
#      UAPI_INCLUDE (sanitized patched uapi headers: -I$UAPI_INCLUDE)
#      PATCHED_SRC  (the patched source tree, e.g. for the selftests)
#      DEB_VERSION, KERNEL_ABI
#
# KCFLAGS is passed to the module build (e.g. -DCONFIG_KVM_PROVE_MMU=1 turns
# on KVM's MMU assertions in these modules only).  Results are cached by
# (Debian version, series content, KCFLAGS): a rerun prints the cached
# paths at once.  Progress goes to stderr, the assignments to stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

fetch_debian
lock_cache
key=$(series_hash)-$(printf '%s' "${KCFLAGS:-}" | sha256sum | cut -c1-8)
out="$KP_CACHE/$DEB_VERSION/modules-$key"

if [ ! -e "$out/.done" ]; then
	src=$(patched_source)
	rm -rf "$out"
	mkdir -p "$out/modules"
	install_uapi_headers "$src" "$out/uapi"
	make_build_root "$src" "$out/root"
	log "building kvm modules (KCFLAGS='${KCFLAGS:-}')"
	build_kvm_modules "$out/root" KCFLAGS="${KCFLAGS:-}"
	for ko in kvm.ko kvm-amd.ko kvm-intel.ko; do
		cp "$(kvm_modules_dir "$out/root")/$ko" "$out/modules/" ||
			die "$ko was not built"
	done
	touch "$out/.done"
fi

echo "MODULES_DIR='$out/modules'"
echo "UAPI_INCLUDE='$out/uapi/include'"
echo "PATCHED_SRC='$(patched_source)'"
echo "DEB_VERSION='$DEB_VERSION'"
echo "KERNEL_ABI='$KERNEL_ABI'"
