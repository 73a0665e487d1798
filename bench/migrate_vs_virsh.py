"""Benchmark: presplit.kvm.live_migrate against bare `virsh migrate --live`.

On a lab of its own (presplit.kvm.lab, default lab_name "bench") it starts one idle
guest on h1 and moves it back and forth between h1 and h2, alternating the module and
virsh, for --pairs pairs per mode.  Both run inside the source host exactly as an
operator's command would (`lab-exec.sh LAB HOST ...`); the module is executed the way
Ansible executes it on a host (system python3, its arguments file), so the figure is the
module's own overhead (start-up, connections, checks, polling), not Ansible's ssh round
trips.  Both migrate with the same flags: live, persistent, undefine source, and in each
mode (--modes) the same control path: p2p (the source libvirtd connects to the
destination: the module's default, `virsh --p2p`) and direct (the module or virsh drives
the migration over its own connection to the destination: peer_to_peer=false, virsh
without --p2p).  A first round trip of each, not timed, lets each host's libvirtd probe
QEMU once.

Prints the lab bring-up time, per pair the wall times, the ratio module/virsh and the
module's overhead in seconds (module minus virsh: goal <= 0.3 s in every pair) with where
the module spent it (its own step timings, timings_s, and the Python start-up and
imports before them), then per mode the medians (ratio goal <= 1.05).  Not a test:
nothing here asserts a timing.

    .venv/bin/python bench/migrate_vs_virsh.py [--lab-name bench] [--pairs 10] [--modes p2p,direct] [--keep-lab]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, "build", "collections")
# ansible.module_utils for the host's python3, which Ansible would ship inside the module.
ANSIBLE_SITE = os.path.dirname(os.path.dirname(__import__("ansible").__file__))
LAB_EXEC = os.path.join(REPO, "roles", "lab", "files", "lab-exec.sh")
ANSIBLE_PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
MODULE = "ansible_collections.presplit.kvm.plugins.modules.live_migrate"
GUEST = "bench1"
# The module's steps (its timings_s) in their order, and what runs before them.
STEPS = ("startup", "source", "destination_wait", "checks", "mappings", "migration", "after")
OVERHEAD_GOAL_S = 0.3
# Single-threaded TCG: the lab's setting for guests that must survive many migrations.
GUEST_SPEC = {"name": GUEST, "host": "h1", "memory_mib": 128, "tcg_thread": "single"}


def run(cmd, **kwargs):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, **kwargs)
    if proc.returncode != 0:
        sys.exit("command failed (%d): %s\n%s%s"
                 % (proc.returncode, " ".join(cmd), proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc.stdout


def playbook(name, lab_name, *extra):
    run([ANSIBLE_PLAYBOOK, "presplit.kvm." + name, "-e", "lab_name=" + lab_name] + list(extra))


def timed(cmd):
    started = time.monotonic()
    out = run(cmd)
    return time.monotonic() - started, out


def migrate_with_module(lab_name, source, dest, args_dir, peer_to_peer=True):
    args_file = os.path.join(args_dir, "args.json")
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"domain": GUEST, "destination_host": dest, "peer_to_peer": peer_to_peer}},
                  handle)
    seconds, out = timed([LAB_EXEC, lab_name, source, "env", "PYTHONPATH=%s:%s" % (COLLECTIONS, ANSIBLE_SITE),
                          "/usr/bin/python3", "-m", MODULE, args_file])
    result = json.loads(out)
    if result.get("failed") or not result.get("changed"):
        sys.exit("module run did not migrate: %s" % result.get("msg", result))
    steps = dict(result["timings_s"])
    # Whatever the steps do not cover: Python's start-up, the imports, argument parsing, the result's output.
    steps["startup"] = round(seconds - sum(steps.values()), 3)
    return seconds, steps


def migrate_with_virsh(lab_name, source, dest, peer_to_peer=True):
    command = [LAB_EXEC, lab_name, source, "virsh", "-c", "qemu:///system", "migrate", "--live"]
    command += ["--p2p"] if peer_to_peer else []
    command += ["--persistent", "--undefinesource", GUEST, "qemu+ssh://%s/system" % dest]
    return timed(command)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab-name", default="bench")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--modes", default="p2p,direct",
                        help="comma-separated: p2p (the source libvirtd connects to the destination: the module's "
                             "default, virsh --p2p) and direct (the module or virsh drives the migration over its own "
                             "connection to the destination: peer_to_peer=false, virsh without --p2p)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")
    options = parser.parse_args()
    options.modes = options.modes.split(",")
    if not options.modes or not set(options.modes) <= {"p2p", "direct"}:
        parser.error("--modes takes p2p and/or direct")

    started = time.monotonic()
    playbook("lab_up", options.lab_name)
    bring_up_s = time.monotonic() - started
    print("lab bring-up (lab_up, 3 hosts): %.1f s" % bring_up_s, flush=True)
    try:
        started = time.monotonic()
        playbook("lab_guests", options.lab_name, "-e",
                 json.dumps({"lab_guests": [GUEST_SPEC]}))
        print("guest start (lab_guests): %.1f s" % (time.monotonic() - started), flush=True)
        hosts = ["h1", "h2"]

        def migrate(tool, mode):
            """Move the guest to the other host with tool in mode: (seconds, module's steps or None)."""
            source, dest = hosts
            hosts.reverse()
            if tool == "module":
                return migrate_with_module(options.lab_name, source, dest, args_dir, mode == "p2p")
            return migrate_with_virsh(options.lab_name, source, dest, mode == "p2p"), None

        pairs = dict((mode, []) for mode in options.modes)
        with tempfile.TemporaryDirectory(dir="/tmp") as args_dir:
            # Not timed: each host's libvirtd probes QEMU's capabilities on its first incoming
            # migration (or the module's CPU check), which would land on whichever tool came first.
            for tool in ("module", "virsh"):
                migrate(tool, options.modes[0])
            for index in range(options.pairs):
                for mode in options.modes:
                    # Alternate which tool goes first, so neither always follows the other.
                    order = ("module", "virsh") if index % 2 == 0 else ("virsh", "module")
                    times, steps = {}, None
                    for tool in order:
                        times[tool], tool_steps = migrate(tool, mode)
                        steps = tool_steps or steps
                    ratio = times["module"] / times["virsh"]
                    overhead = times["module"] - times["virsh"]
                    pairs[mode].append((times["module"], times["virsh"], ratio, overhead, steps))
                    print("pair %2d %-6s: module %.3f s  virsh %.3f s  ratio %.3f  overhead %+.3f s [%s] | module's steps: %s"
                          % (index + 1, mode, times["module"], times["virsh"], ratio, overhead,
                             "ok" if overhead <= OVERHEAD_GOAL_S else "OVER",
                             ", ".join("%s %.3f" % (step, steps[step]) for step in STEPS if step in steps)), flush=True)
        for mode in options.modes:
            rows = pairs[mode]
            print("%s: median wall time module %.3f s, virsh %.3f s; median ratio module/virsh over %d pairs %.3f "
                  "(goal <= 1.05)" % (mode, statistics.median(p[0] for p in rows), statistics.median(p[1] for p in rows),
                                      len(rows), statistics.median(p[2] for p in rows)))
            print("%s: module overhead over virsh: median %+.3f s, largest %+.3f s, pairs over %.1f s: %d of %d"
                  % (mode, statistics.median(p[3] for p in rows), max(p[3] for p in rows), OVERHEAD_GOAL_S,
                     sum(1 for p in rows if p[3] > OVERHEAD_GOAL_S), len(rows)))
            print("%s: module's steps, median s: %s" % (mode, ", ".join(
                "%s %.3f" % (step, statistics.median(p[4].get(step, 0.0) for p in rows)) for step in STEPS)))
        print("lab bring-up time: %.1f s" % bring_up_s)
    finally:
        if not options.keep_lab:
            playbook("lab_down", options.lab_name)


if __name__ == "__main__":
    main()
