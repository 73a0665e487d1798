"""Benchmark: presplit.kvm.live_migrate against bare `virsh migrate --live --p2p`.

On a lab of its own (presplit.kvm.lab, default lab_name "bench") it starts one idle
guest on h1 and moves it back and forth between h1 and h2, alternating the module and
virsh, for --pairs pairs.  Both run inside the source host exactly as an operator's
command would (`lab-exec.sh LAB HOST ...`); the module is executed the way Ansible
executes it on a host (system python3, its arguments file), so the figure is the
module's own overhead (connections, pre-checks, polling), not Ansible's ssh round trips.
Both migrate with the same flags: live, peer-to-peer, persistent, undefine source.

Prints the lab bring-up time, per-pair wall times and the median ratio module/virsh
(goal <= 1.05).  Not a test: nothing here asserts a timing.

    .venv/bin/python bench/migrate_vs_virsh.py [--lab-name bench] [--pairs 10] [--keep-lab]
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


def migrate_with_module(lab_name, source, dest, args_dir):
    args_file = os.path.join(args_dir, "args.json")
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"domain": GUEST, "destination_host": dest}}, handle)
    seconds, out = timed([LAB_EXEC, lab_name, source, "env", "PYTHONPATH=%s:%s" % (COLLECTIONS, ANSIBLE_SITE),
                          "/usr/bin/python3", "-m", MODULE, args_file])
    result = json.loads(out)
    if result.get("failed") or not result.get("changed"):
        sys.exit("module run did not migrate: %s" % result.get("msg", result))
    return seconds


def migrate_with_virsh(lab_name, source, dest):
    command = [LAB_EXEC, lab_name, source, "virsh", "-c", "qemu:///system", "migrate", "--live", "--p2p",
               "--persistent", "--undefinesource", GUEST, "qemu+ssh://%s/system" % dest]
    return timed(command)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab-name", default="bench")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")
    options = parser.parse_args()

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
        pairs = []
        with tempfile.TemporaryDirectory(dir="/tmp") as args_dir:
            for index in range(options.pairs):
                # Alternate which tool goes first, so neither always follows the other.
                order = ("module", "virsh") if index % 2 == 0 else ("virsh", "module")
                times = {}
                for tool in order:
                    source, dest = hosts
                    if tool == "module":
                        times[tool] = migrate_with_module(options.lab_name, source, dest, args_dir)
                    else:
                        times[tool] = migrate_with_virsh(options.lab_name, source, dest)
                    hosts.reverse()
                ratio = times["module"] / times["virsh"]
                pairs.append((times["module"], times["virsh"], ratio))
                print("pair %2d: module %.3f s  virsh %.3f s  ratio %.3f" % (
                    index + 1, times["module"], times["virsh"], ratio), flush=True)
        print("median wall time: module %.3f s, virsh %.3f s" % (
            statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)))
        print("median ratio module/virsh over %d pairs: %.3f (goal <= 1.05)"
              % (len(pairs), statistics.median(p[2] for p in pairs)))
        print("lab bring-up time: %.1f s" % bring_up_s)
    finally:
        if not options.keep_lab:
            playbook("lab_down", options.lab_name)


if __name__ == "__main__":
    main()
