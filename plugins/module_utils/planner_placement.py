# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evacuation planner's placement step: which host each moving domain goes to
(``Placer``, worst fit), and why a domain fits nowhere.
"""

import heapq

from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import HUGEPAGE_MIB, MEMORY


class Placer:
    """Worst-fit placement over per-(CPU group, resource) max-heaps of free capacity."""

    def __init__(self, destinations, staying_domains):
        self.destinations = destinations
        self.heaps = {}
        for host in destinations.values():
            for resource in (MEMORY,) + tuple(HUGEPAGE_MIB):
                self.heaps.setdefault((host.cpu_group, resource), []).append((-host.free(resource), 0, host.name))
        for heap in self.heaps.values():
            heapq.heapify(heap)
        # MiB placed on each host so far: among hosts with as much free, the least loaded link wins.
        self.incoming_mib = dict((name, 0) for name in destinations)
        # anti-affinity group -> hosts already holding a member
        self.group_hosts = {}
        for domain in staying_domains:
            for group in domain.anti_affinity:
                self.group_hosts.setdefault(group, {})[domain.host] = domain.name

    def place(self, domain, cpu_group):
        """The host ``domain`` goes to, its resources taken, or None if no host of ``cpu_group`` can take it."""
        heap = self.heaps.get((cpu_group, domain.resource))
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
            if self._conflict(domain, host) is None:
                chosen = host
                break
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

    def _conflict(self, domain, host):
        if host.vcpus_free is not None and host.vcpus_free < domain.vcpus:
            return 'needs %d vCPUs, %d left' % (domain.vcpus, host.vcpus_free)
        for group in domain.anti_affinity:
            holder = self.group_hosts.get(group, {}).get(host.name)
            if holder is not None:
                return 'anti-affinity group %s already has %s there' % (group, holder)
        return None

    def why_not(self, domain, cpu_group, host):
        """Every reason ``domain`` cannot go to ``host`` now (for error messages)."""
        reasons = []
        if host.cpu_group != cpu_group:
            reasons.append('CPU group %s, domain needs %s' % (host.cpu_group, cpu_group))
        free = host.free(domain.resource)
        if free < domain.amount:
            unit = 'MiB of memory' if domain.resource == MEMORY else '%s pages' % domain.resource
            initial = host.initial[0] if domain.resource == MEMORY else host.initial[1][domain.resource]
            reasons.append('needs %d %s, %d left%s' % (
                domain.amount, unit, free, '' if initial == free else ' after larger domains (%d before the plan)' % initial))
        conflict = self._conflict(domain, host)
        if conflict:
            reasons.append(conflict)
        return '; '.join(reasons) or 'fits now, but not when it was placed'
