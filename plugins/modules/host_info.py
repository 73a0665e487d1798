#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: host_info
short_description: Report whether a KVM host can pre-split huge pages, and its running domains
version_added: 0.1.0
description:
  - Reports the kernel release, the KVM vendor module, C(kvm.tdp_mmu), C(kvm.eager_page_split),
    C(KVM_CAP_SPLIT_HUGE_PAGES) and the target levels it accepts, the manual-protect and
    dirty-ring capabilities, the transparent huge page mode and the hugetlb pools.
  - States which of three modes the host is in, with the reason. V(patched) means the
    C(KVM_SPLIT_HUGE_PAGES) ioctl is available, V(eager-split-only) means upstream eager page
    splitting (TDP MMU) splits when dirty logging starts, V(none) means neither.
  - For each running domain it reports the accelerator (C(kvm) or C(tcg)), the memory backing
    and the current mapping counts (C(pages_4k), C(pages_2m), C(pages_1g)) with the source they
    were read from. Counts need the VM fd of the domain's QEMU, taken with C(pidfd_getfd), so
    the module must run as root (or with C(CAP_SYS_PTRACE)). Reading is all it does.
author:
  - presplit.kvm developers (@presplit-kvm)
requirements:
  - Linux >= 5.6 (pidfd_getfd) and Python >= 3.8 on the host
  - libvirt-python (Debian package C(python3-libvirt)) for domain lookups, libvirt and QEMU versions
    and the C(query-stats) fallback; without it only the libvirt run directory is read
extends_documentation_fragment:
  - presplit.kvm.attributes
  - presplit.kvm.attributes.read_only
  - presplit.kvm.attributes.kvm_host
  - presplit.kvm.libvirt
  - presplit.kvm.host_helper
options:
  domains:
    description:
      - Names or UUIDs of the domains to describe. An empty list describes every running domain.
      - Control characters are refused, here and in the connection and directory options.
    type: list
    elements: str
    default: []
seealso:
  - module: presplit.kvm.split_huge_pages
"""

EXAMPLES = r"""
- name: Gather pre-split facts of the host
  presplit.kvm.host_info:
  register: kvm_host

- name: Stop when the host cannot pre-split
  ansible.builtin.assert:
    that: kvm_host.host.mode == 'patched'
    fail_msg: "{{ kvm_host.host.mode }}: {{ kvm_host.host.mode_reason }}"

- name: Describe two domains only
  presplit.kvm.host_info:
    domains:
      - web01
      - 6c1b1d8e-3f0a-4d7e-9a43-2f2b0c9f1e10
"""

RETURN = r"""
host:
  description: Facts of the host.
  returned: always
  type: dict
  contains:
    kernel_release:
      description: Running kernel release.
      type: str
      sample: 6.12.117+deb12-amd64
    kvm_vendor_modules:
      description: Loaded KVM vendor modules.
      type: list
      elements: str
      sample: [kvm_amd]
    tdp_enabled:
      description: EPT/NPT enabled in the vendor module, null when unknown.
      type: bool
    tdp_mmu:
      description: Value of C(kvm.tdp_mmu), null when unknown.
      type: bool
    eager_page_split:
      description: Value of C(kvm.eager_page_split), null when unknown.
      type: bool
    kvm_capabilities:
      description:
        - Raw C(KVM_CHECK_EXTENSION) values on C(/dev/kvm) (C(split_huge_pages),
          C(manual_dirty_log_protect2), C(dirty_log_ring), C(dirty_log_ring_acq_rel),
          C(binary_stats_fd)), or C(error) when C(/dev/kvm) cannot be opened.
      type: dict
    split_levels:
      description:
        - Target levels C(KVM_SPLIT_HUGE_PAGES) accepts, from the page sizes its capability lists;
          empty with the older, level-based series, which this collection does not drive.
      type: list
      elements: str
      sample: [4k, 2m]
    thp_mode:
      description: Transparent huge page mode (always, madvise, never).
      type: str
    hugetlb_pools:
      description: hugetlb pools per page size, with C(total) and C(free) pages.
      type: dict
      sample: {"2M": {"total": 1024, "free": 512}}
    mode:
      description: V(patched), V(eager-split-only) or V(none).
      type: str
      sample: none
    preempt_model:
      description:
        - The kernel's preemption model (V(none), V(voluntary), V(full), V(lazy), V(rt)), null when
          it cannot be read (a C(PREEMPT_DYNAMIC) kernel without debugfs mounted).
      type: str
      sample: voluntary
    clear_yields_to_vcpus:
      description:
        - Whether the patched C(KVM_CLEAR_DIRTY_LOG) gives C(mmu_lock) up to vCPUs that wait for it
          during a migration. Only on a patched host with a preemptible kernel (boot with
          C(preempt=full), or switch a C(PREEMPT_DYNAMIC) kernel with
          C(echo full > /sys/kernel/debug/sched/preempt)). Null when the model is unknown.
      type: bool
    mode_reason:
      description: Why the host is in that mode.
      type: str
      sample: "KVM_CAP_SPLIT_HUGE_PAGES absent (0); kvm.tdp_mmu=N: huge mappings are split in the vCPU fault path while migrating"
    inventory_source:
      description: Where domains were found, C(libvirt) or C(status-dir).
      type: str
    libvirt_error:
      description: Why libvirt was not used, null when it was.
      type: str
    libvirt_version:
      description: libvirt version, only when libvirt was reachable.
      type: str
      returned: when libvirt was reachable
    qemu_version:
      description: QEMU version as libvirt reports it, only when libvirt was reachable.
      type: str
      returned: when libvirt was reachable
