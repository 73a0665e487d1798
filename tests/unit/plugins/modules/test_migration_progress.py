"""presplit.kvm.migration_progress run as Ansible runs it against libvirt's test driver (a
running domain without a job, a missing one), and its reading of job statistics. A running
migration's progress is read for real in tests/lab/test_wave_overlap.py."""

import pytest

libvirt = pytest.importorskip("libvirt")

from ansible_collections.presplit.kvm.plugins.modules.migration_progress import job_progress  # noqa: E402


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
