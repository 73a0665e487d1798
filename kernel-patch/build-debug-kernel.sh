#!/usr/bin/env bash
# Build a debugging 6.12 kernel with the series applied, for the kernel
# tier's debug run (tests/kernel/run-debug.sh): lockdep (PROVE_LOCKING, which
# brings PROVE_RCU), KASAN, DEBUG_ATOMIC_SLEEP, KMEMLEAK, and KVM's own MMU
# assertions (KVM_PROVE_MMU), on x86_64's defconfig plus what the tier's
# guest needs.  KVM, kvm-amd and what they load first (irqbypass, ccp) are
# modules, so that the tier's phases can reload them with other parameters.
#
#   eval "$(kernel-patch/build-debug-kernel.sh)"
#   -> DEBUG_KERNEL_DIR (vmlinuz, config, modules/{irqbypass,ccp,kvm,kvm-amd}.ko)
#      UAPI_INCLUDE, PATCHED_SRC (as build-modules.sh prints them)
#      DEB_VERSION, KERNEL_ABI
#
# Cached by (Debian version, series content, this recipe): a rerun prints
# the paths at once, and a rerun after an interrupted build resumes it.  One
# tree per Debian version, updated in place: when the series changes, the
# files the old series touched are put back and the new series applied;
# when the recipe changes, the tree is configured again; either way kbuild
# rebuilds only what changed (2-3 min for a new series; the first build
# takes about 25 min on 2 cores).  6 GB under the cache.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Options on top of x86_64_defconfig.  The debugging ones are what the
# kernel issue asks for; the rest is what the tier's tests use: THP and
# hugetlbfs backing (2M and 1G), the memory cgroup the charging case reads,
# the function tracer and lock contention events the CLEAR tests read,
# PREEMPT_DYNAMIC so that the guest boots preempt=full as the stock one
# does (and SCHED_DEBUG, whose debugfs file says the preemption model the
# tests check), guest_memfd VMs (KVM_SW_PROTECTED_VM, which needs EXPERT),
# and SHA1 built in, whose zero-message hash ccp needs.
DEBUG_OPTIONS=(
	DEBUG_KERNEL PROVE_LOCKING PROVE_RCU DEBUG_ATOMIC_SLEEP
	KASAN KASAN_GENERIC KASAN_INLINE KASAN_VMALLOC
	DEBUG_KMEMLEAK KALLSYMS_ALL
	EXPERT KVM_PROVE_MMU KVM_SW_PROTECTED_VM
	TRANSPARENT_HUGEPAGE HUGETLBFS HUGETLB_PAGE MEMCG CGROUPS
	DEBUG_FS FTRACE FUNCTION_TRACER DYNAMIC_FTRACE
	PREEMPT_VOLUNTARY PREEMPT_DYNAMIC SCHED_DEBUG CRYPTO_SHA1
	VIRTUALIZATION KVM_AMD_SEV AMD_IOMMU CRYPTO_DEV_CCP CRYPTO_DEV_SP_CCP CRYPTO_DEV_SP_PSP
)
MODULE_OPTIONS=(KVM KVM_AMD IRQ_BYPASS_MANAGER CRYPTO_DEV_CCP_DD)
# Off: Intel's module (the tier emulates AMD), debug info (time and disk),
# kmemleak's default-off switch (it must scan without a boot parameter).
OFF_OPTIONS=(KVM_INTEL KVM_XEN DEBUG_KMEMLEAK_DEFAULT_OFF DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT
	DEBUG_INFO_DWARF4 DEBUG_INFO_DWARF5 WERROR)

# Identifies this recipe.
recipe_hash() {
	{
		echo "${DEBUG_OPTIONS[*]} / ${MODULE_OPTIONS[*]} / ${OFF_OPTIONS[*]}"
		declare -f configure check_config
	} | sha256sum | cut -c1-8
}

# Configures the build directory $2 for the source tree $1.
configure() {
	local tree=$1 build=$2 opt args=()
	mkdir -p "$build"
	make -s -C "$tree" O="$build" x86_64_defconfig >&2
	for opt in "${DEBUG_OPTIONS[@]}"; do args+=(--enable "$opt"); done
	for opt in "${MODULE_OPTIONS[@]}"; do args+=(--module "$opt"); done
	for opt in "${OFF_OPTIONS[@]}"; do args+=(--disable "$opt"); done
	# kmemleak's early log fills before its own kmem caches exist when KASAN
	# and lockdep allocate at boot; a larger pool than the default 16000.
	args+=(--enable DEBUG_INFO_NONE --set-val DEBUG_KMEMLEAK_MEM_POOL_SIZE 65536)
	"$tree/scripts/config" --file "$build/.config" "${args[@]}"
	# Twice: options enabled above open menus whose own options the first
	# pass only then sees (CRYPTO_DEV_CCP before CRYPTO_DEV_SP_PSP).
	make -s -C "$tree" O="$build" olddefconfig >&2
	"$tree/scripts/config" --file "$build/.config" "${args[@]}"
	make -s -C "$tree" O="$build" olddefconfig >&2
	check_config "$build/.config"
}

