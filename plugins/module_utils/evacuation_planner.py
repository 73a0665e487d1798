# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evacuation planner: where each guest of the drained hosts goes, and when.

Pure Python, standard library only, runs on the controller.  Three steps:

1. placement: largest domains first, each to the eligible host with the most
   free of the resource it consumes (memory, or huge pages of its size), and
   among those the one whose link carries the fewest MiB so far; a max-heap
   per (CPU group, resource) makes this O(n log h);
2. prediction: a pre-copy model per migration (memory, dirty rate, bandwidth,
   allowed downtime); when pre-copy does not converge, auto-converge or
   post-copy is chosen per domain, with the reason;
3. scheduling: event-driven longest-processing-time-first list scheduling
   over slots (outgoing per host, incoming per host, per cluster) and link
   bandwidth: a starting migration reserves the bandwidth left on its path
   (its cap for the executor), so concurrent migrations never oversubscribe
   a link and one fast migration fills a link rather than two slow ones;
   where one stream cannot fill a link, the first migration over an idle link
   gets the share of it that ends it with the rest of that link's migrations.
   Migrations that start at the same planned instant form a wave; a wave may
   start once the migrations in its ``wait_for`` have finished (waiting for
   every earlier wave is also safe, only slower).

Each migration also carries what runs it as planned: ``options``, the
``presplit.kvm.live_migrate`` options of its mode and bandwidth cap, and
``after``, the migrations of its own source host it must wait for (one host's
run sees only its own migrations running).

