# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit and property tests of the evacuation planner (placement, pre-copy model, waves)."""

import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.presplit.kvm.plugins.module_utils.evacuation_planner import plan_evacuation
from ansible_collections.presplit.kvm.plugins.module_utils.planner_infeasible import DOMAINS_EXPLAINED, DOMAINS_IN_MESSAGE, EXAMPLE_HOSTS
from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import DEFAULT_LIMITS, HUGEPAGE_MIB, PlanningError
from ansible_collections.presplit.kvm.plugins.module_utils.planner_prediction import predict_migration

# Derandomized: CI sees the same examples every run; small fleets keep the run short.
# No deadline and no too_slow health check: both are wall-clock limits that fail a test
# on a loaded machine without anything being wrong.
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
EPSILON = 1e-6


def host(name, memory=16384, group='default', mode='patched', vcpus=None, pages_2m=0, pages_1g=0, bandwidth=None):
    spec = {'name': name, 'memory_free_mib': memory, 'cpu_group': group, 'kernel_mode': mode,
            'hugepages_2m_free': pages_2m, 'hugepages_1g_free': pages_1g, 'vcpus_free': vcpus}
    if bandwidth:
        spec['bandwidth_mib_per_s'] = bandwidth
    return spec


def domain(name, on, memory=1024, **extra):
    spec = {'name': name, 'host': on, 'memory_mib': memory, 'vcpus': 1}
    spec.update(extra)
    return spec


def migrations_of(plan):
    return [m for wave in plan['waves'] for m in wave['migrations']]


# ------------------------------------------------------------------ pre-copy model

def test_precopy_geometric_series():
    # 1000 MiB at 100 MiB/s, 50 MiB/s dirtied: passes of 1000, 500, ... until <= 10 MiB (100 ms).
    prediction = predict_migration(1000, 50, 100, 100)
    assert prediction['mode'] == 'pre_copy'
    assert prediction['iterations'] == 7
    assert prediction['transferred_mib'] == pytest.approx(1992.1875)
    assert prediction['duration_s'] == pytest.approx(19.921875)
    assert prediction['downtime_ms'] == pytest.approx(78.125)


def test_idle_guest_is_one_pass():
    prediction = predict_migration(4096, 0, 1024, 300)
    assert (prediction['iterations'], prediction['duration_s']) == (1, pytest.approx(4.0))


def test_small_guest_fits_in_downtime():
    prediction = predict_migration(10, 500, 100, 300)
    assert prediction['iterations'] == 0
    assert prediction['downtime_ms'] == pytest.approx(100.0)


def test_auto_converge_when_mild_throttle_is_enough():
    # Dirty rate equals bandwidth; throttled 20, 30, 40, 50 %: 1000, 1000, 800, 560, 336, then 168 MiB <= 200 MiB (2 s).
    prediction = predict_migration(1000, 100, 100, 2000)
    assert prediction['mode'] == 'auto_converge'
    assert (prediction['throttle_pct'], prediction['iterations']) == (50, 5)
    assert prediction['transferred_mib'] == pytest.approx(3864)
    assert prediction['downtime_ms'] == pytest.approx(1680)


def test_too_many_passes_is_not_convergence():
    # 0.9 of the bandwidth dirtied: 8 GiB would need about 53 passes to get under 30 MiB.
    prediction = predict_migration(8192, 90, 100, 300, 'thp')
    assert prediction['mode'] == 'post_copy'
    assert 'more than 30 passes' in prediction['reason']


def test_post_copy_when_auto_converge_needs_heavy_throttle():
    prediction = predict_migration(1000, 120, 100, 300, 'thp')
    assert prediction['mode'] == 'post_copy'
    assert 'not below' in prediction['reason'] and '80% vCPU throttle' in prediction['reason']
    assert prediction['downtime_ms'] is None
    assert prediction['transferred_mib'] == pytest.approx(2000)


@pytest.mark.parametrize('backing, allow_post_copy, why', [
    ('hugetlb-1G', True, '1 GiB page per fault'),
    ('thp', False, 'post-copy is not allowed'),
])
def test_auto_converge_when_post_copy_is_ruled_out(backing, allow_post_copy, why):
    prediction = predict_migration(1000, 120, 100, 300, backing, allow_post_copy)
    assert prediction['mode'] == 'auto_converge'
    assert prediction['throttle_pct'] == 80
    assert why in prediction['reason']


def test_no_method_converges():
    with pytest.raises(PlanningError, match='cannot converge'):
        predict_migration(1000, 100000, 100, 300, 'hugetlb-1G')


# ------------------------------------------------------------------ plans by hand

