# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why the hosts to drain cannot be emptied (``explain_unplaced``), in a size that does
not grow with the fleet's hosts times its domains.

Two views: per CPU group of the domains that fit nowhere, what they need against what the
group's destinations have left (where capacity is short, and by how much); and, for the
first few of those domains, the candidate hosts counted by the first reason each cannot
take it (another CPU group, too little of the domain's resource, too few vCPUs, an
anti-affinity peer there), with a few example hosts per reason.  One reason per host per
domain, as before, took 100 s and 9.5 GB for 30,000 domains over 2,500 destinations.
"""

from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import MEMORY, PlanningError

# Domains explained host by host in the details, and in the message.
DOMAINS_EXPLAINED = 20
DOMAINS_IN_MESSAGE = 3
# Hosts named per reason of one domain, and CPU groups in the message (details have them all).
EXAMPLE_HOSTS = 3
CPU_GROUPS_IN_MESSAGE = 8

# What each reason of Placer.why_not says of a count of hosts.
HOSTS_THAT = {
    'cpu_group': 'in another CPU group',
    MEMORY: 'without the memory',
    'hugetlb-2M': 'without the hugetlb-2M pages',
    'hugetlb-1G': 'without the hugetlb-1G pages',
    'vcpus': 'without the vCPUs',
    'anti_affinity': 'with an anti-affinity peer',
    'fits_now': 'that fit now, but not when it was placed',
}
# The capacities that per CPU group figures add up, with their units.
CAPACITIES = (('memory_mib', 'MiB of memory'), ('hugepages_2m', 'hugetlb-2M pages'), ('hugepages_1g', 'hugetlb-1G pages'),
              ('vcpus', 'vCPUs'))
CAPACITY_OF_RESOURCE = {MEMORY: 'memory_mib', 'hugetlb-2M': 'hugepages_2m', 'hugetlb-1G': 'hugepages_1g'}


def explain_unplaced(unplaced, placer, destinations, placement):
    """The PlanningError for ``unplaced``, (Domain, CPU group) pairs in placement order, after
    ``placer`` (the Placer) placed the others on ``destinations``; its details give where
    (``placed``) if ``placement`` is given, not None."""
    by_cpu_group = _by_cpu_group(unplaced, destinations)
    names = sorted(destinations)
    explained = [_explain(domain, cpu_group, placer, [destinations[name] for name in names])
                 for domain, cpu_group in unplaced[:DOMAINS_EXPLAINED]]
    lines = [_domain_line(entry) for entry in explained[:DOMAINS_IN_MESSAGE]]
    more = len(unplaced) - len(lines)
    if more:
        lines.append('%d more domain(s) (%d of them in the details)' % (more, len(explained) - len(lines)))
    largest = sorted(by_cpu_group.items(), key=lambda item: (-item[1]['domains'], item[0]))[:CPU_GROUPS_IN_MESSAGE]
    groups = [_cpu_group_line(name, figures) for name, figures in sorted(largest)]
    if len(by_cpu_group) > len(groups):
        groups.append('%d more CPU group(s) in the details' % (len(by_cpu_group) - len(groups)))
    message = '%d domain(s) fit nowhere. %s. By CPU group: %s' % (len(unplaced), ' | '.join(lines), ' | '.join(groups))
    details = {'unplaced_count': len(unplaced), 'unplaced': explained, 'unplaced_by_cpu_group': by_cpu_group}
    if placement is not None:
        details['placed'] = dict(placement)
    return PlanningError(message, details)


def _explain(domain, cpu_group, placer, candidates):
    """``domain`` with every host of ``candidates`` counted under its first reason, a few named."""
    reasons = {}
    for host in candidates:
        kind, text = placer.why_not(domain, cpu_group, host)
        reason = reasons.setdefault(kind, {'hosts': 0, 'examples': {}})
        reason['hosts'] += 1
        if len(reason['examples']) < EXAMPLE_HOSTS:
            reason['examples'][host.name] = text
    return {'domain': domain.name, 'source': domain.host, 'cpu_group': cpu_group, 'memory_mib': domain.memory_mib,
            'backing': domain.backing, 'vcpus': domain.vcpus, 'reasons': reasons}


def _domain_line(entry):
    reasons = ', '.join('%d host(s) %s (%s)' % (reason['hosts'], HOSTS_THAT[kind], '; '.join(
        '%s: %s' % example for example in sorted(reason['examples'].items())))
        for kind, reason in sorted(entry['reasons'].items(), key=lambda item: (-item[1]['hosts'], item[0])))
    return '%s (from %s, %d MiB %s, %d vCPUs) fits nowhere: %s' % (
        entry['domain'], entry['source'], entry['memory_mib'], entry['backing'], entry['vcpus'],
        reasons or 'no destination host (every host is being drained)')


def _by_cpu_group(unplaced, destinations):
    """Per CPU group of ``unplaced``: how many, what they need, and what its destinations
    have left (``vcpus`` None where a destination has no vCPU limit)."""
    groups = {}
    for domain, cpu_group in unplaced:
        figures = groups.get(cpu_group)
        if figures is None:
            figures = groups[cpu_group] = {'domains': 0, 'needs': dict((key, 0) for key, _unit in CAPACITIES),
                                           'destinations': 0, 'left': dict((key, 0) for key, _unit in CAPACITIES)}
        figures['domains'] += 1
        figures['needs'][CAPACITY_OF_RESOURCE[domain.resource]] += domain.amount
        figures['needs']['vcpus'] += domain.vcpus
    for host in destinations.values():
        figures = groups.get(host.cpu_group)
        if figures is None:
            continue
        left = figures['left']
        figures['destinations'] += 1
        for resource, key in CAPACITY_OF_RESOURCE.items():
            left[key] += host.free(resource)
        left['vcpus'] = None if host.vcpus_free is None or left['vcpus'] is None else left['vcpus'] + host.vcpus_free
    return groups


def _cpu_group_line(name, figures):
    needs = ', '.join('%d %s' % (figures['needs'][key], unit) for key, unit in CAPACITIES if figures['needs'][key])
    left = ', '.join('%s %s' % ('unlimited' if figures['left'][key] is None else figures['left'][key], unit)
                     for key, unit in CAPACITIES if figures['needs'][key])
    return '%s: %d domain(s) need %s; its %d destination host(s) have %s left' % (
        name, figures['domains'], needs, figures['destinations'], left)
