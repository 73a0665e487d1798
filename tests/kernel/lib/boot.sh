# shellcheck shell=bash
# Boot the stock kernel under QEMU TCG with emulated AMD SVM + NPT, so KVM
# in the guest runs its TDP MMU.  The kernel console goes to
# LOG_DIR/console.log, the test results to LOG_DIR/results.log.

# Guest RAM: room for one reserved 1 GiB hugetlb page, 2M hugetlb pages for
# the upstream dirty-log selftest, and THP test memory.
GUEST_MEMORY=${KTEST_GUEST_MEMORY:-4G}
# EPYC + SVM/NPT instead of "max": no 5-level paging, which makes TCG
# 2-3x faster at touching memory; still 1G pages, SVM, NPT.
GUEST_CPU=${KTEST_GUEST_CPU:-EPYC,+svm,+npt,+pdpe1gb}
# A hang guard, not a time limit: a normal run takes 3-4 min, and on a
# machine whose cores other work keeps busy it stretched to 10 (and the stage
# tier past its own 15 min guard), so 30 min.  Each case also has its own
# 240 s watchdog; a case takes 40 s at most even then.
BOOT_TIMEOUT_S=${KTEST_BOOT_TIMEOUT_S:-1800}
# Single-threaded TCG: with multi-threaded TCG (QEMU 7.2) the guest died
# with "Oops: int3" wherever the kernel had just patched its own text (jump
# labels) while the other vCPU ran it: in __schedule() after KVM flipped its
# preempt-notifier static key (first VM created / last destroyed), and once
# in enqueue_timer() during boot; 3 of 6 runs on this loaded machine.  Both
# guest vCPUs still interleave, so the race tests still race, at TCG
# time-slice granularity rather than in parallel.
TCG_THREADS=${KTEST_TCG_THREADS:-single}
# The guest kernel's stall detectors time how the host schedules a TCG vCPU
# thread, not the guest: with both cores busy (stress-ng --cpu 2 and another
# tier) a vCPU went 20 s without running and the guest reported an RCU stall
# ("rcu_preempt kthread starved", in tsc_refine_calibration_work) that
# dmesg-clean failed on. The longest timeouts these detectors take (RCU: 300 s,
# the kernel's maximum): a real stall still fails the tier, by this report
# or, here, by each case's own 240 s watchdog, which it outlasts.
GUEST_WATCHDOG_ARGS="rcupdate.rcu_cpu_stall_timeout=300 sysctl.kernel.hung_task_timeout_secs=600"

# boot_guest VMLINUZ INITRD LOG_DIR
# (panic=-1 reboot=t: a panicking guest triple-faults at once, and
# -no-reboot turns that into QEMU exiting.  preempt=full: the series' CLEAR,
# like the TDP MMU's own walks, gives a contended mmu_lock up only on a
# preemptible kernel, and Debian's boots with voluntary preemption.)
boot_guest() {
	local kernel=$1 initrd=$2 logs=$3
	mkdir -p "$logs"
	rm -f "$logs/console.log" "$logs/results.log"
	timeout --kill-after=10 "$BOOT_TIMEOUT_S" \
	qemu-system-x86_64 \
		-accel "tcg,thread=$TCG_THREADS" -cpu "$GUEST_CPU" -smp 2 -m "$GUEST_MEMORY" \
		-nographic -no-reboot -monitor none \
		-serial "file:$logs/console.log" -serial "file:$logs/results.log" \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 reboot=t hugepagesz=1G hugepages=1 hugepagesz=2M hugepages=160 transparent_hugepage=always preempt=full $GUEST_WATCHDOG_ARGS"
}

# boot_retrying_boot_crash LOG_DIR MARKER BOOT_FUNCTION ARGS...
# A guest kernel that died while it booted, before the init wrote MARKER (a
# line it writes before it loads any module: KPHASE for run.sh's init, KBOOT
# for the helper's), has run nothing of ours. QEMU 7.2's TCG crashed the stock
# Debian kernel that way on a machine whose cores other work kept busy: a
# double fault in start_kernel right after a cmpxchg16b, with an EFLAGS that
# held RAX's low bits (once so far, in a run beside stress-ng and two lab
# tiers). Such a boot is said as KNOWN, its console kept, and booted once
# more; a second one, or any failure after MARKER, is judged as always.
boot_retrying_boot_crash() {
	local logs=$1 marker=$2 status=0
	shift 2
	"$@" || status=$?
	if ! grep -aq "^$marker" "$logs/results.log" 2>/dev/null &&
		grep -aqE 'Kernel panic|Oops:' "$logs/console.log" 2>/dev/null; then
		cp "$logs/console.log" "$logs/console-boot-crash.log"
		echo "== KNOWN: the guest kernel died while booting, before any test:" \
			"$(grep -aE -m1 'Oops:|Kernel panic' "$logs/console.log" | tr -d '\r')" \
			"(console kept: $logs/console-boot-crash.log); booting once more"
		status=0
		"$@" || status=$?
	fi
	return "$status"
}
