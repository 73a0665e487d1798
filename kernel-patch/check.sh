#!/usr/bin/env bash
# Check the series against the current Debian linux-source-6.12 candidate:
#
#   1. it applies without fuzz (fails loudly when a new upload breaks it);
#   2. scripts/checkpatch.pl --strict reports nothing on any patch, and
#      MAINTAINERS covers every file the series adds;
#   3. kvm.ko, kvm-amd.ko and kvm-intel.ko build with W=1, and with W=1 plus
#      KCFLAGS=-DCONFIG_KVM_PROVE_MMU=1, without a warning that the
#      unpatched sources do not have;
#   4. the KVM modules of a 32-bit build (i386 defconfig) compile, and kvm.o
#      needs no TDP MMU function: tdp_mmu.o only exists in 64-bit builds.
#
# Exits nonzero on the first failed check.  Takes ~5 min the first time
# (two source trees, five module builds), less when the trees are cached.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# The series alone: patches that other builds add on top are not checked here.
unset KP_EXTRA_PATCHES

# Kbuild warnings of one build, without the build root prefix and without
# line and column numbers, which the patches shift.
warnings_of() {
	grep -E '(warning|error):' "$1" |
		sed -E "s|$2/||g; s|:[0-9]+:[0-9]+:|:|; s|:[0-9]+:|:|" | sort -u
}

# Builds the KVM modules of the tree $1 in a build root named $2 with the
# make arguments that follow; prints the path of the build log.
build_log() {
	local tree=$1 name=$2
	shift 2
	local root="$KP_CACHE/$DEB_VERSION/check/$name"
	local log="$KP_CACHE/$DEB_VERSION/check/$name.log"
	make_build_root "$tree" "$root"
	log "building $name ($*)"
	build_kvm_modules "$root" "$@" >"$log" 2>&1 ||
		{ cat "$log" >&2; die "$name: build failed"; }
	echo "$log"
}

check_applies() {
	patched_source >/dev/null
	log "OK: the series applies to linux-source $DEB_VERSION"
}

# checkpatch asks "does MAINTAINERS need updating?" for every added file
# (FILE_PATH_CHANGES), a question rather than a finding.  check_maintainers
# answers it, so that check is left to it.
check_checkpatch() {
	local tree=$1 patch out failed=0
	while read -r patch; do
		out=$(cd "$tree" && perl scripts/checkpatch.pl --strict --no-summary \
			--terse --ignore FILE_PATH_CHANGES "$patch" 2>&1) || true
		if [ -n "$out" ]; then
			echo "$out" >&2
			failed=1
		fi
	done < <(series_patches)
	[ "$failed" = 0 ] || die "checkpatch --strict reported the issues above"
	log "OK: checkpatch --strict reports nothing on $(series_patches | wc -l) patches" \
		"(FILE_PATH_CHANGES left to the MAINTAINERS check)"
}

# Every file the series adds must be covered by a KVM entry in MAINTAINERS.
check_maintainers() {
	local tree=$1 file
	for file in $(series_patches | xargs sed -n 's/^ create mode [0-7]* //p'); do
		(cd "$tree" && perl scripts/get_maintainer.pl --nogit \
			--nogit-fallback -f "$file") | grep -q 'kvm@vger.kernel.org' ||
			die "$file is not covered by a KVM entry in MAINTAINERS"
		log "OK: MAINTAINERS covers $file"
	done
}

# Compares the warnings of a build of the patched and of the pristine tree.
check_no_new_warnings() {
	local pristine=$1 patched=$2 label=$3
	shift 3
	local before after new
	before=$(build_log "$pristine" "pristine-$label" "$@")
	after=$(build_log "$patched" "patched-$label" "$@")
	new=$(comm -13 \
		<(warnings_of "$before" "$KP_CACHE/$DEB_VERSION/check/pristine-$label") \
		<(warnings_of "$after" "$KP_CACHE/$DEB_VERSION/check/patched-$label"))
	if [ -n "$new" ]; then
		echo "$new" >&2
		die "$label: the series adds the warnings above"
	fi
	log "OK: $label: no new warnings ($(warnings_of "$after" \
		"$KP_CACHE/$DEB_VERSION/check/patched-$label" | wc -l) in total)"
}

# mmu.c may only call the TDP MMU behind tdp_mmu_enabled, which 32-bit
# builds define as false, so that the compiler drops the calls.
check_32bit() {
	local tree=$1 out="$KP_CACHE/$DEB_VERSION/check/i386" undefined
	local log="$out.log"
	log "building the KVM modules for 32-bit x86 (i386 defconfig)"
	rm -rf "$out"
	{
		make -C "$tree" O="$out" ARCH=i386 defconfig &&
			"$tree/scripts/config" --file "$out/.config" \
				-e VIRTUALIZATION -m KVM -m KVM_INTEL -m KVM_AMD &&
			make -C "$tree" O="$out" ARCH=i386 olddefconfig &&
			make -C "$tree" O="$out" ARCH=i386 -j"$KP_JOBS" arch/x86/kvm/
	} >"$log" 2>&1 || { tail -n 40 "$log" >&2; die "32-bit: the KVM modules do not build"; }
	[ -f "$out/arch/x86/kvm/kvm.o" ] || die "32-bit: no kvm.o was built (see $log)"
	undefined=$(nm -u "$out/arch/x86/kvm/kvm.o" | grep -o 'kvm_tdp_mmu_[a-z0-9_]*' || true)
	[ -z "$undefined" ] ||
		die "32-bit: kvm.o needs TDP MMU functions, which only 64-bit builds have:" \
			"$(echo "$undefined" | tr '\n' ' ')"
	log "OK: 32-bit: the KVM modules build, and kvm.o needs no TDP MMU function"
}

fetch_debian
lock_cache
log "checking the series against linux-source $DEB_VERSION"
check_applies
pristine=$(pristine_source)
patched=$(patched_source)
check_checkpatch "$pristine"
check_maintainers "$patched"
check_no_new_warnings "$pristine" "$patched" W1 W=1
check_no_new_warnings "$pristine" "$patched" W1-prove-mmu W=1 \
	KCFLAGS=-DCONFIG_KVM_PROVE_MMU=1
check_32bit "$patched"
log "all checks passed"
