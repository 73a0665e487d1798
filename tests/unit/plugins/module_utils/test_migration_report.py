# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run record and its HTML page: shaping, phases, failures, plan versus actual, escaping."""

import json
import re
import xml.dom.minidom

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.presplit.kvm.plugins.module_utils.migration_report import (
    ReportError, build_record, render_html, render_timeline)

T0 = 1764090000.0


def result(domain, destination, status="migrated", start=0.0, presplit_s=0.5, migration_s=2.0, downtime_ms=120,
           msg="running on the destination only"):
    """One live_migration_results entry whose phases start `start` seconds after T0."""
    return {
        "domain": domain, "source": "h1", "destination": destination, "status": status, "changed": True,
        "total_time_ms": int(migration_s * 1000) if status == "migrated" else None,
        "downtime_ms": downtime_ms if status == "migrated" else None,
        "iterations": 3 if status == "migrated" else None,
        "data_transferred": 140 * 2 ** 20 if status == "migrated" else None,
        "presplit_started": T0 + start, "presplit_ended": T0 + start + presplit_s,
        "migration_started": T0 + start + presplit_s, "migration_ended": T0 + start + presplit_s + migration_s,
        "msg": msg,
    }


PLAN = {
    "waves": [
        {"wave": 1, "start_s": 0.0, "duration_s": 2.5, "wait_for": [], "migrations": [
            {"domain": "vm1", "source": "h1", "destination": "h2", "mode": "pre_copy", "duration_s": 2.5,
             "downtime_ms": 100.0, "wave": 1, "start_s": 0.0, "end_s": 2.5},
            {"domain": "vm2", "source": "h1", "destination": "h2", "mode": "auto_converge", "duration_s": 4.0,
             "downtime_ms": 250.0, "wave": 1, "start_s": 0.0, "end_s": 4.0}]},
        {"wave": 2, "start_s": 4.0, "duration_s": 1.0, "wait_for": ["vm2"], "migrations": [
            {"domain": "elsewhere", "source": "h9", "destination": "h2", "mode": "pre_copy", "duration_s": 1.0,
             "downtime_ms": 50.0, "wave": 2, "start_s": 4.0, "end_s": 5.0}]},
    ],
    "summary": {"makespan_s": 5.0},
}


def test_record_shapes_each_result_with_its_phases_and_totals():
    record = build_record([result("vm1", "h2"), result("vm2", "h3", start=3.0, migration_s=4.0, downtime_ms=0)])

    assert record["hosts"] == ["h1", "h2", "h3"]
    assert record["started"] == T0 and record["ended"] == T0 + 7.5
    vm1 = record["migrations"][0]
    assert vm1["phases"] == {"presplit": [T0, T0 + 0.5], "setup": None, "precopy": [T0 + 0.5, T0 + 2.38],
                             "downtime": [T0 + 2.38, T0 + 2.5]}
    assert vm1["measured_s"] == 2.0
    # No downtime measured: no downtime phase, pre-copy runs to the end.
    assert record["migrations"][1]["phases"]["downtime"] is None
    assert record["migrations"][1]["phases"]["precopy"] == [T0 + 3.5, T0 + 7.5]
    assert record["summary"] == {"domains": 2, "migrated": 2, "already_migrated": 0, "failed": 0,
                                 "wall_time_s": 7.5, "max_downtime_ms": 120, "data_transferred": 2 * 140 * 2 ** 20}
    assert record["failures"] == [] and record["plan_vs_actual"] is None
    json.dumps(record)


def test_launch_time_the_libvirt_job_does_not_cover_is_start_up():
    entry = dict(result("vm1", "h2", migration_s=3.0), total_time_ms=1800)
    record = build_record([entry])

    phases = record["migrations"][0]["phases"]
    assert phases["setup"] == [T0 + 0.5, T0 + 1.7]
    assert phases["precopy"] == [T0 + 1.7, T0 + 3.38]
    # The duration compared with the plan is the job's, not the launch overhead.
    assert record["migrations"][0]["measured_s"] == 1.8
    assert 'class="phase setup"' in render_timeline(record)


def test_record_without_timestamps_has_no_span_and_measures_from_the_job():
    entry = result("vm1", "h2")
    for key in ("presplit_started", "presplit_ended", "migration_started", "migration_ended"):
        entry[key] = None
    record = build_record([entry, {"domain": "vm0", "status": "already_migrated", "destination": "h3"}])

    assert record["started"] is None and record["summary"]["wall_time_s"] is None
    assert record["migrations"][0]["measured_s"] == 2.0
    assert record["summary"]["already_migrated"] == 1
    assert "no timeline" in render_timeline(record)


def test_record_is_the_same_for_the_same_input():
    results = [result("vm1", "h2"), result("vm2", "h3", status="failed", msg="boom")]
    assert json.dumps(build_record(results, PLAN), sort_keys=True) == json.dumps(build_record(results, PLAN),
                                                                                 sort_keys=True)


