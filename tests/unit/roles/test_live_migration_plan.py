"""The live_migration role's placement and wave packing (roles/live_migration/vars/main.yml),
evaluated by ansible-playbook itself on localhost (one run for every case)."""

import json

import pytest

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: %(vars_files)s
  tasks:
    - ansible.builtin.copy:
        content: "{{ {'placement': live_migration_placement, 'waves': live_migration_waves} | to_json }}"
        dest: "{{ output_dir }}/{{ index }}.json"
        mode: "0600"
      vars:
        live_migration_domains: "{{ item.domains }}"
        live_migration_destinations: "{{ item.destinations }}"
        live_migration_max_parallel_per_source: "{{ item.per_source }}"
        live_migration_max_parallel_per_destination: "{{ item.per_dest }}"
        live_migration_pending: "{{ live_migration_placement }}"
      loop: "{{ plan_cases }}"
      loop_control:
        index_var: index
"""

PINNED = [{"name": "p1", "destination": "h2"}, {"name": "p2", "destination": "h2"}]
CASES = [
    {"domains": ["a", "b", {"name": "c", "destination": "h9"}, "d"], "destinations": ["h2", "h3"],
     "per_source": 2, "per_dest": 1},
] + [
    {"domains": ["d%d" % i for i in range(7)] + PINNED, "destinations": ["h2", "h3", "h4"],
     "per_source": per_source, "per_dest": per_dest}
    for per_source, per_dest in ((1, 1), (2, 1), (3, 2), (4, 4))
] + [
    # Every domain pinned: no destination list is needed (the role's input check allows it).
    {"domains": PINNED, "destinations": [], "per_source": 2, "per_dest": 1},
    # Waves as evacuation_plan planned them (listed out of order), with per-domain options,
    # and one domain without a wave that is packed after them.
    {"domains": [{"name": "w2", "destination": "h3", "wave": 2},
                 {"name": "w1a", "destination": "h2", "wave": 1, "options": {"auto_converge": True}},
                 {"name": "w1b", "destination": "h2", "wave": 1},
                 {"name": "free", "destination": "h3"}],
     "destinations": [], "per_source": 2, "per_dest": 1},
]
PLANNED = len(CASES) - 1


@pytest.fixture(scope="module")
def plans(run_local_play):
    out = run_local_play(PLAYBOOK, ["live_migration/defaults/main.yml", "live_migration/vars/main.yml"],
                         {"plan_cases": CASES})
    return [json.loads((out / ("%d.json" % index)).read_text()) for index in range(len(CASES))]


def test_round_robin_placement_and_pinned_destination(plans):
    assert plans[0]["placement"] == [
        {"domain": "a", "destination": "h2"}, {"domain": "b", "destination": "h3"},
        {"domain": "c", "destination": "h9"}, {"domain": "d", "destination": "h3"}]


def test_all_pinned_without_destinations(plans):
    assert plans[-2]["placement"] == [{"domain": "p1", "destination": "h2"}, {"domain": "p2", "destination": "h2"}]
    assert plans[-2]["waves"] == [[{"domain": "p1", "destination": "h2"}], [{"domain": "p2", "destination": "h2"}]]


def test_planned_waves_are_kept_in_order_with_their_options(plans):
    waves = plans[PLANNED]["waves"]
    # The planned wave 1 holds two domains bound for h2, more than per_dest allows: the
    # plan's own limits decide, the role does not re-pack it.
    assert [[item["domain"] for item in wave] for wave in waves] == [["w1a", "w1b"], ["w2"], ["free"]]
    assert waves[0][0]["options"] == {"auto_converge": True}
    assert "options" not in waves[0][1] and "wave" not in waves[2][0]


@pytest.mark.parametrize("index", range(1, PLANNED))
def test_waves_respect_both_limits_and_keep_every_domain(plans, index):
    case, placement, waves = CASES[index], plans[index]["placement"], plans[index]["waves"]
    assert sorted(item["domain"] for wave in waves for item in wave) == sorted(p["domain"] for p in placement)
    for wave in waves:
        assert 1 <= len(wave) <= case["per_source"]
        for dest in ("h2", "h3", "h4"):
            assert sum(1 for item in wave if item["destination"] == dest) <= case["per_dest"]
    # Greedy packing needs no more waves than the tighter limit forces, plus one.
    into_h2 = sum(1 for p in placement if p["destination"] == "h2")
    assert len(waves) <= max(-(-len(placement) // case["per_source"]), -(-into_h2 // case["per_dest"])) + 1
