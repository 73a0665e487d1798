"""Guests on local disks, moved with presplit.kvm.migrate on a real lab: refused without a
copy (nothing moved), copied whole (copy_storage: all) there and back over the stale image
the first trip left on the source, and copied top image only (copy_storage: top) over a
backing image every host has; a failed copy leaves no image behind on the destination.

Each guest's workload rewrites blocks of its disk and re-reads and verifies every block
with direct I/O, so each read goes to the image of the host the guest runs on: after each
arrival the test waits for whole passes over the disk on the destination with
disk_errors=0 (and errors=0 for memory).

Brings up its own lab (lab_name "ldisk", 2 hosts, 2 guests on h1) and always tears it
down. Needs root, libvirt and QEMU; a few minutes.

    cd /work/main && .venv/bin/python -m pytest tests/lab/test_storage_copy.py -v
"""

import json
import os
import subprocess

import pytest

import lab_control

LAB = "ldisk"
HOSTS = ["h1", "h2"]
GUESTS = [
    # A disk of its own, rewritten while memory is too.
    {"name": "d1", "host": "h1", "disk_mib": 32, "dirty_rate_mib_s": 1},
    # A top image over a backing image every host sees (an image cache). At 2 blocks a second
    # its 8192 blocks take over an hour to be all rewritten: most reads go to the backing image.
    {"name": "d2", "host": "h1", "disk_mib": 32, "disk_over_base": True, "disk_write_blocks_s": 2},
]
IMAGES = "/var/lib/libvirt/images"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


@pytest.fixture(scope="module")
def lab():
    lab_control.lab_down(LAB)
    with lab_control.running_lab(LAB, hosts=len(HOSTS), guests=GUESTS) as name:
        for guest in GUESTS:
            status = lab_control.wait_status_until(name, "h1", guest["name"],
                                                   lambda line: line.get("disk_passes", 0) >= 1, timeout=180)
            assert status and status["disk_errors"] == 0, lab_control.console_tail(name, "h1", guest["name"])
        yield name


def image_on(lab, host, guest):
    """Whether host has the guest's image (host's own /var/lib/libvirt, seen from the machine)."""
    return (lab_control.state_dir(lab) / "hosts" / host / "lib-libvirt" / "images" / f"{guest}.qcow2").exists()


