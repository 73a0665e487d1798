"""The migration monitor: polling, downtime steps, timeout actions, result shaping.

A real migration job needs two libvirt daemons with QEMU (the lab; see the molecule
scenarios).  Here the domain is a stand-in (FakeMigratingDomain) that answers jobStats()
like libvirt's qemu driver while a "migration" callable runs in the monitor's real worker
thread, so the threading, schedule and actions are exercised for real.

No assertion counts on the worker being slow or fast: a migration ends when the domain
has been polled a given number of times (or stopped by an action), and the test that
checks the elapsed time gives the monitor a clock that advances per poll.
"""

import threading
import time

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils import migration_monitor as mm

libvirt = pytest.importorskip("libvirt")


def libvirt_error(message):
    """A libvirtError carrying message (libvirtError prefers the thread's last real error)."""
    libvirt.virResetLastError()
    return libvirt.libvirtError(message)


class FakeMigratingDomain:
    """Stand-in for a virDomain with a migration job (cannot run without QEMU hosts)."""

    def __init__(self, fail_polls=0, setup_polls=0, postcopy_refusals=0, finish_after=None, remaining=None,
                 abort_refusals=0):
        self.calls = []
        # data_remaining at each poll (a function of the poll number); by default it keeps falling.
        self.remaining = remaining or (lambda poll: 5000 - poll)
        self.abort_refusals = abort_refusals
        self.setup_polls = setup_polls
        self.postcopy_refusals = postcopy_refusals
        self.polls = 0
        self.fail_polls = fail_polls
        self.finish_after = finish_after
        self.stopped_at_poll = None
        self.now = 0.0
        self.stop = threading.Event()

    def clock(self):
        """A monitor clock that advances 0.1 s per poll until the migration is stopped."""
        return self.now

    def _stop(self):
        if self.stopped_at_poll is None:
            self.stopped_at_poll = self.polls
        self.stop.set()

    def jobStats(self):
        self.polls += 1
        if not self.stop.is_set():
            self.now += 0.1
        if self.finish_after is not None and self.polls >= self.finish_after:
            self._stop()
        if self.polls <= self.fail_polls:
            raise libvirt_error("domain not found")
        # While libvirt still connects to the destination, no memory is flowing yet.
        data_total = 0 if self.polls <= self.fail_polls + self.setup_polls else 5000
        return {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": self.polls * 10, "data_total": data_total,
                "data_processed": self.polls * 1000, "data_remaining": self.remaining(self.polls),
                "memory_iteration": self.polls, "memory_dirty_rate": 7 * self.polls, "other": 1}

    def migrateSetMaxDowntime(self, downtime, flags):
        self.calls.append(("downtime", downtime))

    def abortJob(self):
        if self.abort_refusals:
            self.abort_refusals -= 1
            raise libvirt_error("Requested operation is not valid: no job is active on the domain")
        self.calls.append(("abort",))
        self._stop()

    def suspend(self):
        self.calls.append(("suspend",))
        self._stop()

    def migrateStartPostCopy(self, flags):
        if self.postcopy_refusals:
            self.postcopy_refusals -= 1
            raise libvirt_error("Enable postcopy with migrate_set_capability before the start of migration")
        self.calls.append(("postcopy",))
        self._stop()


def migration_until_stopped(domain, error_after_stop=None, limit=60.0):
    """The migration call: runs until the domain is stopped; limit is only a hang guard."""
    def call():
        if not domain.stop.wait(limit):
            raise AssertionError("nothing stopped the migration")
        if error_after_stop:
            raise libvirt_error(error_after_stop)
    return call


def test_success_applies_due_downtime_steps_only():
    # The migration ends at the 5th poll and the clock moves 0.1 s per poll: the steps at
    # 0 and 0.05 s are due at the first two polls, the one at 60 s never.
    domain = FakeMigratingDomain(finish_after=5)
    schedule = [(0.0, 10), (0.05, 20), (60.0, 30)]
    monitor = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, schedule, None, "abort",
                                  clock=domain.clock)
    outcome = monitor.run()
    assert outcome.error is None and not outcome.timed_out
    assert domain.calls == [("downtime", 10), ("downtime", 20)]
    assert [a["value"] for a in outcome.actions] == [10, 20]
    assert len(outcome.samples) >= 5
    assert "other" not in outcome.samples[0] and outcome.samples[0]["memory_iteration"] == 1
    assert outcome.elapsed_s == pytest.approx(0.5)


