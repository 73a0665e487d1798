#!/usr/bin/env bash
# Kernel test tier: boot the stock Debian 6.12 kernel under QEMU TCG (emulated
# AMD SVM + NPT, so KVM runs its TDP MMU), load the stock and then the patched
# kvm modules, run the test programs in the guest and assert on their results
# and on the guest's dmesg.  Last line: "N passed, N failed"; exit status 0
# only when nothing failed.
#
#   tests/kernel/run.sh                      modules and headers from
#                                            kernel-patch/build-modules.sh
#   tests/kernel/run.sh --modules-dir DIR --uapi-include DIR [--patched-src DIR]
#                                            test modules built elsewhere (the
#                                            selftests need the patched tree)
#   tests/kernel/run.sh --stock-only --uapi-include DIR
#                                            the harness with stock modules only
#
# Cache: ${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests, keyed by the
# Debian version and by content hashes; logs of the last run in its logs/.
set -euo pipefail

KTEST_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$KTEST_DIR/../.." && pwd)
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests
LOG_DIR=${KTEST_LOG_DIR:-$CACHE/logs}
# A plan file to run instead of the built-in one (to rerun one case, say).
KTEST_PLAN=${KTEST_PLAN:-}

# shellcheck source=lib/guest-kernel.sh
. "$KTEST_DIR/lib/guest-kernel.sh"
# shellcheck source=lib/build-programs.sh
. "$KTEST_DIR/lib/build-programs.sh"
# shellcheck source=lib/initramfs.sh
. "$KTEST_DIR/lib/initramfs.sh"
# shellcheck source=lib/boot.sh
. "$KTEST_DIR/lib/boot.sh"
# shellcheck source=lib/selftests.sh
. "$KTEST_DIR/lib/selftests.sh"
# shellcheck source=lib/check.sh
. "$KTEST_DIR/lib/check.sh"

stock_only=false
MODULES_DIR=
UAPI_INCLUDE=
PATCHED_SRC=
while [ $# -gt 0 ]; do
	case "$1" in
	--modules-dir) MODULES_DIR=$2; shift 2 ;;
	--uapi-include) UAPI_INCLUDE=$2; shift 2 ;;
	--patched-src) PATCHED_SRC=$2; shift 2 ;;
	--stock-only) stock_only=true; shift ;;
	*) echo "usage: $0 [--stock-only] [--modules-dir DIR] [--uapi-include DIR] [--patched-src DIR]" >&2
	   exit 2 ;;
	esac
done

started=$(date +%s)
eval "$("$REPO/kernel-patch/fetch-debian.sh")"
# The same series built with KVM's MMU assertions on (KVM_MMU_WARN_ON), run
# as one more phase: only when the modules come from build-modules.sh.
PROVE_MODULES_DIR=
if ! $stock_only && [ -z "$MODULES_DIR" ]; then
	eval "$("$REPO/kernel-patch/build-modules.sh")"
	# With KVM's MMU assertions, and with KVM_X86_SW_PROTECTED_VM (a VM
	# type with guest_memfd memory that needs no SEV-SNP hardware), which
	# Debian's modules lack and the split must refuse.
	PROVE_MODULES_DIR=$(KCFLAGS="-DCONFIG_KVM_PROVE_MMU=1 -DCONFIG_KVM_SW_PROTECTED_VM=1" "$REPO/kernel-patch/build-modules.sh" |
		sed -n "s/^MODULES_DIR='\(.*\)'$/\1/p")
fi
[ -n "$UAPI_INCLUDE" ] || { echo "no UAPI_INCLUDE" >&2; exit 2; }

# The plan the guest's init runs (see guest/init): which modules, then which
# programs.  Every "run" line must end with the program exiting 0.
plan=$(mktemp)
trap 'rm -f "$plan"' EXIT
programs="vm_basics dirty_log_tests dirty_log_complete"
selftests=
cat >"$plan" <<PLAN
phase stock stock - -
run vm_basics
run dirty_log_tests clear_blocks_faulting_vcpu
run dirty_log_complete small thp
PLAN
if ! $stock_only; then
	programs="$programs split_tests"
	# The series' selftest, and the upstream dirty-log tests it must not
	# break: eager split, and no dirty page lost by a CLEAR that yields.
	selftests="split_huge_pages_test dirty_log_page_splitting_test dirty_log_test"
	cat >>"$plan" <<PLAN
