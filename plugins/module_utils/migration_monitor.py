# -*- coding: utf-8 -*-
# Copyright (c) presplit.kvm developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run one libvirt migration call in a worker thread and watch it.

virDomainMigrate* blocks until the migration ends, so the call runs in a thread
(libvirt-python drops the GIL around it) while this thread polls the domain's job
statistics, raises the allowed downtime along the schedule and applies the
completion-timeout action.  The thread join doubles as the poll sleep, so the
monitor notices the end of a migration at once instead of up to one poll later.
"""

import math
import threading
import time

from ansible_collections.presplit.kvm.plugins.module_utils.migration_options import due_downtime

# Keys of a job-statistics sample kept in the progress history (libvirt names).
SAMPLE_KEYS = (
    "time_elapsed",
    "data_processed",
    "data_remaining",
    "data_total",
    "memory_iteration",
    "memory_dirty_rate",
    "memory_bps",
)
HISTORY_LIMIT = 20


class MigrationOutcome:
    """What happened: error is None on success, else the migration call's error text."""

    def __init__(self):
        self.error = None
        self.timed_out = False
        self.timeout_action = None
        self.paused_by_monitor = False
        self.post_copy_started = False
        # Set when the progress timeout aborted the job: {lowest_remaining_bytes, progress_at_s, at_s}.
        self.stalled = None
        self.elapsed_s = 0.0
        self.samples = []
        self.actions = []


class _MigrationThread(threading.Thread):
    def __init__(self, start_migration):
        super(_MigrationThread, self).__init__(name="libvirt-migrate")
        self.daemon = True
        self._start_migration = start_migration
        self.error = None

    def run(self):
        try:
            self._start_migration()
        except Exception as exc:  # the caller reports any failure of the call itself
            self.error = str(exc) or exc.__class__.__name__


def job_is_active(stats, lv):
    """Whether a virDomainGetJobStats dict describes a job that is still running."""
    return stats.get("type") in (lv.VIR_DOMAIN_JOB_BOUNDED, lv.VIR_DOMAIN_JOB_UNBOUNDED)


class MigrationMonitor:
    """Poll a domain's migration job while start_migration runs in a thread.

    schedule: list of (seconds, downtime_ms) from migration_options.downtime_schedule,
    or empty to leave QEMU's downtime alone.  deadline_s: completion timeout in seconds
    or None.  timeout_action: abort | postcopy | pause.  lv: the libvirt module.
    progress_timeout_s: abort a pre-copy migration whose data remaining has not reached a
    new low for this long (KubeVirt's progressTimeout), or None.
    """

    def __init__(self, domain, start_migration, lv, poll_interval, schedule, deadline_s,
                 timeout_action, clock=time.monotonic, on_sample=None, progress_timeout_s=None):
        self._domain = domain
        self._start_migration = start_migration
        self._lv = lv
        self._poll_interval = poll_interval
        self._schedule = schedule
        self._deadline_s = deadline_s
        self._timeout_action = timeout_action
        self._clock = clock
        self._on_sample = on_sample
        self._progress_timeout_s = progress_timeout_s

    def run(self):
        outcome = MigrationOutcome()
        worker = _MigrationThread(self._start_migration)
        started = self._clock()
        worker.start()
        applied_step = -1
        timeout_applied = False
        progress = _Progress()
        while True:
            worker.join(self._poll_interval)
            elapsed = self._clock() - started
            if not worker.is_alive():
                break
            stats = self._poll()
            if not stats or not job_is_active(stats, self._lv):
                continue
            outcome.samples.append(_sample(stats, elapsed))
            if self._on_sample is not None:
                self._on_sample(stats, elapsed)
            step = due_downtime(self._schedule, elapsed, applied_step)
            if step is not None:
                applied_step = self._apply_downtime(step, elapsed, outcome, applied_step)
            if self._deadline_s is not None and elapsed >= self._deadline_s and not timeout_applied:
                outcome.timed_out = True
                outcome.timeout_action = self._timeout_action
                timeout_applied = self._apply_timeout_action(stats, elapsed, outcome)
            if (self._progress_timeout_s and outcome.stalled is None and not outcome.post_copy_started
                    and progress.stalled_for(stats, elapsed) >= self._progress_timeout_s):
                self._abort_stalled(progress, elapsed, outcome)
        outcome.elapsed_s = self._clock() - started
        outcome.error = worker.error
        return outcome

    def _poll(self):
        try:
            return self._domain.jobStats()
        except self._lv.libvirtError:
            # The source domain disappears when an undefine-source migration ends,
            # between our join() and this call; the worker result tells the rest.
            return None

    def _apply_downtime(self, step, elapsed, outcome, applied_step):
        index, downtime_ms = step
        try:
            self._domain.migrateSetMaxDowntime(downtime_ms, 0)
        except self._lv.libvirtError as exc:
            outcome.actions.append(_action(elapsed, "max_downtime_failed", downtime_ms, str(exc)))
            return applied_step
        outcome.actions.append(_action(elapsed, "max_downtime", downtime_ms))
        return index

    def _abort_stalled(self, progress, elapsed, outcome):
        """Abort the job that stopped making progress; on a refusal, try again at the next poll."""
        try:
            self._domain.abortJob()
        except self._lv.libvirtError as exc:
            _note_refusal(outcome, elapsed, "progress_timeout_abort", exc)
            return
        outcome.stalled = {"lowest_remaining_bytes": progress.lowest, "progress_at_s": round(progress.at_s, 3),
                           "at_s": round(elapsed, 3)}
        outcome.actions.append(_action(elapsed, "progress_timeout_abort", progress.lowest))

    def _apply_timeout_action(self, stats, elapsed, outcome):
        """Apply the completion-timeout action; False means try again at the next poll.

        libvirt reports the job as soon as it starts connecting to the destination, but
        QEMU accepts post-copy (and a pause is only useful) once memory is flowing.
        """
        action = self._timeout_action
        if action != "abort" and not stats.get("data_total"):
            return False
        try:
            if action == "abort":
                self._domain.abortJob()
            elif action == "postcopy":
                self._domain.migrateStartPostCopy(0)
                outcome.post_copy_started = True
            else:
                self._domain.suspend()
                outcome.paused_by_monitor = True
        except self._lv.libvirtError as exc:
            _note_refusal(outcome, elapsed, action, exc)
            return False
        outcome.actions.append(_action(elapsed, action, None))
        return True


