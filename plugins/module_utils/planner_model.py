# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the evacuation planner works on: its inputs, checked (``Host``, ``Domain``, the
limits), one planned migration (``Migration``), the error it raises and the values
its inputs may take.
"""

from ansible_collections.presplit.kvm.plugins.module_utils.domain_disks import COPY_STORAGE
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.modes import KERNEL_MODES

BACKINGS = ('none', 'thp', 'hugetlb-2M', 'hugetlb-1G')
NON_MIGRATABLE_POLICIES = ('skip_host', 'shutdown_and_restart', 'fail')
# How much of a plan to build: what a person reads, or also every migration.
DETAILS = ('summary', 'full')
HUGEPAGE_MIB = {'hugetlb-2M': 2, 'hugetlb-1G': 1024}
# Decimals of the computed figures (seconds, MiB, MiB/s, ms) in a plan.
FIGURE_DIGITS = 3
# The resource a domain without huge pages consumes on its destination.
MEMORY = 'memory'

DEFAULT_LIMITS = {
    # KubeVirt's defaults: 2 outbound per node, 5 per cluster.
    'max_outgoing_per_host': 2,
    'max_incoming_per_host': 2,
    'max_parallel_per_cluster': 5,
    # 10 GbE: 1250 MB/s is about 1192 MiB/s.
    'host_bandwidth_mib_per_s': 1192,
    'cluster_bandwidth_mib_per_s': None,
    # What one migration stream can carry (None: a whole link).
    'migration_bandwidth_mib_per_s': None,
}


class PlanningError(Exception):
    """Input that cannot be planned; ``details`` is JSON-able."""

    def __init__(self, message, details=None):
        super(PlanningError, self).__init__(message)
        self.message = message
        self.details = details or {}


class Host:
    __slots__ = ('name', 'memory_free_mib', 'hugepages_free', 'vcpus_free', 'cpu_group',
                 'kernel_mode', 'bandwidth_mib_per_s', 'initial')

    def __init__(self, spec, default_bandwidth):
        self.name = _required(spec, 'name', 'host')
        self.memory_free_mib = _non_negative(spec.get('memory_free_mib'), 'memory_free_mib', self.name)
        self.hugepages_free = {
            'hugetlb-2M': _non_negative(spec.get('hugepages_2m_free') or 0, 'hugepages_2m_free', self.name),
            'hugetlb-1G': _non_negative(spec.get('hugepages_1g_free') or 0, 'hugepages_1g_free', self.name),
        }
        vcpus = spec.get('vcpus_free')
        self.vcpus_free = None if vcpus is None else _non_negative(vcpus, 'vcpus_free', self.name)
        self.cpu_group = spec.get('cpu_group') or 'default'
        self.kernel_mode = spec.get('kernel_mode') or 'none'
        if self.kernel_mode not in KERNEL_MODES:
            raise PlanningError('host %s: kernel_mode %r is not one of %s' % (self.name, self.kernel_mode, ', '.join(KERNEL_MODES)))
        bandwidth = spec.get('bandwidth_mib_per_s') or default_bandwidth
        if bandwidth <= 0:
            raise PlanningError('host %s: bandwidth_mib_per_s must be positive' % self.name)
        self.bandwidth_mib_per_s = float(bandwidth)
        self.initial = (self.memory_free_mib, dict(self.hugepages_free))

    def free(self, resource):
        return self.memory_free_mib if resource == MEMORY else self.hugepages_free[resource]

    def take(self, domain):
        if domain.resource == MEMORY:
            self.memory_free_mib -= domain.amount
        else:
            self.hugepages_free[domain.resource] -= domain.amount
        if self.vcpus_free is not None:
            self.vcpus_free -= domain.vcpus


class Domain:
    __slots__ = ('name', 'host', 'memory_mib', 'vcpus', 'backing', 'resource', 'amount', 'footprint_mib',
                 'anti_affinity', 'not_migratable_because', 'dirty_rate_mib_per_s', 'cpu_group', 'disk_copy_mib')

    def __init__(self, spec, copy_storage='none'):
        """``spec`` as evacuation_plan takes a domain; ``copy_storage`` as live_migrate will
        migrate it: what of its local disks (placement_facts' ``local_disk_mib``, whole
        chains, and ``local_disk_top_mib``, top images) the migration copies."""
        self.name = _required(spec, 'name', 'domain')
        self.host = _required(spec, 'host', 'domain %s' % self.name)
        self.memory_mib = _non_negative(spec.get('memory_mib'), 'memory_mib', self.name)
        if self.memory_mib == 0:
            # Also keeps every migration's duration positive, so waves are well ordered.
            raise PlanningError('domain %s: memory_mib must be positive' % self.name)
        self.vcpus = _non_negative(spec.get('vcpus') or 1, 'vcpus', self.name)
        self.backing = spec.get('backing') or 'none'
        if self.backing not in BACKINGS:
            raise PlanningError('domain %s: backing %r is not one of %s' % (self.name, self.backing, ', '.join(BACKINGS)))
        if self.backing in HUGEPAGE_MIB:
            page_mib = HUGEPAGE_MIB[self.backing]
            self.resource = self.backing
            pages = spec.get('hugepages')
            self.amount = -(-self.memory_mib // page_mib) if pages is None else _non_negative(pages, 'hugepages', self.name)
            self.footprint_mib = self.amount * page_mib
        else:
            self.resource = MEMORY
            self.amount = self.memory_mib
            self.footprint_mib = self.memory_mib
        groups = spec.get('anti_affinity')
        self.anti_affinity = tuple(sorted(set(groups))) if groups else ()
        if spec.get('pinned'):
            self.not_migratable_because = 'pinned to host %s' % self.host
        elif spec.get('migratable') is False:
            self.not_migratable_because = 'marked not migratable'
        else:
            self.not_migratable_because = None
        local_disk_mib = _non_negative(spec.get('local_disk_mib') or 0, 'local_disk_mib', self.name)
        local_disk_top_mib = _non_negative(spec.get('local_disk_top_mib') or 0, 'local_disk_top_mib', self.name)
        if copy_storage not in COPY_STORAGE:
            raise PlanningError('copy_storage must be one of %s' % ', '.join(COPY_STORAGE))
        self.disk_copy_mib = {'all': local_disk_mib, 'top': local_disk_top_mib}.get(copy_storage, 0)
        if self.not_migratable_because is None and copy_storage == 'none' and local_disk_mib:
            # presplit.kvm.live_migrate refuses it: its disks would be left behind.
            self.not_migratable_because = 'on local disks (%d MiB) and copy_storage is none' % local_disk_mib
        self.dirty_rate_mib_per_s = float(_non_negative(spec.get('dirty_rate_mib_per_s') or 0, 'dirty_rate_mib_per_s', self.name))
        self.cpu_group = spec.get('cpu_group')


class Migration:
    """One planned migration of ``domain`` from host ``source`` to host ``destination`` (names).

    Filled in step by step; an attribute is None until its step has run:

    - placement: what moves where, the domain's figures the prediction uses
      (``memory_mib``, ``backing``, ``dirty_rate_mib_per_s``, ``disk_copy_mib``) and whether its source
      pre-splits its huge pages (``presplit``);
    - the estimate, predicted on an otherwise idle path (``estimate_s``,
      ``estimate_mib``): the scheduler orders the work by it, the lower bounds start
      from it;
    - scheduling: the bandwidth the migration gets (``bandwidth_mib_per_s``), what
      predict_migration says of it at that bandwidth (``mode``, ``reason``,
      ``iterations``, ``transferred_mib``, ``duration_s``, ``downtime_ms``,
      ``throttle_pct``), and when it runs (``start_s``, ``end_s``);
    - waves: its wave's number (``wave``), the migrations of its own source it waits
      for (``after``), and the presplit.kvm.live_migrate options that run it as
      planned (``options``).
    """

    __slots__ = ('domain', 'source', 'destination', 'memory_mib', 'backing', 'presplit', 'dirty_rate_mib_per_s',
                 'disk_copy_mib',
                 'estimate_bandwidth', 'estimate', 'estimate_s', 'estimate_mib',
                 'bandwidth_mib_per_s', 'mode', 'reason', 'iterations', 'transferred_mib', 'duration_s', 'downtime_ms',
                 'throttle_pct', 'start_s', 'end_s',
                 'wave', 'after', 'options')

    def __init__(self, domain, source, destination):
        """``domain`` (a Domain) from ``source`` to ``destination`` (Hosts)."""
        self.domain = domain.name
        self.source = source.name
        self.destination = destination.name
        self.memory_mib = domain.memory_mib
        self.backing = domain.backing
        self.presplit = domain.backing != 'none' and source.kernel_mode == 'patched'
        self.dirty_rate_mib_per_s = domain.dirty_rate_mib_per_s
        self.disk_copy_mib = domain.disk_copy_mib
        self.estimate_bandwidth = self.estimate = self.estimate_s = self.estimate_mib = None
        self.bandwidth_mib_per_s = self.mode = self.reason = self.iterations = self.transferred_mib = None
        self.duration_s = self.downtime_ms = self.throttle_pct = self.start_s = self.end_s = None
        self.wave = self.after = self.options = None

    def set_estimate(self, bandwidth_mib_per_s, prediction):
        """Take predict_migration's ``prediction`` on an idle path (``bandwidth_mib_per_s``) as the estimate."""
        self.estimate_bandwidth = bandwidth_mib_per_s
        self.estimate = prediction
        self.estimate_s = prediction['duration_s']
        self.estimate_mib = prediction['transferred_mib']

    def set_schedule(self, start_s, bandwidth_mib_per_s, prediction):
        """Run from ``start_s`` with ``bandwidth_mib_per_s``, as predict_migration's ``prediction``
        for that bandwidth says."""
        self.bandwidth_mib_per_s = bandwidth_mib_per_s
        self.mode = prediction['mode']
        self.reason = prediction['reason']
        self.iterations = prediction['iterations']
        self.transferred_mib = prediction['transferred_mib']
        self.duration_s = prediction['duration_s']
        self.downtime_ms = prediction['downtime_ms']
        self.throttle_pct = prediction['throttle_pct']
        self.start_s = start_s
        self.end_s = start_s + self.duration_s

    def as_plan_entry(self):
        """The migration as the plan returns it (the estimate is the planner's own)."""
        # round() rather than round_figure(): this runs for every migration, 50,000 in a large plan.
        return {
            'domain': self.domain,
            'source': self.source,
            'destination': self.destination,
            'memory_mib': self.memory_mib,
            'backing': self.backing,
            'presplit': self.presplit,
            'dirty_rate_mib_per_s': round(self.dirty_rate_mib_per_s, FIGURE_DIGITS),
            'disk_copy_mib': self.disk_copy_mib,
            'bandwidth_mib_per_s': round(self.bandwidth_mib_per_s, FIGURE_DIGITS),
            'mode': self.mode,
            'reason': self.reason,
            'iterations': self.iterations,
            'transferred_mib': round(self.transferred_mib, FIGURE_DIGITS),
            'duration_s': round(self.duration_s, FIGURE_DIGITS),
            'downtime_ms': None if self.downtime_ms is None else round(self.downtime_ms, FIGURE_DIGITS),
            'throttle_pct': self.throttle_pct,
            'start_s': round(self.start_s, FIGURE_DIGITS),
            'end_s': round(self.end_s, FIGURE_DIGITS),
            'wave': self.wave,
            'after': self.after,
            'options': self.options,
        }