def test_sequential_at_full_link_speed():
    hosts = [host('h1', bandwidth=100), host('h2', bandwidth=100), host('h3', bandwidth=100)]
    domains = [domain('a', 'h1'), domain('b', 'h1'), domain('c', 'h1')]
    plan = plan_evacuation(hosts, domains, ['h1'])
    assert sorted(plan['placement']) == ['a', 'b', 'c']
    assert set(plan['placement'].values()) == {'h2', 'h3'}
    # One migration fills h1's link: three in a row, 10.24 s each.
    assert [w['start_s'] for w in plan['waves']] == [0.0, 10.24, 20.48]
    assert plan['waves'][1]['wait_for'] == [plan['waves'][0]['migrations'][0]['domain']]
    assert plan['summary']['makespan_s'] == pytest.approx(30.72)
    assert plan['summary']['bandwidth_lower_bound_s'] == pytest.approx(30.72)


def test_parallel_when_one_stream_cannot_fill_the_link():
    hosts = [host('h1', bandwidth=100), host('h2', bandwidth=100), host('h3', bandwidth=100)]
    domains = [domain('a', 'h1'), domain('b', 'h1'), domain('c', 'h1')]
    plan = plan_evacuation(hosts, domains, ['h1'], limits={'migration_bandwidth_mib_per_s': 50})
    assert [len(w['migrations']) for w in plan['waves']] == [2, 1]
    assert plan['waves'][0]['duration_s'] == pytest.approx(20.48)
    assert plan['summary']['makespan_s'] == pytest.approx(40.96)


def test_capped_streams_leaving_one_host_end_together():
    # A 60 MiB/s stream cannot fill the 100 MiB/s link: the first of the two gets 50, not 60
    # (which would leave the second at 40, ending alone 5 s after the first).
    hosts = [host('h1', bandwidth=100), host('h2', bandwidth=100), host('h3', bandwidth=100)]
    domains = [domain('a', 'h1'), domain('b', 'h1')]
    plan = plan_evacuation(hosts, domains, ['h1'], limits={'migration_bandwidth_mib_per_s': 60})
    assert [m['bandwidth_mib_per_s'] for m in migrations_of(plan)] == [50.0, 50.0]
    assert plan['summary']['makespan_s'] == pytest.approx(20.48)
    assert plan['summary']['makespan_over_bandwidth_bound'] == 1.0


def test_capped_streams_arriving_at_one_host_end_together():
    hosts = [host('s1', bandwidth=100), host('s2', bandwidth=100), host('d', bandwidth=100)]
    domains = [domain('a', 's1', memory=3072), domain('b', 's2', memory=1024)]
    plan = plan_evacuation(hosts, domains, ['s1', 's2'], limits={'migration_bandwidth_mib_per_s': 80})
    # d's link carries 4096 MiB: a gets 3/4 of it, capped at 80 (b takes the 20 left).
    assert dict((m['domain'], m['bandwidth_mib_per_s']) for m in migrations_of(plan)) == {'a': 75.0, 'b': 25.0}
    assert plan['summary']['makespan_s'] == pytest.approx(40.96)
    assert plan['summary']['makespan_over_bandwidth_bound'] == 1.0


def test_lower_bound_counts_migrations_the_slots_serialise():
    # Three 30 MiB/s streams, two at a time: one slot carries two of them, whatever the plan.
    hosts = [host('s', bandwidth=100), host('d', memory=1 << 20, bandwidth=100)]
    domains = [domain('v%d' % i, 's') for i in range(3)]
    plan = plan_evacuation(hosts, domains, ['s'], limits={'migration_bandwidth_mib_per_s': 30})
    assert plan['summary']['bandwidth_lower_bound_s'] == pytest.approx(30.72)
    assert plan['summary']['lower_bound_s'] == pytest.approx(2 * 1024 / 30.0, abs=0.001)
    assert plan['summary']['makespan_s'] == pytest.approx(plan['summary']['lower_bound_s'], abs=0.002)


def test_outgoing_limit_holds_when_bandwidth_would_allow_more():
    hosts = [host('s', bandwidth=1000)] + [host('d%d' % i, bandwidth=1000) for i in range(4)]
    domains = [domain('v%d' % i, 's') for i in range(4)]
    plan = plan_evacuation(hosts, domains, ['s'], limits={'max_outgoing_per_host': 2, 'migration_bandwidth_mib_per_s': 50})
    assert [len(w['migrations']) for w in plan['waves']] == [2, 2]