@pytest.mark.parametrize("results, message", [
    ("vm1", "must be a list"),
    ([{"status": "migrated"}], "needs a 'domain'"),
    ([{"domain": "vm1", "status": "gone"}], "unknown status 'gone'"),
    # Figures that are not finite numbers, named with their domain (not a traceback, not NaN in the record).
    ([{"domain": "vm1", "status": "migrated", "migration_started": "soon"}],
     r"result for vm1: migration_started must be a number from 0 to 4102444800, not 'soon'"),
    ([{"domain": "vm1", "status": "migrated", "total_time_ms": float("nan")}],
     r"result for vm1: total_time_ms must be a number from 0 to 2592000000, not nan"),
    ([{"domain": "vm1", "status": "migrated", "downtime_ms": float("inf")}],
     r"result for vm1: downtime_ms must be a number from 0 to 2592000000, not inf"),
    ([{"domain": "vm1", "status": "failed", "iterations": [3]}], r"result for vm1: iterations must be a number from 0 to 4294967296, not \[3\]"),
    ([{"domain": "vm1", "status": "migrated", "data_transferred": True}],
     r"result for vm1: data_transferred must be a number from 0 to 4611686018427387904, not True"),
])
def test_bad_results_are_refused_with_the_reason(results, message):
    with pytest.raises(ReportError, match=message):
        build_record(results)


def test_huge_mappings_before_and_after_the_presplit_and_split_in_the_migration():
    presplit = {"domain": "vm1", "status": "split", "before": {"pages_4k": 476, "pages_2m": 121, "pages_1g": 1},
                "after": {"pages_4k": 62940, "pages_2m": 0, "pages_1g": 0}, "nr_split": 122}
    mappings = {"source": "stats-fd", "at_start": {"pages_4k": 62940, "pages_2m": 0, "pages_1g": 0},
                "huge_split": 0}
    baseline = {"source": "debugfs", "at_start": {"pages_4k": 400, "pages_2m": 104}, "huge_split": 97}
    record = build_record([dict(result("vm1", "h2"), presplit=presplit, source_mappings=mappings),
                           dict(result("vm2", "h2"), presplit=None, source_mappings=baseline),
                           result("vm3", "h2")])

    assert [m["huge_mappings"] for m in record["migrations"]] == [
        {"presplit_status": "split", "before_presplit": 122, "after_presplit": 0, "at_migration_start": 0,
         "split_in_migration": 0},
        {"presplit_status": None, "before_presplit": None, "after_presplit": None, "at_migration_start": 104,
         "split_in_migration": 97},
        {"presplit_status": None, "before_presplit": None, "after_presplit": None, "at_migration_start": None,
         "split_in_migration": None}]
    page = render_html(record)
    assert "<td>122 / 0</td><td>0</td>" in page and "<td>-</td><td>97</td>" in page


def test_kernel_modes_of_both_hosts_are_recorded_and_shown():
    record = build_record([dict(result("vm1", "h2"), source_kernel_mode="patched",
                                destination_kernel_mode="eager-split-only"),
                           result("vm2", "h2")])
    assert [(m["source_kernel_mode"], m["destination_kernel_mode"]) for m in record["migrations"]] == [
        ("patched", "eager-split-only"), (None, None)]
    page = render_html(record)
    assert "<td>patched / eager-split-only</td>" in page and "<td>unknown / unknown</td>" in page


@pytest.mark.parametrize("mode", ["shiny", 3, ["patched"], "patched\n"])
def test_a_kernel_mode_that_is_not_one_is_refused(mode):
    with pytest.raises(ReportError, match="result for vm1: destination_kernel_mode must be one of patched, "
                                          "eager-split-only, none, not "):
        build_record([dict(result("vm1", "h2"), destination_kernel_mode=mode)])


@pytest.mark.parametrize("extra, message", [
    ({"presplit": {"before": {"pages_2m": "many"}}}, r"presplit.before.pages_2m must be a non-negative whole"),
    ({"presplit": {"before": {"pages_2m": -1}}}, r"presplit.before.pages_2m must be a non-negative whole"),
    ({"presplit": {"after": [1, 2]}}, r"presplit.after must be a dict"),
    ({"source_mappings": {"huge_split": 1.5}}, r"source_mappings.huge_split must be a whole number"),
    ({"source_mappings": {"huge_split": True}}, r"source_mappings.huge_split must be a whole number"),
    ({"source_mappings": "97"}, r"presplit and source_mappings must be dicts"),
    ({"presplit": {"status": 3}}, r"presplit.status must be a string"),
])
def test_malformed_mapping_counts_are_refused_naming_the_field(extra, message):
    with pytest.raises(ReportError, match="result for vm1: " + message):
        build_record([dict(result("vm1", "h2"), **extra)])


def test_a_plan_without_waves_is_refused():
    with pytest.raises(ReportError, match="evacuation_plan"):
        build_record([result("vm1", "h2")], {"placement": {}})


def test_failures_are_listed_and_shown_first_on_the_page():
    failed = result("vm3", "h3", status="failed", msg="migration failed: connection reset by peer")
    record = build_record([result("vm1", "h2"), failed])

    assert record["failures"] == [{"domain": "vm3", "source": "h1", "destination": "h3",
                                   "msg": "migration failed: connection reset by peer"}]
    assert record["summary"]["failed"] == 1
    page = render_html(record)
    assert "1 failed migration<" in page
    # The failures section comes before the timeline and the tables.
    assert page.index("connection reset by peer") < page.index("<h2>Timeline</h2>")
    assert 'class="failed-outline"' in page
    assert "No failures" not in page


