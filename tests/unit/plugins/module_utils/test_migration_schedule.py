"""migration_schedule: what the live_migration and rolling_maintenance roles compute (placement,
waves, per-host plan share, results), as plain functions. tests/unit/roles runs them through the
roles' vars with ansible-playbook."""
import itertools
import os
import subprocess
import sys

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.evacuation_planner import plan_evacuation
from ansible_collections.presplit.kvm.plugins.module_utils.migration_schedule import (
    ScheduleError, evacuation_limits, guest_hosts, host_migrations, host_problems, kernel_modes, live_migrate_args, migration_results,
    migration_stats, pack_waves, place_domains)
from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import DEFAULT_LIMITS


def test_place_round_robin_by_position_and_pinned_first():
    placement = place_domains(["a", "b", {"name": "c", "destination": "h9"}, "d"], ["h2", "h3"])
    assert placement == [{"domain": "a", "destination": "h2"}, {"domain": "b", "destination": "h3"},
                         {"domain": "c", "destination": "h9"}, {"domain": "d", "destination": "h3"}]


def test_place_keeps_plan_keys_and_needs_a_destination():
    # options by live_migrate's option names: an earlier name becomes the name it is an alias of.
    entry = {"name": "w1", "destination": "h2", "wave": 1, "after": ["x"], "options": {"bandwidth": 5}, "note": "-"}
    assert place_domains([entry], []) == [
        {"domain": "w1", "destination": "h2", "wave": 1, "after": ["x"], "options": {"bandwidth_mib_per_s": 5}}]
    with pytest.raises(ScheduleError, match="options of domain w1: 'speed' is not an option of presplit.kvm.live_migrate"):
        place_domains([dict(entry, options={"speed": 5})], [])
    with pytest.raises(ScheduleError, match="domain lonely has no destination"):
        place_domains(["lonely"], [])
    with pytest.raises(ScheduleError, match="domain entry 1 has no name"):
        place_domains([{"destination": "h2"}], ["h2"])
    with pytest.raises(ScheduleError, match="domains must be a list"):
        place_domains("a,b", ["h2"])


@pytest.mark.parametrize("per_source, per_dest", list(itertools.product((1, 2, 3, 5), (1, 2, 4))))
def test_packed_waves_respect_both_limits_and_keep_every_domain_once(per_source, per_dest):
    pending = place_domains(["d%d" % i for i in range(11)] + [{"name": "p%d" % i, "destination": "h2"} for i in range(3)],
                            ["h2", "h3", "h4"])
    waves = pack_waves(pending, per_source, per_dest)
    assert sorted(p["domain"] for wave in waves for p in wave) == sorted(p["domain"] for p in pending)
    for wave in waves:
        assert 1 <= len(wave) <= per_source
        for destination in ("h2", "h3", "h4"):
            assert sum(1 for p in wave if p["destination"] == destination) <= per_dest
    # First fit: no wave could have taken a domain of a later wave.
    assert len(waves) <= len(pending)


def test_planned_waves_stay_as_planned_and_the_rest_follow():
    pending = place_domains([{"name": "w2", "destination": "h3", "wave": "2"},
                             {"name": "w1a", "destination": "h2", "wave": 1},
                             {"name": "w1b", "destination": "h2", "wave": 1},
                             {"name": "free", "destination": "h3"}], [])
    waves = pack_waves(pending, 2, 1)
    # The planned wave 1 sends two to h2, more than per_dest allows: the plan's limits decided it.
    assert [[p["domain"] for p in wave] for wave in waves] == [["w1a", "w1b"], ["w2"], ["free"]]
    with pytest.raises(ScheduleError, match="domain x: wave must be an integer, got 'one'"):
        pack_waves([{"domain": "x", "destination": "h2", "wave": "one"}], 2, 1)
    with pytest.raises(ScheduleError, match="at least 1"):
        pack_waves(pending, 0, 1)