class _Progress:
    """The lowest data remaining seen while memory flows, and when it was reached: a
    migration makes progress as long as what it still has to send reaches new lows."""

    def __init__(self):
        self.lowest = None
        self.at_s = None

    def stalled_for(self, stats, elapsed):
        """Seconds since the last new low (0 while there is none to compare with)."""
        remaining = job_figure(stats, "data_remaining")
        if remaining is None or not job_figure(stats, "data_total"):
            return 0.0
        if self.lowest is None or remaining < self.lowest:
            self.lowest, self.at_s = remaining, elapsed
        return elapsed - self.at_s


def job_figure(stats, key):
    """stats[key] when libvirt gave a finite number for it, else None (absent or malformed:
    a figure that is not a number is left out rather than computed with)."""
    value = stats.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def malformed_figures(stats, keys):
    """The keys of ``keys`` that stats has, but not as finite numbers."""
    return [key for key in keys if key in stats and job_figure(stats, key) is None]


def _sample(stats, elapsed):
    sample = {"at_s": round(elapsed, 3)}
    for key in SAMPLE_KEYS:
        if job_figure(stats, key) is not None:
            sample[key] = stats[key]
    return sample


def _note_refusal(outcome, elapsed, action, exc):
    """Record that libvirt refused action (retried at the next poll): once per distinct error."""
    failure = _action(elapsed, action + "_failed", None, str(exc))
    if not any(a.get("error") == failure["error"] for a in outcome.actions):
        outcome.actions.append(failure)


def _action(elapsed, name, value, error=None):
    action = {"at_s": round(elapsed, 3), "action": name}
    if value is not None:
        action["value"] = value
    if error is not None:
        action["error"] = error
    return action


def progress_summary(samples, limit=HISTORY_LIMIT):
    """Shrink the poll samples to a summary plus at most limit evenly spread samples."""
    summary = {"samples": len(samples)}
    if not samples:
        summary["history"] = []
        return summary
    summary["max_iteration"] = max(s.get("memory_iteration", 0) for s in samples)
    summary["peak_dirty_rate_pages_s"] = max(s.get("memory_dirty_rate", 0) for s in samples)
    summary["last_data_remaining"] = samples[-1].get("data_remaining")
    if len(samples) <= limit:
        summary["history"] = list(samples)
    else:
        stride = (len(samples) - 1) / float(limit - 1)
        summary["history"] = [samples[int(round(i * stride))] for i in range(limit)]
    return summary


# Completed-job keys reported to users, under names that say their unit.
COMPLETED_STATS_KEYS = (
    ("total_time_ms", "time_elapsed"),
    ("downtime_ms", "downtime"),
    ("setup_time_ms", "setup_time"),
    ("iterations", "memory_iteration"),
    ("data_transferred_bytes", "data_processed"),
    ("data_total_bytes", "data_total"),
    ("memory_transferred_bytes", "memory_processed"),
    ("memory_bps", "memory_bps"),
    ("memory_dirty_rate_pages_s", "memory_dirty_rate"),
    ("memory_postcopy_requests", "memory_postcopy_requests"),
)


def completed_summary(stats):
    """Named, unit-suffixed figures from a VIR_DOMAIN_JOB_STATS_COMPLETED dict."""
    return dict((name, stats[key]) for name, key in COMPLETED_STATS_KEYS if job_figure(stats, key) is not None)
