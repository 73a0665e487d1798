"""presplit.kvm.live_migration runs planned waves overlapped, as the planner planned them.

A wave whose domains name the migrations it waits for (``after``, the plan wave's
``wait_for``) starts as soon as those have ended, while the other migrations still run;
a wave without ``after`` waits for every running migration. Three guests move: w1
rewrites 8 MiB/s over a 1 MiB/s link, so its migration cannot converge until the test
raises that link's bandwidth, w2 goes at full speed, and w3 is in the second wave. With
``after: [w2]`` w3 must start once w2 has ended and before w1 ends; without it, only
after w1 has ended. While w1 runs, the presplit.kvm.migration_progress callback (enabled
in ansible.cfg) prints how far it has got. The test lets w1 finish only once that line
is printed and (with ``after``) w3's migration has started, so no order depends on how
fast the machine runs.

Brings up its own lab (lab_name "woverlap", 2 hosts, 3 guests on h1) and always tears
it down. Needs root, libvirt and QEMU; about three minutes.

    cd /work/main && .venv/bin/python -m pytest tests/lab/test_wave_overlap.py -v -s
"""

import json
import os
import re
import subprocess
import threading
import time

import pytest

import lab_control

LAB = "woverlap"
HOSTS = ["h1", "h2"]
GUESTS = [{"name": "w1", "host": "h1", "dirty_rate_mib_s": 8}, {"name": "w2", "host": "h1"}, {"name": "w3", "host": "h1"}]
# w1's link: an eighth of its dirty rate, so pre-copy never gets under the allowed downtime.
HELD_BANDWIDTH = 1

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

PLAYBOOK = """
- name: Migrate the guests in the given waves
  hosts: "{{ source }}"
  gather_facts: false
  tasks:
    - name: Run the live_migration role
      ansible.builtin.include_role:
        name: presplit.kvm.live_migration
      vars:
        live_migration_domains: "{{ domains }}"

    - name: Keep the results for the test
      ansible.builtin.copy:
        content: "{{ live_migration_results | to_json }}"
        dest: "{{ results_file }}"
        mode: "0600"
      delegate_to: localhost
"""


@pytest.fixture(scope="module")
def lab():
    with lab_control.running_lab(LAB, hosts=len(HOSTS), guests=GUESTS) as name:
        yield name


def progress_line(source):
    """A migration_progress callback line for w1, e.g.
    "h1: 1 migrating | w1 41.5% pass 1, 70 MiB left, 3.0 MiB/s, 10 s"."""
    return re.compile(r"^%s: \d+ migrating \|.* w1 ([\d.]+)%% pass \d+, \d+ MiB left, [\d.]+ MiB/s, \d+ s"
                      % source, re.M)


def migrate(tmp_path, source, destination, w3_after):
    """Migrate w1 (held) and w2 in wave 1 and w3 in wave 2; return the results by domain
    and the playbook's output. w1 is let go once a progress line of it was printed and,
    with w3_after, once w3's migration has started (its domain exists on the destination)."""
    w3 = {"name": "w3", "destination": destination, "wave": 2}
    if w3_after is not None:
        w3["after"] = w3_after
    domains = [{"name": "w1", "destination": destination, "wave": 1, "options": {"bandwidth": HELD_BANDWIDTH}},
               {"name": "w2", "destination": destination, "wave": 1}, w3]
    playbook = tmp_path / "waves.yml"
    playbook.write_text(PLAYBOOK)
    results_file = tmp_path / "results.json"
    variables = {"source": source, "domains": domains, "results_file": str(results_file)}
    # Unbuffered: the test watches the output as it comes (Ansible leaves flushing to Python).
    env = dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"), PYTHONUNBUFFERED="1")
    run = subprocess.Popen([lab_control.ansible_playbook(), "-i", str(lab_control.inventory(LAB)), str(playbook),
                            "-e", json.dumps(variables)],
                           cwd=lab_control.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []

    def read_output():
        for line in run.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        # Hang guards only: normally w1 is let go within a minute or two.
        deadline = time.monotonic() + 900
        while not (progress_line(source).search("".join(lines))
                   and (w3_after is None or lab_control.domain_state(LAB, destination, "w3") is not None)):
            assert run.poll() is None, "the playbook ended with w1 held:\n" + "".join(lines)[-4000:]
            assert time.monotonic() < deadline, "w1 was never let go:\n" + "".join(lines)[-4000:]
            time.sleep(0.5)
        lab_control.virsh(LAB, source, "migrate-setspeed", "w1", "--bandwidth", "100000")
        run.wait(timeout=900)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        reader.join(timeout=60)
    output = "".join(lines)
    assert run.returncode == 0, output[-6000:]
    results = {r["domain"]: r for r in json.loads(results_file.read_text())}
    assert sorted(results) == ["w1", "w2", "w3"]
    for name, result in results.items():
        assert result["status"] == "migrated", result
        assert lab_control.hosts_running(LAB, HOSTS, name) == [destination], name
    return results, output


def test_a_wave_with_after_overlaps_the_migrations_it_does_not_wait_for(lab, tmp_path):
    results, output = migrate(tmp_path, "h1", "h2", w3_after=["w2"])
    w1, w2, w3 = results["w1"], results["w2"], results["w3"]
    assert w3["migration_started"] >= w2["migration_ended"], (w2, w3)
    assert w3["migration_started"] < w1["migration_ended"], (w1, w3)
    assert progress_line("h1").search(output), output[-4000:]


def test_a_wave_without_after_waits_for_every_running_migration(lab, tmp_path):
    results, _output = migrate(tmp_path, "h2", "h1", w3_after=None)
    w1, w3 = results["w1"], results["w3"]
    assert w3["migration_started"] >= w1["migration_ended"], (w1, w3)


def test_progress_timeout_aborts_a_migration_that_cannot_converge(lab):
    """w1 rewrites 8 MiB/s over a 1 MiB/s link: after its first pass, what it still has to
    send never reaches a new low, so presplit.kvm.live_migrate's progress_timeout_s aborts
    the migration, and w1 keeps running on its source only."""
    (source,) = lab_control.hosts_running(LAB, HOSTS, "w1")
    destination = "h2" if source == "h1" else "h1"
    args = {"name": "w1", "destination_host": destination, "bandwidth_mib_per_s": HELD_BANDWIDTH,
            "progress_timeout_s": 10}
    run = subprocess.run(
        [str(lab_control.REPO / ".venv" / "bin" / "ansible"), "-i", str(lab_control.inventory(LAB)), source,
         "-m", "presplit.kvm.live_migrate", "-a", json.dumps(args)],
        cwd=lab_control.REPO, capture_output=True, text=True, check=False, timeout=900,
        env=dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"),
                 ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
    shown = re.search(r"^%s \| FAILED! => (\{.*\})\s*$" % source, run.stdout, re.M | re.S)
    assert run.returncode != 0 and shown, run.stdout[-4000:] + run.stderr[-2000:]
    result = json.loads(shown.group(1))
    assert "without progress (progress_timeout_s)" in result["msg"], result["msg"]
    assert "domain is running on the source" in result["msg"], result["msg"]
    assert [a["action"] for a in result["actions"]][-1:] == ["progress_timeout_abort"], result["actions"]
    assert not result["changed"]
    assert lab_control.hosts_running(LAB, HOSTS, "w1") == [source]
    assert lab_control.domain_state(LAB, destination, "w1") is None
