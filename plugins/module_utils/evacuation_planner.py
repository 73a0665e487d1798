# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evacuation planner: where each guest of the drained hosts goes, and when.

Pure Python, standard library only, runs on the controller.  ``plan_evacuation``
(this file) checks the input, runs the steps and puts the plan together; the input
types, ``Migration`` (one planned migration, as the steps fill it in) and the limits
are in ``planner_model.py``.  Three steps, a file each:

1. placement (``planner_placement.py``): largest domains first, each to the
   eligible host with the most free of the resource it consumes (memory, or huge
   pages of its size), and among those the one whose link carries the fewest MiB
   so far; a max-heap per (CPU group, resource) makes this O(n log h);
2. prediction (``planner_prediction.py``): a pre-copy model per migration
   (memory, dirty rate, bandwidth, allowed downtime); when pre-copy does not
   converge, auto-converge or post-copy is chosen per domain, with the reason;
3. scheduling (``planner_schedule.py``): event-driven list scheduling over
   slots (outgoing per host, incoming per host, per cluster) and link
   bandwidth, the sources whose links have the most left to send first, each
   its longest migration first: a starting migration
   reserves the bandwidth left on its path (its cap for the executor), so
   concurrent migrations never oversubscribe a link and one fast migration fills
   a link rather than two slow ones; where one stream cannot fill a link, the
   first migration over an idle link (the busier of its path's two) gets the
   share of it that ends it with the rest of that link's migrations.  Migrations that start at the same planned
   instant form a wave; a wave may start once the migrations in its ``wait_for``
   have finished (waiting for every earlier wave is also safe, only slower).

Each migration also carries what runs it as planned: ``options``, the
``presplit.kvm.live_migrate`` options of its mode and bandwidth cap, and
``after``, the migrations of its own source host it must wait for (one host's
run sees only its own migrations running).

Same input, same output: every ordering decision breaks ties by name.
"""

import operator

from ansible_collections.presplit.kvm.plugins.module_utils.gc_pause import cycle_collection_paused
from ansible_collections.presplit.kvm.plugins.module_utils.planner_infeasible import explain_unplaced
from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import (
    DETAILS, NON_MIGRATABLE_POLICIES, Domain, Host, Migration, PlanningError, resolve_limits, round_figure, unique_by_name)
from ansible_collections.presplit.kvm.plugins.module_utils.planner_placement import Placer
from ansible_collections.presplit.kvm.plugins.module_utils.planner_prediction import predict_for
from ansible_collections.presplit.kvm.plugins.module_utils.planner_schedule import (
    group_waves, idle_path_bandwidth, lower_bounds, schedule, stream_cap)


def plan_evacuation(hosts, domains, drain, limits=None, max_downtime_ms=300, non_migratable_policy='fail', allow_post_copy=True,
                    detail='full', copy_storage='none'):
    """Plan the evacuation of the ``drain`` hosts.  Returns a JSON-able dict; raises PlanningError.

    ``hosts`` and ``domains`` are lists of dicts (see the evacuation_plan module
    for their keys).  ``domains`` should list every running domain of the
    fleet: the ones on other hosts count for anti-affinity.  With ``detail``
    ``summary``, the plan is only its ``summary``, ``shutdown`` and
    ``skipped_hosts``, and a PlanningError's details leave out ``placed``: what
    grows with the number of domains is not built (the waves alone are a fifth
    of the time for 50,000 migrations). ``copy_storage`` is live_migrate's for
    these migrations: with ``none`` a domain on local disks cannot move.
    """
    # Some ten objects per domain and no reference cycles.
    with cycle_collection_paused():
        return _plan(hosts, domains, drain, limits, max_downtime_ms, non_migratable_policy, allow_post_copy, detail,
                     copy_storage)


def _plan(hosts, domains, drain, limits, max_downtime_ms, non_migratable_policy, allow_post_copy, detail, copy_storage):
    limits = resolve_limits(limits)
    if max_downtime_ms <= 0:
        raise PlanningError('max_downtime_ms must be positive')
    if non_migratable_policy not in NON_MIGRATABLE_POLICIES:
        raise PlanningError('non_migratable_policy must be one of %s' % ', '.join(NON_MIGRATABLE_POLICIES))
    if detail not in DETAILS:
        raise PlanningError('detail must be one of %s' % ', '.join(DETAILS))
    hosts_by_name = unique_by_name([Host(spec, limits['host_bandwidth_mib_per_s']) for spec in hosts], 'host')
    all_domains = unique_by_name([Domain(spec, copy_storage) for spec in domains], 'domain')
    unknown = sorted(set(drain) - set(hosts_by_name))
    if unknown:
        raise PlanningError('hosts to drain are not in hosts: %s' % ', '.join(unknown))
    strays = sorted(d.name for d in all_domains.values() if d.host not in hosts_by_name)
    if strays:
        raise PlanningError('domains on hosts not in hosts: %s' % ', '.join(strays))

    drain = set(drain)
    skipped_hosts, shutdown, blockers = _non_migratable(all_domains, drain, non_migratable_policy)
    if blockers:
        raise PlanningError('domains on hosts to drain cannot be migrated (non_migratable_policy=fail): %s' % '; '.join(
            '%s (%s)' % (name, why) for name, why in blockers), {'not_migratable': [{'domain': n, 'reason': w} for n, w in blockers]})
    draining = drain - set(skipped_hosts)
    shut_down = set(entry['domain'] for entry in shutdown)
    # Largest first, then most vCPUs, then by name (stable sorts: the second keeps the first's order).
    moving = sorted((d for d in all_domains.values() if d.host in draining and d.name not in shut_down),
                    key=operator.attrgetter('name'))
    moving.sort(key=operator.attrgetter('footprint_mib', 'vcpus'), reverse=True)
    staying = [d for d in all_domains.values() if d.host not in draining or d.name in shut_down]
    destinations = dict((name, host) for name, host in hosts_by_name.items() if name not in drain)
    placer = Placer(destinations, staying)

    placement = {}
    unplaced = []
    for domain in moving:
        cpu_group = domain.cpu_group or hosts_by_name[domain.host].cpu_group
        host = placer.place(domain, cpu_group)
        if host is not None:
            placement[domain.name] = host.name
        else:
            unplaced.append((domain, cpu_group))
    if unplaced:
        raise explain_unplaced(unplaced, placer, destinations, placement if detail == 'full' else None)

    migrations = []
    without_presplit = []
    cap = stream_cap(limits)
    for domain in moving:
        source = hosts_by_name[domain.host]
        destination = hosts_by_name[placement[domain.name]]
        if domain.backing != 'none' and source.kernel_mode != 'patched':
            # KVM splits its huge mappings during the first pass, under the MMU write lock: vCPUs stall.
            without_presplit.append({'domain': domain.name, 'host': source.name, 'backing': domain.backing,
                                     'kernel_mode': source.kernel_mode})
        migration = Migration(domain, source, destination)
        idle_bandwidth = idle_path_bandwidth(source, destination, cap)
        migration.set_estimate(idle_bandwidth, predict_for(migration, idle_bandwidth, max_downtime_ms, allow_post_copy))
        migrations.append(migration)

    schedule(migrations, hosts_by_name, limits, max_downtime_ms, allow_post_copy)
    bandwidth_bound, lower_bound, total_mib = lower_bounds(migrations, hosts_by_name, limits)
    makespan = max([m.end_s for m in migrations] or [0.0])
    plan = {
        'shutdown': shutdown,
        'skipped_hosts': skipped_hosts,
        'summary': {
            'migrations': len(migrations),
            # A wave is the migrations that start at one instant.
            'waves': len(set(m.start_s for m in migrations)),
            'makespan_s': round_figure(makespan),
            'bandwidth_lower_bound_s': round_figure(bandwidth_bound),
            'lower_bound_s': round_figure(lower_bound),
            'makespan_over_bandwidth_bound': round_figure(makespan / bandwidth_bound) if bandwidth_bound else None,
            'transferred_mib': round_figure(total_mib),
            'modes': dict((mode, sum(1 for m in migrations if m.mode == mode)) for mode in ('pre_copy', 'auto_converge', 'post_copy')),
            'without_presplit': len(without_presplit),
        },
    }
    if detail == 'full':
        plan.update(placement=placement, waves=[wave.as_plan_entry() for wave in group_waves(migrations)],
                    destinations=_destination_summary(destinations, placement), without_presplit=without_presplit)
    return plan


def _non_migratable(all_domains, drain, policy):
    """Apply the policy to non-migratable domains on hosts to drain: (skipped hosts, shutdown list, blockers)."""
    skipped = {}
    shutdown = []
    blockers = []
    for domain in sorted((d for d in all_domains.values() if d.host in drain and d.not_migratable_because is not None),
                         key=operator.attrgetter('name')):
        if policy == 'skip_host':
            skipped.setdefault(domain.host, []).append('%s is %s' % (domain.name, domain.not_migratable_because))
        elif policy == 'shutdown_and_restart':
            # It cannot run anywhere else: shut down before the maintenance, start again on the same host after.
            shutdown.append({'domain': domain.name, 'host': domain.host, 'restart_on': domain.host,
                             'reason': domain.not_migratable_because})
        else:
            blockers.append((domain.name, domain.not_migratable_because))
    return skipped, shutdown, blockers


def _destination_summary(destinations, placement):
    incoming = {}
    for domain_name, host_name in placement.items():
        incoming.setdefault(host_name, []).append(domain_name)
    summary = {}
    for name in sorted(incoming):
        host = destinations[name]
        summary[name] = {
            'incoming': sorted(incoming[name]),
            'memory_free_mib_after': host.memory_free_mib,
            'hugepages_2m_free_after': host.hugepages_free['hugetlb-2M'],
            'hugepages_1g_free_after': host.hugepages_free['hugetlb-1G'],
            'vcpus_free_after': host.vcpus_free,
        }
    return summary