def test_incoming_limit_holds_when_bandwidth_would_allow_more():
    # d's link could take 20 streams of 50 MiB/s; only 2 may arrive at once.
    hosts = [host('s1', bandwidth=1000), host('s2', bandwidth=1000), host('s3', bandwidth=1000),
             host('d', memory=1 << 20, bandwidth=1000)]
    domains = [domain(name, source) for name, source in (('a', 's1'), ('b', 's1'), ('c', 's2'), ('e', 's2'), ('f', 's3'), ('g', 's3'))]
    plan = plan_evacuation(hosts, domains, ['s1', 's2', 's3'],
                           limits={'max_incoming_per_host': 2, 'migration_bandwidth_mib_per_s': 50})
    assert [len(w['migrations']) for w in plan['waves']] == [2, 2, 2]
    assert plan['summary']['makespan_s'] == pytest.approx(3 * 1024 / 50.0)


def test_among_hosts_with_as_much_free_the_least_loaded_link_wins():
    # After a, d1 and d2 have 6144 MiB free each: b goes to d2, whose link carries nothing yet.
    hosts = [host('s'), host('d1', memory=8192), host('d2', memory=6144)]
    plan = plan_evacuation(hosts, [domain('a', 's', memory=2048), domain('b', 's', memory=2048)], ['s'])
    assert plan['placement'] == {'a': 'd1', 'b': 'd2'}


def test_link_load_counts_across_resources():
    # m (memory) ties and goes to d1 by name; h (2M pages) ties on pages, and d1's link
    # already carries m.
    hosts = [host('s'), host('d1', pages_2m=4096), host('d2', pages_2m=4096)]
    domains = [domain('m', 's', memory=4096), domain('h', 's', memory=2048, backing='hugetlb-2M')]
    plan = plan_evacuation(hosts, domains, ['s'])
    assert plan['placement'] == {'m': 'd1', 'h': 'd2'}


def test_destinations_are_balanced_and_hugepages_counted_per_size():
    hosts = [host('src', pages_2m=4096, pages_1g=8), host('a', memory=6144, pages_2m=1024, pages_1g=4),
             host('b', memory=4096, pages_2m=2048, pages_1g=1)]
    domains = [domain('m1', 'src', 4096), domain('m2', 'src', 2048),
               domain('p2', 'src', 2048, backing='hugetlb-2M'), domain('p1g', 'src', 2048, backing='hugetlb-1G')]
    plan = plan_evacuation(hosts, domains, ['src'])
    assert plan['placement'] == {'m1': 'a', 'm2': 'b', 'p2': 'b', 'p1g': 'a'}
    assert plan['destinations']['a']['hugepages_1g_free_after'] == 2
    assert plan['destinations']['b']['hugepages_2m_free_after'] == 1024
    assert plan['destinations']['a']['memory_free_mib_after'] == 2048
    assert plan['destinations']['b']['memory_free_mib_after'] == 2048


def test_anti_affinity_and_cpu_groups():
    hosts = [host('src', group='skylake'), host('a', group='skylake'), host('b', group='skylake'),
             host('big', memory=1 << 20, group='haswell')]
    domains = [domain('db1', 'src', anti_affinity=['db']), domain('db2', 'a', anti_affinity=['db'])]
    plan = plan_evacuation(hosts, domains, ['src'])
    assert plan['placement'] == {'db1': 'b'}


def test_infeasible_counts_the_hosts_by_reason():
    hosts = [host('src', group='skylake'), host('a', memory=2048, group='skylake'), host('b', group='skylake', vcpus=0),
             host('c', group='haswell'), host('d', group='skylake')]
    domains = [domain('big', 'src', 4096, anti_affinity=['x']), domain('x2', 'd', anti_affinity=['x'])]
    with pytest.raises(PlanningError) as caught:
        plan_evacuation(hosts, domains, ['src'])
    message = caught.value.message
    assert message.startswith('1 domain(s) fit nowhere. big (from src, 4096 MiB none, 1 vCPUs) fits nowhere: ')
    assert '1 host(s) without the memory (a: needs 4096 MiB of memory, 2048 left)' in message
    details = caught.value.details
    assert details['unplaced_count'] == 1
    assert details['unplaced'] == [{
        'domain': 'big', 'source': 'src', 'cpu_group': 'skylake', 'memory_mib': 4096, 'backing': 'none', 'vcpus': 1,
        'reasons': {
            'memory': {'hosts': 1, 'examples': {'a': 'needs 4096 MiB of memory, 2048 left'}},
            'vcpus': {'hosts': 1, 'examples': {'b': 'needs 1 vCPUs, 0 left'}},
            'cpu_group': {'hosts': 1, 'examples': {'c': 'CPU group haswell, domain needs skylake'}},
            'anti_affinity': {'hosts': 1, 'examples': {'d': 'anti-affinity group x already has x2 there'}}}}]
    # b has no vCPU left, a and d no limit: the group's vCPUs left are unlimited.
    assert details['unplaced_by_cpu_group'] == {'skylake': {
        'domains': 1, 'needs': {'memory_mib': 4096, 'hugepages_2m': 0, 'hugepages_1g': 0, 'vcpus': 1},
        'destinations': 3, 'left': {'memory_mib': 2048 + 16384 + 16384, 'hugepages_2m': 0, 'hugepages_1g': 0, 'vcpus': None}}}


