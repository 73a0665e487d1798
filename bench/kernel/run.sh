#!/usr/bin/env bash
# Pre-split benchmark (a benchmark, not a test): boots the stock Debian 6.12
# kernel under QEMU TCG with the patched kvm modules, like tests/kernel, and
# runs dirty_log_bench in one boot: the start of a migration with and without
# KVM_SPLIT_HUGE_PAGES beforehand, same memory, vCPUs writing.  Under TCG only
# the ratios mean something.
#
#   bench/kernel/run.sh [MiB [vCPUs [rounds]]]     (default 512 1 3)
#
# Every figure is the median of the rounds.  One writing vCPU by default:
# the TCG guest has two CPUs, one for the faulting vCPU alone and one for
# the migration thread and the writer.
# Unlike the test tier, the guest runs on multi-threaded TCG, one host thread
# per guest CPU, so the vCPU writes while the migration thread splits and
# the stall figures see real contention; the emulator's text-patching race
# (tests/kernel/lib/boot.sh) can still kill a run, which then says so and
# can be repeated, or run with KTEST_TCG_THREADS=single.
#
# On a bare-metal KVM host with the patched modules loaded, run the same
# program directly (no QEMU):
#   gcc -static -O2 -pthread -isystem "$UAPI_INCLUDE" -I tests/kernel/src \
#       -o dirty_log_bench bench/kernel/dirty_log_bench.c tests/kernel/src/ktest.c
#   ./dirty_log_bench 2048 8 5        (MiB, at most 2048; vCPUs writing; rounds)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
KTEST_DIR=$REPO/tests/kernel
CACHE=${PRESPLIT_CACHE:-/var/cache/presplit-kvm}/kernel-tests
LOG_DIR=${BENCH_LOG_DIR:-$CACHE/bench-logs}
mib=${1:-512}
vcpus=${2:-1}
rounds=${3:-3}

# shellcheck source=../../tests/kernel/lib/guest-kernel.sh
. "$KTEST_DIR/lib/guest-kernel.sh"
# shellcheck source=../../tests/kernel/lib/initramfs.sh
. "$KTEST_DIR/lib/initramfs.sh"
# shellcheck source=../../tests/kernel/lib/build-programs.sh
. "$KTEST_DIR/lib/build-programs.sh"
KTEST_TCG_THREADS=${KTEST_TCG_THREADS:-multi}
# A round takes about a minute per GiB here; the default 600 s is the tier's.
KTEST_BOOT_TIMEOUT_S=${KTEST_BOOT_TIMEOUT_S:-$((300 + rounds * (mib / 8 + 30)))}
# shellcheck source=../../tests/kernel/lib/boot.sh
. "$KTEST_DIR/lib/boot.sh"

eval "$("$REPO/kernel-patch/fetch-debian.sh")"
# The series plus the benchmark's own patch, which adds the smaller
# alternative (the CLEAR splitting its range first) as a mode to compare.
eval "$(KP_EXTRA_PATCHES=$BENCH_DIR/clear-splits-first.patch "$REPO/kernel-patch/build-modules.sh")"
stock_dir=$CACHE/$DEB_VERSION/stock
prepare_stock_kernel "$stock_dir"

mkdir -p "$LOG_DIR"
link_with_ktest "$UAPI_INCLUDE" "$LOG_DIR/dirty_log_bench" "$BENCH_DIR/dirty_log_bench.c"
cat >"$LOG_DIR/plan" <<PLAN
phase patched patched - -
run dirty_log_bench $mib $vcpus $rounds
PLAN
make_initramfs "$LOG_DIR/initramfs.cpio.gz" "$stock_dir" "$LOG_DIR/plan" \
	"patched=$MODULES_DIR" "$LOG_DIR/dirty_log_bench"
echo "== booting (guest cpu $GUEST_CPU, TCG threads: $TCG_THREADS; logs: $LOG_DIR)"
boot_guest "$stock_dir/vmlinuz" "$LOG_DIR/initramfs.cpio.gz" "$LOG_DIR"

tr -d '\r' <"$LOG_DIR/results.log" | sed -n -e '/^# round /p' -e 's/^BENCH \{0,1\}//p'
if ! grep -aq '^KPROG patched/dirty_log_bench exit=0' "$LOG_DIR/results.log"; then
	tr -d '\r' <"$LOG_DIR/results.log" | grep -a '^# ' >&2 || true
	if grep -aq 'Oops: int3' "$LOG_DIR/console.log"; then
		echo "the guest kernel died on the emulator's text-patching race (Oops: int3), not in KVM;" \
			"run again, or with KTEST_TCG_THREADS=single" >&2
	fi
	echo "benchmark failed; see $LOG_DIR/results.log and console.log" >&2
	exit 1
fi