def test_every_poll_of_the_running_job_reaches_on_sample():
    domain = FakeMigratingDomain(finish_after=4)
    seen = []
    monitor = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [], None, "abort",
                                  clock=domain.clock, on_sample=lambda stats, elapsed: seen.append(
                                      (stats["memory_iteration"], round(elapsed, 1))))
    outcome = monitor.run()
    assert [pair[0] for pair in seen] == [s["memory_iteration"] for s in outcome.samples]
    # (the elapsed time is taken before the poll that advances the stand-in clock)
    assert seen[:4] == [(1, 0.0), (2, 0.1), (3, 0.2), (4, 0.3)]


def test_end_of_migration_is_seen_without_waiting_a_poll_interval():
    # Waiting for the next poll would take the whole 60 s interval; seeing the end of this
    # 0.1 s call at once stays far below half of it on however slow a machine.
    monitor = mm.MigrationMonitor(FakeMigratingDomain(), lambda: time.sleep(0.1), libvirt, 60.0, [], None, "abort")
    started = time.monotonic()
    monitor.run()
    assert time.monotonic() - started < 30.0


def test_timeout_abort_reports_error_and_action():
    domain = FakeMigratingDomain()
    call = migration_until_stopped(domain, "operation aborted: migration out job: canceled by client")
    outcome = mm.MigrationMonitor(domain, call, libvirt, 0.02, [], 0.1, "abort").run()
    assert outcome.timed_out and outcome.timeout_action == "abort"
    assert "canceled by client" in outcome.error
    assert domain.calls == [("abort",)]
    assert outcome.actions[0]["action"] == "abort" and outcome.actions[0]["at_s"] >= 0.1


@pytest.mark.parametrize("action, call, flag", [
    ("pause", ("suspend",), "paused_by_monitor"), ("postcopy", ("postcopy",), "post_copy_started")])
def test_timeout_pause_and_postcopy_let_the_migration_finish(action, call, flag):
    domain = FakeMigratingDomain()
    outcome = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [], 0.05, action).run()
    assert outcome.error is None and outcome.timed_out
    assert domain.calls == [call]
    assert getattr(outcome, flag) is True


def test_timeout_actions_wait_for_memory_to_flow():
    domain = FakeMigratingDomain(setup_polls=5)
    outcome = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [], 0.0, "pause").run()
    assert domain.calls == [("suspend",)]
    assert domain.polls >= 6


def test_abort_does_not_wait_for_memory_to_flow():
    domain = FakeMigratingDomain(setup_polls=1000)
    call = migration_until_stopped(domain, "operation aborted")
    outcome = mm.MigrationMonitor(domain, call, libvirt, 0.02, [], 0.0, "abort").run()
    # Aborted at the first poll (later polls may come before the worker returns).
    assert domain.calls == [("abort",)] and domain.stopped_at_poll == 1
    assert outcome.error == "operation aborted"


def test_refused_postcopy_is_retried_and_reported_once():
    domain = FakeMigratingDomain(postcopy_refusals=3)
    outcome = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [], 0.0, "postcopy").run()
    assert domain.calls == [("postcopy",)] and outcome.post_copy_started
    assert [a["action"] for a in outcome.actions] == ["postcopy_failed", "postcopy"]
    assert "migrate_set_capability" in outcome.actions[0]["error"]


def test_poll_errors_are_tolerated():
    domain = FakeMigratingDomain(fail_polls=3, finish_after=5)
    outcome = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [], None, "abort").run()
    assert outcome.error is None
    assert domain.polls >= 5 and len(outcome.samples) == domain.polls - 3


def test_inactive_job_is_not_sampled_nor_stepped():
    class IdleDomain(FakeMigratingDomain):
        def jobStats(self):
            super(IdleDomain, self).jobStats()
            return {"type": libvirt.VIR_DOMAIN_JOB_NONE}
    # Three polls at least, all past the 0.01 s deadline (each waits 0.02 s first).
    domain = IdleDomain(finish_after=3)
    outcome = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [(0.0, 10)], 0.01,
                                  "abort").run()
    assert domain.polls >= 3
    assert outcome.samples == [] and domain.calls == [] and not outcome.timed_out


def test_failure_of_the_call_is_reported():
    def call():
        raise libvirt_error("unable to connect to server at 'h2:49152': Connection refused")
    outcome = mm.MigrationMonitor(FakeMigratingDomain(), call, libvirt, 0.02, [], None, "abort").run()
    assert "Connection refused" in outcome.error and not outcome.timed_out


