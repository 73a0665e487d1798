"""Benchmark: does the executor keep its plan?  Planned against actual makespan of an evacuation.

On a lab of its own (presplit.kvm.lab, default lab_name "benchexec", 3 hosts) it starts
--guests guests on h1 whose workloads fill --buffer-mib of their memory with data (so a
migration moves that much, not zero pages), and evacuates h1 with
presplit.kvm.rolling_maintenance as an operator would (peers h2 and h3, a maintenance
step that does nothing, guests left where they went): placement_facts, evacuation_plan
with a per-migration bandwidth cap of --bandwidth MiB/s (each migration takes at least
--buffer-mib / --bandwidth seconds), then the live_migration role running the plan's
waves with their wait_for, and the run report (migration_report, given the plan).

Prints, from that report, per migration its planned and measured duration and their
ratio, and for the run the planned makespan beside the actual one (first migration start
to last migration end, as the planner counts it: without the pre-split) and the report's
wall time (which also counts the pre-split phase), with the ratio actual / planned
(goal: at most 1.15).  With --rounds N the guests are brought back to h1 between rounds
(not timed) and each round is a new run id.  Lab guests are TCG guests on a shared
2-core machine: the migrations' own speed is the lab's, the figure to watch is what the
executor adds between them.  Not a test: nothing here asserts a timing.

    .venv/bin/python bench/executor_vs_plan.py [--guests 4] [--memory-mib 256] [--buffer-mib 200] [--bandwidth 8] [--rounds 1] [--keep-lab]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "lab"))
import lab_control  # noqa: E402  (the lab driver the lab tests use)

RATIO_GOAL = 1.15
PEERS = ["h2", "h3"]
# The maintenance step: the bench times the evacuation, not a maintenance.
NOTHING_STEP = """---
- name: Nothing to maintain
  ansible.builtin.debug:
    msg: the evacuation is what is measured
"""


def guest_names(count):
    return ["exec%d" % index for index in range(1, count + 1)]


def evacuate(lab_name, run_id, options, step_file, report_dir):
    """presplit.kvm.rolling_maintenance over h1; the evacuation's report record."""
    lab_control.run_playbook(
        "rolling_maintenance", lab_name, with_inventory=True,
        rolling_hosts="h1", rolling_maintenance_run_id=run_id, rolling_maintenance_peers=PEERS,
        rolling_maintenance_step_tasks=step_file, rolling_maintenance_expected_kernel_mode="unchanged",
        rolling_maintenance_return_guests=False, rolling_maintenance_report_dir=report_dir,
        rolling_maintenance_limits={"migration_bandwidth_mib_per_s": options.bandwidth,
                                    "max_outgoing_per_host": options.parallel,
                                    "max_incoming_per_host": options.parallel},
        # The lab's TCG guests cannot be pre-split; say nothing about it on every run.
        rolling_maintenance_presplit_on_unsupported="skip")
    with open(os.path.join(report_dir, "rolling-%s-h1-evacuate.json" % run_id)) as handle:
        return json.load(handle)


def migration_span(record):
    """First migration start to last migration end over the record's migrations, in seconds
    (the planner's makespan leaves the pre-split out)."""
    edges = []
    for entry in record["migrations"]:
        phases = entry["phases"]
        timed = [phases[name] for name in ("setup", "precopy", "downtime") if phases.get(name)]
        if timed:
            edges += [timed[0][0], timed[-1][1]]
    return max(edges) - min(edges) if edges else None


def shown(value, decimals):
    """value with that many decimals, or "-" when it is unknown (None)."""
    return "-" if value is None else "%.*f" % (decimals, value)


def print_round(index, record):
    summary = record["summary"]
    print("round %d: %d migrated, %d failed" % (index, summary["migrated"], summary["failed"]))
    print("  %-8s %-4s %-12s %-6s %11s %11s %9s" % ("domain", "wave", "mode", "to", "planned s", "measured s", "ratio"))
    for row in record["plan_vs_actual"] or []:
        print("  %-8s %-4s %-12s %-6s %11s %11s %9s" % (
            row["domain"], row["wave"], row["mode"], row["destination"],
            shown(row["predicted_s"], 1), shown(row["measured_s"], 1), shown(row["measured_over_predicted"], 3)))
    planned = summary.get("planned_makespan_s")
    actual = migration_span(record)
    ratio = actual / planned if planned and actual is not None else None
    print("  makespan: planned %s s, actual %s s (first migration start to last end), report wall time %s s "
          "(with the pre-split phase) | actual / planned %s [%s]" % (
              shown(planned, 1), shown(actual, 1), shown(summary.get("wall_time_s"), 1), shown(ratio, 3),
              "ok" if ratio is not None and ratio <= RATIO_GOAL else "OVER"), flush=True)
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab-name", default="benchexec")
    parser.add_argument("--guests", type=int, default=4)
    parser.add_argument("--memory-mib", type=int, default=256)
    parser.add_argument("--buffer-mib", type=int, default=200, help="data each guest's workload keeps in memory")
    parser.add_argument("--bandwidth", type=int, default=8, help="MiB/s cap of each migration")
    parser.add_argument("--parallel", type=int, default=1, help="migrations per host at once (out of h1, into each peer)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")
    options = parser.parse_args()

    domains = guest_names(options.guests)
    guests = [{"name": name, "host": "h1", "memory_mib": options.memory_mib, "buffer_mib": options.buffer_mib}
              for name in domains]
    started = time.monotonic()
    lab_control.lab_up(options.lab_name, hosts=3, guests=guests)
    print("lab bring-up with %d guests on h1 (%d MiB, %d MiB of data each): %.1f s; cap %d MiB/s per migration"
          % (len(domains), options.memory_mib, options.buffer_mib, time.monotonic() - started, options.bandwidth),
          flush=True)
    ratios = []
    try:
        with tempfile.TemporaryDirectory(dir="/tmp") as work:
            step_file = os.path.join(work, "nothing.yml")
            with open(step_file, "w") as handle:
                handle.write(NOTHING_STEP)
            for index in range(1, options.rounds + 1):
                if index > 1:
                    lab_control.bring_back(options.lab_name, domains, PEERS)
                record = evacuate(options.lab_name, "bench-exec-%d-%d" % (int(time.time()), index), options,
                                  step_file, work)
                ratios.append(print_round(index, record))
        known = [ratio for ratio in ratios if ratio is not None]
        if known:
            print("actual / planned makespan over %d round(s): median %.3f, largest %.3f (goal <= %.2f)"
                  % (len(known), statistics.median(known), max(known), RATIO_GOAL))
    finally:
        if not options.keep_lab:
            lab_control.lab_down(options.lab_name)


if __name__ == "__main__":
    main()
