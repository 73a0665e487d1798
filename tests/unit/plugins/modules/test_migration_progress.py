"""presplit.kvm.migration_progress run as Ansible runs it against libvirt's test driver (a
running domain without a job, a missing one), and its reading of job statistics. A running
migration's progress is read for real in tests/lab/test_wave_overlap.py."""

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.presplit.kvm.plugins.modules.migration_progress import job_progress, read_progress  # noqa: E402


def test_running_domain_without_a_job_and_missing_domain(run_module):
    # test:///default has one running domain, "test".
    result = run_module("migration_progress", uri="test:///default", domains=["test", "nosuch"])
    assert result["changed"] is False
    assert result["migrations"] == [{"domain": "test", "state": "running"}, {"domain": "nosuch", "state": "gone"}]
    assert (result["migrating"], result["running"]) == (0, 1)


def test_check_mode_reads_the_same(run_module):
    result = run_module("migration_progress", check_mode=True, uri="test:///default", domains=["test"])
    assert result["migrations"] == [{"domain": "test", "state": "running"}]


def test_unreachable_libvirt_is_an_error_that_names_it(run_module):
    result = run_module("migration_progress", uri="qemu+tcp://127.0.0.1:1/system", domains=["test"])
    assert result["failed"] is True
    assert "cannot connect to source libvirt qemu+tcp://127.0.0.1:1/system" in result["msg"]


def test_migration_job_statistics_become_progress():
    stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": 12345, "memory_iteration": 2,
             "memory_total": 128 << 20, "memory_processed": 160 << 20, "memory_remaining": 32 << 20,
             "memory_bps": 3 << 20, "memory_dirty_rate": 250}
    assert job_progress(stats, libvirt) == {
        "state": "migrating", "elapsed_s": 12.3, "iteration": 2, "memory_total_bytes": 128 << 20,
        "memory_processed_bytes": 160 << 20, "memory_remaining_bytes": 32 << 20, "percent": 75.0,
        "bandwidth_mib_per_s": 3.0, "dirty_rate_pages_s": 250}


def test_malformed_job_statistics_are_left_out_and_named():
    """A figure that is not a finite number is not computed with; the entry says which, and
    read_progress goes on with the next domain."""
    stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": "12s", "memory_iteration": 2,
             "memory_total": float("nan"), "memory_remaining": 32 << 20, "memory_bps": None, "memory_dirty_rate": True}
    assert job_progress(stats, libvirt) == {
        "state": "migrating", "elapsed_s": 0.0, "iteration": 2, "memory_remaining_bytes": 32 << 20,
        "error": "job statistics not numbers, left out: time_elapsed='12s', memory_bps=None, memory_total=nan, "
                 "memory_dirty_rate=True"}

    class Domain:
        def __init__(self, stats):
            self.stats = stats

        def isActive(self):
            return True

        def jobStats(self):
            return self.stats

    class Conn:
        domains = {"bad": Domain(stats), "good": Domain(dict(stats, time_elapsed=1000, memory_total=64 << 20,
                                                             memory_bps=1 << 20, memory_dirty_rate=5))}

        def lookupByName(self, name):
            return self.domains[name]

    entries = read_progress(Conn(), ["bad", "good"], libvirt)
    assert [entry["domain"] for entry in entries] == ["bad", "good"]
    assert "error" in entries[0] and "error" not in entries[1] and entries[1]["percent"] == 50.0


def test_a_finished_job_is_not_migrating():
    assert job_progress({"type": libvirt.VIR_DOMAIN_JOB_NONE}, libvirt) == {"state": "running"}
    assert job_progress({"type": libvirt.VIR_DOMAIN_JOB_COMPLETED}, libvirt) == {"state": "running"}


def test_negative_wait_is_refused(run_module):
    result = run_module("migration_progress", uri="test:///default", domains=["test"], wait_s=-1)
    assert result["failed"] is True
    assert result["msg"] == "wait_s must be from 0 to 86400, got -1"


def test_watching_a_domain_that_does_not_migrate_returns_its_state(run_module):
    result = run_module("migration_progress", uri="test:///default", domains=["test"], wait_s=1)
    assert result["migrations"] == [{"domain": "test", "state": "running"}]
