"""Tests of the lab itself (roles/lab), on the real machine.

Brings up its own lab (lab_name "labtest", 3 hosts, one guest) with the
collection's playbooks, checks it, and tears it down, asserting that nothing
is left behind.  Needs root, libvirt and QEMU; takes a few minutes.

    cd /work/main && .venv/bin/python -m pytest tests/lab -v
"""

import json
import os
import re
import subprocess
import time

import pytest

import lab_control

LAB = "labtest"
HOSTS = ["h1", "h2", "h3"]
GUESTS = [{"name": "g1", "host": "h1", "dirty_rate_mib_s": 2}]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def lab_netns(lab_name):
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             check=True).stdout
    return [line.split()[0] for line in listing.splitlines()
            if re.match(rf"{lab_name}-(ctl|h\d+)\b", line)]


def lab_mounts(lab_name):
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True,
                            text=True, check=True).stdout.split()
    return [m for m in mounts
            if m.startswith(f"/run/presplit-lab/{lab_name}/")
            or m == f"/run/presplit-lab/{lab_name}"
            or re.fullmatch(rf"/run/netns/{lab_name}-(ctl|h\d+)", m)]


def pids_in_lab(lab_name):
    """PIDs of processes whose network namespace is one of the lab's."""
    inodes = {os.stat(f"/run/netns/{ns}").st_ino for ns in lab_netns(lab_name)}
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def daemon_pids(lab_name):
    """PIDs from every lab host's pid files (virtlogd, libvirtd, sshd)."""
    pid_files = lab_control.state_dir(lab_name).glob("hosts/h*/run-libvirt/*.pid")
    return sorted(int(path.read_text()) for path in pid_files)


def host_uuid(host, lab_name=LAB):
    capabilities = lab_control.virsh(lab_name, host, "capabilities").stdout
    return re.search(r"<host>\s*<uuid>([^<]+)</uuid>", capabilities).group(1)


@pytest.fixture(scope="module")
def lab():
    lab_control.lab_down(LAB)
    lab_control.lab_up(LAB, hosts=len(HOSTS), guests=GUESTS)
    yield LAB
    lab_control.lab_down(LAB)


def test_hosts_are_distinct_libvirt_hosts(lab):
    uuids = {host: host_uuid(host) for host in HOSTS}
    names = {host: lab_control.host_exec(lab, host, "hostname").stdout.strip()
             for host in HOSTS}
    assert len(set(uuids.values())) == len(HOSTS), uuids
    assert names == {host: host for host in HOSTS}


def test_hosts_resolve_each_other_to_lab_addresses(lab):
    for number, host in enumerate(HOSTS, start=1):
        resolved = lab_control.host_exec(lab, "h1", "getent", "hosts", host).stdout.split()
        assert resolved[0] == f"192.0.2.{10 + number}"


@pytest.mark.parametrize("connection", ["ssh", "paramiko"])
def test_ansible_reaches_every_host(lab, connection):
    result = subprocess.run(
        [str(lab_control.REPO / ".venv" / "bin" / "ansible"), "-i",
         str(lab_control.inventory(lab)), "lab_hosts", "-c", connection, "-o",
         "-m", "ansible.builtin.command", "-a", "hostname"],
        cwd=lab_control.REPO, capture_output=True, text=True, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"),
                 ANSIBLE_DEPRECATION_WARNINGS="false"))
    assert result.returncode == 0, result.stdout + result.stderr
    answered = dict(re.findall(r"^(h\d+) \| CHANGED \| rc=0 \| \(stdout\) (\S+)$",
                               result.stdout, re.MULTILINE))
    assert answered == {host: host for host in HOSTS}


def test_guest_is_alive_and_verifies_memory(lab):
    first = lab_control.wait_status(lab, "h1", "g1", min_seq=2)
    assert first is not None, lab_control.console_tail(lab, "h1", "g1")
    # Polled until the guest has verified another whole pass and dirtied more: how much it
    # gets done in a second depends on the CPU it gets, so nothing is counted per second.
    later = lab_control.wait_status_until(
        lab, "h1", "g1", lambda status: status["seq"] >= first["seq"] + 2 and status["passes"] > first["passes"]
        and status["dirtied_mib"] > first["dirtied_mib"], timeout=300)
    assert later["seq"] >= first["seq"] + 2
    assert later["passes"] > first["passes"]
    assert later["dirtied_mib"] > first["dirtied_mib"]
    assert later["errors"] == 0


def test_guest_live_migrates_between_hosts(lab):
    before = lab_control.guest_status(lab, "h1", "g1")
    lab_control.virsh(lab, "h1", "migrate", "--live", "--p2p", "--persistent",
                      "--undefinesource", "g1", "qemu+ssh://h2/system")
    assert lab_control.hosts_running(lab, HOSTS, "g1") == ["h2"]
    assert lab_control.domain_state(lab, "h1", "g1") is None
    after = lab_control.wait_status(lab, "h2", "g1", min_seq=before["seq"] + 2, timeout=60)
    assert after["seq"] >= before["seq"] + 2
    assert after["errors"] == 0