Same input, same output: every ordering decision breaks ties by name.
"""

import heapq

BACKINGS = ('none', 'thp', 'hugetlb-2M', 'hugetlb-1G')
KERNEL_MODES = ('patched', 'eager-split-only', 'none')
NON_MIGRATABLE_POLICIES = ('skip_host', 'shutdown_and_restart', 'fail')
HUGEPAGE_MIB = {'hugetlb-2M': 2, 'hugetlb-1G': 1024}
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

# QEMU's defaults for auto-converge (cpu-throttle-initial / -increment / max).
THROTTLE_INITIAL_PCT = 20
THROTTLE_INCREMENT_PCT = 10
THROTTLE_MAX_PCT = 99
# Above this throttle a guest is too slow to be useful for minutes; post-copy
# (bounded duration, one network round trip per missing page) is kinder.
AUTO_CONVERGE_ACCEPTABLE_PCT = 50
# More pre-copy passes than this means the dirty rate is too close to the
# bandwidth for pre-copy to finish in a sensible time.
MAX_PRECOPY_ITERATIONS = 30
# Shown in an error message per domain; the structured result has them all.
MAX_HOSTS_IN_MESSAGE = 8


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
                 'anti_affinity', 'not_migratable_because', 'dirty_rate_mib_per_s', 'cpu_group')

    def __init__(self, spec):
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
        self.anti_affinity = tuple(sorted(set(spec.get('anti_affinity') or ())))
        if spec.get('pinned'):
            self.not_migratable_because = 'pinned to host %s' % self.host
        elif spec.get('migratable') is False:
            self.not_migratable_because = 'marked not migratable'
        else:
            self.not_migratable_because = None
        self.dirty_rate_mib_per_s = float(_non_negative(spec.get('dirty_rate_mib_per_s') or 0, 'dirty_rate_mib_per_s', self.name))
        self.cpu_group = spec.get('cpu_group')


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


def _unique_by_name(items, what):
    by_name = {}
    for item in items:
        if item.name in by_name:
            raise PlanningError('%s %s is listed twice' % (what, item.name))
        by_name[item.name] = item
    return by_name


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


# ---------------------------------------------------------------- prediction

def predict_migration(memory_mib, dirty_rate_mib_per_s, bandwidth_mib_per_s, max_downtime_ms, backing='none', allow_post_copy=True):
    """Predict one live migration.

    Pre-copy: pass 0 sends all memory; pass i re-sends what was dirtied during
    pass i-1 (dirty rate x pass duration, at most all memory).  Once what is
    left can be sent within the allowed downtime, the guest is paused and the
    rest sent (stop-and-copy).  Returns a dict with the chosen ``mode``
    (``pre_copy`` | ``auto_converge`` | ``post_copy``), ``reason``,
    ``iterations`` (pre-copy passes), ``transferred_mib``, ``duration_s``,
    ``downtime_ms`` (None for post-copy: the guest runs on the destination
    while pages are pulled) and ``throttle_pct``.
    """
    bandwidth = float(bandwidth_mib_per_s)
    budget_mib = bandwidth * max_downtime_ms / 1000.0
    plain = _precopy(memory_mib, dirty_rate_mib_per_s, bandwidth, budget_mib, throttled=False)
    if plain is not None:
        iterations, sent, downtime_mib, _throttle = plain
        return _prediction('pre_copy', 'pre-copy converges after %d pass(es)' % iterations,
                           iterations, sent, bandwidth, downtime_mib, 0)
    why = ('dirty rate %.0f MiB/s is not below the %.0f MiB/s bandwidth' % (dirty_rate_mib_per_s, bandwidth)
           if dirty_rate_mib_per_s >= bandwidth else
           'pre-copy needs more than %d passes to get under %d ms of downtime' % (MAX_PRECOPY_ITERATIONS, max_downtime_ms))
    throttled = _precopy(memory_mib, dirty_rate_mib_per_s, bandwidth, budget_mib, throttled=True)
    if throttled is not None and throttled[3] <= AUTO_CONVERGE_ACCEPTABLE_PCT:
        iterations, sent, downtime_mib, throttle = throttled
        return _prediction('auto_converge', '%s; auto-converge gets there with %d%% vCPU throttle' % (why, throttle),
                           iterations, sent, bandwidth, downtime_mib, throttle)
    auto_converge_cost = ('auto-converge would need %d%% vCPU throttle' % throttled[3] if throttled is not None
                          else 'auto-converge does not converge even at %d%% throttle' % THROTTLE_MAX_PCT)
    if allow_post_copy and backing != 'hugetlb-1G':
        # One full pass, then the pages dirtied during it are pulled on demand.
        sent = memory_mib + min(memory_mib, dirty_rate_mib_per_s * memory_mib / bandwidth)
        return _prediction('post_copy', '%s; %s; post-copy bounds the migration to about two passes' % (why, auto_converge_cost),
                           1, sent, bandwidth, None, 0)
    if throttled is None:
        raise PlanningError('migration cannot converge: %s; %s; %s' % (
            why, auto_converge_cost,
            'post-copy is not allowed' if not allow_post_copy else 'post-copy of 1 GiB pages would stall vCPUs for a whole page per fault'))
    iterations, sent, downtime_mib, throttle = throttled
    fallback_reason = ('post-copy is not allowed' if not allow_post_copy
                       else 'post-copy with 1 GiB huge pages moves a whole 1 GiB page per fault')
    return _prediction('auto_converge', '%s; %s, but %s' % (why, auto_converge_cost, fallback_reason),
                       iterations, sent, bandwidth, downtime_mib, throttle)


def _precopy(memory_mib, dirty_rate, bandwidth, budget_mib, throttled):
    """(passes, MiB sent, MiB sent while paused, final throttle %) or None if it does not converge."""
    remaining = float(memory_mib)
    sent = 0.0
    throttle = 0
    max_passes = MAX_PRECOPY_ITERATIONS + (THROTTLE_MAX_PCT - THROTTLE_INITIAL_PCT) // THROTTLE_INCREMENT_PCT + 1 if throttled else MAX_PRECOPY_ITERATIONS
    for passes in range(max_passes + 1):
        if remaining <= budget_mib:
            return passes, sent + remaining, remaining, throttle
        sent += remaining
        if throttled and passes >= 1:
            # QEMU starts throttling once a pass ends with too much dirtied.
            throttle = min(THROTTLE_MAX_PCT, THROTTLE_INITIAL_PCT if throttle == 0 else throttle + THROTTLE_INCREMENT_PCT)
        effective_rate = dirty_rate * (100 - throttle) / 100.0
        remaining = min(float(memory_mib), effective_rate * remaining / bandwidth)
    return None


def _prediction(mode, reason, iterations, sent_mib, bandwidth, downtime_mib, throttle):
    return {
        'mode': mode,
        'reason': reason,
        'iterations': iterations,
        'transferred_mib': sent_mib,
        'duration_s': sent_mib / bandwidth,
        'downtime_ms': None if downtime_mib is None else downtime_mib / bandwidth * 1000.0,
        'throttle_pct': throttle,
    }


# ---------------------------------------------------------------- placement

class _Placer:
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


# ---------------------------------------------------------------- scheduling

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


def _schedule(migrations, hosts, limits, predict):
    """Set bandwidth, prediction, ``start_s`` and ``end_s`` on every migration.

    Event-driven list scheduling, longest first.  A migration starts when its
    source has an outgoing slot, its destination an incoming slot, the cluster
    a slot, and each link on its path has at least half its fair share left
    (link / concurrency limit); it then reserves all the bandwidth left on the
    path, so a link is filled by as few migrations as possible, and
    concurrency is used where one migration cannot fill it.  When several
    sources could start, the one whose next migration is longest goes first
    (a heap); a source whose waiting migrations all target busy destinations
    waits for the next event.  The first migration over an idle link may get
    less (``_Links.first_share``).  ``predict(migration, bandwidth)`` sets the
    duration for the bandwidth the migration gets.
    """
    queues = {}
    for migration in sorted(migrations, key=lambda m: (-m['estimate_s'], m['domain'])):
        queues.setdefault(migration['source'], []).append(migration)
    out_free = dict((name, limits['max_outgoing_per_host']) for name in queues)
    in_free = dict((name, limits['max_incoming_per_host']) for name in hosts)
    cluster_free = limits['max_parallel_per_cluster']
    links = _Links(hosts, limits)
    # MiB each link still has to carry out of / into its host, at the bandwidth of an idle path.
    link_mib = {}
    for migration in migrations:
        for end in (('out', migration['source']), ('in', migration['destination'])):
            link_mib[end] = link_mib.get(end, 0.0) + migration['estimate_mib']

    def starting_share(migration):
        """Count a starting migration off its links; the least _Links.first_share of its idle ends."""
        shares = []
        for end, free, limit in (('out', out_free, limits['max_outgoing_per_host']),
                                 ('in', in_free, limits['max_incoming_per_host'])):
            host = migration['source' if end == 'out' else 'destination']
            if free[host] == limit:
                shares.append(links.first_share(host, migration['estimate_mib'], link_mib[(end, host)]))
            link_mib[(end, host)] -= migration['estimate_mib']
        shares = [share for share in shares if share is not None]
        return min(shares) if shares else None
    ready = []  # (-estimate of the source's longest waiting migration, source)
    offered = set()

    def offer(source):
        if queues[source] and out_free[source] > 0 and links.source_ready(source) and source not in offered:
            heapq.heappush(ready, (-queues[source][0]['estimate_s'], source))
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
                          if in_free[m['destination']] > 0 and links.destination_ready(m['destination'])), None)
            if index is None:
                blocked.append(source)
                continue
            migration = queue.pop(index)
            predict(migration, links.reserve(source, migration['destination'], starting_share(migration)))
            migration['start_s'] = now
            migration['end_s'] = now + migration['duration_s']
            heapq.heappush(ends, (migration['end_s'], migration['domain'], migration))
            out_free[source] -= 1
            in_free[migration['destination']] -= 1
            cluster_free -= 1
            offer(source)
        if not ends:
            break
        now = ends[0][0]
        while ends and ends[0][0] == now:
            _end, _name, finished = heapq.heappop(ends)
            out_free[finished['source']] += 1
            in_free[finished['destination']] += 1
            cluster_free += 1
            links.release(finished['source'], finished['destination'], finished['bandwidth_mib_per_s'])
            offer(finished['source'])
        for source in blocked:
            offer(source)
        blocked = []
    stuck = sorted(m['domain'] for queue in queues.values() for m in queue)
    if stuck:
        # Cannot happen with positive limits; said loudly rather than returning a partial plan.
        raise PlanningError('internal error: could not schedule %s' % ', '.join(stuck))


def live_migrate_options(migration):
    """The presplit.kvm.live_migrate options that run ``migration`` as planned: its bandwidth
    cap (whole MiB/s, at least 1: libvirt takes 0 as no cap) and what its mode needs."""
    options = {'bandwidth_mib_per_s': max(1, int(migration['bandwidth_mib_per_s']))}
    if migration['mode'] == 'auto_converge':
        options['auto_converge'] = True
    elif migration['mode'] == 'post_copy':
        options.update(post_copy=True, completion_timeout_action='postcopy')
    return options


def _source_waits(waves):
    """Set each migration's ``after``: the migrations of its source host that end between
    that host's previous wave and its own (the waves' ``wait_for`` seen from one host)."""
    source_of = dict((m['domain'], m['source']) for wave in waves for m in wave['migrations'])
    ended = {}
    for wave in waves:
        for domain in wave['wait_for']:
            ended.setdefault(source_of[domain], []).append(domain)
        for source in set(m['source'] for m in wave['migrations']):
            waits = ended.pop(source, [])
            for migration in wave['migrations']:
                if migration['source'] == source:
                    migration['after'] = list(waits)


def _waves(migrations):
    """Group migrations by planned start; each wave waits for what ended since the previous one."""
    by_start = {}
    for migration in migrations:
        by_start.setdefault(migration['start_s'], []).append(migration)
    starts = sorted(by_start)
    ends = sorted(migrations, key=lambda m: (m['end_s'], m['domain']))
    waves = []
    cursor = 0
    for number, start in enumerate(starts, 1):
        wait_for = []
        while cursor < len(ends) and ends[cursor]['end_s'] <= start:
            wait_for.append(ends[cursor]['domain'])
            cursor += 1
        members = sorted(by_start[start], key=lambda m: (-m['duration_s'], m['domain']))
        for migration in members:
            migration['wave'] = number
        waves.append({
            'wave': number,
            'start_s': start,
            'duration_s': max(m['duration_s'] for m in members),
            'wait_for': wait_for,
            'migrations': members,
        })
    _source_waits(waves)
    for migration in migrations:
        migration['options'] = live_migrate_options(migration)
    return waves


def _lower_bounds(migrations, shortest_s, hosts, limits):
    """Makespans no schedule can beat: (bandwidth bound, full lower bound, MiB moved).

    The bandwidth bound is the planned bytes over the busiest link.  The full bound also
    counts what concurrency limits force, from each migration's shortest duration (on an
    idle path, ``shortest_s``, or as planned where a slower migration changes mode and
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
        out_mib[migration['source']] = out_mib.get(migration['source'], 0.0) + migration['transferred_mib']
        in_mib[migration['destination']] = in_mib.get(migration['destination'], 0.0) + migration['transferred_mib']
        total_mib += migration['transferred_mib']
        duration = shortest[migration['domain']] = min(shortest_s[migration['domain']], migration['duration_s'])
        lanes.setdefault(('out', migration['source']), []).append(duration)
        lanes.setdefault(('in', migration['destination']), []).append(duration)
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