def test_a_clean_run_says_so():
    page = render_html(build_record([result("vm1", "h2")]))
    assert "No failures" in page and 'class="failures"' not in page


def test_plan_versus_actual_compares_each_planned_domain():
    results = [result("vm1", "h2", migration_s=3.0), result("vm2", "h3", start=3.5, status="failed", msg="x")]
    record = build_record(results, PLAN)

    vm1, vm2 = record["plan_vs_actual"][0], record["plan_vs_actual"][1]
    assert len(record["plan_vs_actual"]) == 2
    assert vm1 == {"domain": "vm1", "status": "migrated", "planned_destination": "h2", "destination": "h2",
                   "mode": "pre_copy", "wave": 1, "predicted_s": 2.5, "measured_s": 3.0,
                   "measured_over_predicted": 1.2, "predicted_downtime_ms": 100.0, "downtime_ms": 120}
    # A failed migration has no measured duration to compare, and went elsewhere than planned.
    assert vm2["measured_s"] is None and vm2["measured_over_predicted"] is None
    assert (vm2["planned_destination"], vm2["destination"]) == ("h2", "h3")
    assert record["summary"]["planned_makespan_s"] == 5.0
    page = render_html(record)
    assert "1.20\u00d7" in page
    assert '<td class="differs">h3</td>' in page


def test_plan_section_says_when_there_is_no_plan():
    assert "No evacuation plan was given" in render_html(build_record([result("vm1", "h2")]))


HOSTILE = '"><script>alert(1)</script>&amp; <img src=x onerror=alert(2)> \u00e9\u6f22\u5b57 \'q\''


def test_hostile_names_and_messages_are_escaped_everywhere():
    results = [dict(result(HOSTILE, "h2<b>", status="failed", msg="<i>" + HOSTILE), source='h"1'),
               result("vm1", "h2")]
    page = render_html(build_record(results, PLAN, title=HOSTILE))

    assert "<script" not in page and "<img" not in page and "<i>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;" in page
    assert "&quot;&gt;" in page and "&#x27;q&#x27;" in page
    assert "\u00e9\u6f22\u5b57" in page
    # Every attribute value stays inside its quotes: the SVG parses as XML and names what it should.
    svg = re.search(r"<svg.*</svg>", page, re.S).group(0)
    tree = xml.dom.minidom.parseString(svg.encode("utf-8"))
    labels = [node.firstChild.data for node in tree.getElementsByTagName("text")]
    assert any(HOSTILE in label for label in labels)
    hosts = {node.firstChild.data for node in tree.getElementsByTagName("text")
             if node.getAttribute("class") == "host"}
    assert hosts == {'h"1', "h1", "h2", "h2<b>"}


def test_timeline_has_one_lane_per_host_and_stacks_overlapping_bars():
    # vm1 and vm2 overlap in time on h1: they need two rows; vm3 comes after and reuses the first.
    results = [result("vm1", "h2"), result("vm2", "h3", start=1.0), result("vm3", "h2", start=5.0)]
    svg = render_timeline(build_record(results))
    tree = xml.dom.minidom.parseString(svg.encode("utf-8"))

    lanes = [node for node in tree.getElementsByTagName("rect") if "lane" in node.getAttribute("class")]
    assert len(lanes) == 3
    outgoing = [g for g in tree.getElementsByTagName("g") if g.getAttribute("class").startswith("bar out")]
    incoming = [g for g in tree.getElementsByTagName("g") if g.getAttribute("class").startswith("bar in")]
    assert len(outgoing) == 3 and len(incoming) == 3
    rows = {g.getElementsByTagName("text")[0].firstChild.data.split()[0]:
            float(g.getElementsByTagName("rect")[0].getAttribute("y")) for g in outgoing}
    assert rows["vm1"] == rows["vm3"] != rows["vm2"]
    phases = [r.getAttribute("class") for r in outgoing[0].getElementsByTagName("rect")]
    assert phases == ["phase presplit", "phase precopy", "phase downtime"]
    # The h1 lane holds two rows, so it is taller than the single-row destination lanes.
    heights = [float(lane.getAttribute("height")) for lane in lanes]
    assert heights[0] > heights[1] == heights[2]


FIGURES = ("presplit_started", "presplit_ended", "migration_started", "migration_ended", "total_time_ms", "downtime_ms",
           "iterations", "data_transferred")
HOSTILE_FIGURE = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                           st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                           st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(figures=st.dictionaries(st.sampled_from(FIGURES), HOSTILE_FIGURE, max_size=4))
def test_any_figures_give_a_record_that_is_json_or_a_report_error(figures):
    try:
        record = build_record([dict(result("vm1", "h2"), **figures)])
    except ReportError as error:
        assert "result for vm1: " in str(error) and "\n" not in str(error)
        return
    json.dumps(record, allow_nan=False)
    render_html(record)