def test_host_migrations_from_a_real_plan():
    hosts = [{"name": name, "memory_free_mib": 65536} for name in ("h1", "h2", "h3")]
    domains = [{"name": "idle", "host": "h1", "memory_mib": 4096},
               {"name": "busy", "host": "h1", "memory_mib": 8192, "dirty_rate_mib_per_s": 2000},
               {"name": "other", "host": "h2", "memory_mib": 2048}]
    plan = plan_evacuation(hosts, domains, ["h1", "h2"], limits={"max_outgoing_per_host": 1})
    mine = host_migrations(plan, "h1")
    assert sorted(entry["name"] for entry in mine) == ["busy", "idle"]
    assert mine[0]["after"] == [] and mine[1]["after"] == [mine[0]["name"]]
    for entry in mine:
        assert entry["options"]["bandwidth_mib_per_s"] >= 1 and set(entry) == {"name", "destination", "wave", "after", "options"}
    assert [entry["name"] for entry in host_migrations(plan, "h2")] == ["other"]
    assert host_migrations(plan, "h3") == []
    with pytest.raises(ScheduleError, match="needs an evacuation plan with waves"):
        host_migrations({"failed": True}, "h1")
    old = {"waves": [{"wave": 1, "migrations": [{"domain": "x", "source": "h1", "destination": "h2"}]}]}
    with pytest.raises(ScheduleError, match="'x' lacks after, options"):
        host_migrations(old, "h1")


PLACEMENT = [{"domain": "done", "destination": "h2"}, {"domain": "ok", "destination": "h2"},
             {"domain": "broke", "destination": "h3"}, {"domain": "vanished", "destination": "h3"}]


def launch(domain):
    return {"live_migration_item": {"domain": domain}}


def test_results_status_per_domain_and_times():
    prechecks = [{"already_migrated": True}, {}, {}, {}]
    postchecks = [{"already_migrated": True}, {"already_migrated": True}, {"msg": "still on source"}, {}]
    outcomes = [
        {"item": launch("ok"), "changed": True, "started_at": 100.0, "elapsed_s": 5.5,
         "migration": {"total_time_ms": 5400, "downtime_ms": 40, "iterations": 3, "data_transferred_bytes": 7},
         "source_mappings": {"huge_split": 0}},
        {"item": launch("broke"), "failed": True, "msg": "migration failed: link down"},
        {"item": launch("vanished"), "changed": True, "started_at": 101.0, "elapsed_s": 1.0},
    ]
    clocks = [{"domains": ["ok", "broke"], "presplit_started": 90.0, "launched": 99.0,
               "presplit": [{"domain": "ok", "changed": True}]},
              {"domains": ["vanished"], "presplit_started": 100.0, "launched": 100.5, "presplit": []}]
    results = migration_results(PLACEMENT, prechecks, postchecks, outcomes, clocks, {"broke": 104.0}, "h1", True)
    by_name = {r["domain"]: r for r in results}
    assert [r["domain"] for r in results] == [p["domain"] for p in PLACEMENT]
    assert by_name["done"]["status"] == "already_migrated" and by_name["done"]["msg"] == "already running on h2"
    assert by_name["done"]["migration_started"] is None and by_name["done"]["presplit_started"] is None
    ok = by_name["ok"]
    assert (ok["status"], ok["msg"], ok["changed"]) == ("migrated", "running on h2 only", True)
    assert (ok["migration_started"], ok["migration_ended"]) == (100.0, 105.5)
    assert (ok["presplit_started"], ok["presplit_ended"], ok["presplit"]) == (90.0, 99.0, {"domain": "ok", "changed": True})
    assert (ok["downtime_ms"], ok["iterations"], ok["data_transferred"], ok["source_mappings"]) == (40, 3, 7, {"huge_split": 0})
    broke = by_name["broke"]
    assert (broke["status"], broke["msg"]) == ("failed", "migration failed: link down")
    # Failed before its call started: the wave's launch and the end of its wait bound it.
    assert (broke["migration_started"], broke["migration_ended"], broke["presplit"]) == (99.0, 104.0, None)
    vanished = by_name["vanished"]
    assert (vanished["status"], vanished["msg"]) == ("failed", "post-check: domain is not running on the destination only")
    assert all(r["source"] == "h1" for r in results)


def test_a_migration_whose_destination_then_went_silent_is_not_reported_as_never_migrated():
    """The migration succeeded; the post-check (failed_when: false) could not reach the
    destination: the result says both, and fails, since nothing confirms where it runs."""
    outcomes = [{"item": launch("ok"), "changed": True, "started_at": 1.0, "elapsed_s": 1.0}]
    post = {"failed": False, "failed_when_result": False,
            "msg": "cannot connect to destination libvirt qemu+tcp://h2/system: No route to host;"
                   " domain ok is not on the source and the destination cannot be checked"}
    result, = migration_results(PLACEMENT[1:2], [{}], [post], outcomes, [], {}, "h1", False)
    assert result["status"] == "failed" and result["changed"] is True
    assert result["msg"] == ("migrated (the migration completed), but the post-check cannot confirm it runs on h2: "
                             + post["msg"])
    # The one whose migration the same silence broke (its failure, too, registered with
    # failed_when: false) is told by its own message.
    broken = [{"item": launch("ok"), "failed": False, "failed_when_result": False,
               "msg": "migration failed: internal error: client socket is closed"}]
    result, = migration_results(PLACEMENT[1:2], [{}], [post], broken, [], {}, "h1", False)
    assert (result["status"], result["msg"]) == ("failed", "migration failed: internal error: client socket is closed")