phase patched patched - -
run vm_basics thp_vcpu_fault_in hugetlb_1g_prefault
run dirty_log_tests clear_lets_faulting_vcpu_in
run dirty_log_complete
run split_tests
run split_huge_pages_test -b 64M
run dirty_log_page_splitting_test -b 64M
run dirty_log_test -M clear-log -i 8
run dirty_log_bench 16 1 1
phase no-npt patched - npt=0
run split_tests without_tdp_mmu
phase no-tdp-mmu patched tdp_mmu=N -
run split_tests without_tdp_mmu
PLAN
fi
if [ -n "$PROVE_MODULES_DIR" ]; then
	cat >>"$plan" <<PLAN
phase prove-mmu prove-mmu - -
run split_tests
run split_tests private_memory_vm_refused
run split_huge_pages_test -b 64M
run dirty_log_tests clear_lets_faulting_vcpu_in
run dirty_log_complete thp_presplit
PLAN
fi
[ -z "$KTEST_PLAN" ] || cp "$KTEST_PLAN" "$plan"
# phase/program of every run line, in order.
expected=$(awk '$1 == "phase" { phase = $2 } $1 == "run" { print phase "/" $2 }' "$plan")

echo "== kernel tier: Debian $DEB_VERSION ($KERNEL_ABI), guest cpu $GUEST_CPU"
stock_dir=$CACHE/$DEB_VERSION/stock
prepare_stock_kernel "$stock_dir"

# shellcheck disable=SC2086 # $programs and $selftests are lists of names
{
	build_dir=$CACHE/programs/$(programs_hash "$UAPI_INCLUDE" "$KTEST_DIR/src")
	build_programs "$UAPI_INCLUDE" "$KTEST_DIR/src" "$build_dir" $programs
	binaries=$(for p in $programs; do echo "$build_dir/$p"; done)
	if [ -n "$selftests" ] && [ -z "$PATCHED_SRC" ]; then
		echo "== no --patched-src: the selftests fail as not run" >&2
	elif [ -n "$selftests" ]; then
		selftest_dir=$CACHE/selftests/$(echo "$PATCHED_SRC $UAPI_INCLUDE" | sha256sum | cut -c1-16)
		build_selftests "$PATCHED_SRC" "$UAPI_INCLUDE" "$selftest_dir" $selftests ||
			echo "== some selftests are missing: they fail as not run" >&2
		binaries="$binaries $(for t in $selftests; do ls "$selftest_dir/$t" 2>/dev/null; done)"
	fi
}

mkdir -p "$LOG_DIR"
if ! $stock_only; then
	# The benchmark, run small so that it keeps working: its own
	# assertions (split counts, huge pages) count, its timings do not.
	link_with_ktest "$UAPI_INCLUDE" "$LOG_DIR/dirty_log_bench" \
		"$REPO/bench/kernel/dirty_log_bench.c"
	binaries="$binaries $LOG_DIR/dirty_log_bench"
fi
module_sets=
$stock_only || module_sets="patched=$MODULES_DIR"
[ -z "$PROVE_MODULES_DIR" ] || module_sets="$module_sets prove-mmu=$PROVE_MODULES_DIR"
# shellcheck disable=SC2086 # $binaries is a list of paths
make_initramfs "$LOG_DIR/initramfs.cpio.gz" "$stock_dir" "$plan" "$module_sets" $binaries
echo "== booting (logs: $LOG_DIR/console.log, $LOG_DIR/results.log)"
boot_retrying_boot_crash "$LOG_DIR" KPHASE boot_guest "$stock_dir/vmlinuz" "$LOG_DIR/initramfs.cpio.gz" "$LOG_DIR" ||
	echo "qemu exited with status $?"
echo "== guest done after $(($(date +%s) - started)) s"

# Why cases failed: assertion messages, timeouts with the kernel stacks.
tr -d '\r' <"$LOG_DIR/results.log" | grep -aE '^# .*(FAILED|timed out|killed)|^# /proc|^#   ' || true
# shellcheck disable=SC2086
check_results "$LOG_DIR/results.log" "$LOG_DIR/console.log" $expected
