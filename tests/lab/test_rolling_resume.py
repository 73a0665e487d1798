"""presplit.kvm.rolling_maintenance on a real lab: a dead peer stops the preflight with
nothing moved, a run resumes after a crash of the controller, and the operator's controls
(the maintenance window, the stop file between hosts and between waves) stop a run
gracefully, every guest on exactly one host, and the same run id resumes it.

The controller (ansible-playbook) is killed with SIGKILL while h1, already emptied, is in
its maintenance step; the guests must then run on exactly one host each, and the state on
h1 must say where the run got to. Running the same run id again must finish the job:
step, verification, and the guests back on h1, with the state "done".

Brings up its own lab (lab_name "rresume", 2 hosts, 2 guests on h1) and always tears it
down. Needs root, libvirt and QEMU; about two minutes.

    cd /work/main && .venv/bin/python -m pytest tests/lab/test_rolling_resume.py -v -s
"""

import json
import os
import signal
import subprocess
import time

import pytest

import lab_control

LAB = "rresume"
HOSTS = ["h1", "h2"]
GUESTS = [{"name": "c1", "host": "h1"}, {"name": "c2", "host": "h1", "dirty_rate_mib_s": 1}]
RUN_ID = "resume-test"
STATE = lab_control.state_dir(LAB) / "hosts" / "h1" / "lib-presplit-kvm" / "rolling-maintenance.json"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")

# The step of the first run blocks, so the controller can be killed inside it; the step of
# the rerun only leaves a mark on the host.
STEP_BLOCKING = """
- name: Block inside the maintenance step
  ansible.builtin.command: sleep 600
  changed_when: true
"""
STEP_QUICK = """
- name: Leave a mark of the step on the host
  ansible.builtin.copy:
    content: "maintained\\n"
    dest: /var/lib/presplit-kvm/step-mark
    mode: "0600"
"""


@pytest.fixture(scope="module")
def lab():
    with lab_control.running_lab(LAB, hosts=len(HOSTS), guests=GUESTS) as name:
        yield name


def rolling_command(step_file, run_id=RUN_ID, **extra_vars):
    variables = {
        "rolling_hosts": "h1",
        "rolling_maintenance_run_id": run_id,
        "rolling_maintenance_peers": ["h2"],
        "rolling_maintenance_step_tasks": str(step_file),
        "rolling_maintenance_expected_kernel_mode": "unchanged",
        "rolling_maintenance_return_guests": True,
        **extra_vars,
    }
    return [lab_control.ansible_playbook(), "-i", str(lab_control.inventory(LAB)),
            "presplit.kvm.rolling_maintenance", "-e", json.dumps(variables)]


