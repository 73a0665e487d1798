# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The record and the self-contained HTML page of a live migration run.

Pure Python (the standard library and the planner's kernel modes): ``build_record`` shapes the results of the
live_migration role (plus, optionally, the output of presplit.kvm.evacuation_plan)
into a JSON-ready dict, and ``render_html`` draws that record as one HTML page with
inline CSS and an inline SVG timeline, so the page opens anywhere, offline.

The record depends on its inputs only (no clock, no host name), so writing it
again for the same run yields the same bytes.
"""

import datetime
import html
import math

from ansible_collections.presplit.kvm.plugins.module_utils.planner_model import KERNEL_MODES

RECORD_VERSION = 1
STATUSES = ("migrated", "already_migrated", "failed")

# Timeline geometry, in SVG user units (pixels at 100% zoom).
LANE_LABEL_W = 90
PLOT_W = 900
ROW_H = 22
ROW_GAP = 4
LANE_PAD = 8
AXIS_H = 28
# A 100 ms downtime in a 5 min run would be invisible: draw at least this wide.
MIN_PHASE_W = 3

PHASE_COLOURS = {"presplit": "#7b61c4", "setup": "#aab3c0", "precopy": "#2f80c9", "downtime": "#e8912d", "incoming": "#9cc3e6",
                 "failed": "#e06666"}


class ReportError(Exception):
    """The results or the plan cannot be turned into a report."""


# What a figure of a result can be: epoch seconds between 1970 and 2100, durations up to 30
# days, counts and bytes as large as a migration makes them. A figure outside is not a
# measurement (and a timeline over millennia would take its time to draw).
EPOCH_RANGE = (0, 4102444800)
FIGURE_RANGES = {
    "presplit_started": EPOCH_RANGE, "presplit_ended": EPOCH_RANGE,
    "migration_started": EPOCH_RANGE, "migration_ended": EPOCH_RANGE,
    "total_time_ms": (0, 30 * 86400 * 1000), "downtime_ms": (0, 30 * 86400 * 1000),
    "iterations": (0, 1 << 32), "data_transferred": (0, 1 << 62),
    "duration_s": (0, 30 * 86400), "makespan_s": (0, 365 * 86400),
}


def _figure(result, key, owner=None):
    """result[key] as a number, or None when it is missing or empty; raises ReportError,
    naming the domain and the field, for anything but a finite number in FIGURE_RANGES."""
    value = result.get(key)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    lowest, highest = FIGURE_RANGES[key]
    if isinstance(value, bool) or number is None or not lowest <= number <= highest:
        raise ReportError("%s: %s must be a number from %d to %d, not %r"
                          % (owner or "result for %s" % result.get("domain"), key, lowest, highest, value))
    # A whole number stays one (a count, milliseconds as libvirt gave them).
    return value if isinstance(value, int) else number


def _interval(start, end):
    if start is None or end is None or end < start:
        return None
    return [round(start, 3), round(end, 3)]


def _phases(result):
    """Wall-clock [start, end] (epoch s) of each phase; None where unknown.

    The controller knows when it launched a migration and when it ended; libvirt's job
    time (total_time_ms) says how much of that was the migration job itself, the rest
    being start-up (module start, connecting to the destination).
    """
    presplit = _interval(_figure(result, "presplit_started"), _figure(result, "presplit_ended"))
    started = _figure(result, "migration_started")
    ended = _figure(result, "migration_ended")
    if _interval(started, ended) is None:
        return {"presplit": presplit, "setup": None, "precopy": None, "downtime": None}
    job_s = _figure(result, "total_time_ms")
    job_started = started if job_s is None else min(ended, max(started, ended - job_s / 1000.0))
    downtime_s = (_figure(result, "downtime_ms") or 0.0) / 1000.0
    # The guest is paused at the very end of the job (the last copy pass).
    pause = max(job_started, ended - downtime_s)
    return {"presplit": presplit,
            "setup": _interval(started, job_started) if job_started - started >= 0.001 else None,
            "precopy": _interval(job_started, pause),
            "downtime": _interval(pause, ended) if downtime_s else None}


def _planned_migrations(plan):
    """Map domain -> planned migration from an evacuation_plan output."""
    if not isinstance(plan, dict) or not isinstance(plan.get("waves"), list):
        raise ReportError("plan must be the output of presplit.kvm.evacuation_plan with detail: full (a dict with 'waves')")
    planned = {}
    for wave in plan["waves"]:
        for migration in wave.get("migrations", []):
            planned[str(migration["domain"])] = migration
    return planned


def _count(value, what, domain):
    """A non-negative whole count, or None for a missing one."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportError("result for %s: %s must be a non-negative whole number, not %r" % (domain, what, value))
    return value


def _huge(counts, what, domain):
    """2 MiB + 1 GiB mappings of a mapping-count dict (None when there is none)."""
    if counts is None:
        return None
    if not isinstance(counts, dict):
        raise ReportError("result for %s: %s must be a dict of mapping counts, not %r" % (domain, what, counts))
    return sum(_count(counts.get(name, 0), "%s.%s" % (what, name), domain) or 0 for name in ("pages_2m", "pages_1g"))


def _huge_mappings(result):
    """The guest's huge mappings as KVM counted them: before and after its pre-split (the
    presplit entry of split_huge_pages) and split inside the migration (the module's
    source_mappings); None where not measured."""
    domain = result["domain"]
    presplit = result.get("presplit") or {}
    mappings = result.get("source_mappings") or {}
    if not isinstance(presplit, dict) or not isinstance(mappings, dict):
        raise ReportError("result for %s: presplit and source_mappings must be dicts" % domain)
    split = mappings.get("huge_split")
    if split is not None and (isinstance(split, bool) or not isinstance(split, int)):
        raise ReportError("result for %s: source_mappings.huge_split must be a whole number, not %r" % (domain, split))
    status = presplit.get("status")
    if status is not None and not isinstance(status, str):
        raise ReportError("result for %s: presplit.status must be a string, not %r" % (domain, status))
    return {"presplit_status": status,
            "before_presplit": _huge(presplit.get("before"), "presplit.before", domain),
            "after_presplit": _huge(presplit.get("after"), "presplit.after", domain),
            "at_migration_start": _huge(mappings.get("at_start"), "source_mappings.at_start", domain),
            "split_in_migration": split}


def _kernel_mode(result, key):
    """result[key] if it is a kernel mode or missing (None); raises ReportError otherwise."""
    mode = result.get(key)
    if mode is not None and (not isinstance(mode, str) or mode not in KERNEL_MODES):
        raise ReportError("result for %s: %s must be one of %s, not %r"
                          % (result["domain"], key, ", ".join(KERNEL_MODES), mode))
    return mode


def _migration_entry(result):
    for key in ("domain", "status"):
        if key not in result:
            raise ReportError("every result needs a %r: %r" % (key, result))
    if result["status"] not in STATUSES:
        raise ReportError("result for %s has unknown status %r (expected one of %s)"
                          % (result["domain"], result["status"], ", ".join(STATUSES)))
    phases = _phases(result)
    # The migration job's own duration, which is what the planner predicts; without it,
    # the wall time from launch to end.
    measured = _figure(result, "total_time_ms")
    if measured is not None:
        measured = round(measured / 1000.0, 3)
    elif phases["precopy"] is not None:
        launched = (phases["setup"] or phases["precopy"])[0]
        measured = round((phases["downtime"] or phases["precopy"])[1] - launched, 3)
    return {
        "domain": str(result["domain"]),
        "source": str(result.get("source") or ""),
        "destination": str(result.get("destination") or ""),
        "source_kernel_mode": _kernel_mode(result, "source_kernel_mode"),
        "destination_kernel_mode": _kernel_mode(result, "destination_kernel_mode"),
        "status": result["status"],
        "msg": str(result.get("msg") or ""),
        "total_time_ms": _figure(result, "total_time_ms"),
        "downtime_ms": _figure(result, "downtime_ms"),
        "iterations": _figure(result, "iterations"),
        "data_transferred": _figure(result, "data_transferred"),
        "measured_s": measured,
        "phases": phases,
        "huge_mappings": _huge_mappings(result),
    }


def _plan_comparison(migrations, planned):
    rows = []
    for entry in migrations:
        predicted = planned.get(entry["domain"])
        if predicted is None:
            continue
        predicted_s = _figure(predicted, "duration_s", "planned migration of %s" % entry["domain"])
        measured_s = entry["measured_s"] if entry["status"] == "migrated" else None
        ratio = None
        if predicted_s and measured_s is not None:
            ratio = round(measured_s / predicted_s, 3)
        rows.append({
            "domain": entry["domain"],
            "status": entry["status"],
            "planned_destination": str(predicted.get("destination") or ""),
            "destination": entry["destination"],
            "mode": predicted.get("mode"),
            "wave": predicted.get("wave"),
            "predicted_s": predicted_s,
            "measured_s": measured_s,
            "measured_over_predicted": ratio,
            "predicted_downtime_ms": predicted.get("downtime_ms"),
            "downtime_ms": entry["downtime_ms"],
        })
    return rows


def _span(migrations):
    """Earliest start and latest end over every phase of every migration, or (None, None)."""
    edges = [edge for entry in migrations for phase in entry["phases"].values() if phase for edge in phase]
    if not edges:
        return None, None
    return min(edges), max(edges)


def build_record(results, plan=None, title="Live migration run"):
    """The JSON-ready record of a run: one entry per result, failures, hosts and totals.

    ``results``: the live_migration role's ``live_migration_results`` (dicts with domain,
    source, destination, status, the job figures, msg and the phase timestamps).
    ``plan``: optional presplit.kvm.evacuation_plan output, compared with what happened.
    """
    if not isinstance(results, list):
        raise ReportError("results must be a list of dicts")
    migrations = [_migration_entry(result) for result in results]
    started, ended = _span(migrations)
    hosts = sorted({h for entry in migrations for h in (entry["source"], entry["destination"]) if h})
    failures = [{key: entry[key] for key in ("domain", "source", "destination", "msg")}
                for entry in migrations if entry["status"] == "failed"]
    downtimes = [entry["downtime_ms"] for entry in migrations if entry["downtime_ms"] is not None]
    summary = {
        "domains": len(migrations),
        "migrated": sum(1 for entry in migrations if entry["status"] == "migrated"),
        "already_migrated": sum(1 for entry in migrations if entry["status"] == "already_migrated"),
        "failed": len(failures),
        "wall_time_s": round(ended - started, 3) if started is not None else None,
        "max_downtime_ms": max(downtimes) if downtimes else None,
        "data_transferred": sum(int(entry["data_transferred"] or 0) for entry in migrations),
    }
    record = {
        "version": RECORD_VERSION,
        "title": str(title),
        "started": started,
        "ended": ended,
        "hosts": hosts,
        "summary": summary,
        "failures": failures,
        "migrations": migrations,
        "plan_vs_actual": None,
    }
    if plan:
        record["plan_vs_actual"] = _plan_comparison(migrations, _planned_migrations(plan))
        summary["planned_makespan_s"] = _figure(plan.get("summary", {}), "makespan_s", "plan summary")
    return record


# --- HTML -------------------------------------------------------------------------------------

def _e(value):
    """Text or attribute value made safe for HTML and inline SVG (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def _utc(epoch):
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value):
    return "-" if value is None else "%.2f s" % value


def _cell(value, fmt="%s"):
    return "-" if value is None or value == "" else fmt % value


def _mib(value):
    return "-" if value is None else "%.1f" % (int(value) / 1048576.0)


def _tick_step(span_s):
    """A round tick interval giving about 5 to 10 ticks over span_s seconds."""
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400):
        if span_s / step <= 10:
            return step
    return 14400 * math.ceil(span_s / 144000.0)


def _pack_rows(bars):
    """Assign each (start, end, ...) bar the first row of its lane where it overlaps nothing."""
    row_ends = []
    placed = []
    for span in sorted(bars, key=lambda b: (b[0], b[1])):
        for row, end in enumerate(row_ends):
            if span[0] >= end:
                row_ends[row] = span[1]
                break
        else:
            row = len(row_ends)
            row_ends.append(span[1])
        placed.append((row, span))
    return placed, max(1, len(row_ends))


def _lane_bars(record):
    """Per host: outgoing bars (every phase) on the source, incoming bars on the destination."""
    lanes = {host: [] for host in record["hosts"]}
    for entry in record["migrations"]:
        phases = entry["phases"]
        known = [phase for phase in phases.values() if phase]
        if not known:
            continue
        start, end = min(p[0] for p in known), max(p[1] for p in known)
        if entry["source"]:
            lanes[entry["source"]].append((start, end, entry, "out"))
        migration = [p for p in (phases["precopy"], phases["downtime"]) if p]
        if entry["destination"] and migration:
            lanes[entry["destination"]].append((migration[0][0], migration[-1][1], entry, "in"))
    return lanes


def _svg_bar(entry, direction, row_y, x_of):
    phases = entry["phases"]
    label = "%s %s %s" % (entry["domain"], "\u2192" if direction == "out" else "\u2190",
                          entry["destination"] if direction == "out" else entry["source"])
    parts = ['<g class="bar %s %s">' % (direction, _e(entry["status"]))]
    title_lines = [label, "status: %s" % entry["status"]]
    drawn = []
    names = ("presplit", "setup", "precopy", "downtime") if direction == "out" else ("precopy", "downtime")
    for name in names:
        phase = phases[name]
        if not phase:
            continue
        x0 = x_of(phase[0])
        width = max(MIN_PHASE_W, x_of(phase[1]) - x0)
        colour = PHASE_COLOURS[name]
        if name == "precopy" and entry["status"] == "failed":
            colour = PHASE_COLOURS["failed"]
        elif name == "precopy" and direction == "in":
            colour = PHASE_COLOURS["incoming"]
        parts.append('<rect class="phase %s" x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s"/>'
                     % (name, x0, row_y, width, ROW_H, colour))
        title_lines.append("%s: %.2f s" % (name, phase[1] - phase[0]))
        drawn.append((x0, x0 + width))
    left, right = drawn[0][0], drawn[-1][1]
    if entry["status"] == "failed":
        parts.append('<rect class="failed-outline" x="%.1f" y="%.1f" width="%.1f" height="%d"/>'
                     % (left, row_y, right - left, ROW_H))
        label = "\u2716 " + label
    parts.append('<text x="%.1f" y="%.1f" class="bar-label">%s</text>' % (left + 4, row_y + ROW_H - 7, _e(label)))
    parts.append("<title>%s</title></g>" % _e("\n".join(title_lines)))
    return "".join(parts)


def _ticks(span, x_of, top, bottom):
    step = _tick_step(span)
    parts = []
    tick = 0.0
    while tick <= span + 1e-9:
        x = x_of(tick)
        parts.append('<line class="tick" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>'
                     '<text class="tick-label" x="%.1f" y="%d">%g s</text>' % (x, top, x, bottom, x, top - 6, tick))
        tick += step
    return parts


def render_timeline(record):
    """Inline SVG: one lane per host, one bar per VM leaving it (pre-split, pre-copy,
    downtime) and a lighter bar per VM arriving; overlapping bars stack in rows."""
    if record["started"] is None:
        return '<p class="note">No phase timestamps in the results: no timeline to draw.</p>'
    span = max(record["ended"] - record["started"], 0.001)
    width = LANE_LABEL_W + PLOT_W + 10

    def x_of(epoch):
        return LANE_LABEL_W + (epoch - record["started"]) / span * PLOT_W

    # Lane backgrounds first, then the grid, then the bars, so nothing hides a bar.
    lanes, bars = [], []
    y = AXIS_H
    for index, (host, host_bars) in enumerate(sorted(_lane_bars(record).items())):
        placed, rows = _pack_rows(host_bars)
        lane_h = rows * (ROW_H + ROW_GAP) - ROW_GAP + 2 * LANE_PAD
        lanes.append('<rect class="lane%s" x="0" y="%d" width="%d" height="%d"/>'
                     % (" odd" if index % 2 else "", y, width, lane_h))
        lanes.append('<text class="host" x="8" y="%.1f">%s</text>' % (y + lane_h / 2.0 + 5, _e(host)))
        for row, (_start, _end, entry, direction) in placed:
            bars.append(_svg_bar(entry, direction, y + LANE_PAD + row * (ROW_H + ROW_GAP), x_of))
        y += lane_h
    height = y + 4
    grid = _ticks(span, lambda s: x_of(record["started"] + s), AXIS_H - 4, height)
    return ('<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
            'role="img" aria-label="migration timeline">%s%s%s</svg>'
            % (width, height, width, height, "".join(lanes), "".join(grid), "".join(bars)))


def _legend():
    items = [("presplit", "pre-split"), ("setup", "start-up"), ("precopy", "pre-copy"), ("downtime", "downtime (guest paused)"),
             ("incoming", "arriving on destination")]
    return '<p class="legend">%s<span class="swatch failed" style="background:%s"></span>failed</p>' % ("".join(
        '<span class="swatch" style="background:%s"></span>%s' % (PHASE_COLOURS[key], _e(text)) for key, text in items),
        PHASE_COLOURS["failed"])


def _failures_html(record):
    if not record["failures"]:
        return '<p class="ok">No failures: every domain runs on its destination.</p>'
    rows = "".join("<li><strong>%s</strong> %s \u2192 %s: %s</li>"
                   % (_e(f["domain"]), _e(f["source"]), _e(f["destination"]), _e(f["msg"]))
                   for f in record["failures"])
    return ('<section class="failures"><h2>%d failed migration%s</h2><ul>%s</ul></section>'
            % (len(record["failures"]), "" if len(record["failures"]) == 1 else "s", rows))


def _stats_html(record):
    head = ("<tr><th>domain</th><th>from</th><th>to</th><th>kernel modes from / to</th><th>status</th><th>pre-split</th>"
            "<th>huge mappings before / after pre-split</th><th>huge mappings split in the migration</th>"
            "<th>migration job</th><th>downtime ms</th><th>iterations</th><th>data MiB</th><th>message</th></tr>")
    rows = []
    for entry in record["migrations"]:
        presplit = entry["phases"]["presplit"]
        huge = entry["huge_mappings"]
        # Without counts, what the pre-split did instead (unsupported on a stock host, skipped).
        before_after = ("%s / %s" % (_cell(huge["before_presplit"]), _cell(huge["after_presplit"]))
                        if huge["before_presplit"] is not None else huge["presplit_status"] or "-")
        modes = "%s / %s" % (entry["source_kernel_mode"] or "unknown", entry["destination_kernel_mode"] or "unknown")
        rows.append("<tr class=\"%s\"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
                    "<td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td class=\"msg\">%s</td></tr>" % (
                        _e(entry["status"]), _e(entry["domain"]), _e(entry["source"]), _e(entry["destination"]),
                        _e(modes), _e(entry["status"]), _e(_seconds(presplit[1] - presplit[0] if presplit else None)),
                        _e(before_after), _e(_cell(huge["split_in_migration"])),
                        _e(_seconds(entry["measured_s"])), _e(_cell(entry["downtime_ms"])),
                        _e(_cell(entry["iterations"])), _e(_mib(entry["data_transferred"])), _e(entry["msg"])))
    return "<table class=\"stats\">%s%s</table>" % (head, "".join(rows))


def _plan_html(record):
    comparison = record["plan_vs_actual"]
    if comparison is None:
        return '<p class="note">No evacuation plan was given: nothing to compare with.</p>'
    if not comparison:
        return '<p class="note">The plan holds none of these domains.</p>'
    head = ("<tr><th>domain</th><th>wave</th><th>mode</th><th>planned to</th><th>went to</th><th>predicted</th>"
            "<th>measured</th><th>measured / predicted</th><th>predicted downtime ms</th><th>downtime ms</th></tr>")
    rows = []
    for row in comparison:
        moved_elsewhere = row["planned_destination"] and row["planned_destination"] != row["destination"]
        rows.append("<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td%s>%s</td><td>%s</td><td>%s</td>"
                    "<td>%s</td><td>%s</td><td>%s</td></tr>" % (
                        _e(row["domain"]), _e(_cell(row["wave"])), _e(_cell(row["mode"])),
                        _e(row["planned_destination"]), ' class="differs"' if moved_elsewhere else "",
                        _e(row["destination"]), _e(_seconds(row["predicted_s"])),
                        _e(_seconds(row["measured_s"]) if row["status"] == "migrated" else row["status"]),
                        _e(_cell(row["measured_over_predicted"], "%.2f\u00d7")),
                        _e(_cell(row["predicted_downtime_ms"])), _e(_cell(row["downtime_ms"]))))
    return "<table class=\"plan\">%s%s</table>" % (head, "".join(rows))


def _summary_html(record):
    s = record["summary"]
    facts = [("domains", s["domains"]), ("migrated", s["migrated"]), ("already there", s["already_migrated"]),
             ("failed", s["failed"]), ("wall time", _seconds(s["wall_time_s"])),
             ("max downtime", _cell(s["max_downtime_ms"], "%s ms")), ("data", "%s MiB" % _mib(s["data_transferred"]))]
    if "planned_makespan_s" in s:
        facts.append(("planned makespan", _seconds(s["planned_makespan_s"])))
    return '<dl class="summary">%s</dl>' % "".join(
        '<div%s><dt>%s</dt><dd>%s</dd></div>' % (' class="bad"' if label == "failed" and value else "",
                                                 _e(label), _e(value)) for label, value in facts)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}
.when{color:#5b6575;margin:0 0 16px}
.summary{display:flex;flex-wrap:wrap;gap:10px;margin:0 0 8px}
.summary div{border:1px solid #d5dae2;border-radius:6px;padding:6px 12px;min-width:90px}
.summary dt{font-size:12px;color:#5b6575}.summary dd{margin:0;font-size:18px;font-weight:600}
.summary .bad{border-color:#c62828;background:#fdecea}.summary .bad dd{color:#c62828}
.failures{border:2px solid #c62828;background:#fdecea;border-radius:6px;padding:4px 16px;margin:16px 0}
.failures h2{color:#c62828;margin-top:10px}.ok{color:#2e7d32;font-weight:600}
.legend{font-size:12px;color:#39414f}.swatch{display:inline-block;width:14px;height:10px;margin:0 4px 0 12px;
vertical-align:middle;border-radius:2px}.swatch.failed{border:2px solid #c62828;width:10px;height:6px}
.timeline{max-width:100%;height:auto;border:1px solid #d5dae2;border-radius:6px}
.timeline .lane{fill:#f7f9fc}.timeline .lane.odd{fill:#eef2f8}
.timeline .host{font-weight:600;font-size:13px;fill:#1d2430}
.timeline .tick{stroke:#c9d0db;stroke-width:1}.timeline .tick-label{font-size:11px;fill:#5b6575;text-anchor:middle}
.timeline .bar-label{font-size:11px;fill:#fff;pointer-events:none}
.timeline .bar.in .bar-label{fill:#1d2430}
.timeline .failed-outline{fill:none;stroke:#c62828;stroke-width:2.5}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e1e5eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7;font-weight:600}tr.failed td{background:#fdecea}tr.failed td:nth-child(4){color:#c62828;font-weight:600}
td.msg{color:#5b6575;max-width:420px;overflow-wrap:anywhere}.differs{color:#c62828;font-weight:600}
.note{color:#5b6575;font-style:italic}
"""


def render_html(record):
    """The whole page: summary, failures first, timeline, per-VM stats, plan versus actual."""
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>%s</title><style>%s</style></head><body>" % (_e(record["title"]), STYLE),
        "<h1>%s</h1>" % _e(record["title"]),
        "<p class=\"when\">%s \u2013 %s</p>" % (_e(_utc(record["started"])), _e(_utc(record["ended"]))),
        _summary_html(record),
        _failures_html(record),
        "<h2>Timeline</h2>", _legend(), render_timeline(record),
        "<h2>Per-VM statistics</h2>", _stats_html(record),
        "<h2>Plan versus actual</h2>", _plan_html(record),
        "</body></html>\n",
    ])