domains:
  description: One entry per described domain.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Domain name.
      type: str
    uuid:
      description: Domain UUID.
      type: str
    running:
      description: Whether the domain runs.
      type: bool
    pid:
      description: QEMU pid.
      type: int
    accelerator:
      description: C(kvm) or C(tcg).
      type: str
    memory_bytes:
      description: Guest memory size.
      type: int
    memory_backing:
      description:
        - How the guest's RAM is backed, classified as C(presplit.kvm.placement_facts) classifies it
          (the planner's C(backing)).
        - C(hugetlb-2M) or C(hugetlb-1G) (hugetlbfs pages of that size; other sizes are C(none)), C(thp)
          (the host's transparent huge page settings let its anonymous or memfd RAM have huge pages) or C(none).
      type: str
      choices: [hugetlb-2M, hugetlb-1G, thp, none]
    memory_backing_reason:
      description: What the classification in RV(domains[].memory_backing) was made from.
      type: str
      sample: anonymous RAM, QEMU madvises it MADV_HUGEPAGE, THP enabled=always
    hugepage_sizes:
      description: hugetlb page sizes in bytes (0 = host default), empty without hugetlb backing.
      type: list
      elements: int
    counts:
      description: Mapping counts C(pages_4k), C(pages_2m), C(pages_1g); null when no source could be read.
      type: dict
    counts_source:
      description: C(stats-fd), C(debugfs), C(qemu-query-stats) or null.
      type: str
    counts_attempts:
      description: Sources tried before, each with C(source) and C(error).
      type: list
      elements: dict
    hold:
      description: The hold this helper placed on the current QEMU process, or null.
      type: dict
    hold_check:
      description:
        - The hold record set against the ranges the kernel reports holding
          (C(KVM_SPLIT_HUGE_PAGES_QUERY)); null when the domain could not be read.
        - C(status) is C(none) (no record, nothing held), C(held) (the recorded range is held
          at the recorded page size or smaller), C(partial) (only part of it is), C(stale-record)
          (recorded, but the kernel holds none of it, e.g. after a failed migration switched
          dirty logging off), C(unrecorded) (no record, but the kernel holds ranges, a hold that
          outlived the run that took it) or C(unknown) (a kernel that cannot be asked, such as
          one without the query).
        - C(kernel_ranges) lists the kernel's held ranges, each with C(page_size), C(gpa) and
          C(size) in bytes (null when C(unknown)); C(unrecorded) those of them, or their parts,
          outside the record.
        - C(kernel_pages) is the VM statistic C(pages_held), and C(pages_agree) whether it and
          the ranges agree on whether anything is held (null when either is unknown).
        - Also C(recorded), C(held_seconds) and C(message).
      type: dict
    status:
      description: C(ok), C(not running), C(not KVM-accelerated) or C(error).
      type: str
      sample: not KVM-accelerated
    error:
      description: C(code) and C(message) when status is C(error), otherwise null.
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.presplit.kvm.plugins.module_utils.option_checks import option_problem
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.errors import PresplitError
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.ops import HOST_ARGUMENT_SPEC, host_from_params


def main():
    module = AnsibleModule(
        argument_spec=dict(
            domains=dict(type="list", elements="str", default=[]),
            **HOST_ARGUMENT_SPEC
        ),
        supports_check_mode=True,
    )
    params = module.params
    problem = option_problem(params, texts=("domains",) + tuple(HOST_ARGUMENT_SPEC))
    if problem:
        module.fail_json(msg=problem)
    host = host_from_params(params)
    try:
        facts = host.facts(with_domains=not params["domains"])
        domains = facts.pop("domains", None)
        if domains is None:
            domains = [host.inspect(ident) for ident in params["domains"]]
    except PresplitError as exc:
        module.fail_json(msg=str(exc), error=exc.as_dict())
    finally:
        host.close()
    module.exit_json(changed=False, host=facts, domains=domains)


if __name__ == "__main__":
    main()
