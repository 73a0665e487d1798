"""Drive a presplit lab from tests and scripts.

Brings labs up and down with the collection's own playbooks
(presplit.kvm.lab_up / lab_guests / lab_down), runs commands inside lab hosts
with roles/lab/files/lab-exec.sh and reads guest status lines with
lab-guest-status.sh -- the same entry points a person uses by hand.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_FILES = REPO / "roles" / "lab" / "files"
STATE_ROOT = Path("/run/presplit-lab")
STATUS_FIELD = re.compile(r"(\w+)=(\S+)")


def ansible_playbook():
    beside_python = Path(sys.executable).parent / "ansible-playbook"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("ansible-playbook") or "ansible-playbook"


def run_playbook(name, lab_name, with_inventory=False, **extra_vars):
    """Run presplit.kvm.<name> for lab_name, against the lab's hosts with with_inventory;
    raise with its output on failure."""
    variables = dict(extra_vars, lab_name=lab_name)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    inventory_args = ["-i", str(inventory(lab_name))] if with_inventory else []
    result = subprocess.run(
        [ansible_playbook(), *inventory_args, f"presplit.kvm.{name}", "-e", json.dumps(variables)],
        cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"playbook {name} failed (rc={result.returncode}):\n{result.stdout[-4000:]}\n"
            f"{result.stderr[-2000:]}")
    return result


def recap_changed(playbook_result, host="localhost"):
    """The 'changed=' count of host's PLAY RECAP line."""
    match = re.search(r"^%s\s*:.*\bchanged=(\d+)" % re.escape(host), playbook_result.stdout, re.MULTILINE)
    if not match:
        raise AssertionError(f"no PLAY RECAP in:\n{playbook_result.stdout[-2000:]}")
    return int(match.group(1))


def lab_up(lab_name, hosts=3, guests=()):
    return run_playbook("lab_up", lab_name, lab_hosts=hosts, lab_guests=list(guests))


@contextlib.contextmanager
def running_lab(lab_name, hosts, guests=()):
    """A lab up for the duration of the block, torn down after it whatever happened."""
    lab_up(lab_name, hosts=hosts, guests=guests)
    try:
        yield lab_name
    finally:
        lab_down(lab_name)


def lab_guests(lab_name, guests):
    return run_playbook("lab_guests", lab_name, lab_guests=list(guests))


def lab_down(lab_name):
    return run_playbook("lab_down", lab_name)


def state_dir(lab_name):
    return STATE_ROOT / lab_name


def inventory(lab_name):
    return state_dir(lab_name) / "inventory.yml"


def host_exec(lab_name, host, *command, check=True, timeout=600):
    """Run a command inside a lab host; returns the CompletedProcess."""
    result = subprocess.run(
        [str(LAB_FILES / "lab-exec.sh"), lab_name, host, *command],
        capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{host}: {' '.join(command)} failed (rc={result.returncode}): "
            f"{result.stderr.strip()}")
    return result


def virsh(lab_name, host, *args, check=True, timeout=600):
    return host_exec(lab_name, host, "virsh", "-q", "-c", "qemu:///system", *args,
                     check=check, timeout=timeout)


def domain_state(lab_name, host, domain):
    """'running', 'shut off', ... or None when host has no such domain."""
    result = virsh(lab_name, host, "domstate", domain, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def hosts_running(lab_name, hosts, domain):
    return [host for host in hosts if domain_state(lab_name, host, domain) == "running"]


def bring_back(lab_name, domains, hosts, home="h1"):
    """Every domain running on one of hosts back to home, with presplit.kvm.migrate (the
    lab's TCG guests cannot be pre-split: nothing is said about it)."""
    for host in hosts:
        here = [name for name in domains if domain_state(lab_name, host, name) == "running"]
        if here:
            run_playbook("migrate", lab_name, with_inventory=True,
                         migrate_source=host, migrate_domains=here, migrate_destinations=[home],
                         live_migration_max_parallel_per_source=4, live_migration_max_parallel_per_destination=4,
                         live_migration_presplit_on_unsupported="skip")


def console_log(lab_name, host, guest):
    """The guest's console log as host's virtlogd writes it, seen from the machine."""
    return state_dir(lab_name) / "hosts" / host / "log-libvirt" / "qemu" / f"{guest}-console.log"


def console_log_size(lab_name, host, guest):
    try:
        return console_log(lab_name, host, guest).stat().st_size
    except FileNotFoundError:
        return 0


def parse_status(line):
    fields = dict(STATUS_FIELD.findall(line))
    return {key: int(value) if value.isdigit() else value for key, value in fields.items()}


def guest_status(lab_name, host, guest, since=None):
    """Latest status line of guest on host as a dict (numbers as int), or None.

    With since (a console log size taken earlier), only lines written after
    that point count: a host keeps the log of a guest's earlier visits.
    Without it, this is lab-guest-status.sh, the documented way.
    """
    if since is None:
        result = subprocess.run(
            [str(LAB_FILES / "lab-guest-status.sh"), lab_name, host, guest],
            capture_output=True, text=True, check=False)
        return parse_status(result.stdout) if result.returncode == 0 else None
    try:
        with console_log(lab_name, host, guest).open("rb") as log:
            log.seek(since)
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    lines = [line for line in text.splitlines() if line.startswith("presplit-guest seq=")]
    return parse_status(lines[-1]) if lines else None


def status_lines(lab_name, host, guest):
    """Every status line of guest in host's console log, oldest first, as dicts."""
    try:
        text = console_log(lab_name, host, guest).read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [parse_status(line) for line in text.splitlines() if line.startswith("presplit-guest seq=")]


def console_tail(lab_name, host, guest, lines=30):
    try:
        text = console_log(lab_name, host, guest).read_text(errors="replace")
    except OSError as error:
        return f"(no console log: {error})"
    return "\n".join(text.splitlines()[-lines:])


def wait_status(lab_name, host, guest, min_seq, timeout=120.0, since=None):
    """Wait until guest's status on host reaches seq >= min_seq; return it (or the last seen)."""
    return wait_status_until(lab_name, host, guest, lambda status: status.get("seq", 0) >= min_seq,
                             timeout=timeout, since=since)


def wait_status_until(lab_name, host, guest, condition, timeout=120.0, since=None):
    """Wait until guest's status on host satisfies condition(status); return it (or the last
    seen). timeout is a hang guard: the guest prints a line a second."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = guest_status(lab_name, host, guest, since=since)
        if status and condition(status):
            return status
        time.sleep(0.5)
    return status
