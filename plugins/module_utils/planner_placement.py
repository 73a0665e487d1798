# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evacuation planner's placement step: which host each moving domain goes to
(``Placer``, worst fit), and why a domain fits nowhere.
"""

import heapq

from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import HUGEPAGE_MIB, MEMORY


class Placer:
    """Worst-fit placement over per-(CPU group, resource) max-heaps of free capacity.

    A host without the vCPUs a domain needs leaves its heap for a parking heap of the same
    (CPU group, resource), ordered by the vCPUs it has left, and comes back before the first
    domain that needs no more than that: a host with much free memory but no vCPUs left
    would otherwise stay on top of its heap and be looked at, and put back, for every
    domain that follows.  The host chosen is the same: a parked host cannot take the
    domains placed while it is parked.
    """

    def __init__(self, destinations, staying_domains):
        self.destinations = destinations
        self.heaps = {}
        for host in destinations.values():
            for resource in (MEMORY,) + tuple(HUGEPAGE_MIB):
                self.heaps.setdefault((host.cpu_group, resource), []).append((-host.free(resource), 0, host.name))
        for heap in self.heaps.values():
            heapq.heapify(heap)
        # (CPU group, resource) -> heap of (-vCPUs left, name, entry of the host's heap)
        self.parked = dict((key, []) for key in self.heaps)
        # MiB placed on each host so far: among hosts with as much free, the least loaded link wins.
        self.incoming_mib = dict((name, 0) for name in destinations)
        # anti-affinity group -> hosts already holding a member
        self.group_hosts = {}
        for domain in staying_domains:
            for group in domain.anti_affinity:
                self.group_hosts.setdefault(group, {})[domain.host] = domain.name

    def place(self, domain, cpu_group):
        """The host ``domain`` goes to, its resources taken, or None if no host of ``cpu_group`` can take it."""
        key = (cpu_group, domain.resource)
        heap = self.heaps.get(key)
        if heap is None:
            return None
        parked = self.parked[key]
        while parked and -parked[0][0] >= domain.vcpus:
            heapq.heappush(heap, heapq.heappop(parked)[2])
        rejected = []
        chosen = None
        while heap:
            negative_free, incoming, name = heap[0]
            if -negative_free < domain.amount:
                break  # the host with the most free space is too small: so is every other
            heapq.heappop(heap)
            if incoming != self.incoming_mib[name]:
                # Stale tie-break: the host took a domain of another resource since.
                heapq.heappush(heap, (negative_free, self.incoming_mib[name], name))
                continue
            host = self.destinations[name]
            if host.vcpus_free is not None and host.vcpus_free < domain.vcpus:
                heapq.heappush(parked, (-host.vcpus_free, name, (negative_free, incoming, name)))
            elif self._anti_affinity_conflict(domain, host) is None:
                chosen = host
                break
            else:
                rejected.append((negative_free, incoming, name))
        for entry in rejected:
            heapq.heappush(heap, entry)
        if chosen is not None:
            chosen.take(domain)
            self.incoming_mib[chosen.name] += domain.memory_mib
            heapq.heappush(heap, (-chosen.free(domain.resource), self.incoming_mib[chosen.name], chosen.name))
            for group in domain.anti_affinity:
                self.group_hosts.setdefault(group, {})[chosen.name] = domain.name
        return chosen

    def _anti_affinity_conflict(self, domain, host):
        for group in domain.anti_affinity:
            holder = self.group_hosts.get(group, {}).get(host.name)
            if holder is not None:
                return 'anti-affinity group %s already has %s there' % (group, holder)
        return None

    def why_not(self, domain, cpu_group, host):
        """Why ``domain`` cannot go to ``host`` now, as (kind, text): the first of another CPU
        group (``cpu_group``), too little of its resource (the resource: ``memory``,
        ``hugetlb-2M`` or ``hugetlb-1G``), too few vCPUs (``vcpus``) and an anti-affinity
        peer there (``anti_affinity``)."""
        if host.cpu_group != cpu_group:
            return 'cpu_group', 'CPU group %s, domain needs %s' % (host.cpu_group, cpu_group)
        free = host.free(domain.resource)
        if free < domain.amount:
            unit = 'MiB of memory' if domain.resource == MEMORY else '%s pages' % domain.resource
            initial = host.initial[0] if domain.resource == MEMORY else host.initial[1][domain.resource]
            return domain.resource, 'needs %d %s, %d left%s' % (
                domain.amount, unit, free, '' if initial == free else ' after larger domains (%d before the plan)' % initial)
        if host.vcpus_free is not None and host.vcpus_free < domain.vcpus:
            return 'vcpus', 'needs %d vCPUs, %d left' % (domain.vcpus, host.vcpus_free)
        conflict = self._anti_affinity_conflict(domain, host)
        if conflict:
            return 'anti_affinity', conflict
        return 'fits_now', 'fits now, but not when it was placed'
