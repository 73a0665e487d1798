# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host facts for pre-splitting, and the host's mode with the reason for it.

Modes:
  patched           KVM_CAP_SPLIT_HUGE_PAGES is non-zero: pre-split available
  eager-split-only  upstream kvm.eager_page_split=Y with the TDP MMU: KVM splits when
                    dirty logging starts (inside KVM_CLEAR_DIRTY_LOG with QEMU), no pre-split
  none              neither: huge mappings are split in the vCPU fault path during migration
"""

import os
import platform
import re

from .ioctl import KVM_DEVICE, check_extension, open_kvm
from .memory import DEFAULT_HUGEPAGE_KIB
from .modes import MODE_EAGER, MODE_NONE, MODE_PATCHED
from .uapi import (KVM_CAP_BINARY_STATS_FD, KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
                   KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_CAP_SPLIT_HUGE_PAGES, cap_problem,
                   page_size_names_from_cap)


VENDOR_MODULES = ("kvm_intel", "kvm_amd", "kvm_pvm")
# vendor module -> parameter that turns TDP (EPT/NPT) on
TDP_PARAMS = {"kvm_intel": "ept", "kvm_amd": "npt"}


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def module_param(module, name, sys_root="/sys"):
    return _read(os.path.join(sys_root, "module", module, "parameters", name))


def _yes(value):
    return None if value is None else value.upper() in ("Y", "1")


def _selected(path):
    """The selected value of a sysfs choice file such as 'always [madvise] never'."""
    match = re.search(r"\[([\w-]+)\]", _read(path) or "")
    return match.group(1) if match else None


def thp_mode(sys_root="/sys"):
    """Transparent huge pages for anonymous memory: always, madvise or never."""
    return _selected(os.path.join(sys_root, "kernel/mm/transparent_hugepage/enabled"))


def thp_shmem_mode(sys_root="/sys"):
    """Transparent huge pages for shmem and memfd memory: always, within_size, advise, never, ..."""
    return _selected(os.path.join(sys_root, "kernel/mm/transparent_hugepage/shmem_enabled"))


def preempt_model(sys_root="/sys", kernel_version=None):
    """The kernel's preemption model: none, voluntary, full, lazy or rt; None when unknown.

    It decides whether the series' KVM_CLEAR_DIRTY_LOG gives mmu_lock up to a waiting
    vCPU (only on a preemptible kernel, as the kernel's rwlock_needbreak() rule says).
    PREEMPT_DYNAMIC kernels (Debian's) name the current model in debugfs, e.g.
    'none voluntary (full)'; a kernel built with one model names a preemptible one in its
    version string ('#1 SMP PREEMPT ...', '... PREEMPT_RT ...').
    """
    match = re.search(r"\(([\w-]+)\)", _read(os.path.join(sys_root, "kernel/debug/sched/preempt")) or "")
    if match:
        return match.group(1)
    version = " %s " % (platform.version() if kernel_version is None else kernel_version)
    if " PREEMPT_RT " in version:
        return "rt"
    if " PREEMPT " in version:
        return "full"
    return None


def default_hugepage_kib(meminfo="/proc/meminfo"):
    """The host's default hugetlb page size in KiB (Hugepagesize), the one a domain's
    <hugepages> without <page> gets; 2048 when it cannot be read."""
    match = re.search(r"^Hugepagesize:\s+(\d+) kB$", _read(meminfo) or "", re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_HUGEPAGE_KIB


def hugetlb_page_counts(sys_root="/sys"):
    """{page KiB: {'total', 'free', 'reserved'}} for every hugetlb page size."""
    base = os.path.join(sys_root, "kernel/mm/hugepages")
    pools = {}
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return pools
    for entry in entries:
        match = re.match(r"hugepages-(\d+)kB$", entry)
        if not match:
            continue
        pools[int(match.group(1))] = dict(
            (field, int(_read(os.path.join(base, entry, name)) or 0))
            for field, name in (("total", "nr_hugepages"), ("free", "free_hugepages"), ("reserved", "resv_hugepages")))
    return pools


def hugetlb_pools(sys_root="/sys"):
    """{'2M': {'total': n, 'free': n}, '1G': {...}} for every hugetlb page size."""
    pools = {}
    for kib, counts in hugetlb_page_counts(sys_root).items():
        label = "%dG" % (kib >> 20) if kib >= 1 << 20 else "%dM" % (kib >> 10)
        pools[label] = {"total": counts["total"], "free": counts["free"]}
    return pools


def kvm_capabilities(device=KVM_DEVICE):
    """Raw KVM_CHECK_EXTENSION values on /dev/kvm, or {'error': ...} when it cannot be opened."""
    try:
        fd = open_kvm(device)
    except OSError as exc:
        return {"error": "%s: %s" % (device, exc.strerror or exc)}
    try:
        return {"split_huge_pages": check_extension(fd, KVM_CAP_SPLIT_HUGE_PAGES),
                "manual_dirty_log_protect2": check_extension(fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2),
                "dirty_log_ring": check_extension(fd, KVM_CAP_DIRTY_LOG_RING),
                "dirty_log_ring_acq_rel": check_extension(fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL),
                "binary_stats_fd": check_extension(fd, KVM_CAP_BINARY_STATS_FD)}
    finally:
        os.close(fd)


def decide_mode(caps, tdp_mmu, tdp_enabled, eager_page_split):
    """(mode, reason) from capabilities and kvm module parameters."""
    if "error" in caps:
        return MODE_NONE, "KVM unusable: %s" % caps["error"]
    split_cap = caps.get("split_huge_pages", 0)
    problem = cap_problem(split_cap)
    if problem is None:
        return MODE_PATCHED, "KVM_CAP_SPLIT_HUGE_PAGES = %#x (levels %s)" % (
            split_cap, ", ".join(page_size_names_from_cap(split_cap)))
    # A kernel with the older series is not patched as far as this helper goes.
    missing = [problem]
    if tdp_enabled is False:
        missing.append("two-dimensional paging (EPT/NPT) is off")
    if tdp_mmu is not True:
        missing.append("kvm.tdp_mmu=%s" % {False: "N", None: "unknown"}.get(tdp_mmu, "Y"))
    if eager_page_split is not True:
        missing.append("kvm.eager_page_split=%s" % {False: "N", None: "unknown"}.get(eager_page_split, "Y"))
    if tdp_mmu and tdp_enabled is not False and eager_page_split:
        return MODE_EAGER, "%s; upstream eager page split (kvm.eager_page_split=Y, TDP MMU) splits " \
                           "when dirty logging starts" % missing[0]
    return MODE_NONE, "; ".join(missing) + ": huge mappings are split in the vCPU fault path while migrating"


def host_facts(sys_root="/sys", device=KVM_DEVICE):
    vendors = [name for name in VENDOR_MODULES if os.path.isdir(os.path.join(sys_root, "module", name))]
    tdp_values = [_yes(module_param(vendor, TDP_PARAMS[vendor], sys_root))
                  for vendor in vendors if vendor in TDP_PARAMS]
    tdp_enabled = None if not tdp_values or None in tdp_values else any(tdp_values)
    tdp_mmu = _yes(module_param("kvm", "tdp_mmu", sys_root))
    eager = _yes(module_param("kvm", "eager_page_split", sys_root))
    caps = kvm_capabilities(device)
    mode, reason = decide_mode(caps, tdp_mmu, tdp_enabled, eager)
    split_cap = caps.get("split_huge_pages", 0)
    preempt = preempt_model(sys_root)
    return {
        "kernel_release": platform.release(),
        "kvm_vendor_modules": vendors,
        "tdp_enabled": tdp_enabled,
        "tdp_mmu": tdp_mmu,
        "eager_page_split": eager,
        "kvm_capabilities": caps,
        "split_levels": page_size_names_from_cap(split_cap),
        "thp_mode": thp_mode(sys_root),
        "hugetlb_pools": hugetlb_pools(sys_root),
        "mode": mode,
        "mode_reason": reason,
        "preempt_model": preempt,
        # Unknown (None) when the model is.
        "clear_yields_to_vcpus": (mode == MODE_PATCHED and preempt in ("full", "lazy", "rt")
                                  if preempt is not None else None),
    }


def virt_versions(conn):
    """libvirt and QEMU versions as 'major.minor.micro' from an open libvirt connection."""
    def fmt(number):
        return "%d.%d.%d" % (number // 1000000, number // 1000 % 1000, number % 1000)
    return {"libvirt_version": fmt(conn.getLibVersion()), "qemu_version": fmt(conn.getVersion())}