def test_infeasible_after_larger_domains_says_so():
    hosts = [host('src'), host('a', memory=5000)]
    with pytest.raises(PlanningError) as caught:
        plan_evacuation(hosts, [domain('v1', 'src', 4096), domain('v2', 'src', 2048)], ['src'])
    assert caught.value.details['unplaced'][0]['reasons'] == {'memory': {'hosts': 1, 'examples': {
        'a': 'needs 2048 MiB of memory, 904 left after larger domains (5000 before the plan)'}}}
    assert caught.value.details['placed'] == {'v1': 'a'}


def test_infeasible_explanation_is_bounded():
    # 30 domains fit on none of 40 hosts: the first few are explained, every one is counted.
    targets = [host('h%02d' % i, memory=1024, group='default' if i % 4 else 'other', vcpus=8) for i in range(40)]
    hosts = [host('src', memory=1 << 20)] + targets
    domains = [domain('v%02d' % i, 'src', 4096, vcpus=2) for i in range(30)]
    with pytest.raises(PlanningError) as caught:
        plan_evacuation(hosts, domains, ['src'])
    details = caught.value.details
    assert details['unplaced_count'] == 30
    assert [entry['domain'] for entry in details['unplaced']] == ['v%02d' % i for i in range(DOMAINS_EXPLAINED)]
    for entry in details['unplaced']:
        assert entry['reasons'] == {
            'cpu_group': {'hosts': 10, 'examples': {'h00': 'CPU group other, domain needs default',
                                                    'h04': 'CPU group other, domain needs default',
                                                    'h08': 'CPU group other, domain needs default'}},
            'memory': {'hosts': 30, 'examples': dict(('h%02d' % i, 'needs 4096 MiB of memory, 1024 left') for i in (1, 2, 3))}}
    assert details['unplaced_by_cpu_group'] == {'default': {
        'domains': 30, 'needs': {'memory_mib': 30 * 4096, 'hugepages_2m': 0, 'hugepages_1g': 0, 'vcpus': 60},
        'destinations': 30, 'left': {'memory_mib': 30 * 1024, 'hugepages_2m': 0, 'hugepages_1g': 0, 'vcpus': 30 * 8}}}
    message = caught.value.message
    assert message.count('fits nowhere') == DOMAINS_IN_MESSAGE
    assert '27 more domain(s) (17 of them in the details)' in message
    assert message.endswith('By CPU group: default: 30 domain(s) need 122880 MiB of memory, 60 vCPUs; '
                            'its 30 destination host(s) have 30720 MiB of memory, 240 vCPUs left')


@pytest.mark.parametrize('policy', ['fail', 'skip_host', 'shutdown_and_restart'])
def test_non_migratable_policies(policy):
    hosts = [host('h1'), host('h2'), host('h3')]
    domains = [domain('pinned', 'h1', pinned=True), domain('free1', 'h1'), domain('free2', 'h2'),
               domain('frozen', 'h2', migratable=False)]
    if policy == 'fail':
        with pytest.raises(PlanningError, match=r'frozen \(marked not migratable\); pinned \(pinned to host h1\)'):
            plan_evacuation(hosts, domains, ['h1', 'h2'], non_migratable_policy=policy)
        return
    plan = plan_evacuation(hosts, domains, ['h1', 'h2'], non_migratable_policy=policy)
    if policy == 'skip_host':
        assert plan['skipped_hosts'] == {'h1': ['pinned is pinned to host h1'], 'h2': ['frozen is marked not migratable']}
        assert plan['placement'] == {}
    else:
        assert plan['shutdown'] == [
            {'domain': 'frozen', 'host': 'h2', 'restart_on': 'h2', 'reason': 'marked not migratable'},
            {'domain': 'pinned', 'host': 'h1', 'restart_on': 'h1', 'reason': 'pinned to host h1'}]
        assert plan['placement'] == {'free1': 'h3', 'free2': 'h3'}


def test_hugepage_guest_on_unpatched_host_is_warned_about():
    plan = plan_evacuation([host('h1', mode='eager-split-only'), host('h2')], [domain('v', 'h1', backing='thp')], ['h1'])
    assert plan['waves'][0]['migrations'][0]['presplit'] is False
    assert plan['without_presplit'] == [{'domain': 'v', 'host': 'h1', 'backing': 'thp', 'kernel_mode': 'eager-split-only'}]
    plan = plan_evacuation([host('h1'), host('h2')], [domain('v', 'h1', backing='thp')], ['h1'])
    assert plan['waves'][0]['migrations'][0]['presplit'] is True
    assert plan['without_presplit'] == []