# Fails when Kconfig dropped an option this recipe asks for (a dependency
# it does not meet): the run would otherwise test less than it says.
check_config() {
	local config=$1 opt missing=
	for opt in "${DEBUG_OPTIONS[@]}"; do
		grep -qx "CONFIG_$opt=y" "$config" || missing="$missing $opt"
	done
	for opt in "${MODULE_OPTIONS[@]}"; do
		grep -qx "CONFIG_$opt=m" "$config" || missing="$missing $opt(m)"
	done
	[ -z "$missing" ] || die "the debug kernel's configuration lacks:$missing"
}

# The files the patches given as arguments touch, as paths in the tree.
patched_files() {
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$@" | sort -u
}

# Puts the files of the tree $2 that the series recorded in $1/applied
# touched back to the pristine tree's content (deleting those it added) with
# a new time stamp, so that make rebuilds whatever depends on them.
revert_series() {
	local out=$1 src=$2 pristine file
	pristine=$(pristine_source)
	[ -n "$(ls "$out/applied")" ] || return 0
	while read -r file; do
		if [ -e "$pristine/$file" ]; then
			cp "$pristine/$file" "$src/$file"
		else
			rm -f "$src/$file"
		fi
	done < <(patched_files "$out"/applied/*)
	rm -f "$out"/applied/*
}

fetch_debian
# What the kernel is built from: the series and this recipe.
series=$(series_hash)
recipe=$(recipe_hash)
key="$series-$recipe"
out="$KP_CACHE/$DEB_VERSION/debug-kernel"
src="$out/linux-source-6.12"

if [ "$(cat "$out/.done" 2>/dev/null)" != "$key" ]; then
	# The pristine tree under the cache's lock (it may be extracted now),
	# then a lock of this tree's own, so that the long build does not hold
	# up the other kernel-patch scripts.
	lock_cache
	pristine_source >/dev/null
	exec 9>&-
	exec 8>"$out.lock"
	flock 8
	rm -f "$out/.done"
	if [ ! -e "$out/.configured" ]; then
		rm -rf "$out"
		mkdir -p "$out/applied"
		# A private copy: an out-of-tree build needs a source tree nothing
		# else builds in.
		cp -a --reflink=auto "$(pristine_source)" "$src"
	fi
	if [ "$(cat "$out/.applied" 2>/dev/null)" != "$series" ]; then
		log "applying series $series to the debug kernel's tree in $out"
		rm -f "$out/.applied"
		revert_series "$out" "$src"
		# Recorded before they are applied: an interrupted apply is then
		# put back by the next run.
		# shellcheck disable=SC2046 # one path per patch
		cp $(series_patches) "$out/applied/"
		apply_series "$src"
		echo "$series" >"$out/.applied"
	fi
	if [ "$(cat "$out/.configured" 2>/dev/null)" != "$recipe" ]; then
		# In place: kbuild then rebuilds what the changed options reach.
		log "configuring the debug kernel (recipe $recipe)"
		rm -f "$out/.configured"
		configure "$src" "$out/build"
		echo "$recipe" >"$out/.configured"
	fi
	log "building the debug kernel in $out (the first time about 25 min)"
	make -C "$src" O="$out/build" -j"$KP_JOBS" bzImage modules >&2
	mkdir -p "$out/modules"
	for ko in virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
		cp "$out/build/$ko.ko" "$out/modules/" || die "$ko.ko was not built"
	done
	cp "$out/build/arch/x86/boot/bzImage" "$out/vmlinuz"
	cp "$out/build/.config" "$out/config"
	echo "$key" >"$out/.done"
	exec 8>&-
fi

eval "$("$KP_DIR/build-modules.sh")"
echo "DEBUG_KERNEL_DIR='$out'"
echo "UAPI_INCLUDE='$UAPI_INCLUDE'"
echo "PATCHED_SRC='$PATCHED_SRC'"
echo "DEB_VERSION='$DEB_VERSION'"
echo "KERNEL_ABI='$KERNEL_ABI'"
