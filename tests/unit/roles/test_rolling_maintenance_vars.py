"""The rolling_maintenance role's view of a batch plan (roles/rolling_maintenance/vars/main.yml):
each host takes its own migrations, keeps their waves, and gets the live_migrate options of
its planned mode. Evaluated by ansible-playbook itself on localhost."""

import json
import os

import pytest
import yaml

from ansible_collections.presplit.kvm.plugins.module_utils.evacuation_planner import plan_evacuation

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: %(vars_files)s
  tasks:
    - ansible.builtin.copy:
        content: >-
          {{ {'migrations': rolling_maintenance_migrations, 'placement': rolling_maintenance_my_placement,
              'shutdown': rolling_maintenance_my_shutdown, 'go': rolling_maintenance_go} | to_json }}
        dest: "{{ output_dir }}/out.json"
        mode: "0600"
      vars:
        inventory_hostname: h1
"""

HOSTS = [{"name": name, "memory_free_mib": 65536} for name in ("h1", "h2", "h3", "h4")]
DOMAINS = [
    # On h1: an idle guest, one that dirties too fast for pre-copy at the link's speed
    # (auto-converge or post-copy), and a pinned one.
    {"name": "idle", "host": "h1", "memory_mib": 4096},
    {"name": "busy", "host": "h1", "memory_mib": 8192, "dirty_rate_mib_per_s": 2000},
    {"name": "gpu", "host": "h1", "memory_mib": 1024, "pinned": True},
    # On h2, drained in the same batch: not h1's business, except that h1's waves follow
    # the batch's, h2's included.
    {"name": "other", "host": "h2", "memory_mib": 2048},
    {"name": "other2", "host": "h2", "memory_mib": 2048},
]


@pytest.fixture(scope="module")
def view(run_local_play):
    plan = plan_evacuation(HOSTS, DOMAINS, ["h1", "h2"], limits={"max_outgoing_per_host": 1},
                           non_migratable_policy="shutdown_and_restart")
    out = run_local_play(PLAYBOOK, ["rolling_maintenance/vars/main.yml"], {"rolling_maintenance_plan": plan})
    return plan, json.loads((out / "out.json").read_text())


def test_host_takes_only_its_own_migrations_in_plan_order(view):
    plan, mine = view
    expected = [(m["domain"], m["destination"], wave["wave"]) for wave in plan["waves"]
                for m in wave["migrations"] if m["source"] == "h1"]
    assert [(m["name"], m["destination"], m["wave"]) for m in mine["migrations"]] == expected
    assert sorted(entry[0] for entry in expected) == ["busy", "idle"]
    assert mine["placement"] == {entry[0]: entry[1] for entry in expected}
    assert mine["shutdown"] == ["gpu"]
    assert mine["go"] is True


def test_options_follow_the_planned_mode_and_bandwidth(view):
    plan, mine = view
    planned = {m["domain"]: m for wave in plan["waves"] for m in wave["migrations"]}
    assert planned["idle"]["mode"] == "pre_copy"
    assert planned["busy"]["mode"] in ("auto_converge", "post_copy")
    expected_mode_options = {
        "pre_copy": {},
        "auto_converge": {"auto_converge": True},
        "post_copy": {"post_copy": True, "completion_timeout_action": "postcopy"},
    }
    for entry in mine["migrations"]:
        migration = planned[entry["name"]]
        assert entry["options"] == dict(expected_mode_options[migration["mode"]],
                                        bandwidth_mib_per_s=max(1, int(migration["bandwidth_mib_per_s"])))


def test_each_migration_waits_for_this_host_s_migrations_that_ended_since_its_previous_wave(view):
    """One host's live_migration run only has its own migrations running: of the waves'
    wait_for since its previous wave, its own are what it waits for."""
    plan, mine = view
    source = {m["domain"]: m["source"] for wave in plan["waves"] for m in wave["migrations"]}
    expected = {}
    waited = []
    for wave in plan["waves"]:
        waited += [name for name in wave["wait_for"] if source[name] == "h1"]
        own = [m["domain"] for m in wave["migrations"] if m["source"] == "h1"]
        for name in own:
            expected[name] = waited
        if own:
            waited = []
    assert dict((m["name"], m["after"]) for m in mine["migrations"]) == expected
    # h1 runs one migration at a time (max_outgoing_per_host 1): its second waits for its first.
    first, second = mine["migrations"]
    assert second["after"] == [first["name"]], plan["waves"]


def test_the_role_asks_the_planner_for_the_waves():
    """The view above is of a plan's waves, which evacuation_plan returns with detail: full."""
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "rolling_maintenance", "tasks", "preflight.yml")) as tasks:
        planning = [task["presplit.kvm.evacuation_plan"] for task in yaml.safe_load(tasks) if "presplit.kvm.evacuation_plan" in task]
    assert [task.get("detail") for task in planning] == ["full"]
