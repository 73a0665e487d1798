#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: evacuation_plan
short_description: Plan where the guests of hosts to drain go, and in which waves
version_added: 0.1.0
description:
  - Computes, from host facts and domain facts, a destination for every domain on the hosts to drain and ordered waves
    of live migrations that respect every concurrency limit, link bandwidth and destination capacity.
  - Pure computation on the controller; it changes nothing anywhere. Run it with C(delegate_to=localhost) and
    C(run_once=true), feeding it facts gathered from the hosts (for example by M(presplit.kvm.host_info)).
  - "Placement: largest domains first, each to the eligible host (same CPU group, not being drained) with the most free
    memory, or free huge pages of its size for hugetlbfs-backed domains, that has the vCPUs left and holds no member of
    its anti-affinity groups; among hosts with as much free, the one that receives the fewest MiB so far, which spreads
    the migrations over the destinations' links. Balance bound: a host that receives domains ends with at most the largest of them less free
    than any other host that could also have taken it (when vCPUs and anti-affinity do not decide)."
  - "Prediction per migration (pre-copy model): pass 0 sends all memory, each next pass re-sends what was dirtied during
    the previous one, until the rest fits in O(max_downtime_ms) at the migration's bandwidth. When pre-copy does not
    converge (dirty rate not below bandwidth, or more than 30 passes), the domain gets auto-converge if a vCPU throttle
    of at most 50% is enough, otherwise post-copy, except for 1 GiB hugetlbfs domains or when O(allow_post_copy=false),
    which get auto-converge. The reason is returned per migration."
  - "Scheduling: the source hosts whose links have the most left to send go first, each with its longest migration
    that can start; a migration starts when its source, its destination and the cluster have a
    free slot and at least half their fair share of bandwidth left (link bandwidth over its concurrency limit), and
    reserves all the bandwidth left on its path (capped by O(limits.migration_bandwidth_mib_per_s)), so a link is
    filled by as few migrations as possible. Where that cap is below a link's bandwidth, the first migration over an
    idle link gets at most the link's share its bytes are of all the link carries (at least what the other slots
    cannot use), so it ends with the rest rather than alone at the cap; of the two links of its path, only the one
    with more left to carry counts. Migrations that start at the same planned instant form a wave.
    A wave may start once the migrations listed in its C(wait_for) have finished; waiting for every earlier wave is also
    safe, only slower."
  - The output is the same for the same input, whatever the order of the lists.
  - By default (O(detail=summary)) the result holds the totals and what happens to non-migratable domains, whatever the
    size of the fleet; O(detail=full) adds the placement and the waves of migrations, which are what
    P(presplit.kvm.live_migration#role) runs (the P(presplit.kvm.rolling_maintenance#role) role asks for it).
  - Fails when the hosts to drain cannot be emptied, saying per CPU group what the domains that fit nowhere need and what
    its destination hosts have left, and for the first of those domains how many candidate hosts each reason rules out
    (another CPU group, too little memory or huge pages, too few vCPUs, an anti-affinity peer), with example hosts.
author:
  - presplit.kvm developers (@presplit)
extends_documentation_fragment:
  - presplit.kvm.attributes
  - presplit.kvm.attributes.controller
attributes:
  check_mode:
    description: Can run in check mode and return the same plan.
options:
  hosts:
    description:
      - Every host of the cluster, those to drain included. Free capacity means what is free now, with the domains
        already running there accounted for.
      - Control characters are refused in every name, group and list of names.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Host name, as used in O(domains[].host) and O(drain).
        type: str
        required: true
      memory_free_mib:
        description: Memory available to new guests not backed by hugetlbfs, in MiB; 0 to 1099511627776.
        type: int
        required: true
      hugepages_2m_free:
        description: Free 2 MiB huge pages; 0 to 549755813888.
        type: int
        default: 0
      hugepages_1g_free:
        description: Free 1 GiB huge pages; 0 to 1073741824.
        type: int
        default: 0
      vcpus_free:
        description: vCPUs that may still be given to guests (after overcommit), 0 to 1048576. Unset means no vCPU limit.
        type: int
      cpu_group:
        description: CPU compatibility group; domains only move between hosts of the same group.
        type: str
        default: default
      kernel_mode:
        description:
          - What the host kernel offers, as reported by M(presplit.kvm.host_info). Huge-page-backed domains leaving a
            host that is not V(patched) are migrated without pre-split and listed in RV(without_presplit).
        type: str
        choices: [patched, eager-split-only, none]
        default: none
      bandwidth_mib_per_s:
        description: Migration link bandwidth of this host in MiB/s, 1 to 1048576. Unset means O(limits.host_bandwidth_mib_per_s).
        type: int
  domains:
    description:
      - Running domains. List every domain of the cluster, not only those on the hosts to drain; the others count for
        anti-affinity.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Domain name, unique in the cluster.
        type: str
        required: true
      host:
        description: Host the domain runs on now.
        type: str
        required: true
      memory_mib:
        description: Guest memory in MiB, 1 to 1073741824.
        type: int
        required: true
      vcpus:
        description: Number of vCPUs, 1 to 4096.
        type: int
        default: 1
      backing:
        description: How guest memory is backed. V(hugetlb-2M) and V(hugetlb-1G) consume huge pages of that size on the
          destination, the others consume memory.
        type: str
        choices: [none, thp, hugetlb-2M, hugetlb-1G]
        default: none
      hugepages:
        description: Huge pages the domain needs for hugetlbfs backings, 1 to 549755813888. Unset means memory divided by the page size.
        type: int
      anti_affinity:
        description: Anti-affinity groups; two domains sharing a group never end on the same host.
        type: list
        elements: str
        default: []
      pinned:
        description: The domain is tied to its host (host devices, local storage) and cannot be migrated.
        type: bool
        default: false
      migratable:
        description: V(false) when the domain cannot be live-migrated for any other reason.
        type: bool
        default: true
      dirty_rate_mib_per_s:
        description: Measured dirty page rate in MiB/s (libvirt C(dirtyrate) domain stats), 0 to 1048576.
        type: float
        default: 0
      local_disk_mib:
        description:
          - MiB of data on the domain's disks on a filesystem of its host alone, whole backing chains (what
            M(presplit.kvm.placement_facts) reports), 0 to 1099511627776. What O(copy_storage=all) copies.
          - With O(copy_storage=none), more than 0 makes the domain not migratable.
        type: int
        default: 0
      local_disk_top_mib:
        description: The same for the top images alone, what O(copy_storage=top) copies, 0 to 1099511627776.
        type: int
        default: 0
      cpu_group:
        description: CPU group the domain needs. Unset means the CPU group of its host.
        type: str
  drain:
    description: Names of the hosts to empty. They are never destinations.
    type: list
    elements: str
    required: true
  limits:
    description: Concurrency and bandwidth limits.
    type: dict
    default: {}
    suboptions:
      max_outgoing_per_host:
        description: Migrations leaving one host at the same time, 1 to 1000.
        type: int
        default: 2
      max_incoming_per_host:
        description: Migrations arriving on one host at the same time, 1 to 1000.
        type: int
        default: 2
      max_parallel_per_cluster:
        description: Migrations in flight in the whole cluster, 1 to 1000000.
        type: int
        default: 5
      host_bandwidth_mib_per_s:
        description: Migration link bandwidth of a host in MiB/s (1 to 1048576), for hosts that do not set O(hosts[].bandwidth_mib_per_s).
        type: int
        default: 1192
      cluster_bandwidth_mib_per_s:
        description: Bandwidth all migrations together may use, in MiB/s, 1 to 1073741824. Unset means no cluster-wide cap.
        type: int
      migration_bandwidth_mib_per_s:
        description: What one migration stream can carry, in MiB/s, 1 to 1048576. Unset means a whole link.
        type: int
  max_downtime_ms:
    description: Allowed downtime per migration, in milliseconds, 1 to 600000.
    type: int
    default: 300
  allow_post_copy:
    description: Whether post-copy may be chosen for domains whose pre-copy does not converge.
    type: bool
    default: true
  copy_storage:
    description:
      - The O(presplit.kvm.live_migrate#module:copy_storage) the migrations will run with. V(all) and V(top) add the
        disk data they copy (O(domains[].local_disk_mib) or O(domains[].local_disk_top_mib)) to each migration's
        transfer and duration, sent before its memory; V(none) makes a domain on local disks not migratable, since
        the module refuses to leave its disks behind.
      - The destination's free disk space is not checked.
    type: str
    choices: [none, all, top]
    default: none
  non_migratable_policy:
    description:
      - What to do with pinned or not migratable domains on the hosts to drain.
      - V(fail) stops with the list of them.
      - V(skip_host) leaves such hosts out of the drain (they receive nothing either) and lists them in RV(skipped_hosts).
      - V(shutdown_and_restart) keeps them on their host, to be shut down before the maintenance and started again on the
        same host after it; they are listed in RV(shutdown).
    type: str
    choices: [skip_host, shutdown_and_restart, fail]
    default: fail
  detail:
    description:
      - How much of the plan to return.
      - V(summary) returns RV(summary), RV(shutdown) and RV(skipped_hosts), and on failure leaves out RV(placed), so
        that the size of the result does not grow with the number of domains to move.
      - V(full) also returns RV(placement), RV(waves), RV(destinations) and RV(without_presplit), one entry per domain
        or per host; P(presplit.kvm.live_migration#role) and M(presplit.kvm.migration_report) need RV(waves).
    type: str
    choices: [summary, full]
    default: summary
notes:
  - Durations exclude the pre-split, which runs on the source before its migration starts.
  - The result echoes the options it was called with (C(invocation)) with the number of O(hosts) and O(domains) in
    place of their entries, which can be a fleet's worth of facts.
'''

EXAMPLES = r'''
- name: Plan the evacuation of hv01
  presplit.kvm.evacuation_plan:
    hosts:
      - name: hv01
        memory_free_mib: 2048
        kernel_mode: patched
      - name: hv02
        memory_free_mib: 65536
        hugepages_1g_free: 32
        vcpus_free: 48
        kernel_mode: patched
      - name: hv03
        memory_free_mib: 98304
        vcpus_free: 64
        kernel_mode: eager-split-only
    domains:
      - name: db1
        host: hv01
        memory_mib: 16384
        vcpus: 8
        backing: hugetlb-1G
        anti_affinity: [db]
        dirty_rate_mib_per_s: 120
      - name: db2
        host: hv03
        memory_mib: 16384
        anti_affinity: [db]
      - name: web1
        host: hv01
        memory_mib: 4096
        backing: thp
    drain: [hv01]
    limits:
      max_outgoing_per_host: 2
      max_incoming_per_host: 2
      max_parallel_per_cluster: 5
    max_downtime_ms: 300
    non_migratable_policy: fail
    # The waves, not only the totals.
    detail: full
  delegate_to: localhost
  run_once: true
  register: evacuation

- name: Show each wave
  ansible.builtin.debug:
    msg: "wave {{ item.wave }} at {{ item.start_s }} s: {{ item.migrations | map(attribute='domain') | join(', ') }}"
  loop: "{{ evacuation.waves }}"
  loop_control:
    label: "{{ item.wave }}"
  run_once: true
'''

RETURN = r'''
placement:
  description: Destination host per migrated domain.
  returned: success, with O(detail=full)
  type: dict
  sample: {"db1": "hv02", "web1": "hv03"}
waves:
  description: Migrations grouped by planned start, in order.
  returned: success, with O(detail=full)
  type: list
  elements: dict
  contains:
    wave:
      description: Wave number, from 1.
      type: int
    start_s:
      description: Planned start, in seconds from the start of the evacuation.
      type: float
    duration_s:
      description: Duration of the longest migration of the wave.
      type: float
    wait_for:
      description: Domains whose migrations must have finished before this wave starts.
      type: list
      elements: str
    migrations:
      description:
        - One entry per migration, longest first, with C(domain), C(source), C(destination), C(memory_mib), C(backing),
          C(presplit) (pre-split possible on the source), C(dirty_rate_mib_per_s), C(disk_copy_mib) (disk data the
          migration copies first, see O(copy_storage)), C(bandwidth_mib_per_s) (cap to set
          on the migration), C(mode) (C(pre_copy), C(auto_converge) or C(post_copy)), C(reason), C(iterations)
          (pre-copy passes), C(throttle_pct), C(transferred_mib), C(duration_s), C(downtime_ms) (null for post-copy),
          C(start_s), C(end_s) and C(wave).
        - What runs it as planned, C(options), the M(presplit.kvm.live_migrate) options of its mode and cap
          (C(bandwidth_mib_per_s) in whole MiB/s, C(auto_converge), or C(post_copy) with C(completion_timeout_action=postcopy)),
          and C(after), the migrations from the same source host it must wait for (the waves' C(wait_for) as one
          host's run sees them, since that run only has its own migrations running).
      type: list
      elements: dict
  sample:
    - wave: 1
      start_s: 0.0
      duration_s: 15.268
      wait_for: []
      migrations:
        - domain: db1
          source: hv01
          destination: hv02
          memory_mib: 16384
          backing: hugetlb-1G
          presplit: true
          dirty_rate_mib_per_s: 120.0
          disk_copy_mib: 0
          bandwidth_mib_per_s: 1192.0
          mode: pre_copy
          reason: pre-copy converges after 2 pass(es)
          iterations: 2
          throttle_pct: 0
          transferred_mib: 18199.443
          duration_s: 15.268
          downtime_ms: 139.301
          start_s: 0.0
          end_s: 15.268
          wave: 1
          after: []
          options: {bandwidth_mib_per_s: 1192}
    - wave: 2
      start_s: 15.268
      duration_s: 3.436
      wait_for: [db1]
      migrations:
        - domain: web1
          source: hv01
          destination: hv03
          memory_mib: 4096
          backing: thp
          presplit: true
          dirty_rate_mib_per_s: 0.0
          bandwidth_mib_per_s: 1192.0
          mode: pre_copy
          reason: pre-copy converges after 1 pass(es)
          iterations: 1
          throttle_pct: 0
          transferred_mib: 4096.0
          duration_s: 3.436
          downtime_ms: 0.0
          start_s: 15.268
          end_s: 18.704
          wave: 2
          after: [db1]
          options: {bandwidth_mib_per_s: 1192}
shutdown:
  description: Non-migratable domains to shut down before the maintenance and start again on O(hosts[].name) C(restart_on).
  returned: success
  type: list
  elements: dict
  sample: [{"domain": "gpu1", "host": "hv01", "restart_on": "hv01", "reason": "pinned to host hv01"}]
skipped_hosts:
  description: Hosts to drain left out because of non-migratable domains, with the reasons.
  returned: success
  type: dict
  sample: {"hv01": ["gpu1 is pinned to host hv01"]}
destinations:
  description: Per receiving host, the domains it receives and what it has left afterwards.
  returned: success, with O(detail=full)
  type: dict
  sample: {"hv02": {"incoming": ["db1"], "memory_free_mib_after": 65536, "hugepages_2m_free_after": 0,
                    "hugepages_1g_free_after": 16, "vcpus_free_after": 40},
           "hv03": {"incoming": ["web1"], "memory_free_mib_after": 94208, "hugepages_2m_free_after": 0,
                    "hugepages_1g_free_after": 0, "vcpus_free_after": 63}}
without_presplit:
  description:
    - Huge-page-backed domains leaving a host whose kernel cannot pre-split; expect vCPU stalls in their first pass.
    - Without O(detail=full), a warning and C(summary.without_presplit) give their number.
  returned: success, with O(detail=full)
  type: list
  elements: dict
  sample: [{"domain": "web1", "host": "hv01", "backing": "thp", "kernel_mode": "eager-split-only"}]
summary:
  description:
    - Totals. C(makespan_s) is the planned end of the last migration; C(bandwidth_lower_bound_s) the time the busiest
      link (host or cluster) needs for the bytes planned over it; C(lower_bound_s) also counts, with each migration's
      duration on an idle path, the longest migration, the cluster slots, and per host the migrations that its
      slots force to run one after another.
    - C(without_presplit) is the number of huge-page-backed domains that leave a host whose kernel cannot pre-split
      (listed in RV(without_presplit) with O(detail=full)).
  returned: success
  type: dict
  sample: {"migrations": 2, "waves": 2, "makespan_s": 18.704, "bandwidth_lower_bound_s": 18.704, "lower_bound_s": 18.704,
           "makespan_over_bandwidth_bound": 1.0, "transferred_mib": 22295.443,
           "modes": {"pre_copy": 2, "auto_converge": 0, "post_copy": 0}, "without_presplit": 0}
unplaced_count:
  description: On failure because domains fit nowhere, how many fit nowhere.
  returned: failure
  type: int
  sample: 1
unplaced_by_cpu_group:
  description:
    - On failure because domains fit nowhere, per CPU group of those domains, how many they are (C(domains)), what they
      need together (C(needs)) and what the group's destination hosts (C(destinations), their number) have left after
      the other domains were placed (C(left)).
    - C(needs) and C(left) give C(memory_mib), C(hugepages_2m), C(hugepages_1g) and C(vcpus); C(left.vcpus) is null
      when a destination host has no vCPU limit.
  returned: failure
  type: dict
  sample: {"default": {"domains": 1, "needs": {"memory_mib": 0, "hugepages_2m": 0, "hugepages_1g": 16, "vcpus": 8},
                       "destinations": 2, "left": {"memory_mib": 159744, "hugepages_2m": 0, "hugepages_1g": 32,
                                                   "vcpus": 111}}}
unplaced:
  description:
    - On failure because domains fit nowhere, the first 20 of them (largest first), each with its C(source), C(cpu_group),
      C(memory_mib), C(backing), C(vcpus) and C(reasons).
    - C(reasons) counts the candidate hosts by the first reason each cannot take the domain (C(cpu_group), C(memory),
      C(hugetlb-2M), C(hugetlb-1G), C(vcpus), C(anti_affinity)) in C(hosts), with up to 3 of them and their reason in
      C(examples).
  returned: failure
  type: list
  elements: dict
  sample: [{"domain": "db1", "source": "hv01", "cpu_group": "default", "memory_mib": 16384, "backing": "hugetlb-1G",
            "vcpus": 8, "reasons": {"anti_affinity": {"hosts": 1, "examples": {
              "hv02": "anti-affinity group db already has db2 there"}},
                                    "hugetlb-1G": {"hosts": 1, "examples": {"hv03": "needs 16 hugetlb-1G pages, 0 left"}}}}]
placed:
  description: On failure because domains fit nowhere, where the other domains would have gone.
  returned: failure, with O(detail=full)
  type: dict
  sample: {"web1": "hv03"}
domain:
  description: On failure because no migration method converges for a domain, its name.
  returned: failure
  type: str
  sample: db1
not_migratable:
  description: On failure with O(non_migratable_policy=fail), the non-migratable domains on the hosts to drain.
  returned: failure
  type: list
  elements: dict
  sample: [{"domain": "gpu1", "reason": "pinned to host hv01"}]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.presplit.kvm.plugins.module_utils.domain_disks import COPY_STORAGE
from ansible_collections.presplit.kvm.plugins.module_utils.entry_checks import checked_entries
from ansible_collections.presplit.kvm.plugins.module_utils.evacuation_planner import plan_evacuation
from ansible_collections.presplit.kvm.plugins.module_utils.gc_pause import cycle_collection_paused
from ansible_collections.presplit.kvm.plugins.module_utils.option_checks import option_problem
from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import (
    BACKINGS, DEFAULT_LIMITS, DETAILS, KERNEL_MODES, NON_MIGRATABLE_POLICIES, PlanningError)

# The documented range of every number, by where it is given.
HOST_RANGES = {
    'memory_free_mib': (0, 1 << 40),
    'hugepages_2m_free': (0, 1 << 39),
    'hugepages_1g_free': (0, 1 << 30),
    'vcpus_free': (0, 1 << 20),
    'bandwidth_mib_per_s': (1, 1 << 20),
}
DOMAIN_RANGES = {
    'memory_mib': (1, 1 << 30),
    'vcpus': (1, 4096),
    'hugepages': (1, 1 << 39),
    'dirty_rate_mib_per_s': (0, 1 << 20),
    'local_disk_mib': (0, 1 << 40),
    'local_disk_top_mib': (0, 1 << 40),
}
LIMIT_RANGES = {
    'max_outgoing_per_host': (1, 1000),
    'max_incoming_per_host': (1, 1000),
    'max_parallel_per_cluster': (1, 1000000),
    'host_bandwidth_mib_per_s': (1, 1 << 20),
    'cluster_bandwidth_mib_per_s': (1, 1 << 30),
    'migration_bandwidth_mib_per_s': (1, 1 << 20),
}
MAX_DOWNTIME_MS = 600000

# Warnings name this many domains; RV(without_presplit) has them all.
DOMAINS_IN_WARNING = 5

HOST_SPEC = dict(
    name=dict(type='str', required=True),
    memory_free_mib=dict(type='int', required=True),
    hugepages_2m_free=dict(type='int', default=0),
    hugepages_1g_free=dict(type='int', default=0),
    vcpus_free=dict(type='int'),
    cpu_group=dict(type='str', default='default'),
    kernel_mode=dict(type='str', choices=list(KERNEL_MODES), default='none'),
    bandwidth_mib_per_s=dict(type='int'),
)

DOMAIN_SPEC = dict(
    name=dict(type='str', required=True),
    host=dict(type='str', required=True),
    memory_mib=dict(type='int', required=True),
    vcpus=dict(type='int', default=1),
    backing=dict(type='str', choices=list(BACKINGS), default='none'),
    hugepages=dict(type='int'),
    anti_affinity=dict(type='list', elements='str', default=[]),
    pinned=dict(type='bool', default=False),
    migratable=dict(type='bool', default=True),
    dirty_rate_mib_per_s=dict(type='float', default=0),
    local_disk_mib=dict(type='int', default=0),
    local_disk_top_mib=dict(type='int', default=0),
    cpu_group=dict(type='str'),
)

# The defaults are the planner's (DEFAULT_LIMITS), so the roles' presplit.kvm.evacuation_limits agrees.
LIMITS_SPEC = dict((name, dict(type='int', default=default)) for name, default in DEFAULT_LIMITS.items())

ARGUMENT_SPEC = dict(
    # Their entries are checked against HOST_SPEC and DOMAIN_SPEC by checked_entries: as
    # suboptions, AnsibleModule took 10 s for 100,000 domains.
    hosts=dict(type='list', elements='dict', required=True),
    domains=dict(type='list', elements='dict', required=True),
    drain=dict(type='list', elements='str', required=True),
    limits=dict(type='dict', default={}, options=LIMITS_SPEC, apply_defaults=True),
    max_downtime_ms=dict(type='int', default=300),
    allow_post_copy=dict(type='bool', default=True),
    copy_storage=dict(type='str', choices=list(COPY_STORAGE), default='none'),
    non_migratable_policy=dict(type='str', choices=list(NON_MIGRATABLE_POLICIES), default='fail'),
    detail=dict(type='str', choices=list(DETAILS), default='summary'),
)
ENTRY_SPECS = (('hosts', HOST_SPEC), ('domains', DOMAIN_SPEC))


def input_problem(params):
    """The first number out of its range or text with a control character in params, as a
    message naming the option (and the host or domain it belongs to); None if all is well."""
    problem = option_problem(params, {'max_downtime_ms': (1, MAX_DOWNTIME_MS)}, ('drain',))
    if problem:
        return problem
    problem = option_problem(params['limits'], LIMIT_RANGES)
    if problem:
        return 'limits.' + problem
    for section, ranges, texts in (('hosts', HOST_RANGES, ('name', 'cpu_group')),
                                   ('domains', DOMAIN_RANGES, ('name', 'host', 'cpu_group', 'anti_affinity'))):
        for index, entry in enumerate(params[section]):
            problem = option_problem(entry, ranges, texts)
            if problem:
                # The entry by its position: its name may be the problem.
                return '%s[%d].%s' % (section, index, problem)
    return None


def main():
    # The arguments decoded and checked and the plan: for 100,000 domains, millions of
    # objects and no reference cycles.
    with cycle_collection_paused():
        plan_as_asked()


def plan_as_asked():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    # Counted before a failed check sets an option to None.
    invocation = {'module_args': dict(params, **dict((option, '%d entries' % len(params[option])) for option, _spec in ENTRY_SPECS))}
    for option, spec in ENTRY_SPECS:
        params[option], problem = checked_entries(option, params[option], spec)
        if problem:
            module.fail_json(msg=problem, invocation=invocation)
    problem = input_problem(params)
    if problem:
        module.fail_json(msg=problem, invocation=invocation)
    try:
        plan = plan_evacuation(params['hosts'], params['domains'], params['drain'], limits=params['limits'],
                               max_downtime_ms=params['max_downtime_ms'],
                               non_migratable_policy=params['non_migratable_policy'],
                               allow_post_copy=params['allow_post_copy'], detail=params['detail'],
                               copy_storage=params['copy_storage'])
    except PlanningError as error:
        module.fail_json(msg=error.message, invocation=invocation, **error.details)
    count = plan['summary']['without_presplit']
    if count:
        # With detail=full, which lists them all, the first few are named.
        names = [entry['domain'] for entry in plan.get('without_presplit', [])[:DOMAINS_IN_WARNING]]
        named = ' (%s%s)' % (', '.join(names), ', ...' if count > len(names) else '') if names else ''
        module.warn('%d huge-page-backed domain(s) leave hosts whose kernel cannot pre-split%s: expect vCPU stalls '
                    'during their first migration pass' % (count, named))
    module.exit_json(changed=False, invocation=invocation, **plan)


if __name__ == '__main__':
    main()
