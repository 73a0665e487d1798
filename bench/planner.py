"""Benchmark of the evacuation planner on synthetic fleets (not a test: prints figures).

Fleets of 1k, 10k and 100k VMs spread over 5k hosts; a share of the hosts is
drained.  For each fleet: planning time (wall and CPU), planned makespan, the
bandwidth lower bound (bytes over the busiest link) and their ratio, and the
full lower bound (also the longest single migration, the cluster slots and the
migrations a host's slots force to run one after another) and that ratio.
Goals (issue 5): 100k VMs planned in <= 2 s, makespan <= 1.05 x the bound.

    .venv/bin/python bench/planner.py [--hosts 5000] [--drain-share 0.1] [--seed 1]
"""

import argparse
import os
import random
import sys
import time

# The planner's files import each other by their collection path: the checkout is
# ansible_collections.presplit.kvm through the link that make collection-link makes.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, 'build', 'collections')
LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'presplit', 'kvm')
if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
sys.path.insert(0, COLLECTIONS)
from ansible_collections.presplit.kvm.plugins.module_utils.evacuation_planner import plan_evacuation  # noqa: E402

# (memory MiB, vCPUs, weight): a typical cloud flavour mix.
FLAVOURS = [(2048, 1, 20), (4096, 2, 25), (8192, 4, 25), (16384, 8, 15), (32768, 16, 10), (65536, 32, 5)]
BACKINGS = [('none', 50), ('thp', 30), ('hugetlb-2M', 15), ('hugetlb-1G', 5)]


def synthetic_fleet(vm_count, host_count, drain_share, rng):
    hosts = []
    for index in range(host_count):
        hosts.append({
            'name': 'hv%05d' % index,
            'memory_free_mib': rng.choice([256, 384, 512]) * 1024,
            'hugepages_2m_free': rng.choice([16384, 32768, 65536]),
            'hugepages_1g_free': rng.choice([32, 64, 128]),
            'vcpus_free': rng.choice([64, 96, 128]),
            'cpu_group': 'group%d' % (index % 4),
            'kernel_mode': rng.choice(['patched', 'patched', 'eager-split-only', 'none']),
        })
    flavours = [f[:2] for f in FLAVOURS]
    flavour_weights = [f[2] for f in FLAVOURS]
    backings = [b[0] for b in BACKINGS]
    backing_weights = [b[1] for b in BACKINGS]
    domains = []
    for index in range(vm_count):
        memory, vcpus = rng.choices(flavours, flavour_weights)[0]
        domain = {
            'name': 'vm%06d' % index,
            'host': hosts[rng.randrange(host_count)]['name'],
            'memory_mib': memory,
            'vcpus': vcpus,
            'backing': rng.choices(backings, backing_weights)[0],
            # Most guests are quiet; a few write hard.
            'dirty_rate_mib_per_s': round(rng.expovariate(1 / 40.0), 1),
        }
        if rng.random() < 0.1:
            domain['anti_affinity'] = ['app%d' % rng.randrange(vm_count // 10 + 1)]
        domains.append(domain)
    drain = sorted(rng.sample([h['name'] for h in hosts], max(1, int(host_count * drain_share))))
    return hosts, domains, drain


def run(vm_count, host_count, drain_share, limits, seed):
    rng = random.Random(seed)
    hosts, domains, drain = synthetic_fleet(vm_count, host_count, drain_share, rng)
    # Wall time on a shared machine includes other people's work; CPU time is the planner's own.
    started, started_cpu = time.perf_counter(), time.process_time()
    plan = plan_evacuation(hosts, domains, drain, limits=limits, max_downtime_ms=300)
    elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    summary = plan['summary']
    print('%7d VMs %5d hosts %4d drained | %6d migrations %6d waves | plan %5.2f s wall %5.2f s CPU | makespan %8.1f s'
          ' | bandwidth bound %8.1f s | ratio %.3f | full lower bound %8.1f s | ratio %.3f | modes %s' % (
              vm_count, host_count, len(drain), summary['migrations'], summary['waves'], elapsed, elapsed_cpu,
              summary['makespan_s'], summary['bandwidth_lower_bound_s'],
              summary['makespan_over_bandwidth_bound'] or 0.0, summary['lower_bound_s'],
              summary['makespan_s'] / summary['lower_bound_s'] if summary['lower_bound_s'] else 0.0, summary['modes']))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hosts', type=int, default=5000)
    parser.add_argument('--drain-share', type=float, default=0.1)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args()
    scenarios = [
        ('hosts are the bottleneck (2 out / 2 in per host, 10 GbE, no cluster cap)',
         {'max_outgoing_per_host': 2, 'max_incoming_per_host': 2, 'max_parallel_per_cluster': 100000}),
        ('cluster is the bottleneck (100 in flight, 40 GiB/s aggregate)',
         {'max_outgoing_per_host': 2, 'max_incoming_per_host': 2, 'max_parallel_per_cluster': 100,
          'cluster_bandwidth_mib_per_s': 40960}),
        ('one stream carries 700 MiB/s: 2 per 10 GbE link needed, no cluster cap',
         {'max_outgoing_per_host': 2, 'max_incoming_per_host': 2, 'max_parallel_per_cluster': 100000,
          'migration_bandwidth_mib_per_s': 700}),
    ]
    for title, limits in scenarios:
        print('== %s' % title)
        for vm_count in (1000, 10000, 100000):
            run(vm_count, args.hosts, args.drain_share, limits, args.seed)


if __name__ == '__main__':
    main()