# ---------------------------------------------------------------- the plan

def plan_evacuation(hosts, domains, drain, limits=None, max_downtime_ms=300, non_migratable_policy='fail', allow_post_copy=True):
    """Plan the evacuation of the ``drain`` hosts.  Returns a JSON-able dict; raises PlanningError.

    ``hosts`` and ``domains`` are lists of dicts (see the evacuation_plan module
    for their keys).  ``domains`` should list every running domain of the
    fleet: the ones on other hosts count for anti-affinity.
    """
    limits = resolve_limits(limits)
    if max_downtime_ms <= 0:
        raise PlanningError('max_downtime_ms must be positive')
    if non_migratable_policy not in NON_MIGRATABLE_POLICIES:
        raise PlanningError('non_migratable_policy must be one of %s' % ', '.join(NON_MIGRATABLE_POLICIES))
    hosts_by_name = _unique_by_name([Host(spec, limits['host_bandwidth_mib_per_s']) for spec in hosts], 'host')
    all_domains = _unique_by_name([Domain(spec) for spec in domains], 'domain')
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
    moving = sorted((d for d in all_domains.values() if d.host in draining and d.name not in shut_down),
                    key=lambda d: (-d.footprint_mib, -d.vcpus, d.name))
    staying = [d for d in all_domains.values() if d.host not in draining or d.name in shut_down]
    destinations = dict((name, host) for name, host in hosts_by_name.items() if name not in drain)
    placer = _Placer(destinations, staying)

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
        raise _infeasible(unplaced, placer, destinations, placement)

    migrations = []
    without_presplit = []
    for domain in moving:
        source = hosts_by_name[domain.host]
        destination = hosts_by_name[placement[domain.name]]
        huge = domain.backing != 'none'
        if huge and source.kernel_mode != 'patched':
            # KVM splits its huge mappings during the first pass, under the MMU write lock: vCPUs stall.
            without_presplit.append({'domain': domain.name, 'host': source.name, 'backing': domain.backing,
                                     'kernel_mode': source.kernel_mode})
        nominal = _predict_for(domain.name, domain.memory_mib, domain.dirty_rate_mib_per_s,
                               _nominal_bandwidth(source, destination, limits), max_downtime_ms, domain.backing, allow_post_copy)
        migrations.append({
            'domain': domain.name,
            'source': source.name,
            'destination': destination.name,
            'memory_mib': domain.memory_mib,
            'backing': domain.backing,
            'presplit': huge and source.kernel_mode == 'patched',
            'dirty_rate_mib_per_s': domain.dirty_rate_mib_per_s,
            'estimate_s': nominal['duration_s'],
            'estimate_mib': nominal['transferred_mib'],
        })

    shortest_s = dict((m['domain'], m['estimate_s']) for m in migrations)

    def predict(migration, bandwidth):
        migration.pop('estimate_s')
        migration.pop('estimate_mib')
        migration['bandwidth_mib_per_s'] = bandwidth
        migration.update(_predict_for(migration['domain'], migration['memory_mib'], migration['dirty_rate_mib_per_s'], bandwidth,
                                      max_downtime_ms, migration['backing'], allow_post_copy))

    _schedule(migrations, hosts_by_name, limits, predict)
    waves = _waves(migrations)
    bandwidth_bound, lower_bound, total_mib = _lower_bounds(migrations, shortest_s, hosts_by_name, limits)
    makespan = max([m['end_s'] for m in migrations] or [0.0])
    return {
        'placement': placement,
        'waves': [_rounded_wave(wave) for wave in waves],
        'shutdown': shutdown,
        'skipped_hosts': skipped_hosts,
        'destinations': _destination_summary(destinations, placement),
        'without_presplit': without_presplit,
        'summary': {
            'migrations': len(migrations),
            'waves': len(waves),
            'makespan_s': _round(makespan),
            'bandwidth_lower_bound_s': _round(bandwidth_bound),
            'lower_bound_s': _round(lower_bound),
            'makespan_over_bandwidth_bound': _round(makespan / bandwidth_bound) if bandwidth_bound else None,
            'transferred_mib': _round(total_mib),
            'modes': dict((mode, sum(1 for m in migrations if m['mode'] == mode)) for mode in ('pre_copy', 'auto_converge', 'post_copy')),
        },
    }