def test_progress_summary_downsamples_keeping_ends():
    samples = [{"at_s": i, "memory_iteration": i // 10, "memory_dirty_rate": i % 7, "data_remaining": 100 - i}
               for i in range(100)]
    summary = mm.progress_summary(samples, limit=5)
    assert summary["samples"] == 100
    assert summary["max_iteration"] == 9
    assert summary["peak_dirty_rate_pages_s"] == 6
    assert summary["last_data_remaining"] == 1
    assert [s["at_s"] for s in summary["history"]] == [0, 25, 50, 74, 99]
    assert mm.progress_summary([]) == {"samples": 0, "history": []}
    assert len(mm.progress_summary(samples[:3])["history"]) == 3


def test_completed_summary_names_units():
    stats = {"type": 3, "time_elapsed": 2310, "downtime": 120, "memory_iteration": 3,
             "data_processed": 140, "data_total": 135, "memory_bps": 99, "setup_time": 8}
    assert mm.completed_summary(stats) == {
        "total_time_ms": 2310, "downtime_ms": 120, "iterations": 3, "data_transferred_bytes": 140,
        "data_total_bytes": 135, "memory_bps": 99, "setup_time_ms": 8}
    assert mm.completed_summary({}) == {}


def test_malformed_job_figures_are_left_out_of_samples_and_the_summary():
    stats = {"time_elapsed": 1500, "data_remaining": "lots", "memory_iteration": float("inf"), "downtime": 12,
             "data_processed": False}
    assert mm._sample(stats, 1.5) == {"at_s": 1.5, "time_elapsed": 1500}  # pylint: disable=protected-access
    assert mm.completed_summary(stats) == {"total_time_ms": 1500, "downtime_ms": 12}
    assert mm.malformed_figures(stats, ["data_remaining", "downtime", "absent"]) == ["data_remaining"]


def stalling(poll):
    """data_remaining of a guest that dirties faster than the link sends: it falls to a low
    of 3000 at poll 4, then each pass starts over at 4000 and never gets below 3000 again."""
    return 5000 - 500 * poll if poll <= 4 else 4000 - 100 * (poll % 5)


def test_progress_timeout_aborts_a_migration_that_stopped_reaching_new_lows():
    # 0.1 s per poll (taken before each poll): the low of 3000 is reached at 0.3 s (poll 4);
    # at 0.8 s (poll 9) the migration has made no progress for the timeout and is aborted.
    # (0.45 s, not 0.5: the stand-in clock adds up tenths, which float sums miss by a hair.)
    domain = FakeMigratingDomain(remaining=stalling)
    monitor = mm.MigrationMonitor(domain, migration_until_stopped(domain, "operation aborted: job cancelled"),
                                  libvirt, 0.02, [], None, "abort", clock=domain.clock, progress_timeout_s=0.45)
    outcome = monitor.run()
    assert domain.calls == [("abort",)]
    assert domain.stopped_at_poll == 9
    assert outcome.stalled == {"lowest_remaining_bytes": 3000, "progress_at_s": 0.3, "at_s": 0.8}
    assert outcome.actions == [{"at_s": 0.8, "action": "progress_timeout_abort", "value": 3000}]
    assert outcome.error == "operation aborted: job cancelled"


def test_progress_timeout_leaves_a_migration_that_keeps_reaching_new_lows():
    domain = FakeMigratingDomain(finish_after=30)
    outcome = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [], None, "abort",
                                  clock=domain.clock, progress_timeout_s=0.5).run()
    assert domain.calls == [] and outcome.stalled is None and outcome.error is None


def test_progress_timeout_counts_from_when_memory_flows_and_retries_a_refused_abort():
    # 20 polls (2 s) of setup without memory flowing count for nothing; the first abort is
    # refused, the next poll aborts.
    domain = FakeMigratingDomain(setup_polls=20, remaining=lambda poll: 4000, abort_refusals=1)
    outcome = mm.MigrationMonitor(domain, migration_until_stopped(domain), libvirt, 0.02, [], None, "abort",
                                  clock=domain.clock, progress_timeout_s=0.45).run()
    assert outcome.stalled == {"lowest_remaining_bytes": 4000, "progress_at_s": 2.0, "at_s": 2.6}
    assert [a["action"] for a in outcome.actions] == ["progress_timeout_abort_failed", "progress_timeout_abort"]
    assert domain.calls == [("abort",)]