def test_results_without_presplit_have_no_presplit_times_and_checks_must_line_up():
    outcomes = [{"item": launch("ok"), "started_at": 1.0, "elapsed_s": 1.0}]
    clocks = [{"domains": ["ok"], "presplit_started": 0.5, "launched": 0.9, "presplit": []}]
    result, = migration_results(PLACEMENT[1:2], [{}], [{"already_migrated": True}], outcomes, clocks, {}, "h1", False)
    assert result["status"] == "migrated" and result["presplit_started"] is None and result["presplit_ended"] is None
    with pytest.raises(ScheduleError, match="2 placements but 1 pre-checks and 2 post-checks"):
        migration_results(PLACEMENT[:2], [{}], [{}, {}], [], [], {}, "h1", True)


def test_results_of_a_stopped_run_say_which_domains_never_started():
    """A stop file kept the second wave from starting: its domain was never launched and
    fails as not started; the domain of the first wave is judged as always."""
    outcomes = [{"item": launch("ok"), "changed": True, "started_at": 1.0, "elapsed_s": 1.0}]
    clocks = [{"domains": ["ok"], "presplit_started": 0.5, "launched": 0.9, "presplit": []}]
    placement = PLACEMENT[1:2] + [{"domain": "later", "destination": "h3"}]
    ok, later = migration_results(placement, [{}, {}], [{"already_migrated": True}, {}], outcomes, clocks, {}, "h1",
                                  True, [], "/srv/stop-kernel-2026-12")
    assert (ok["status"], later["status"]) == ("migrated", "failed")
    assert later["msg"] == "not started: the stop file /srv/stop-kernel-2026-12 appeared; still on h1"
    assert later["migration_started"] is None and later["presplit_started"] is None


def test_results_carry_the_kernel_modes_of_their_hosts():
    """From host_info results registered over the hosts' names; a host that failed, was
    unreachable, was skipped or gave a mode the collection does not know is unknown (None)."""
    host_facts = [{"item": "h1", "host": {"mode": "patched"}},
                  {"item": "h2", "host": {"mode": "eager-split-only"}},
                  {"item": "h3", "failed": True, "msg": "libvirt is down", "host": {"mode": "patched"}},
                  {"item": "h9", "host": {"mode": ["patched"]}},
                  {"item": "h8", "unreachable": True},
                  {"item": "h7", "skipped": True}]
    assert kernel_modes(host_facts) == {"h1": "patched", "h2": "eager-split-only", "h3": None, "h9": None,
                                        "h8": None, "h7": None}
    assert kernel_modes(None) == {} and kernel_modes([{"host": {"mode": "patched"}}, "h1"]) == {}
    results = migration_results(PLACEMENT[1:3], [{}, {}], [{}, {}], [], [], {}, "h1", False, host_facts)
    assert [(r["source_kernel_mode"], r["destination_kernel_mode"]) for r in results] == [
        ("patched", "eager-split-only"), ("patched", None)]
    # Without facts (the role wrote no report), nothing is known.
    result = migration_results(PLACEMENT[1:2], [{}], [{}], [], [], {}, "h1", False)[0]
    assert (result["source_kernel_mode"], result["destination_kernel_mode"]) == (None, None)


def test_guest_hosts_counts_only_hosts_that_answered():
    listings = [{"item": "h1", "rc": 0, "stdout_lines": ["a", "b", ""]},
                {"item": "h2", "rc": 0, "stdout_lines": ["b"]},
                {"item": "h3", "rc": 1, "stdout_lines": ["a"]},           # virsh failed
                {"item": "h4", "unreachable": True}]
    assert guest_hosts(listings, ["b", "a", "c", "a"]) == {"a": ["h1"], "b": ["h1", "h2"], "c": []}


