"""The kernel tier's dmesg check (tests/kernel/lib/check.sh, DMESG_FAILURE_PATTERNS) with
grep -E as the tier runs it: the kernel's reports fail it, the guest's own boot lines
(its command line with the stall detectors' timeouts) do not."""

import os
import subprocess

import pytest

CHECK_SH = os.path.join(os.path.dirname(__file__), "..", "..", "kernel", "lib", "check.sh")
BOOT_LINES = [
    "[    0.000000] Command line: console=ttyS0 panic=-1 preempt=full rcupdate.rcu_cpu_stall_timeout=300 "
    "sysctl.kernel.hung_task_timeout_secs=600",
    "[    0.000000] \tRCU CPU stall warnings timeout set to 300 (rcu_cpu_stall_timeout).",
    "[    0.000000] rcu: Preemptible hierarchical RCU implementation.",
]
REPORTS = [
    "[   89.104098] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "[   89.104098] rcu: INFO: rcu_sched self-detected stall on CPU",
    "[   89.104098] rcu: rcu_preempt kthread starved for 20644 jiffies! g-1099 f0x2",
    "[  120.000000] INFO: task kworker/0:1:10 blocked for more than 600 seconds.",
    "[    5.000000] WARNING: CPU: 0 PID: 1 at arch/x86/kvm/mmu/tdp_mmu.c:1234 foo+0x1/0x2",
    "[    5.000000] BUG: KASAN: use-after-free in bar",
]


def matches(line):
    script = '. "$1"; printf "%s\\n" "$2" | grep -aEq "$DMESG_FAILURE_PATTERNS"'
    return subprocess.run(["bash", "-c", script, "check", CHECK_SH, line], check=False).returncode == 0


@pytest.mark.parametrize("line", BOOT_LINES)
def test_the_guests_boot_lines_pass(line):
    assert not matches(line)


@pytest.mark.parametrize("line", REPORTS)
def test_the_kernels_reports_fail(line):
    assert matches(line)