@pytest.mark.parametrize('hosts, domains, drain, match', [
    ([host('h1')], [], ['nope'], 'not in hosts: nope'),
    ([host('h1'), host('h1')], [], [], 'host h1 is listed twice'),
    ([host('h1')], [domain('v', 'elsewhere')], [], 'domains on hosts not in hosts: v'),
    ([host('h1')], [domain('v', 'h1', backing='bogus')], [], "backing 'bogus'"),
    ([host('h1', memory=-1)], [], [], 'must not be negative'),
    ([host('h1')], [domain('v', 'h1', memory=0)], [], 'memory_mib must be positive'),
])
def test_bad_input(hosts, domains, drain, match):
    with pytest.raises(PlanningError, match=match):
        plan_evacuation(hosts, domains, drain)


def test_detail_is_summary_or_full():
    with pytest.raises(PlanningError, match='detail must be one of summary, full'):
        plan_evacuation([host('h1')], [], [], detail='some')


# ------------------------------------------------------------------ property tests

GROUPS = ('g1', 'g1', 'g1', 'g2')
BACKING_CHOICES = ('none', 'thp', 'hugetlb-2M', 'hugetlb-1G')


@st.composite
def fleets(draw, balanced=False):
    """Small random fleets.  ``balanced``: one CPU group, memory-backed, no vCPU or affinity limits."""
    host_count = draw(st.integers(2, 8))
    hosts = []
    for index in range(host_count):
        hosts.append(host('h%d' % index,
                          memory=draw(st.integers(2, 96)) * 512,
                          group='g1' if balanced else draw(st.sampled_from(GROUPS)),
                          mode=draw(st.sampled_from(('patched', 'eager-split-only', 'none'))),
                          vcpus=None if balanced else draw(st.one_of(st.none(), st.integers(0, 48))),
                          pages_2m=draw(st.integers(0, 16)) * 512,
                          pages_1g=draw(st.integers(0, 16)),
                          bandwidth=draw(st.sampled_from((None, 100, 1000, 2500)))))
    domains = []
    for index in range(draw(st.integers(1, 20))):
        spec = domain('d%02d' % index, draw(st.sampled_from(hosts))['name'], draw(st.integers(1, 16)) * 512,
                      vcpus=draw(st.integers(1, 4)),
                      backing='none' if balanced else draw(st.sampled_from(BACKING_CHOICES)),
                      dirty_rate_mib_per_s=draw(st.sampled_from((0, 5, 50, 400, 3000))))
        if not balanced:
            spec['anti_affinity'] = draw(st.lists(st.sampled_from(('a', 'b', 'c', 'd', 'e')), max_size=2))
            spec['pinned'] = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        domains.append(spec)
    # Mostly the busiest host, as an operator would start; sometimes several.
    busiest = max(hosts, key=lambda h: (sum(1 for d in domains if d['host'] == h['name']), h['name']))['name']
    drain = draw(st.one_of(st.just([busiest]),
                           st.lists(st.sampled_from([h['name'] for h in hosts]), min_size=1, max_size=host_count - 1, unique=True)))
    limits = {
        'max_outgoing_per_host': draw(st.integers(1, 3)),
        'max_incoming_per_host': draw(st.integers(1, 3)),
        'max_parallel_per_cluster': draw(st.integers(1, 6)),
        'cluster_bandwidth_mib_per_s': draw(st.sampled_from((None, 150, 3000))),
        'migration_bandwidth_mib_per_s': draw(st.sampled_from((None, 80, 80))),
    }
    policy = draw(st.sampled_from(('skip_host', 'shutdown_and_restart', 'fail')))
    return hosts, domains, drain, limits, policy