def read_state():
    try:
        return json.loads(STATE.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def where(guest):
    return lab_control.hosts_running(LAB, HOSTS, guest)


def test_check_mode_shows_the_plan_and_changes_nothing(lab, tmp_path):
    quick = tmp_path / "step-quick.yml"
    quick.write_text(STEP_QUICK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"))
    run = subprocess.run(rolling_command(quick) + ["--check"], cwd=lab_control.REPO, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-4000:]
    assert "h1: 2 migration(s)" in run.stdout and "c1 -> h2" in run.stdout and "c2 -> h2" in run.stdout, run.stdout[-4000:]
    assert lab_control.recap_changed(run, "h1") == 0
    for guest in ("c1", "c2"):
        assert where(guest) == ["h1"]
    assert read_state() == {}


def test_unreachable_peer_stops_the_preflight_and_moves_nothing(lab, tmp_path):
    quick = tmp_path / "step-quick.yml"
    quick.write_text(STEP_QUICK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"))
    lab_control.run_playbook("lab_host_daemons", LAB, lab_daemon_hosts=["h2"], lab_daemons_state="killed")
    try:
        run = subprocess.run(rolling_command(quick), cwd=lab_control.REPO, env=env,
                             capture_output=True, text=True, timeout=600, check=False)
    finally:
        lab_control.run_playbook("lab_host_daemons", LAB, lab_daemon_hosts=["h2"], lab_daemons_state="started")
    assert run.returncode != 0
    assert "stopped in phase new" in run.stdout and "destination h2 cannot be read" in run.stdout, run.stdout[-4000:]
    for guest in ("c1", "c2"):
        assert where(guest) == ["h1"]
    assert read_state()["phase"] == "failed"


def test_rerun_after_a_controller_crash_finishes_the_host(lab, tmp_path):
    blocking, quick = tmp_path / "step-blocking.yml", tmp_path / "step-quick.yml"
    blocking.write_text(STEP_BLOCKING)
    quick.write_text(STEP_QUICK)
    env = dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"))

    controller = subprocess.Popen(rolling_command(blocking), cwd=lab_control.REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
    # A hang guard, as long as the rerun's: getting there takes a preflight and two migrations.
    deadline = time.monotonic() + 900
    while read_state().get("phase") != "maintenance":
        assert controller.poll() is None, "the run ended before its step:\n" + controller.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "h1 never reached its maintenance step"
        time.sleep(0.5)
    # The controller dies: ansible-playbook and every process it started.
    os.killpg(controller.pid, signal.SIGKILL)
    controller.wait()

    crashed = read_state()
    assert crashed["run_id"] == RUN_ID and crashed["phase"] == "maintenance"
    assert sorted(crashed["evacuated"]) == ["c1", "c2"]
    for guest in ("c1", "c2"):
        assert where(guest) == ["h2"], "%s runs on %s after the crash" % (guest, where(guest))

    rerun = subprocess.run(rolling_command(quick), cwd=lab_control.REPO, env=env,
                           capture_output=True, text=True, timeout=900, check=False)
    assert rerun.returncode == 0, rerun.stdout[-6000:] + rerun.stderr[-2000:]
    done = read_state()
    assert done["phase"] == "done" and done["run_id"] == RUN_ID
    assert lab_control.host_exec(LAB, "h1", "cat", "/var/lib/presplit-kvm/step-mark").stdout == "maintained\n"
    for guest in ("c1", "c2"):
        assert where(guest) == ["h1"], "%s runs on %s after the rerun" % (guest, where(guest))
        assert lab_control.guest_status(LAB, "h1", guest)["errors"] == 0

    # Done is done: a third run of the same run id leaves everything alone.
    again = subprocess.run(rolling_command(quick), cwd=lab_control.REPO, env=env,
                           capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stdout[-4000:]
    assert "finished here at" in again.stdout
    assert lab_control.recap_changed(again, "h1") == 0


def run_rolling(command, timeout=900):
    """The run, with the job statistics it exported (set_stats) shown as JSON."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(lab_control.REPO / "ansible.cfg"), ANSIBLE_SHOW_CUSTOM_STATS="true",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    run = subprocess.run(command, cwd=lab_control.REPO, env=env, capture_output=True, text=True, timeout=timeout,
                         check=False)
    shown = [line for line in run.stdout.splitlines() if line.startswith("\tRUN: ")]
    return run, json.loads(shown[0][len("\tRUN: "):]) if shown else {}


def test_no_host_starts_after_the_window_or_with_the_stop_file(lab, tmp_path):
    """Both leave the host exactly as it is (its state too) and say why; a window that is
    not a time with its zone is refused before anything moves."""
    quick = tmp_path / "step-quick.yml"
    quick.write_text(STEP_QUICK)
    before = read_state()
    stop = tmp_path / "stop"
    stop.touch()
    for extra, reason in [({"rolling_maintenance_window_end": "2000-01-01T00:00:00Z"},
                           "the maintenance window ended at 2000-01-01T00:00:00Z"),
                          ({"rolling_maintenance_stop_file": str(stop)}, "the stop file %s exists" % stop)]:
        run, stats = run_rolling(rolling_command(quick, "gate-test", **extra))
        assert run.returncode == 0, run.stdout[-4000:]
        assert "h1: not started in run gate-test: %s" % reason in run.stdout, run.stdout[-4000:]
        assert stats["presplit_kvm_maintenance"]["h1"] == {"run_id": "gate-test", "phase": "not_started",
                                                           "reason": reason}, stats
        assert lab_control.recap_changed(run, "h1") == 0
        assert read_state() == before
        for guest in ("c1", "c2"):
            assert where(guest) == ["h1"]
    run, _stats = run_rolling(rolling_command(quick, "gate-test", rolling_maintenance_window_end="tomorrow 6am"))
    assert run.returncode != 0
    assert "rolling_maintenance_window_end 'tomorrow 6am' is not an ISO 8601 time with its zone" in run.stdout, \
        run.stdout[-4000:]
    assert read_state() == before and where("c1") == ["h1"] and where("c2") == ["h1"]


def test_the_stop_file_stops_the_evacuation_between_waves_and_the_run_resumes(lab, tmp_path):
    """One migration per wave; the pre-migration hook of the first wave creates the stop
    file, as an operator would while it runs. The first wave finishes, the second never
    starts: the host fails with each guest on exactly one host, and once the file is gone
    the same run id finishes the job."""
    quick = tmp_path / "step-quick.yml"
    quick.write_text(STEP_QUICK)
    stop = tmp_path / "stop"
    hook = tmp_path / "create-stop-file.yml"
    hook.write_text("""
- name: Create the stop file while the first wave starts
  ansible.builtin.file:
    path: %s
    state: touch
    mode: "0600"
  delegate_to: localhost
""" % stop)
    common = {"rolling_maintenance_stop_file": str(stop), "rolling_maintenance_limits": {"max_outgoing_per_host": 1}}
    run, stats = run_rolling(rolling_command(quick, "stop-test", rolling_maintenance_pre_migrate_tasks=str(hook),
                                             **common))
    assert run.returncode != 0, run.stdout[-4000:]
    assert "stopped in phase evacuating" in run.stdout, run.stdout[-4000:]
    assert "not started: the stop file %s appeared; still on h1" % stop in run.stdout, run.stdout[-4000:]
    moved = [guest for guest in ("c1", "c2") if where(guest) == ["h2"]]
    stayed = [guest for guest in ("c1", "c2") if where(guest) == ["h1"]]
    assert len(moved) == 1 and len(stayed) == 1, (moved, stayed)
    assert read_state()["phase"] == "failed" and read_state()["failed_phase"] == "evacuating"
    (batch,) = stats["presplit_kvm_migrations"].values()
    assert (batch["migrated"], batch["failed_domains"]) == (1, stayed), batch

    stop.unlink()
    rerun, _stats = run_rolling(rolling_command(quick, "stop-test", **common))
    assert rerun.returncode == 0, rerun.stdout[-6000:] + rerun.stderr[-2000:]
    assert read_state()["phase"] == "done"
    for guest in ("c1", "c2"):
        assert where(guest) == ["h1"], "%s runs on %s after the rerun" % (guest, where(guest))
        assert lab_control.guest_status(LAB, "h1", guest)["errors"] == 0
