"""Memory integrity of lab guests under consecutive live migrations.

Brings up its own two-host lab, starts one guest whose presplit-guest
workload rewrites memory at --dirty-rate MiB/s and keeps verifying every page
of its buffer, then live-migrates it back and forth (virsh migrate --live
--p2p --persistent --undefinesource) --migrations times.  After each
migration it requires, from console lines written after the migration: the
domain runs on the destination only, the guest keeps printing status lines
(seq advances by at least --settle-seconds within --hang-seconds) and
errors=0.  A failure is classified as

  crashed    the domain stopped (guest panic -> destroyed, or QEMU died)
  hung       the domain runs but the guest printed nothing new
  corrupted  the workload counted mismatching words (errors went up)

and the guest is restarted so one run counts them all.  It prints one line
per migration and the counts, and exits 0 only if every migration succeeded
with none of the above.

    .venv/bin/python tests/lab/memory_integrity.py --migrations 50

The defaults are the lab's guest configuration (ram_pad_kib 8, which avoids
QEMU 7.2's TCG lost-write defect, see roles/lab/README.md); --ram-pad-kib 0
shows the defect: guests crash after some arrivals.  About 10 s per
migration on a loaded 2-core machine, plus ~2 min of lab bring-up.
"""

import argparse
import re
import sys
import time

import lab_control

GUEST = "mi1"
HOSTS = ("h1", "h2")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab-name", default="memint")
    parser.add_argument("--migrations", type=int, default=50)
    parser.add_argument("--dirty-rate", type=int, default=8, help="MiB/s the guest rewrites")
    parser.add_argument("--buffer-mib", type=int, default=32)
    parser.add_argument("--memory-mib", type=int, default=128)
    parser.add_argument("--vcpus", type=int, default=1)
    parser.add_argument("--machine", default="pc")
    parser.add_argument("--tcg-thread", choices=("multi", "single"), default="multi")
    parser.add_argument("--ram-pad-kib", type=int, default=8,
                        help="guest RAM beyond whole MiB (the lab guest's ram_pad_kib)")
    parser.add_argument("--kernel-args", default="", help="extra guest kernel arguments")
    parser.add_argument("--transport", choices=("tcp", "ssh"), default="tcp")
    parser.add_argument("--settle-seconds", type=int, default=3,
                        help="status lines required after each arrival")
    parser.add_argument("--hang-seconds", type=int, default=45,
                        help="a guest silent this long after arrival is hung")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up at the end")
    return parser.parse_args(argv)


def guest_definition(args):
    return {"name": GUEST, "host": HOSTS[0], "memory_mib": args.memory_mib,
            "vcpus": args.vcpus, "buffer_mib": args.buffer_mib,
            "dirty_rate_mib_s": args.dirty_rate, "machine": args.machine,
            "tcg_thread": args.tcg_thread, "ram_pad_kib": args.ram_pad_kib,
            "kernel_args": args.kernel_args}


def cpu_state(args, host):
    """Where the guest's vCPU 0 is, for the report of a hung guest."""
    registers = lab_control.virsh(args.lab_name, host, "qemu-monitor-command", GUEST,
                                  "--hmp", "info registers", check=False).stdout
    lapic = lab_control.virsh(args.lab_name, host, "qemu-monitor-command", GUEST,
                              "--hmp", "info lapic", check=False).stdout
    rip = re.search(r"RIP=\S+.*?HLT=\d", registers)
    timer = [line.strip() for line in lapic.splitlines() if line.startswith(("LVTT", "Timer"))]
    return f"{rip.group(0) if rip else '?'}; {' / '.join(timer)}"


def restart(args, host):
    """Start the guest afresh on host; returns the console offset its lines start at."""
    lab_control.virsh(args.lab_name, host, "destroy", GUEST, check=False)
    since = lab_control.console_log_size(args.lab_name, host, GUEST)
    lab_control.virsh(args.lab_name, host, "start", GUEST)
    status = lab_control.wait_status(args.lab_name, host, GUEST, min_seq=2, since=since,
                                     timeout=180)
    if not status:
        raise RuntimeError(f"guest does not restart on {host}:\n"
                           f"{lab_control.console_tail(args.lab_name, host, GUEST)}")
    return since