def round_figure(value):
    """A computed figure (seconds, MiB, MiB/s, ms) as the plan gives it."""
    return round(value, FIGURE_DIGITS)


def resolve_limits(given):
    """DEFAULT_LIMITS with the ones ``given`` set; raises PlanningError for an unknown or a
    non-positive limit."""
    limits = dict(DEFAULT_LIMITS)
    for key, value in (given or {}).items():
        if key not in DEFAULT_LIMITS:
            raise PlanningError('unknown limit %s' % key)
        if value is not None:
            limits[key] = value
    for key, value in limits.items():
        if value is not None and value <= 0:
            raise PlanningError('limit %s must be positive (got %s)' % (key, value))
    return limits


def unique_by_name(items, what):
    """{name: item}; raises PlanningError for a name listed twice."""
    by_name = {}
    for item in items:
        if item.name in by_name:
            raise PlanningError('%s %s is listed twice' % (what, item.name))
        by_name[item.name] = item
    return by_name


def _required(spec, key, what):
    value = spec.get(key)
    if value in (None, ''):
        raise PlanningError('%s: %s is required' % (what, key))
    return value


def _non_negative(value, key, owner):
    if value is None:
        raise PlanningError('%s: %s is required' % (owner, key))
    if value < 0:
        raise PlanningError('%s: %s must not be negative (got %s)' % (owner, key, value))
    return value
