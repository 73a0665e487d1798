# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evacuation planner's scheduling step: when each placed migration runs and at what
bandwidth (``schedule``, over ``_Links``, the bandwidth left on every link), the waves
they run in and what each runs with (``group_waves``, ``live_migrate_options``), and
the makespans no schedule can beat (``lower_bounds``).
"""

import heapq

from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import PlanningError, round_figure
from ansible_collections.presplit.kvm.plugins.module_utils.planner_prediction import predict_for


def idle_path_bandwidth(source, destination, limits):
    """Bandwidth a migration from host ``source`` to host ``destination`` gets on an
    otherwise idle path (its estimate orders the work, longest first)."""
    shares = [source.bandwidth_mib_per_s, destination.bandwidth_mib_per_s]
    for key in ('cluster_bandwidth_mib_per_s', 'migration_bandwidth_mib_per_s'):
        if limits[key]:
            shares.append(float(limits[key]))
    return min(shares)


class _Links:
    """Bandwidth left on every host link and on the cluster, while migrations are planned in flight."""

    EPSILON = 1e-9
    # Smallest share worth starting a migration with, as a fraction of the fair
    # share (the link split over its concurrency limit): below it, waiting for
    # a running migration to end and getting more is faster than crawling.
    MINIMUM_OF_FAIR_SHARE = 0.5

    def __init__(self, hosts, limits):
        self.bandwidth = dict((name, host.bandwidth_mib_per_s) for name, host in hosts.items())
        self.left = dict(self.bandwidth)
        self.cluster_left = float(limits['cluster_bandwidth_mib_per_s'] or 0) or None
        least = self.MINIMUM_OF_FAIR_SHARE
        self.minimum = dict((name, least * host.bandwidth_mib_per_s / limits['max_outgoing_per_host']) for name, host in hosts.items())
        self.minimum_in = dict((name, least * host.bandwidth_mib_per_s / limits['max_incoming_per_host']) for name, host in hosts.items())
        self.cluster_minimum = least * self.cluster_left / limits['max_parallel_per_cluster'] if self.cluster_left else None
        self.per_migration = limits['migration_bandwidth_mib_per_s']

    def source_ready(self, source):
        return self.left[source] + self.EPSILON >= self.minimum[source]

    def destination_ready(self, destination):
        return self.left[destination] + self.EPSILON >= self.minimum_in[destination]

    def cluster_ready(self):
        return self.cluster_left is None or self.cluster_left + self.EPSILON >= self.cluster_minimum

    def first_share(self, host, migration_mib, link_mib):
        """Most bandwidth for the first migration over an idle link of ``host``, or None for no limit.

        When one stream cannot fill the link (a per-migration cap below it), the largest
        migration, started first at the cap, would still run alone at the cap long after the
        link's other slots had carried everything else: the link idles at the end.  Given
        the share of the link that its bytes are of the link's (``link_mib``, this one
        included), but at least what the other slots cannot use, it ends with them, at about
        the link's bandwidth bound.
        """
        link = self.bandwidth[host]
        if not self.per_migration or self.per_migration >= link or link_mib <= migration_mib:
            return None
        return max(link * migration_mib / link_mib, link - self.per_migration)

    def reserve(self, source, destination, most=None):
        """All that is left on the path, at most the per-migration cap and ``most``."""
        shares = [self.left[source], self.left[destination]]
        if most is not None:
            shares.append(most)
        if self.cluster_left is not None:
            shares.append(self.cluster_left)
        if self.per_migration:
            shares.append(float(self.per_migration))
        bandwidth = min(shares)
        self._add(source, destination, -bandwidth)
        return bandwidth

    def release(self, source, destination, bandwidth):
        self._add(source, destination, bandwidth)

    def _add(self, source, destination, bandwidth):
        self.left[source] += bandwidth
        self.left[destination] += bandwidth
        if self.cluster_left is not None:
            self.cluster_left += bandwidth


def schedule(migrations, hosts, limits, max_downtime_ms, allow_post_copy):
    """Set bandwidth, prediction, ``start_s`` and ``end_s`` on every migration.

    Event-driven list scheduling, longest estimate first.  A migration starts when its
    source has an outgoing slot, its destination an incoming slot, the cluster
    a slot, and each link on its path has at least half its fair share left
    (link / concurrency limit); it then reserves all the bandwidth left on the
    path, so a link is filled by as few migrations as possible, and
    concurrency is used where one migration cannot fill it.  When several
    sources could start, the one whose next migration is longest goes first
    (a heap); a source whose waiting migrations all target busy destinations
    waits for the next event.  The first migration over an idle link may get
    less (``_Links.first_share``).  Each starting migration is predicted at the
    bandwidth it gets, which sets its duration.
    """
    queues = {}
    for migration in sorted(migrations, key=lambda m: (-m.estimate_s, m.domain)):
        queues.setdefault(migration.source, []).append(migration)
    out_free = dict((name, limits['max_outgoing_per_host']) for name in queues)
    in_free = dict((name, limits['max_incoming_per_host']) for name in hosts)
    cluster_free = limits['max_parallel_per_cluster']
    links = _Links(hosts, limits)
    # MiB each link still has to carry out of / into its host, at the bandwidth of an idle path.
    link_mib = {}
    for migration in migrations:
        for end in (('out', migration.source), ('in', migration.destination)):
            link_mib[end] = link_mib.get(end, 0.0) + migration.estimate_mib

    def starting_share(migration):
        """Count a starting migration off its links; the least _Links.first_share of its idle ends."""
        shares = []
        for end, free, limit in (('out', out_free, limits['max_outgoing_per_host']),
                                 ('in', in_free, limits['max_incoming_per_host'])):
            host = migration.source if end == 'out' else migration.destination
            if free[host] == limit:
                shares.append(links.first_share(host, migration.estimate_mib, link_mib[(end, host)]))
            link_mib[(end, host)] -= migration.estimate_mib
        shares = [share for share in shares if share is not None]
        return min(shares) if shares else None
    ready = []  # (-estimate of the source's longest waiting migration, source)
    offered = set()

    def offer(source):
        if queues[source] and out_free[source] > 0 and links.source_ready(source) and source not in offered:
            heapq.heappush(ready, (-queues[source][0].estimate_s, source))
            offered.add(source)

    for source in sorted(queues):
        offer(source)
    ends = []  # (end_s, domain, migration)
    blocked = []
    now = 0.0
    while True:
        while ready and cluster_free > 0 and links.cluster_ready():
            _key, source = heapq.heappop(ready)
            offered.discard(source)
            queue = queues[source]
            index = next((i for i, m in enumerate(queue)
                          if in_free[m.destination] > 0 and links.destination_ready(m.destination)), None)
            if index is None:
                blocked.append(source)
                continue
            migration = queue.pop(index)
            bandwidth = links.reserve(source, migration.destination, starting_share(migration))
            migration.set_schedule(now, bandwidth, predict_for(migration, bandwidth, max_downtime_ms, allow_post_copy))
            heapq.heappush(ends, (migration.end_s, migration.domain, migration))
            out_free[source] -= 1
            in_free[migration.destination] -= 1
            cluster_free -= 1
            offer(source)
        if not ends:
            break
        now = ends[0][0]
        while ends and ends[0][0] == now:
            _end, _name, finished = heapq.heappop(ends)
            out_free[finished.source] += 1
            in_free[finished.destination] += 1
            cluster_free += 1
            links.release(finished.source, finished.destination, finished.bandwidth_mib_per_s)
            offer(finished.source)
        for source in blocked:
            offer(source)
        blocked = []
    stuck = sorted(m.domain for queue in queues.values() for m in queue)
    if stuck:
        # Cannot happen with positive limits; said loudly rather than returning a partial plan.
        raise PlanningError('internal error: could not schedule %s' % ', '.join(stuck))


class Wave:
    """Migrations that start at the same planned instant; the wave may start once the
    migrations named in ``wait_for`` have ended."""

    __slots__ = ('number', 'start_s', 'duration_s', 'wait_for', 'migrations')

    def __init__(self, number, start_s, wait_for, migrations):
        self.number = number
        self.start_s = start_s
        self.duration_s = max(m.duration_s for m in migrations)
        self.wait_for = wait_for
        self.migrations = migrations

    def as_plan_entry(self):
        """The wave as the plan returns it."""
        return {
            'wave': self.number,
            'start_s': round_figure(self.start_s),
            'duration_s': round_figure(self.duration_s),
            'wait_for': self.wait_for,
            'migrations': [migration.as_plan_entry() for migration in self.migrations],
        }


def group_waves(migrations):
    """The scheduled migrations grouped into Waves by planned start, each waiting for what
    ended since the previous one; sets every migration's ``wave``, ``after`` and ``options``."""
    by_start = {}
    for migration in migrations:
        by_start.setdefault(migration.start_s, []).append(migration)
    starts = sorted(by_start)
    ends = sorted(migrations, key=lambda m: (m.end_s, m.domain))
    waves = []
    cursor = 0
    for number, start in enumerate(starts, 1):
        wait_for = []
        while cursor < len(ends) and ends[cursor].end_s <= start:
            wait_for.append(ends[cursor].domain)
            cursor += 1
        members = sorted(by_start[start], key=lambda m: (-m.duration_s, m.domain))
        for migration in members:
            migration.wave = number
        waves.append(Wave(number, start, wait_for, members))
    _source_waits(waves)
    for migration in migrations:
        migration.options = live_migrate_options(migration)
    return waves