def migrate_with_addresses(lab, tmp_path, source, destination, addresses):
    """presplit.kvm.migrate of g1 over the lab inventory plus one that gives hosts a
    presplit_kvm_migration_address, as a fleet's inventory would for a migration network.
    Returns the run and the statistics it exported for AWX (set_stats, shown as JSON)."""
    extra = tmp_path / "migration-network.ini"
    extra.write_text("".join(f"{host} presplit_kvm_migration_address={address}\n"
                             for host, address in addresses.items()))
    run = subprocess.run(
        [lab_control.ansible_playbook(), "-i", str(lab_control.inventory(lab)), "-i", str(extra),
         "presplit.kvm.migrate", "-e", f"migrate_source={source}",
         "-e", json.dumps({"migrate_domains": ["g1"], "migrate_destinations": [destination]})],
        cwd=lab_control.REPO, capture_output=True, text=True, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"), ANSIBLE_SHOW_CUSTOM_STATS="true",
                 ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    shown = [line for line in run.stdout.splitlines() if line.startswith("\tRUN: ")]
    assert len(shown) == 1, run.stdout[-3000:]
    return run, json.loads(shown[0][len("\tRUN: "):])["presplit_kvm_migrations"][f"live-migration-{source}"]


def test_migration_address_carries_the_data_stream(lab, tmp_path):
    """The data stream goes to the destination's presplit_kvm_migration_address: to an
    address no host has, the migration fails, saying where the stream went, and the guest
    stays where it ran; to the destination's own address, it moves. Each run exports its
    summary (set_stats). g1 ends on h3, where the tests below expect it."""
    assert lab_control.hosts_running(lab, HOSTS, "g1") == ["h2"]
    nobody, stats = migrate_with_addresses(lab, tmp_path, "h2", "h3", {"h3": "192.0.2.99"})
    assert nobody.returncode != 0, nobody.stdout[-3000:]
    assert "data stream to tcp://192.0.2.99" in nobody.stdout, nobody.stdout[-3000:]
    assert (stats["failed"], stats["failed_domains"], stats["migrated"]) == (1, ["g1"], 0), stats
    assert lab_control.hosts_running(lab, HOSTS, "g1") == ["h2"]
    assert lab_control.domain_state(lab, "h3", "g1") is None

    moved, stats = migrate_with_addresses(lab, tmp_path, "h2", "h3", {"h3": "192.0.2.13"})
    assert moved.returncode == 0, moved.stdout[-3000:] + moved.stderr[-2000:]
    assert (stats["migrated"], stats["failed"], stats["report_json"]) == (1, 0, None), stats
    assert lab_control.hosts_running(lab, HOSTS, "g1") == ["h3"]
    assert lab_control.domain_state(lab, "h2", "g1") is None


def test_up_again_changes_nothing(lab):
    uuids = {host: host_uuid(host) for host in HOSTS}
    daemons = daemon_pids(lab)
    assert len(daemons) == 3 * len(HOSTS)
    result = lab_control.lab_up(lab, hosts=len(HOSTS), guests=GUESTS)
    assert lab_control.recap_changed(result) == 0
    assert {host: host_uuid(host) for host in HOSTS} == uuids
    assert daemon_pids(lab) == daemons
    assert set(daemons) <= set(pids_in_lab(lab))
    # The migrated guest stays where it is, not redefined on h1.
    assert lab_control.hosts_running(lab, HOSTS, "g1") == ["h3"]


def test_another_lab_coexists_on_the_same_addresses(lab):
    other = "labtestb"
    lab_control.lab_down(other)
    try:
        lab_control.lab_up(other, hosts=1)
        # Same name and address, different libvirt host with its own domains.
        assert host_uuid("h1", other) != host_uuid("h1")
        assert lab_control.virsh(other, "h1", "list", "--all", "--name").stdout.strip() == ""
        assert lab_control.virsh(lab, "h3", "list", "--all", "--name").stdout.split() == ["g1"]
        lab_control.lab_down(other)
        assert lab_netns(other) == [] and lab_mounts(other) == []
        # Tearing the other lab down left this one intact.
        assert lab_control.hosts_running(lab, HOSTS, "g1") == ["h3"]
    finally:
        lab_control.lab_down(other)


def test_half_up_lab_comes_down():
    half = "labtestc"
    lab_control.lab_down(half)
    subprocess.run([str(lab_control.LAB_FILES / "lab-network-up.sh"), half, "2"], check=True)
    stray = subprocess.Popen(["ip", "netns", "exec", f"{half}-h1", "sleep", "600"])
    try:
        lab_control.lab_down(half)
        assert stray.wait(timeout=10) is not None
        assert lab_netns(half) == [] and lab_mounts(half) == []
    finally:
        if stray.poll() is None:
            stray.kill()


def test_down_leaves_nothing_and_is_idempotent(lab):
    started = pids_in_lab(lab)
    assert started, "the lab should have running processes before down"
    first = lab_control.lab_down(lab)
    second = lab_control.lab_down(lab)
    assert lab_control.recap_changed(first) == 1
    assert lab_control.recap_changed(second) == 0
    assert lab_netns(lab) == []
    assert lab_mounts(lab) == []
    assert not lab_control.state_dir(lab).exists()
    # A hang guard: processes killed by lab_down are normally gone at once.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in started):
        time.sleep(0.2)
    assert [p for p in started if os.path.exists(f"/proc/{p}")] == []