def migrate(lab, guest, source, destination, options=None, migration_address=None):
    """presplit.kvm.migrate of guest with live_migrate options, as an operator runs it."""
    variables = {"migrate_source": source, "migrate_domains": [guest], "migrate_destinations": [destination],
                 "live_migration_presplit_on_unsupported": "skip", "live_migration_options": options or {}}
    inventories = ["-i", str(lab_control.inventory(lab))]
    if migration_address:
        extra = lab_control.state_dir(lab) / "migration-address.ini"
        extra.write_text(f"{destination} presplit_kvm_migration_address={migration_address}\n")
        inventories += ["-i", str(extra)]
    return subprocess.run(
        [lab_control.ansible_playbook(), *inventories, "presplit.kvm.migrate", "-e", json.dumps(variables)],
        cwd=lab_control.REPO, capture_output=True, text=True, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg")))


def arrived_intact(lab, guest, host, since):
    """Two whole passes over the disk on host after the arrival, every block as written."""
    first = lab_control.wait_status(lab, host, guest, min_seq=1, timeout=120, since=since)
    assert first, lab_control.console_tail(lab, host, guest)
    last = lab_control.wait_status_until(
        lab, host, guest, lambda line: line["disk_passes"] >= first["disk_passes"] + 2, timeout=180, since=since)
    assert last["disk_passes"] >= first["disk_passes"] + 2, lab_control.console_tail(lab, host, guest)
    assert (last["disk_errors"], last["errors"]) == (0, 0), lab_control.console_tail(lab, host, guest)
    assert last["disk_written_blocks"] > first["disk_written_blocks"]


def test_placement_facts_count_the_local_disks(lab):
    """What the planner adds to each estimate: d1's image alone, d2's top image over the
    32 MiB backing image (a whole chain for copy_storage all, the top for top)."""
    run = subprocess.run(
        [str(lab_control.REPO / ".venv" / "bin" / "ansible"), "-i", str(lab_control.inventory(lab)), "h1", "-o",
         "-m", "presplit.kvm.placement_facts", "-a", "measure_dirty_rate=false"],
        cwd=lab_control.REPO, capture_output=True, text=True, check=False,
        env=dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg")))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    facts = json.loads(run.stdout.split("=> ", 1)[1])
    disks = {entry["name"]: (entry["local_disk_mib"], entry["local_disk_top_mib"]) for entry in facts["domains"]}
    d1_chain, d1_top = disks["d1"]
    d2_chain, d2_top = disks["d2"]
    assert d1_chain == d1_top >= 1, disks
    assert d2_chain >= d2_top + 32 and d2_top >= 1, disks


def test_without_copy_a_local_disk_is_refused_and_nothing_moves(lab):
    run = migrate(lab, "d1", "h1", "h2")
    assert run.returncode != 0, run.stdout[-3000:]
    assert "disks on a filesystem of the source alone would be left behind: vda" \
        f" ({IMAGES}/d1.qcow2 on " in run.stdout, run.stdout[-3000:]
    assert "give copy_storage=all" in run.stdout
    assert lab_control.hosts_running(lab, HOSTS, "d1") == ["h1"]
    assert lab_control.domain_state(lab, "h2", "d1") is None
    assert not image_on(lab, "h2", "d1")


def test_copy_all_moves_the_disk_there_and_back(lab):
    """Back to h1, the image the first trip left there is stale by then: the copy must
    overwrite every block of it."""
    since = lab_control.console_log_size(lab, "h2", "d1")
    run = migrate(lab, "d1", "h1", "h2", {"copy_storage": "all"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert lab_control.hosts_running(lab, HOSTS, "d1") == ["h2"]
    assert lab_control.domain_state(lab, "h1", "d1") is None
    assert image_on(lab, "h2", "d1") and image_on(lab, "h1", "d1")
    arrived_intact(lab, "d1", "h2", since)

    since = lab_control.console_log_size(lab, "h1", "d1")
    run = migrate(lab, "d1", "h2", "h1", {"copy_storage": "all"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert lab_control.hosts_running(lab, HOSTS, "d1") == ["h1"]
    arrived_intact(lab, "d1", "h1", since)


def test_a_failed_copy_leaves_no_image_on_the_destination(lab):
    """The data stream goes to an address nobody has: the migration fails after the module
    created the top image on h2, which it deletes again."""
    run = migrate(lab, "d2", "h1", "h2", {"copy_storage": "top"}, migration_address="192.0.2.99")
    assert run.returncode != 0, run.stdout[-3000:]
    assert f"deleted the image {IMAGES}/d2.qcow2 of disk vda the migration had created on the destination" \
        in run.stdout, run.stdout[-3000:]
    assert lab_control.hosts_running(lab, HOSTS, "d2") == ["h1"]
    assert lab_control.domain_state(lab, "h2", "d2") is None
    assert not image_on(lab, "h2", "d2")


def test_copy_top_moves_the_top_image_over_the_shared_backing_image(lab):
    """The guest verifies blocks it never rewrote too: those come from the backing image,
    through the top image the module created on h2. Back to h1 the stale top image left
    there is refused: the copy would mix with it."""
    since = lab_control.console_log_size(lab, "h2", "d2")
    run = migrate(lab, "d2", "h1", "h2", {"copy_storage": "top"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert lab_control.hosts_running(lab, HOSTS, "d2") == ["h2"]
    info = lab_control.host_exec(lab, "h2", "qemu-img", "info", "-U", f"{IMAGES}/d2.qcow2").stdout
    assert "backing file: " in info and "disk-base-32m.qcow2" in info, info
    arrived_intact(lab, "d2", "h2", since)
    status = lab_control.guest_status(lab, "h2", "d2", since=since)
    assert status["disk_written_blocks"] < 32 * 256, "every block rewritten: the backing image was never read"

    run = migrate(lab, "d2", "h2", "h1", {"copy_storage": "top"})
    assert run.returncode != 0, run.stdout[-3000:]
    assert f"the destination qemu+ssh://h1/system already has {IMAGES}/d2.qcow2 (disk vda)" in run.stdout
    assert lab_control.hosts_running(lab, HOSTS, "d2") == ["h2"]


def test_rolling_maintenance_plans_and_moves_a_local_disk_guest(lab, tmp_path):
    """h1's guest on a local disk: without copy_storage the plan refuses it before anything
    moves; with copy_storage: all it leaves for h2 and comes back to h1, its disk intact."""
    step = tmp_path / "step.yml"
    step.write_text("- name: Nothing to maintain\n  ansible.builtin.debug:\n    msg: step\n")

    def rolling(options):
        variables = {"rolling_hosts": "h1", "rolling_maintenance_peers": ["h2"],
                     "rolling_maintenance_run_id": "disk-%s" % (options.get("copy_storage") or "none"),
                     "rolling_maintenance_step_tasks": str(step), "rolling_maintenance_expected_kernel_mode": "unchanged",
                     "rolling_maintenance_return_guests": True, "rolling_maintenance_presplit_on_unsupported": "skip",
                     "rolling_maintenance_migration_options": options}
        return subprocess.run(
            [lab_control.ansible_playbook(), "-i", str(lab_control.inventory(lab)), "presplit.kvm.rolling_maintenance",
             "-e", json.dumps(variables)],
            cwd=lab_control.REPO, capture_output=True, text=True, timeout=900, check=False,
            env=dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg")))

    refused = rolling({})
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "d1 (on local disks (" in refused.stdout and "MiB) and copy_storage is none)" in refused.stdout, \
        refused.stdout[-3000:]
    assert lab_control.hosts_running(lab, HOSTS, "d1") == ["h1"]

    since = lab_control.console_log_size(lab, "h1", "d1")
    run = rolling({"copy_storage": "all"})
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "h1: 1 migration(s)" in run.stdout and "d1 -> h2" in run.stdout, run.stdout[-4000:]
    assert lab_control.hosts_running(lab, HOSTS, "d1") == ["h1"]
    arrived_intact(lab, "d1", "h1", since)