def _source_waits(waves):
    """Set each migration's ``after``: the migrations of its source host that end between
    that host's previous wave and its own (the waves' ``wait_for`` seen from one host)."""
    source_of = dict((m.domain, m.source) for wave in waves for m in wave.migrations)
    ended = {}
    for wave in waves:
        for domain in wave.wait_for:
            ended.setdefault(source_of[domain], []).append(domain)
        for source in set(m.source for m in wave.migrations):
            waits = ended.pop(source, [])
            for migration in wave.migrations:
                if migration.source == source:
                    migration.after = list(waits)


def live_migrate_options(migration):
    """The presplit.kvm.live_migrate options that run ``migration`` as planned: its bandwidth
    cap (whole MiB/s, at least 1: libvirt takes 0 as no cap) and what its mode needs."""
    options = {'bandwidth_mib_per_s': max(1, int(migration.bandwidth_mib_per_s))}
    if migration.mode == 'auto_converge':
        options['auto_converge'] = True
    elif migration.mode == 'post_copy':
        options.update(post_copy=True, completion_timeout_action='postcopy')
    return options


def lower_bounds(migrations, hosts, limits):
    """Makespans no schedule can beat: (bandwidth bound, full lower bound, MiB moved).

    The bandwidth bound is the planned bytes over the busiest link.  The full bound also
    counts what concurrency limits force, from each migration's shortest duration (on an
    idle path, its estimate, or as planned where a slower migration changes mode and
    ends sooner): the longest migration; every cluster slot busy all the time; and, per
    host with n migrations and k slots, one slot that carries ceil(n / k) of them one
    after another, at least the shortest ones.
    """
    out_mib = {}
    in_mib = {}
    lanes = {}
    shortest = {}
    total_mib = 0.0
    for migration in migrations:
        out_mib[migration.source] = out_mib.get(migration.source, 0.0) + migration.transferred_mib
        in_mib[migration.destination] = in_mib.get(migration.destination, 0.0) + migration.transferred_mib
        total_mib += migration.transferred_mib
        duration = shortest[migration.domain] = min(migration.estimate_s, migration.duration_s)
        lanes.setdefault(('out', migration.source), []).append(duration)
        lanes.setdefault(('in', migration.destination), []).append(duration)
    link_bounds = [mib / hosts[name].bandwidth_mib_per_s for name, mib in list(out_mib.items()) + list(in_mib.items())]
    if limits['cluster_bandwidth_mib_per_s']:
        link_bounds.append(total_mib / limits['cluster_bandwidth_mib_per_s'])
    bandwidth_bound = max(link_bounds or [0.0])
    bounds = [bandwidth_bound, max(shortest.values() or [0.0]),
              sum(shortest.values()) / limits['max_parallel_per_cluster']]
    slots = {'out': limits['max_outgoing_per_host'], 'in': limits['max_incoming_per_host']}
    for (direction, _host), durations in lanes.items():
        serial = -(-len(durations) // slots[direction])
        bounds.append(sum(sorted(durations)[:serial]))
    return bandwidth_bound, max(bounds), total_mib