def run(args, counts):
    current = HOSTS[0]
    since = 0
    before = lab_control.wait_status(args.lab_name, current, GUEST, min_seq=3, since=since)
    if not before or before.get("seq", 0) < 3:
        raise RuntimeError(f"guest never came up:\n"
                           f"{lab_control.console_tail(args.lab_name, current, GUEST)}")
    for number in range(1, args.migrations + 1):
        destination = HOSTS[1] if current == HOSTS[0] else HOSTS[0]
        before = lab_control.guest_status(args.lab_name, current, GUEST, since=since) or before
        arrival_offset = lab_control.console_log_size(args.lab_name, destination, GUEST)
        started = time.monotonic()
        result = lab_control.virsh(
            args.lab_name, current, "migrate", "--live", "--p2p", "--persistent",
            "--undefinesource", GUEST, f"qemu+{args.transport}://{destination}/system",
            check=False, timeout=600)
        seconds = time.monotonic() - started
        label = f"#{number} {current}->{destination}"
        if result.returncode != 0:
            counts["migration_failed"] += 1
            print(f"{label} MIGRATION FAILED ({seconds:.1f} s): {result.stderr.strip()}")
            since = restart(args, current)
            continue
        source, current, since = current, destination, arrival_offset
        after = lab_control.wait_status(
            args.lab_name, current, GUEST, min_seq=before["seq"] + args.settle_seconds,
            since=since, timeout=args.hang_seconds)
        running_on = lab_control.hosts_running(args.lab_name, HOSTS, GUEST)
        if running_on != [current]:
            counts["crashed"] += 1
            reason = lab_control.virsh(args.lab_name, current, "domstate", "--reason", GUEST,
                                       check=False).stdout.strip()
            print(f"{label} CRASHED after arrival (running on {running_on}, state {reason}, "
                  f"last status {after})")
            print(lab_control.console_tail(args.lab_name, current, GUEST, lines=15))
            since = restart(args, current)
            continue
        if not after or after["seq"] < before["seq"] + args.settle_seconds:
            counts["hung"] += 1
            print(f"{label} HUNG after arrival ({seconds:.1f} s): seq {before['seq']} -> "
                  f"{after['seq'] if after else 'nothing'} in {args.hang_seconds} s; "
                  f"cpu: {cpu_state(args, current)}")
            since = restart(args, current)
            continue
        if after["errors"] > before["errors"] or after["seq"] <= before["seq"]:
            counts["corrupted"] += 1
            print(f"{label} CORRUPTION: errors {before['errors']} -> {after['errors']}, "
                  f"seq {before['seq']} -> {after['seq']}")
            print(lab_control.console_tail(args.lab_name, current, GUEST, lines=15))
            since = restart(args, current)
            continue
        counts["ok"] += 1
        print(f"{label} ok {seconds:.1f} s seq={after['seq']} dirtied_mib={after['dirtied_mib']} "
              f"passes={after['passes']} errors={after['errors']}", flush=True)


def main(argv=None):
    args = parse_args(argv)
    counts = {"ok": 0, "migration_failed": 0, "crashed": 0, "hung": 0, "corrupted": 0}
    print(f"config: machine={args.machine} tcg_thread={args.tcg_thread} "
          f"ram_pad_kib={args.ram_pad_kib} vcpus={args.vcpus} "
          f"memory_mib={args.memory_mib} buffer_mib={args.buffer_mib} "
          f"dirty_rate_mib_s={args.dirty_rate} kernel_args='{args.kernel_args}' "
          f"transport={args.transport}", flush=True)
    lab_control.lab_down(args.lab_name)
    lab_control.lab_up(args.lab_name, hosts=len(HOSTS), guests=[guest_definition(args)])
    try:
        run(args, counts)
    finally:
        print(f"migrations={args.migrations} " + " ".join(f"{k}={v}" for k, v in counts.items()),
              flush=True)
        if not args.keep_lab:
            lab_control.lab_down(args.lab_name)
    return 0 if counts["ok"] == args.migrations else 1


if __name__ == "__main__":
    sys.exit(main())
