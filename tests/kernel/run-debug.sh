#!/usr/bin/env bash
# The kernel tier on a debugging kernel: the series built into a 6.12 kernel
# with lockdep, PROVE_RCU, KASAN, DEBUG_ATOMIC_SLEEP, KMEMLEAK and KVM's MMU
# assertions (kernel-patch/build-debug-kernel.sh), booted under QEMU TCG like
# run.sh's guest, runs run.sh's patched phases (the series' tests, its
# selftest, the benchmark) and upstream's dirty-log selftests.  It passes when
# every program exits 0, kmemleak finds nothing after the modules are
# unloaded, and the guest's dmesg has no report of any of these debuggers.
# Last line: "N passed, N failed".  Opt-in (make kernel-debug): the first run
# builds the kernel (~25 min on idle cores), then the run takes ~16 min under TCG.
#
# There is no stock phase: the debugging kernel has only the series' modules
# (run.sh checks the tests themselves against the stock ones).
set -euo pipefail

KTEST_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$KTEST_DIR/../.." && pwd)
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests
LOG_DIR=${KTEST_DEBUG_LOG_DIR:-$CACHE/debug-logs}

# shellcheck source=lib/build-programs.sh
. "$KTEST_DIR/lib/build-programs.sh"
# shellcheck source=lib/guest-kernel.sh
. "$KTEST_DIR/lib/guest-kernel.sh"
# shellcheck source=lib/initramfs.sh
. "$KTEST_DIR/lib/initramfs.sh"
# KASAN, lockdep and kmemleak make everything several times slower.
KTEST_BOOT_TIMEOUT_S=${KTEST_BOOT_TIMEOUT_S:-7200}
# shellcheck source=lib/boot.sh
. "$KTEST_DIR/lib/boot.sh"
# shellcheck source=lib/selftests.sh
. "$KTEST_DIR/lib/selftests.sh"
# shellcheck source=lib/check.sh
. "$KTEST_DIR/lib/check.sh"
# What kmemleak writes to the kernel log after a scan that found leaks.
DMESG_FAILURE_PATTERNS="$DMESG_FAILURE_PATTERNS|suspected memory leak"

started=$(date +%s)
eval "$("$REPO/kernel-patch/build-debug-kernel.sh")"

programs="vm_basics dirty_log_tests dirty_log_complete split_tests"
selftests="split_huge_pages_test dirty_log_page_splitting_test dirty_log_test dirty_log_perf_test"
plan=$(mktemp)
trap 'rm -f "$plan"' EXIT
# run.sh's patched, no-npt, no-tdp-mmu and prove-mmu phases in one kernel
# whose modules carry KVM_PROVE_MMU and KVM_SW_PROTECTED_VM; upstream's
# dirty-log tests in every logging mode (bitmap, manual CLEAR, dirty ring).
cat >"$plan" <<PLAN
phase patched debug - -
run vm_basics thp_vcpu_fault_in hugetlb_1g_prefault
run dirty_log_tests clear_lets_faulting_vcpu_in
run dirty_log_complete
run split_tests
run split_tests private_memory_vm_refused
run split_huge_pages_test -b 64M
run dirty_log_page_splitting_test -b 64M
run dirty_log_test -i 8
run dirty_log_perf_test -b 64M -i 3
run dirty_log_perf_test -b 64M -i 3 -s anonymous_thp
run dirty_log_bench 16 1 1
lockdep_class kvm_foreign_mm
phase no-npt debug - npt=0
run split_tests without_tdp_mmu
phase no-tdp-mmu debug tdp_mmu=N -
run split_tests without_tdp_mmu
PLAN
expected=$(awk '$1 == "phase" { phase = $2 } $1 == "run" { print phase "/" $2 }' "$plan")

echo "== kernel tier on the debugging kernel: $DEBUG_KERNEL_DIR"
# shellcheck disable=SC2086 # lists of names
{
	build_dir=$CACHE/programs/$(programs_hash "$UAPI_INCLUDE" "$KTEST_DIR/src")
	build_programs "$UAPI_INCLUDE" "$KTEST_DIR/src" "$build_dir" $programs
	binaries=$(for p in $programs; do echo "$build_dir/$p"; done)
	selftest_dir=$CACHE/selftests/$(echo "$PATCHED_SRC $UAPI_INCLUDE" | sha256sum | cut -c1-16)
	build_selftests "$PATCHED_SRC" "$UAPI_INCLUDE" "$selftest_dir" $selftests ||
		echo "== some selftests are missing: they fail as not run" >&2
	binaries="$binaries $(for t in $selftests; do ls "$selftest_dir/$t" 2>/dev/null; done)"
}
mkdir -p "$LOG_DIR"
link_with_ktest "$UAPI_INCLUDE" "$LOG_DIR/dirty_log_bench" "$REPO/bench/kernel/dirty_log_bench.c"
binaries="$binaries $LOG_DIR/dirty_log_bench"

# The kernel's own irqbypass and ccp load as the "stock" ones, its kvm and
# kvm-amd as the module set "debug".
# shellcheck disable=SC2086 # $binaries is a list of paths
make_initramfs "$LOG_DIR/initramfs.cpio.gz" "$DEBUG_KERNEL_DIR" "$plan" \
	"debug=$DEBUG_KERNEL_DIR/modules" $binaries
echo "== booting (logs: $LOG_DIR/console.log, $LOG_DIR/results.log)"
boot_retrying_boot_crash "$LOG_DIR" KPHASE boot_guest "$DEBUG_KERNEL_DIR/vmlinuz" \
	"$LOG_DIR/initramfs.cpio.gz" "$LOG_DIR" || echo "qemu exited with status $?"
echo "== guest done after $(($(date +%s) - started)) s"

# The guest's init scans with kmemleak after the plan (KTEST line): a run
# without that line did not check for leaks, which fails it.
grep -aq '^KTEST [a-z ]*teardown/kmemleak' "$LOG_DIR/results.log" ||
	echo "KTEST not ok teardown/kmemleak (no scan: the kernel lacks kmemleak or the guest died first)" \
		>>"$LOG_DIR/results.log"
tr -d '\r' <"$LOG_DIR/results.log" | grep -aE '^# .*(FAILED|timed out|killed)|^# /proc|^#   |^# kmemleak' || true
# shellcheck disable=SC2086
check_results "$LOG_DIR/results.log" "$LOG_DIR/console.log" $expected
