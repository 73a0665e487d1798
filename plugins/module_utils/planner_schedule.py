# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evacuation planner's scheduling step: when each placed migration runs and at what
bandwidth (``schedule``, over ``_Links``, the bandwidth left on every link), the waves
they run in and what each runs with (``group_waves``, ``live_migrate_options``), and
the makespans no schedule can beat (``lower_bounds``).
"""

import heapq
import itertools
import operator

from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import PlanningError, round_figure
from ansible_collections.presplit.kvm.plugins.module_utils.planner_prediction import predict_for


def stream_cap(limits):
    """The most bandwidth one migration can get whatever its hosts' links (the cluster's
    bandwidth, what one stream carries), or None for no such cap."""
    caps = [float(limits[key]) for key in ('cluster_bandwidth_mib_per_s', 'migration_bandwidth_mib_per_s') if limits[key]]
    return min(caps) if caps else None


def idle_path_bandwidth(source, destination, cap):
    """Bandwidth a migration from host ``source`` to host ``destination`` gets on an
    otherwise idle path, under ``cap`` (stream_cap) (its estimate orders the work, longest first)."""
    bandwidth = min(source.bandwidth_mib_per_s, destination.bandwidth_mib_per_s)
    return bandwidth if cap is None else min(bandwidth, cap)


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


def _longest_first(migrations):
    """``migrations`` by estimate, longest first, then by domain name.  Two stable sorts
    (reverse keeps equal keys in order) rather than one on a key built per migration."""
    ordered = sorted(migrations, key=operator.attrgetter('domain'))
    ordered.sort(key=operator.attrgetter('estimate_s'), reverse=True)
    return ordered


def schedule(migrations, hosts, limits, max_downtime_ms, allow_post_copy):
    """Set bandwidth, prediction, ``start_s`` and ``end_s`` on every migration.

    Event-driven list scheduling.  A migration starts when its source has an
    outgoing slot, its destination an incoming slot, the cluster a slot, and
    each link on its path has at least half its fair share left (link /
    concurrency limit); it then reserves all the bandwidth left on the path, so
    a link is filled by as few migrations as possible, and concurrency is used
    where one migration cannot fill it.  When several sources could start, the
    one whose link has the most left to send (in time, at its bandwidth) goes
    first (a heap): no plan ends before the busiest link has carried its bytes,
    and a busy link left waiting while lighter ones take the destinations is
    time the makespan cannot win back.  It starts its longest waiting migration
    whose destination is open; a source whose waiting migrations all target
    busy destinations waits until a migration into one of them ends.  The
    first migration over an idle link may get less (``_Links.first_share``).
    Each starting migration is predicted at the bandwidth it gets, which sets
    its duration.
    """
    _Scheduler(migrations, hosts, limits, max_downtime_ms, allow_post_copy).run()


class _Scheduler:
    """The state of ``schedule`` while it runs: what waits where, what is free, what runs.

    Sources take turns in order of their key (what their link has left to send, in
    time, most first, then their name) through the ``ready`` heap.  A source none of whose
    migrations can start is ``blocked``: a destination is never a source, so only a
    migration ending at one of its destinations lets it start one.  When a destination
    opens, its blocked source with the smallest key is offered, and when that source has
    had its turn, the next one if the destination is still open.  So a source is offered
    by the time its key comes up whenever it could start something then, as when every
    blocked source was offered again after every event, which took 10 s for 30,000
    migrations; and a destination freed for one migration does not wake every source
    waiting for it.
    """

    def __init__(self, migrations, hosts, limits, max_downtime_ms, allow_post_copy):
        self.max_downtime_ms = max_downtime_ms
        self.allow_post_copy = allow_post_copy
        self.out_limit = limits['max_outgoing_per_host']
        self.in_limit = limits['max_incoming_per_host']
        self.queues = {}
        for migration in _longest_first(migrations):
            self.queues.setdefault(migration.source, []).append(migration)
        self.out_free = dict((name, self.out_limit) for name in self.queues)
        self.in_free = dict((name, self.in_limit) for name in hosts)
        self.cluster_free = limits['max_parallel_per_cluster']
        self.links = _Links(hosts, limits)
        # Whether a migration may start towards each host: an incoming slot and enough bandwidth left.
        self.open = dict((name, True) for name in hosts)
        # MiB each link still has to carry out of / into its host, at the bandwidth of an idle path.
        self.link_mib = {}
        # destination -> {source: how many of its waiting migrations go there}
        self.wanted = {}
        for migration in migrations:
            for end in (('out', migration.source), ('in', migration.destination)):
                self.link_mib[end] = self.link_mib.get(end, 0.0) + migration.estimate_mib
            sources = self.wanted.setdefault(migration.destination, {})
            sources[migration.source] = sources.get(migration.source, 0) + 1
        self.ready = []  # (key, source)
        self.offered = set()
        self.blocked = set()
        self.offered_for = {}  # destination -> the blocked source offered when it opened
        self.offers_for = {}  # that source -> those destinations
        self.ends = []  # (end_s, domain, migration)

    def run(self):
        for source in sorted(self.queues):
            self._offer(source)
        ready, ends, links = self.ready, self.ends, self.links
        now = 0.0
        while True:
            while ready and self.cluster_free > 0 and links.cluster_ready():
                self._turn(heapq.heappop(ready)[1], now)
            if not ends:
                break
            now = ends[0][0]
            while ends and ends[0][0] == now:
                self._finish(heapq.heappop(ends)[2])
        stuck = sorted(m.domain for queue in self.queues.values() for m in queue)
        if stuck:
            # Cannot happen with positive limits; said loudly rather than returning a partial plan.
            raise PlanningError('internal error: could not schedule %s' % ', '.join(stuck))

    def _key(self, source):
        """What ``source``'s link has left to send, in seconds, negated (most first); then its name."""
        return -self.link_mib[('out', source)] / self.links.bandwidth[source], source

    def _offer(self, source):
        if self.queues[source] and source not in self.offered and self.out_free[source] > 0 and self.links.source_ready(source):
            heapq.heappush(self.ready, self._key(source))
            self.offered.add(source)
            self.blocked.discard(source)

    def _offer_for(self, destination):
        """Offer the blocked source with the smallest key that waits for ``destination`` (open)."""
        if destination in self.offered_for:
            return
        waiting = self.blocked.intersection(self.wanted[destination])
        if waiting:
            source = min(self._key(source) for source in waiting)[1]
            self._offer(source)
            self.offered_for[destination] = source
            self.offers_for.setdefault(source, []).append(destination)

    def _turn(self, source, now):
        """``source``'s turn: start its first migration to an open destination, or block."""
        self.offered.discard(source)
        offered_for = self.offers_for.pop(source, ())
        for destination in offered_for:
            del self.offered_for[destination]
        queue = self.queues[source]
        is_open = self.open
        for index, migration in enumerate(queue):
            if is_open[migration.destination]:
                del queue[index]
                self._start(migration, now)
                self._offer(source)
                break
        else:
            self.blocked.add(source)
        for destination in offered_for:
            if is_open[destination]:
                self._offer_for(destination)

    def _start(self, migration, now):
        source, destination = migration.source, migration.destination
        sources = self.wanted[destination]
        sources[source] -= 1
        if not sources[source]:
            del sources[source]
        bandwidth = self.links.reserve(source, destination, self._starting_share(migration))
        if bandwidth == migration.estimate_bandwidth:
            prediction = migration.estimate
        else:
            prediction = predict_for(migration, bandwidth, self.max_downtime_ms, self.allow_post_copy)
        migration.set_schedule(now, bandwidth, prediction)
        heapq.heappush(self.ends, (migration.end_s, migration.domain, migration))
        self.out_free[source] -= 1
        self.in_free[destination] -= 1
        self.cluster_free -= 1
        self.open[destination] = self.in_free[destination] > 0 and self.links.destination_ready(destination)

    def _starting_share(self, migration):
        """Count a starting migration off its links; the _Links.first_share of its busier end
        (the one with more left to carry, in time) if that end is idle.  The other end's
        share would slow the busier link down for the sake of one that ends sooner anyway
        (makespan over the lower bound 1.060 to 1.024 with 700 MiB/s streams and half of
        100,000 VMs moving, bench/planner.py)."""
        link_mib, mib, links = self.link_mib, migration.estimate_mib, self.links
        out_end, in_end = ('out', migration.source), ('in', migration.destination)
        share = None
        if links.per_migration:
            out_s = link_mib[out_end] / links.bandwidth[migration.source]
            in_s = link_mib[in_end] / links.bandwidth[migration.destination]
            shares = []
            if out_s >= in_s and self.out_free[migration.source] == self.out_limit:
                shares.append(links.first_share(migration.source, mib, link_mib[out_end]))
            if in_s >= out_s and self.in_free[migration.destination] == self.in_limit:
                shares.append(links.first_share(migration.destination, mib, link_mib[in_end]))
            shares = [share for share in shares if share is not None]
            share = min(shares) if shares else None
        link_mib[out_end] -= mib
        link_mib[in_end] -= mib
        return share

    def _finish(self, migration):
        source, destination = migration.source, migration.destination
        self.out_free[source] += 1
        self.in_free[destination] += 1
        self.cluster_free += 1
        self.links.release(source, destination, migration.bandwidth_mib_per_s)
        self._offer(source)
        self.open[destination] = self.links.destination_ready(destination)
        if self.open[destination]:
            self._offer_for(destination)