def consumption(spec):
    """(resource, amount) the way an operator counts it: memory MiB, or pages of one size."""
    backing = spec.get('backing', 'none')
    if backing in HUGEPAGE_MIB:
        return backing, -(-spec['memory_mib'] // HUGEPAGE_MIB[backing])
    return 'memory', spec['memory_mib']


def capacity(spec, resource):
    return {'memory': spec['memory_free_mib'], 'hugetlb-2M': spec['hugepages_2m_free'],
            'hugetlb-1G': spec['hugepages_1g_free']}[resource]


def fits(domain_spec, host_spec, placed_specs, all_domains, host_of):
    """Independent check: does ``domain_spec`` fit on ``host_spec`` next to what was placed there?"""
    resource, amount = consumption(domain_spec)
    used = sum(consumption(d)[1] for d in placed_specs if consumption(d)[0] == resource)
    if used + amount > capacity(host_spec, resource):
        return False
    if host_spec['vcpus_free'] is not None and sum(d['vcpus'] for d in placed_specs) + domain_spec['vcpus'] > host_spec['vcpus_free']:
        return False
    groups = set(domain_spec.get('anti_affinity') or ())
    return not any(groups & set(other.get('anti_affinity') or ()) for other in all_domains
                   if host_of(other) == host_spec['name'] and other['name'] != domain_spec['name'])


def check_limits_at(starts, running, limits, bandwidth):
    """Concurrency and bandwidth limits hold for the migrations in ``running``."""
    assert len(running) <= limits['max_parallel_per_cluster']
    for key, limit in (('source', limits['max_outgoing_per_host']), ('destination', limits['max_incoming_per_host'])):
        counts = {}
        for migration in running:
            counts[migration[key]] = counts.get(migration[key], 0) + 1
        assert max(counts.values() or [0]) <= limit, (starts, key, counts)
    link_use = {}
    for migration in running:
        for name in (migration['source'], migration['destination']):
            link_use[name] = link_use.get(name, 0) + migration['bandwidth_mib_per_s']
    for name, used in link_use.items():
        assert used <= bandwidth[name] + 0.01, (name, used)
    if limits['cluster_bandwidth_mib_per_s']:
        assert sum(m['bandwidth_mib_per_s'] for m in running) <= limits['cluster_bandwidth_mib_per_s'] + 0.01
    if limits['migration_bandwidth_mib_per_s']:
        assert all(m['bandwidth_mib_per_s'] <= limits['migration_bandwidth_mib_per_s'] + EPSILON for m in running)


def plan_or_error(hosts, domains, drain, limits, policy):
    try:
        return plan_evacuation(hosts, domains, drain, limits=limits, non_migratable_policy=policy), None
    except PlanningError as error:
        return None, error


@PROPERTY
@given(fleets())
def test_every_domain_is_placed_or_explained(fleet):
    hosts, domains, drain, limits, policy = fleet
    plan, error = plan_or_error(hosts, domains, drain, limits, policy)
    by_name = dict((h['name'], h) for h in hosts)
    draining = [d for d in domains if d['host'] in drain]
    if error is not None:
        assert error.message
        if 'not_migratable' in error.details:
            assert policy == 'fail'
            assert sorted(e['domain'] for e in error.details['not_migratable']) == sorted(d['name'] for d in draining if d.get('pinned'))
            return
        if 'unplaced' not in error.details:
            # A domain no migration method can move: its name is in the message.
            assert error.details['domain'] in error.message
            return
        placed = error.details['placed']
        destinations = [h for h in hosts if h['name'] not in drain]

        def host_of(spec):
            return placed.get(spec['name'], spec['host'] if spec['name'] not in placed and spec['host'] not in drain else None)

        explained = error.details['unplaced']
        assert len(explained) == min(error.details['unplaced_count'], DOMAINS_EXPLAINED)
        assert sum(group['domains'] for group in error.details['unplaced_by_cpu_group'].values()) == error.details['unplaced_count']
        for entry in explained[:DOMAINS_IN_MESSAGE]:
            assert entry['domain'] in error.message
        for entry in explained:
            assert sum(reason['hosts'] for reason in entry['reasons'].values()) == len(destinations)
            spec = next(d for d in domains if d['name'] == entry['domain'])
            group = by_name[spec['host']]['cpu_group']
            for kind, reason in entry['reasons'].items():
                assert len(reason['examples']) == min(reason['hosts'], EXAMPLE_HOSTS)
                for name in reason['examples']:
                    assert (kind == 'cpu_group') == (by_name[name]['cpu_group'] != group), (entry, name)
            # Whatever the reasons say, no destination of its CPU group can take it.
            for target in destinations:
                if target['cpu_group'] == group:
                    here = [d for d in domains if host_of(d) == target['name'] and d['name'] in placed]
                    assert not fits(spec, target, here, domains, host_of), (entry, target)
        return
    skipped = set(plan['skipped_hosts'])
    shut = set(e['domain'] for e in plan['shutdown'])
    expected = sorted(d['name'] for d in draining if d['host'] not in skipped and d['name'] not in shut)
    assert sorted(plan['placement']) == expected
    assert sorted(m['domain'] for m in migrations_of(plan)) == expected
    for spec in draining:
        if spec.get('pinned'):
            assert spec['name'] in shut or spec['host'] in skipped
    for name, target in plan['placement'].items():
        spec = next(d for d in domains if d['name'] == name)
        assert target not in drain
        assert by_name[target]['cpu_group'] == by_name[spec['host']]['cpu_group']


@PROPERTY
@given(fleets())
def test_capacity_and_anti_affinity_hold_at_every_wave(fleet):
    hosts, domains, drain, limits, policy = fleet
    plan, _error = plan_or_error(hosts, domains, drain, limits, policy)
    if plan is None:
        return
    by_name = dict((h['name'], h) for h in hosts)
    specs = dict((d['name'], d) for d in domains)
    received = {}
    for wave in plan['waves']:
        for migration in wave['migrations']:
            received.setdefault(migration['destination'], []).append(specs[migration['domain']])
        for target, incoming in received.items():
            for resource in ('memory', 'hugetlb-2M', 'hugetlb-1G'):
                used = sum(consumption(d)[1] for d in incoming if consumption(d)[0] == resource)
                assert used <= capacity(by_name[target], resource), (wave['wave'], target, resource)
            if by_name[target]['vcpus_free'] is not None:
                assert sum(d['vcpus'] for d in incoming) <= by_name[target]['vcpus_free']
    final_host = dict((d['name'], plan['placement'].get(d['name'], d['host'])) for d in domains)
    for name, target in plan['placement'].items():
        for group in specs[name].get('anti_affinity') or ():
            neighbours = [d['name'] for d in domains
                          if d['name'] != name and final_host[d['name']] == target and group in (d.get('anti_affinity') or ())]
            assert neighbours == [], (name, target, group)


@PROPERTY
@given(fleets(), st.randoms(use_true_random=False))
def test_limits_hold_in_the_plan_and_under_any_real_durations(fleet, rng):
    hosts, domains, drain, limits, policy = fleet
    plan, _error = plan_or_error(hosts, domains, drain, limits, policy)
    if plan is None:
        return
    limits = dict(DEFAULT_LIMITS, **dict((k, v) for k, v in limits.items() if v is not None))
    bandwidth = dict((h['name'], h.get('bandwidth_mib_per_s') or limits['host_bandwidth_mib_per_s']) for h in hosts)
    migrations = migrations_of(plan)
    # As planned: at each wave start, what is in flight.
    for wave in plan['waves']:
        running = [m for m in migrations if m['start_s'] <= wave['start_s'] < m['end_s']]
        check_limits_at(wave['start_s'], running, limits, bandwidth)
        assert all(m['end_s'] <= wave['start_s'] for m in migrations if m['domain'] in wave['wait_for'])
    # As executed: real durations differ from the plan; a wave starts once its wait_for is done.
    actual_end = {}
    clock = 0.0
    for wave in plan['waves']:
        clock = max([clock] + [actual_end[name] for name in wave['wait_for']])
        running = [m for m in migrations if m['domain'] in actual_end and actual_end[m['domain']] > clock] + wave['migrations']
        check_limits_at(clock, running, limits, bandwidth)
        for migration in wave['migrations']:
            actual_end[migration['domain']] = clock + migration['duration_s'] * rng.uniform(0.3, 3.0) + EPSILON
    summary = plan['summary']
    assert summary['makespan_s'] >= summary['lower_bound_s'] - 0.002 >= summary['bandwidth_lower_bound_s'] - 0.004
    for migration in migrations:
        assert migration['end_s'] == pytest.approx(migration['start_s'] + migration['duration_s'], abs=0.002)
        assert migration['mode'] in ('pre_copy', 'auto_converge', 'post_copy') and migration['reason']


@PROPERTY
@given(fleets(balanced=True))
def test_balance_bound(fleet):
    """Stated bound: a host that received domains ends with at most its largest incoming domain's
    memory less free than any other destination (one CPU group, memory-backed, no other limit)."""
    hosts, domains, drain, limits, _policy = fleet
    plan, _error = plan_or_error(hosts, domains, drain, limits, 'fail')
    if plan is None:
        return
    specs = dict((d['name'], d) for d in domains)
    free_after = dict((h['name'], h['memory_free_mib']) for h in hosts if h['name'] not in drain)
    for name, target in plan['placement'].items():
        free_after[target] -= specs[name]['memory_mib']
    for target, summary in plan['destinations'].items():
        assert summary['memory_free_mib_after'] == free_after[target]
        largest = max(specs[name]['memory_mib'] for name in summary['incoming'])
        for other, other_free in free_after.items():
            assert other_free - free_after[target] <= largest, (target, other)


# PROPERTY's settings, fewer examples.
@settings(PROPERTY, max_examples=30)
@given(fleets(), st.randoms(use_true_random=False))
def test_same_input_same_plan_whatever_the_order(fleet, rng):
    hosts, domains, drain, limits, policy = fleet
    first = plan_or_error(hosts, domains, drain, limits, policy)
    shuffled_hosts, shuffled_domains, shuffled_drain = list(hosts), list(domains), list(drain)
    for items in (shuffled_hosts, shuffled_domains, shuffled_drain):
        rng.shuffle(items)
    second = plan_or_error(shuffled_hosts, shuffled_domains, shuffled_drain, limits, policy)
    if first[0] is None:
        assert (first[1].message, first[1].details) == (second[1].message, second[1].details)
    else:
        assert first[0] == second[0]


# PROPERTY's settings, fewer examples.
@settings(PROPERTY, max_examples=50)
@given(fleets())
def test_summary_is_the_full_plan_without_its_detail(fleet):
    hosts, domains, drain, limits, policy = fleet
    try:
        full = plan_evacuation(hosts, domains, drain, limits=limits, non_migratable_policy=policy)
    except PlanningError as error:
        with pytest.raises(PlanningError) as caught:
            plan_evacuation(hosts, domains, drain, limits=limits, non_migratable_policy=policy, detail='summary')
        assert caught.value.message == error.message
        assert caught.value.details == dict((key, value) for key, value in error.details.items() if key != 'placed')
        return
    summary = plan_evacuation(hosts, domains, drain, limits=limits, non_migratable_policy=policy, detail='summary')
    assert summary == dict((key, full[key]) for key in ('summary', 'shutdown', 'skipped_hosts'))
    assert (full['summary']['waves'], full['summary']['without_presplit']) == (len(full['waves']), len(full['without_presplit']))


def test_large_random_fleet_plans_within_limits():
    rng = random.Random(7)
    hosts = [host('h%03d' % i, memory=rng.choice((65536, 131072))) for i in range(60)]
    domains = [domain('v%04d' % i, rng.choice(hosts)['name'], rng.choice((1024, 2048, 8192)),
                      dirty_rate_mib_per_s=rng.choice((0, 20, 200))) for i in range(600)]
    plan = plan_evacuation(hosts, domains, ['h%03d' % i for i in range(6)], limits={'max_parallel_per_cluster': 4})
    assert plan['summary']['migrations'] == sum(1 for d in domains if d['host'] < 'h006')
    assert max(len(w['migrations']) for w in plan['waves']) <= 4


# ------------------------------------------------------------------ local disks (copy_storage)

def test_disk_copy_is_sent_before_the_memory():
    memory_only = predict_migration(1000, 0, 100, 300)
    with_disk = predict_migration(1000, 0, 100, 300, disk_mib=500)
    assert with_disk['transferred_mib'] == pytest.approx(memory_only['transferred_mib'] + 500)
    assert with_disk['duration_s'] == pytest.approx(memory_only['duration_s'] + 5.0)
    assert (with_disk['mode'], with_disk['downtime_ms']) == (memory_only['mode'], memory_only['downtime_ms'])


@pytest.mark.parametrize('copy_storage, copied', [('all', 3000), ('top', 500)])
def test_copy_storage_counts_the_disks_it_copies(copy_storage, copied):
    hosts = [host('h1'), host('h2')]
    domains = [domain('d', 'h1', memory=1000, local_disk_mib=3000, local_disk_top_mib=500)]
    plan = plan_evacuation(hosts, domains, ['h1'], limits={'host_bandwidth_mib_per_s': 100}, copy_storage=copy_storage)
    [migration] = migrations_of(plan)
    assert migration['disk_copy_mib'] == copied
    assert migration['transferred_mib'] == pytest.approx(1000 + copied)
    assert migration['duration_s'] == pytest.approx((1000 + copied) / 100.0)
    assert plan['summary']['transferred_mib'] == pytest.approx(1000 + copied)


def test_without_copy_storage_a_domain_on_local_disks_cannot_move():
    hosts = [host('h1'), host('h2')]
    domains = [domain('d', 'h1', local_disk_mib=3000, local_disk_top_mib=500), domain('shared', 'h1')]
    with pytest.raises(PlanningError) as error:
        plan_evacuation(hosts, domains, ['h1'])
    assert 'd (on local disks (3000 MiB) and copy_storage is none)' in error.value.message
    assert error.value.details['not_migratable'] == [
        {'domain': 'd', 'reason': 'on local disks (3000 MiB) and copy_storage is none'}]
    plan = plan_evacuation(hosts, domains, ['h1'], non_migratable_policy='shutdown_and_restart')
    assert [entry['domain'] for entry in plan['shutdown']] == ['d']
    assert [m['disk_copy_mib'] for m in migrations_of(plan)] == [0]


@pytest.mark.parametrize('spec, message', [
    ({'local_disk_mib': -1}, 'local_disk_mib must not be negative'),
    ({'local_disk_top_mib': -5}, 'local_disk_top_mib must not be negative'),
])
def test_disk_figures_are_checked(spec, message):
    with pytest.raises(PlanningError, match=message):
        plan_evacuation([host('h1'), host('h2')], [domain('d', 'h1', **spec)], ['h1'], copy_storage='all')


def test_unknown_copy_storage_is_refused():
    with pytest.raises(PlanningError, match='copy_storage must be one of none, all, top'):
        plan_evacuation([host('h1'), host('h2')], [domain('d', 'h1')], ['h1'], copy_storage='some')