def _predict_for(domain_name, *args):
    try:
        return predict_migration(*args)
    except PlanningError as error:
        raise PlanningError('domain %s: %s' % (domain_name, error.message), {'domain': domain_name})


def _non_migratable(all_domains, drain, policy):
    """Apply the policy to non-migratable domains on hosts to drain: (skipped hosts, shutdown list, blockers)."""
    skipped = {}
    shutdown = []
    blockers = []
    for domain in sorted(all_domains.values(), key=lambda d: d.name):
        if domain.host not in drain or domain.not_migratable_because is None:
            continue
        if policy == 'skip_host':
            skipped.setdefault(domain.host, []).append('%s is %s' % (domain.name, domain.not_migratable_because))
        elif policy == 'shutdown_and_restart':
            # It cannot run anywhere else: shut down before the maintenance, start again on the same host after.
            shutdown.append({'domain': domain.name, 'host': domain.host, 'restart_on': domain.host,
                             'reason': domain.not_migratable_because})
        else:
            blockers.append((domain.name, domain.not_migratable_because))
    return skipped, shutdown, blockers


def _nominal_bandwidth(source, destination, limits):
    """Bandwidth a migration gets on an otherwise idle path (orders the work, longest first)."""
    shares = [source.bandwidth_mib_per_s, destination.bandwidth_mib_per_s]
    for key in ('cluster_bandwidth_mib_per_s', 'migration_bandwidth_mib_per_s'):
        if limits[key]:
            shares.append(float(limits[key]))
    return min(shares)


