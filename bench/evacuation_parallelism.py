"""Benchmark: evacuating one lab host with 1, 2 and 4 migrations at a time.

On a lab of its own (presplit.kvm.lab, default lab_name "benchpar", 3 hosts) it starts
--guests guests on h1 and evacuates them to h2 and h3 with the ready playbook
(presplit.kvm.migrate, i.e. the live_migration role with its pre-checks, pre-split,
waves and post-checks), once per parallelism: at most P migrations leave h1 at once and
at most ceil(P/2) arrive on each destination.  Between two evacuations the guests go
back to h1 (not timed).  Rounds alternate the order (1,2,4 then 4,2,1, ...) so that no
parallelism always runs first on a machine that warms up or gets busier.

Prints each evacuation's wall time, the median per parallelism and the ratios of the
medians to the one of parallelism 1, measured side by side in one run.  Lab guests are
TCG guests on a 2-core machine: the ratios show what the role's parallelism buys when
the hosts, not the network, are the bottleneck; on real hosts migrations are bound by
the link and the ratios differ.  Not a test: nothing here asserts a timing.

    .venv/bin/python bench/evacuation_parallelism.py [--guests 8] [--rounds 2] [--keep-lab]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lab"))
import lab_control  # noqa: E402  (the lab driver the lab tests use)

PARALLELISMS = (1, 2, 4)
DESTINATIONS = ["h2", "h3"]


def guest_names(count):
    return ["par%d" % index for index in range(1, count + 1)]


def migrate(lab_name, source, domains, destinations, parallel):
    """Run presplit.kvm.migrate on the lab; its wall time in seconds."""
    started = time.monotonic()
    lab_control.run_playbook(
        "migrate", lab_name, with_inventory=True,
        migrate_source=source, migrate_domains=domains, migrate_destinations=destinations,
        live_migration_max_parallel_per_source=parallel,
        live_migration_max_parallel_per_destination=-(-parallel // len(destinations)),
        # The lab's TCG guests cannot be pre-split; say nothing about it on every run.
        live_migration_presplit_on_unsupported="skip")
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab-name", default="benchpar")
    parser.add_argument("--guests", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory-mib", type=int, default=96)
    parser.add_argument("--dirty-rate", type=int, default=1, help="MiB/s each guest rewrites (0 = idle)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")
    options = parser.parse_args()

    domains = guest_names(options.guests)
    guests = [{"name": name, "host": "h1", "memory_mib": options.memory_mib, "dirty_rate_mib_s": options.dirty_rate}
              for name in domains]
    started = time.monotonic()
    lab_control.lab_up(options.lab_name, hosts=3, guests=guests)
    print("lab bring-up with %d guests on h1: %.1f s" % (len(domains), time.monotonic() - started), flush=True)
    walls = {parallel: [] for parallel in PARALLELISMS}
    try:
        for round_index in range(options.rounds):
            order = PARALLELISMS if round_index % 2 == 0 else tuple(reversed(PARALLELISMS))
            for parallel in order:
                seconds = migrate(options.lab_name, "h1", domains, DESTINATIONS, parallel)
                walls[parallel].append(seconds)
                print("round %d  parallelism %d: evacuated %d guests in %.2f s"
                      % (round_index + 1, parallel, len(domains), seconds), flush=True)
                lab_control.bring_back(options.lab_name, domains, DESTINATIONS)
        base = statistics.median(walls[1])
        print()
        print("parallelism  median wall s  ratio to parallelism 1   (%d guests, %d MiB, %d MiB/s dirty, %d rounds)"
              % (len(domains), options.memory_mib, options.dirty_rate, options.rounds))
        for parallel in PARALLELISMS:
            median = statistics.median(walls[parallel])
            print("%11d  %13.2f  %22.3f" % (parallel, median, median / base))
        print(json.dumps({"walls_s": {str(p): [round(s, 3) for s in walls[p]] for p in PARALLELISMS}}))
    finally:
        if not options.keep_lab:
            lab_control.lab_down(options.lab_name)


if __name__ == "__main__":
    main()
