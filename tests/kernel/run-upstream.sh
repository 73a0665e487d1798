#!/usr/bin/env bash
# Upstream's own KVM selftests, with the stock and with the patched modules:
# every x86 selftest of the Debian 6.12 tree (the series' own included) runs
# in the test tier's guest (QEMU TCG, emulated AMD SVM + NPT, preempt=full),
# once per module set, and its result (pass, skip, fail, timeout) is printed
# side by side.  The series must change none of them: the exit status is 0
# only when every test has the same result with both module sets and the
# guest's dmesg is clean.  Opt-in (make kernel-upstream); not part of
# make test, as it takes longer than CI's budget.
#
#   tests/kernel/run-upstream.sh [TEST...]    (default: every x86 test)
#
# KTEST_UPSTREAM_TIMEOUT_S (default 300) bounds each test; a test that runs
# into it, or into its own alarm() watchdog (SIGALRM), is a "timeout", which,
# like any result, must be the same for both.
set -euo pipefail

KTEST_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$KTEST_DIR/../.." && pwd)
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests
LOG_DIR=${KTEST_UPSTREAM_LOG_DIR:-$CACHE/upstream-logs}
TIMEOUT_S=${KTEST_UPSTREAM_TIMEOUT_S:-300}

# shellcheck source=lib/guest-kernel.sh
. "$KTEST_DIR/lib/guest-kernel.sh"
# shellcheck source=lib/initramfs.sh
. "$KTEST_DIR/lib/initramfs.sh"
# Two phases of up to ~85 tests each, several minutes apiece under TCG.
KTEST_BOOT_TIMEOUT_S=${KTEST_BOOT_TIMEOUT_S:-14400}
# shellcheck source=lib/boot.sh
. "$KTEST_DIR/lib/boot.sh"
# shellcheck source=lib/check.sh
. "$KTEST_DIR/lib/check.sh"

started=$(date +%s)
eval "$("$REPO/kernel-patch/fetch-debian.sh")"
eval "$("$REPO/kernel-patch/build-modules.sh")"
stock_dir=$CACHE/$DEB_VERSION/stock
prepare_stock_kernel "$stock_dir"

# The x86 tests the tree's Makefile lists, e.g. "x86_64/smm_test" and
# "dirty_log_test" (6.12 names the directory x86_64, later kernels x86),
# but the series' own, which the stock modules skip (run.sh runs it).
selftest_src=$PATCHED_SRC/tools/testing/selftests/kvm
if [ $# -gt 0 ]; then
	tests="$*"
else
	tests=$(sed -n 's/^TEST_GEN_PROGS_x86\(_64\)\{0,1\} +\{0,1\}= //p' "$selftest_src/Makefile" |
		grep -v '/split_huge_pages_test$')
fi
[ -n "$tests" ] || { echo "no x86 selftests listed in $selftest_src/Makefile" >&2; exit 2; }

out=$CACHE/upstream-selftests/$(echo "$PATCHED_SRC $UAPI_INCLUDE" | sha256sum | cut -c1-16)
mkdir -p "$out"
echo "== building $(echo "$tests" | wc -w) selftests into $out"
# shellcheck disable=SC2046,SC2086 # one make target per test
make -s -C "$selftest_src" -j"$(nproc)" OUTPUT="$out/build" EXTRA_CFLAGS=-static \
	LDFLAGS=-static KHDR_INCLUDES="-isystem $UAPI_INCLUDE" \
	$(for t in $tests; do echo "$out/build/$t"; done) >"$out/build.log" 2>&1 ||
	echo "== some selftests did not build (see $out/build.log): they show as 'missing'" >&2

mkdir -p "$LOG_DIR"
plan=$LOG_DIR/plan
binaries=
for phase in stock patched; do
	echo "phase $phase $phase - -"
	for t in $tests; do
		[ -x "$out/build/$t" ] && echo "selftest ${t##*/} $TIMEOUT_S"
	done
done >"$plan"
for t in $tests; do
	[ -x "$out/build/$t" ] && binaries="$binaries $out/build/$t"
done
# shellcheck disable=SC2086 # $binaries is a list of paths
make_initramfs "$LOG_DIR/initramfs.cpio.gz" "$stock_dir" "$plan" "patched=$MODULES_DIR" $binaries
echo "== booting (logs: $LOG_DIR/console.log, $LOG_DIR/results.log)"
boot_retrying_boot_crash "$LOG_DIR" KPHASE boot_guest "$stock_dir/vmlinuz" "$LOG_DIR/initramfs.cpio.gz" "$LOG_DIR" ||
	echo "qemu exited with status $?"
echo "== guest done after $(($(date +%s) - started)) s"

results=$LOG_DIR/results.txt
tr -d '\r' <"$LOG_DIR/results.log" >"$results"
result_of() {
	awk -v key="$1/$2" '$1 == "KSELF" && $2 == key { print $3; found = 1; exit }
		END { if (!found) print "missing" }' "$results"
}

differ=0
printf '%-45s %-8s %-8s\n' TEST stock patched
for t in $tests; do
	name=${t##*/}
	stock=$(result_of stock "$name")
	patched=$(result_of patched "$name")
	mark=
	if [ "$stock" != "$patched" ] || [ "$stock" = missing ]; then
		mark="  <- differs"
		[ "$stock" = missing ] && mark="  <- not run"
		differ=$((differ + 1))
	fi
	printf '%-45s %-8s %-8s%s\n' "$name" "$stock" "$patched" "$mark"
done
for phase in stock patched; do
	printf '%s: ' "$phase"
	for r in pass skip fail timeout; do
		printf '%s %s  ' "$r" "$(grep -c "^KSELF $phase/[^ ]* $r " "$results" || true)"
	done
	echo
done

status=0
if ! grep -q '^KDMESG end' "$results"; then
	echo "FAIL  the guest did not finish (see $LOG_DIR/console.log)"
	status=1
elif sed -n '/^KDMESG begin/,/^KDMESG end/p' "$results" | grep -aEq "$DMESG_FAILURE_PATTERNS"; then
	echo "FAIL  the guest's dmesg has a kernel report:"
	sed -n '/^KDMESG begin/,/^KDMESG end/p' "$results" | grep -aE "$DMESG_FAILURE_PATTERNS" | head -10
	status=1
fi
if [ "$differ" -gt 0 ]; then
	echo "FAIL  $differ test(s) differ between the stock and the patched modules, or did not run"
	status=1
fi
[ "$status" = 0 ] && echo "OK  every test has the same result with the stock and the patched modules"
exit $status