class Wave:
    """Migrations that start at the same planned instant; the wave may start once the
    migrations named in ``wait_for`` have ended."""

    __slots__ = ('number', 'start_s', 'duration_s', 'wait_for', 'migrations')

    def __init__(self, number, start_s, wait_for, migrations):
        """``migrations`` longest first."""
        self.number = number
        self.start_s = start_s
        self.duration_s = migrations[0].duration_s
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
    ended since the previous one; sets every migration's ``wave``, ``after`` and ``options``.

    A migration's ``after`` is the migrations of its source host that end between that
    host's previous wave and its own: the waves' ``wait_for`` as one host sees them.
    """
    ends = sorted(migrations, key=operator.attrgetter('end_s', 'domain'))
    cursor = 0
    ended = {}  # source -> its migrations ended since its previous wave
    waves = []
    # By start, longest first within a wave (sorts are stable: each keeps the order of the one before).
    by_start = sorted(migrations, key=operator.attrgetter('domain'))
    by_start.sort(key=operator.attrgetter('duration_s'), reverse=True)
    by_start.sort(key=operator.attrgetter('start_s'))
    for start, members in itertools.groupby(by_start, key=operator.attrgetter('start_s')):
        number = len(waves) + 1
        wait_for = []
        while cursor < len(ends) and ends[cursor].end_s <= start:
            wait_for.append(ends[cursor].domain)
            ended.setdefault(ends[cursor].source, []).append(ends[cursor].domain)
            cursor += 1
        members = list(members)
        waits = {}
        for migration in members:
            if migration.source not in waits:
                waits[migration.source] = ended.pop(migration.source, [])
            migration.after = list(waits[migration.source])
            migration.wave = number
            migration.options = live_migrate_options(migration)
        waves.append(Wave(number, start, wait_for, members))
    return waves


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
