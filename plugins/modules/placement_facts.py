#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: placement_facts
short_description: Measure dirty rates and gather a KVM host's capacity and domains for the evacuation planner
version_added: 0.1.0
description:
  - Reads, through libvirt on the host it runs on, the host's free capacity and its active domains, and returns them as
    RV(host) and RV(domains) in exactly the shape M(presplit.kvm.evacuation_plan) takes for O(presplit.kvm.evacuation_plan#module:hosts)
    and O(presplit.kvm.evacuation_plan#module:domains). Gather it on every host of the cluster and feed the lists to the planner,
    which chooses pre-copy, auto-converge or post-copy per domain from the measured dirty rate.
  - "Dirty rate: C(virDomainStartDirtyRateCalc) is started on every running domain first, then the module waits once and
    reads the C(dirtyrate) domain statistics, so N domains cost one O(dirty_rate_period_s) period, not N. A domain whose
    measurement fails (vanished, stopped, not supported by its QEMU or libvirt, timed out) is reported in RV(dirty_rate)
    with its status and error, counts as 0 MiB/s and is named in a warning; the others are not affected."
  - "The default mode, V(page-sampling), hashes a sample of guest pages (512 per GiB) at the start and the end of the
    period. It reads guest memory only and does not touch KVM dirty logging, so it is safe on a domain that holds a
    pre-split (M(presplit.kvm.split_huge_pages) with a hold). V(dirty-bitmap) turns KVM dirty logging on for the period
    and off again: turning it off drops a pre-split hold and lets huge pages come back, which undoes a pre-split. Measure
    before pre-splitting, or keep page-sampling."
  - "Host free memory: the smaller of C(MemAvailable) and C(MemTotal) minus the hugetlb pools minus the memory of the
    running domains not backed by hugetlbfs, less O(memory_reserve_mib). C(MemAvailable) is what the kernel can give new
    workloads without swapping (libvirt's free memory is C(MemFree), which ignores reclaimable cache); the committed
    bound counts guest RAM a guest has not touched yet but may at any time. Free huge pages are C(free_hugepages) minus
    C(resv_hugepages) per size. Free vCPUs are the host CPUs times O(vcpu_overcommit) minus the vCPUs of the active
    domains (never below 0)."
  - "Per domain: C(memory_mib) from C(<memory>), C(vcpus) from C(<vcpu>) (its C(current) attribute when set),
    C(backing) V(hugetlb-2M) or V(hugetlb-1G) from C(<memoryBacking><hugepages>), otherwise V(thp) when the host's
    transparent huge page mode gives QEMU's guest RAM huge pages (C(always) or C(madvise): QEMU madvises guest RAM
    C(MADV_HUGEPAGE); for memfd-backed RAM, C(shmem_enabled)), else V(none)."
  - "C(pinned) is true when the domain has a host device (C(<hostdev>), or C(<interface type='hostdev'>) without
    transient teaming): the passed-through PCI function, USB or mediated device is on this host and libvirt 9.0 with
    QEMU 7.2 cannot migrate its state, so the guest can only be shut down and started again on the same host. It is also
    true when the domain's placement metadata holds a C(<pinned reason='...'/>) element (for example for local storage).
    C(migratable) is false for states libvirt does not migrate and for what libvirt refuses to migrate that the XML shows
    (legacy ivshmem or non-master shmem devices, virtiofs with QEMU before 8.2, the invtsc CPU feature without a TSC
    frequency); the reasons are in RV(domain_details)."
  - "Anti-affinity groups, a pin and a CPU group come from a libvirt metadata element in the namespace
    C(https://presplit-kvm.invalid/xmlns/placement/1), for example
    C(<placement><anti-affinity group='db'/><anti-affinity group='rack1'/></placement>). Set it with
    C(virsh metadata DOMAIN --uri https://presplit-kvm.invalid/xmlns/placement/1 --key presplit --set
    \"<placement><anti-affinity group='db'/></placement>\" --live --config), read it with the same command without
    C(--set), remove it with C(--remove). Elements: C(<anti-affinity group='G'/>) (repeatable), C(<pinned reason='R'/>),
    C(<cpu-group name='N'/>) (the domain's C(cpu_group))."
  - Also sets the fact C(presplit_placement) with RV(host) and RV(domains), so a play can use
    C(hostvars[host].presplit_placement) without registering the result.
author:
  - presplit.kvm developers (@presplit)
requirements:
  - libvirt-python (Debian package C(python3-libvirt)) 7.2 or later on the host; libvirt 7.2 and QEMU 5.2 or later for
    dirty-rate measurement
extends_documentation_fragment:
  - presplit.kvm.attributes
  - presplit.kvm.attributes.read_only
  - presplit.kvm.attributes.kvm_host
  - presplit.kvm.libvirt
attributes:
  check_mode:
    description: The module only reads; measuring does not change the guest, so check mode measures and returns the same facts.
  facts:
    description: Sets C(presplit_placement).
    support: full
  platform:
    description: Runs on the KVM host (Linux), where it reads C(/proc/meminfo) and C(/sys/kernel/mm).
options:
  host_name:
    description:
      - Name of this host in the planner's input, used as RV(host.name) and as every domain's C(host); it must be the
        name the play uses in the planner's C(drain) list.
      - Unset means the host name libvirt reports (C(virConnectGetHostname)), which need not be the inventory name.
        Pass C("{{ inventory_hostname }}") in plays.
    type: str
  cpu_group:
    description: CPU compatibility group of this host (RV(host.cpu_group)); domains only move between hosts of the same group.
    type: str
    default: default
  memory_reserve_mib:
    description: Memory kept for the host itself and QEMU overhead, in MiB, subtracted from the free memory; 0 to 16777216.
    type: int
    default: 1024
  vcpu_overcommit:
    description: vCPUs allowed per host CPU, 0.01 to 1000.
    type: float
    default: 4.0
  bandwidth_mib_per_s:
    description:
      - Migration link bandwidth of this host in MiB/s (1 to 1048576), passed on as RV(host.bandwidth_mib_per_s).
      - Unset leaves it out.
    type: int
  kernel_mode:
    description:
      - What the host kernel offers for pre-splitting, passed on as RV(host.kernel_mode).
      - V(detect) finds it as M(presplit.kvm.host_info) does (C(KVM_CAP_SPLIT_HUGE_PAGES), C(kvm.tdp_mmu),
        C(kvm.eager_page_split)).
    type: str
    choices: [detect, patched, eager-split-only, none]
    default: detect
  measure_dirty_rate:
    description: Measure the dirty rate of the running domains. V(false) reports 0 MiB/s for every domain.
    type: bool
    default: true
  dirty_rate_period_s:
    description: Measurement period in seconds (1 to 60). All domains are measured during the same period.
    type: int
    default: 1
    aliases: [dirty_rate_seconds]
  dirty_rate_mode:
    description:
      - V(page-sampling) hashes sampled pages and does not touch KVM dirty logging.
      - V(dirty-bitmap) toggles KVM dirty logging and drops a pre-split hold; V(dirty-ring) needs QEMU's KVM dirty ring.
        Both are refused on TCG (C(type='qemu')) domains, whose QEMU 7.2 crashed under a dirty-bitmap measurement.
    type: str
    choices: [page-sampling, dirty-bitmap, dirty-ring]
    default: page-sampling
  dirty_rate_timeout_s:
    description:
      - Seconds to wait for all results after the first measurement started, 1 to 3600 and at least
        O(dirty_rate_period_s).
      - Unset means O(dirty_rate_period_s) + 10.
    type: float
    aliases: [dirty_rate_timeout]
  domains:
    description:
      - Names or UUIDs of the domains to return and measure. Empty means every active domain.
      - Control characters are refused here and in every text option.
      - The host's capacity always accounts for every active domain.
    type: list
    elements: str
    default: []
notes:
  - Shut-off domains are not returned; they use no capacity.
  - A paused domain is returned with a dirty rate of 0 and not measured.
  - C(megabytes_per_second) from libvirt is in MiB/s, rounded down by QEMU; a page-sampling estimate of a small guest is
    coarse (a 128 MiB guest has 64 sampled pages).
seealso:
  - module: presplit.kvm.evacuation_plan
  - module: presplit.kvm.host_info
'''

EXAMPLES = r'''
- name: Gather placement facts on every hypervisor
  presplit.kvm.placement_facts:
    host_name: "{{ inventory_hostname }}"
    cpu_group: "{{ cpu_group | default('default') }}"
    memory_reserve_mib: 2048
    vcpu_overcommit: 2.0
  register: facts

- name: Plan the evacuation of hv01 from what every host reported
  presplit.kvm.evacuation_plan:
    hosts: "{{ groups.hypervisors | map('extract', hostvars, ['facts', 'host']) | list }}"
    domains: "{{ groups.hypervisors | map('extract', hostvars, ['facts', 'domains']) | flatten(levels=1) }}"
    drain: [hv01]
    max_downtime_ms: 300
  delegate_to: localhost
  run_once: true
  register: evacuation

- name: The same from the fact, without register
  presplit.kvm.evacuation_plan:
    hosts: "{{ groups.hypervisors | map('extract', hostvars, ['presplit_placement', 'host']) | list }}"
    domains: "{{ groups.hypervisors | map('extract', hostvars, ['presplit_placement', 'domains']) | flatten(levels=1) }}"
    drain: [hv01]
  delegate_to: localhost
  run_once: true

- name: Measure two domains over 3 seconds, without the capacity math changing
  presplit.kvm.placement_facts:
    host_name: "{{ inventory_hostname }}"
    domains: [db1, web1]
    dirty_rate_period_s: 3

# Tag two domains so that they never share a host (run on their host):
#   virsh metadata db1 --uri https://presplit-kvm.invalid/xmlns/placement/1 --key presplit \
#     --set "<placement><anti-affinity group='db'/></placement>" --live --config
- name: Put db1 in anti-affinity group db
  ansible.builtin.command:
    argv: [virsh, metadata, db1, --uri, "https://presplit-kvm.invalid/xmlns/placement/1", --key, presplit,
           --set, "<placement><anti-affinity group='db'/></placement>", --live, --config]
  changed_when: true
'''

RETURN = r'''
host:
  description: This host, as one element of the planner's O(presplit.kvm.evacuation_plan#module:hosts).
  returned: success
  type: dict
  contains:
    name:
      description: O(host_name), or the libvirt host name.
      type: str
      sample: hv01
    memory_free_mib:
      description: Memory available to new guests not backed by hugetlbfs, in MiB.
      type: int
      sample: 61440
    hugepages_2m_free:
      description: Free, unreserved 2 MiB huge pages.
      type: int
      sample: 0
    hugepages_1g_free:
      description: Free, unreserved 1 GiB huge pages.
      type: int
      sample: 16
    vcpus_free:
      description: vCPUs that may still be given to guests.
      type: int
      sample: 40
    cpu_group:
      description: O(cpu_group).
      type: str
      sample: default
    kernel_mode:
      description: O(kernel_mode), or the detected mode.
      type: str
      sample: patched
    bandwidth_mib_per_s:
      description: O(bandwidth_mib_per_s).
      type: int
      returned: when O(bandwidth_mib_per_s) is set
domains:
  description:
    - Active domains (those of O(domains) when set), each one element of the planner's
      O(presplit.kvm.evacuation_plan#module:domains), sorted by name.
    - Keys C(name), C(host), C(memory_mib), C(vcpus), C(backing), C(anti_affinity), C(pinned), C(migratable),
      C(dirty_rate_mib_per_s), C(local_disk_mib) and C(local_disk_top_mib), and C(cpu_group) when the domain's metadata
      sets one.
    - C(local_disk_mib) is the data on the domain's writable disks that are files on a filesystem of this host alone
      (not NFS, CIFS, CephFS, GlusterFS, GFS2, OCFS2 and the like), whole backing chains, in MiB allocated (at least 1
      per image); C(local_disk_top_mib) the same for the top images alone. They are what a migration with
      O(presplit.kvm.live_migrate#module:copy_storage) V(all) or V(top) copies. Both 0 without such disks.
  returned: success
  type: list
  elements: dict
  sample:
    - name: db1
      host: hv01
      memory_mib: 16384
      vcpus: 8
      backing: hugetlb-1G
      anti_affinity: [db]
      pinned: false
      migratable: true
      dirty_rate_mib_per_s: 120.0
      local_disk_mib: 0
      local_disk_top_mib: 0
dirty_rate:
  description:
    - Per measured domain, C(status) (C(measured), C(skipped), C(unsupported), C(vanished), C(failed) or C(timeout)),
      C(mib_per_s) (null unless measured; 0 for a paused domain), C(mode), C(period_s), C(start_time) (QEMU's),
      C(vcpu_mib_per_s) (per vCPU, dirty-ring mode only) and C(error).
    - Empty with O(measure_dirty_rate=false).
  returned: success
  type: dict
  sample: {"db1": {"status": "measured", "mib_per_s": 120.0, "mode": "page-sampling", "period_s": 1,
                   "start_time": 8831, "vcpu_mib_per_s": null, "error": null}}
host_details:
  description:
    - How the capacity was computed, C(mem_total_mib), C(mem_available_mib), C(hugetlb_pool_mib), C(committed_guest_mib),
      C(memory_reserve_mib), C(memory_bound) (which of C(MemAvailable) and C(committed) was smaller), C(cpus),
      C(vcpu_overcommit), C(vcpus_capacity), C(vcpus_used), C(hugepage_pools), C(thp_enabled), C(shmem_thp_enabled),
      C(default_hugepage_kib), C(domains_active), C(libvirt_host_name), C(kernel_mode_reason).
  returned: success
  type: dict
domain_details:
  description:
    - Per returned domain, C(uuid), C(virt_type), C(state), C(memory_kib), C(backing_reason), C(hugepage_kib),
      C(pinned_reasons), C(not_migratable_reasons) and C(metadata_errors).
  returned: success
  type: dict
  sample: {"gpu1": {"uuid": "0e2564f6-a89e-4cb6-9f95-fe808c645673", "virt_type": "kvm", "state": "running",
                    "memory_kib": 8388608, "backing_reason": "anonymous RAM, QEMU madvises it MADV_HUGEPAGE, THP enabled=madvise",
                    "hugepage_kib": null, "pinned_reasons": ["host device (<hostdev mode=subsystem type=pci>)"],
                    "not_migratable_reasons": [], "metadata_errors": []}}
missing:
  description: Entries of O(domains) that match no active domain.
  returned: success
  type: list
  elements: str
vanished:
  description: Domains that stopped between the listing and the reading of their XML; they are left out.
  returned: success
  type: list
  elements: str
ansible_facts:
  description: Facts set by the module.
  returned: success
  type: dict
  contains:
    presplit_placement:
      description: C(host) and C(domains), as RV(host) and RV(domains).
      type: dict
'''

from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import host_name, open_connection
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_dirty_rate import (
    DEFAULT_MODE, MAX_SECONDS, MIN_SECONDS, MODES)
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_module import libvirt_errors, libvirt_module
from ansible_collections.presplit.kvm.plugins.module_utils.option_checks import option_problem
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_placement import (
    DEFAULT_CPU_GROUP, DEFAULT_MEMORY_RESERVE_MIB, DEFAULT_VCPU_OVERCOMMIT, PlacementError, gather_placement_facts,
    unmeasured)

# The documented range of each number (dirty_rate_timeout_s: from dirty_rate_period_s).
RANGES = {
    'memory_reserve_mib': (0, 16777216),
    'vcpu_overcommit': (0.01, 1000),
    'bandwidth_mib_per_s': (1, 1048576),
    'dirty_rate_period_s': (MIN_SECONDS, MAX_SECONDS),
}
MAX_TIMEOUT_S = 3600
TEXT_OPTIONS = ('uri', 'host_name', 'cpu_group', 'domains')

# Warnings name this many domains; RV(dirty_rate) has them all.
DOMAINS_IN_WARNING = 5

ARGUMENT_SPEC = dict(
    host_name=dict(type='str'),
    cpu_group=dict(type='str', default=DEFAULT_CPU_GROUP),
    memory_reserve_mib=dict(type='int', default=DEFAULT_MEMORY_RESERVE_MIB),
    vcpu_overcommit=dict(type='float', default=DEFAULT_VCPU_OVERCOMMIT),
    bandwidth_mib_per_s=dict(type='int'),
    kernel_mode=dict(type='str', choices=['detect', 'patched', 'eager-split-only', 'none'], default='detect'),
    measure_dirty_rate=dict(type='bool', default=True),
    dirty_rate_period_s=dict(type='int', default=1, aliases=['dirty_rate_seconds']),
    dirty_rate_mode=dict(type='str', choices=sorted(MODES), default=DEFAULT_MODE),
    dirty_rate_timeout_s=dict(type='float', aliases=['dirty_rate_timeout']),
    domains=dict(type='list', elements='str', default=[]),
)


def _names(names):
    return '%s%s' % (', '.join(names[:DOMAINS_IN_WARNING]), ', ...' if len(names) > DOMAINS_IN_WARNING else '')


def _kernel_mode(requested):
    if requested != 'detect':
        return requested, 'given by the kernel_mode option'
    # Imported here: the KVM layer opens /dev/kvm and needs nothing else from this module.
    from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.host import host_facts
    facts = host_facts()
    return facts['mode'], facts['mode_reason']


def main():
    module = libvirt_module(ARGUMENT_SPEC)
    params = module.params
    seconds = params['dirty_rate_period_s']
    problem = option_problem(params, dict(RANGES, dirty_rate_timeout_s=(seconds, MAX_TIMEOUT_S)), TEXT_OPTIONS)
    if problem:
        module.fail_json(msg=problem)
    kernel_mode, kernel_reason = _kernel_mode(params['kernel_mode'])
    conn = None
    libvirt_name = None
    with libvirt_errors(module, PlacementError):
        try:
            conn = open_connection(params['uri'], 'host')
            libvirt_name = host_name(conn)
            facts = gather_placement_facts(
                conn, params['host_name'] or libvirt_name, cpu_group=params['cpu_group'],
                memory_reserve_mib=params['memory_reserve_mib'], vcpu_overcommit=params['vcpu_overcommit'],
                names=params['domains'], measure=params['measure_dirty_rate'], seconds=seconds,
                mode=params['dirty_rate_mode'], timeout=params['dirty_rate_timeout_s'], kernel_mode=kernel_mode,
                bandwidth_mib_per_s=params['bandwidth_mib_per_s'])
        finally:
            if conn is not None:
                conn.close()
    facts['host_details'].update({'libvirt_host_name': libvirt_name, 'kernel_mode_reason': kernel_reason})
    if params['dirty_rate_mode'] != DEFAULT_MODE:
        module.warn('dirty_rate_mode=%s toggles KVM dirty logging (dirty-bitmap) or needs the dirty ring: a pre-split '
                    'hold on a measured domain is dropped' % params['dirty_rate_mode'])
    failed = unmeasured(facts)
    if failed:
        module.warn('dirty rate not measured for %d domain(s) (%s), counted as 0 MiB/s: see dirty_rate'
                    % (len(failed), _names(failed)))
    if facts['missing']:
        module.warn('no active domain matches %s' % _names(facts['missing']))
    module.exit_json(changed=False, ansible_facts={'presplit_placement': {'host': facts['host'],
                                                                          'domains': facts['domains']}}, **facts)


if __name__ == '__main__':
    main()
