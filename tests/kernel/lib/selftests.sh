# shellcheck shell=bash
# KVM selftests from the patched source tree (the series' own test and the
# upstream tests it must keep passing), linked statically for the guest and
# cached by source tree and headers.

# build_selftests PATCHED_SRC UAPI_INCLUDE OUT_DIR TEST...
# TEST is the name of an x86 test (under x86_64/ in 6.12, x86/ from 6.14),
# e.g. "split_huge_pages_test", or of a generic one such as "dirty_log_test".
# Binaries land in OUT_DIR/<TEST>; a test that is missing or does not build
# is reported and skipped here (the guest then reports it as not run).
build_selftests() {
	local src=$1 uapi=$2 out=$3 test dir rel status=0
	shift 3
	dir=$src/tools/testing/selftests/kvm
	mkdir -p "$out"
	for test in "$@"; do
		[ -x "$out/$test" ] && continue
		for rel in "x86/$test" "x86_64/$test" "$test" none; do
			[ -f "$dir/$rel.c" ] && break
		done
		if [ "$rel" = none ]; then
			echo "no selftest $test in $dir" >&2
			status=1
			continue
		fi
		if make -s -C "$dir" OUTPUT="$out/build" EXTRA_CFLAGS=-static LDFLAGS=-static \
			KHDR_INCLUDES="-isystem $uapi" "$out/build/$rel" \
			>"$out/build-$test.log" 2>&1; then
			cp "$out/build/$rel" "$out/$test"
		else
			echo "selftest $test does not build: $out/build-$test.log" >&2
			status=1
		fi
	done
	return $status
}