def _infeasible(unplaced, placer, destinations, placement):
    details = []
    lines = []
    for domain, cpu_group in unplaced:
        reasons = dict((name, placer.why_not(domain, cpu_group, destinations[name])) for name in sorted(destinations))
        details.append({'domain': domain.name, 'source': domain.host, 'reasons': reasons})
        shown = ', '.join('%s: %s' % item for item in sorted(reasons.items())[:MAX_HOSTS_IN_MESSAGE])
        more = len(reasons) - MAX_HOSTS_IN_MESSAGE
        lines.append('%s (from %s, %d MiB %s, %d vCPUs) fits nowhere: %s%s' % (
            domain.name, domain.host, domain.memory_mib, domain.backing, domain.vcpus,
            shown or 'no destination host (every host is being drained)', ' and %d more hosts' % more if more > 0 else ''))
    return PlanningError('%d domain(s) fit nowhere. %s' % (len(unplaced), ' | '.join(lines)), {'unplaced': details, 'placed': dict(placement)})


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


def _round(value):
    return round(value, 3)


def _rounded_wave(wave):
    migrations = []
    for migration in wave['migrations']:
        entry = dict(migration)
        for key in ('start_s', 'end_s', 'duration_s', 'transferred_mib', 'bandwidth_mib_per_s', 'dirty_rate_mib_per_s'):
            entry[key] = _round(entry[key])
        if entry['downtime_ms'] is not None:
            entry['downtime_ms'] = _round(entry['downtime_ms'])
        migrations.append(entry)
    return dict(wave, start_s=_round(wave['start_s']), duration_s=_round(wave['duration_s']), migrations=migrations)