def test_migration_stats_count_statuses_and_name_the_reports():
    results = [{"domain": "a", "status": "migrated"}, {"domain": "b", "status": "failed"},
               {"domain": "c", "status": "already_migrated"}, {"domain": "d", "status": "failed"}]
    report = {"changed": True, "json_path": "/r/x.json", "html_path": "/r/x.html"}
    assert migration_stats(results, report) == {
        "domains": 4, "migrated": 1, "already_migrated": 1, "failed": 2, "failed_domains": ["b", "d"],
        "report_json": "/r/x.json", "report_html": "/r/x.html"}
    # No report written: the role's registered result is a skipped task, or nothing.
    for skipped in ({"skipped": True, "changed": False}, None):
        stats = migration_stats(results[:1], skipped)
        assert (stats["migrated"], stats["report_json"], stats["report_html"]) == (1, None, None)
    with pytest.raises(ScheduleError, match="results must be a list"):
        migration_stats({"domain": "a"})
    with pytest.raises(ScheduleError, match="results must be a list"):
        migration_stats(["a"])


def test_live_migrate_args_name_options_as_the_module_does():
    args = live_migrate_args({"max_downtime": 300, "uri": "qemu:///session"}, uri="qemu:///system", transport="ssh")
    assert args == {"max_downtime_ms": 300, "uri": "qemu:///system", "transport": "ssh"}
    # The role's own source_uri replaces the user's uri, whichever name each used.
    assert live_migrate_args({"uri": "qemu:///session"}, source_uri="qemu:///system") == {"uri": "qemu:///system"}
    with pytest.raises(ScheduleError, match="live_migrate options: 'downtime' is not an option"):
        live_migrate_args({"downtime": 3})
    with pytest.raises(ScheduleError, match="must be a mapping"):
        live_migrate_args("max_downtime_ms=3")


def test_evacuation_limits_fill_in_the_planner_defaults():
    limits = evacuation_limits({"max_outgoing_per_host": 1})
    assert limits == dict(DEFAULT_LIMITS, max_outgoing_per_host=1)
    assert evacuation_limits({}) == DEFAULT_LIMITS
    with pytest.raises(ScheduleError, match="unknown limit max_outgoing"):
        evacuation_limits({"max_outgoing": 1})
    with pytest.raises(ScheduleError, match="limit max_incoming_per_host must be positive"):
        evacuation_limits({"max_incoming_per_host": 0})
    with pytest.raises(ScheduleError, match="limits must be a mapping"):
        evacuation_limits([1])


def test_host_problems_name_each_host_that_keeps_the_maintenance_from_starting():
    healthy = {"host": {"libvirt_error": None}}
    peers = [dict(healthy, item="h2"),
             {"item": "h3", "unreachable": True, "msg": "Failed to connect to the host via ssh: timed out\n"},
             {"item": "h4", "failed": True, "msg": "MODULE FAILURE"},
             {"item": "h5", "host": {"libvirt_error": "cannot connect to qemu:///system: No such file"}}]
    assert host_problems(healthy, "h1", [dict(healthy, item="h2")]) == []
    assert host_problems({"host": {"libvirt_error": "libvirtd is down"}}, "h1", peers) == [
        "libvirt on h1 does not answer: libvirtd is down",
        "destination h3 cannot be read: Failed to connect to the host via ssh: timed out",
        "destination h4 cannot be read: MODULE FAILURE",
        "destination h5: libvirt does not answer: cannot connect to qemu:///system: No such file"]


def test_the_filters_report_bad_input_as_ansible_shows_it():
    """In a subprocess: importing ansible's controller side here would change how the module
    tests of this process see warnings."""
    script = ("from ansible.errors import AnsibleFilterError\n"
              "from ansible_collections.presplit.kvm.plugins.filter.migration_schedule import FilterModule\n"
              "filters = FilterModule().filters()\n"
              "print(sorted(filters))\n"
              "print(filters['place_domains'](['a'], ['h2']))\n"
              "try:\n"
              "    filters['place_domains'](['lonely'], [])\n"
              "except AnsibleFilterError as error:\n"
              "    print(error)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "['evacuation_limits', 'guest_hosts', 'host_migrations', 'host_problems', 'host_start_blocker', 'live_migrate_args', 'migration_results',"
        " 'migration_stats', 'pack_waves', 'place_domains']",
        "[{'domain': 'a', 'destination': 'h2'}]",
        "presplit.kvm.place_domains: domain lonely has no destination: give it one, or give destinations"]
