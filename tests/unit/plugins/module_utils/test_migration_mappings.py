"""The source guest's huge mappings across a migration (migration_mappings.SourceMappings).

The counts come from a stand-in read function: real counts need a KVM guest with a VM fd,
which this machine's paravirtual /dev/kvm cannot run outside the emulated hosts; the e2e
tier (tests/e2e) reads them from real guests on real hosts and checks them.
"""

from ansible_collections.presplit.kvm.plugins.module_utils import migration_mappings as mmap
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.errors import NotKvmAccelerated


def counts(pages_2m, pages_4k=0, pages_1g=0):
    return {"pages_4k": pages_4k, "pages_2m": pages_2m, "pages_1g": pages_1g}


class Reads:
    """Answers read_mapping_counts()'s dicts from a list; None stands for a failed read."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.closed = 0

    def read(self):
        answer = self.answers.pop(0)
        if answer is None:
            return {"source": None, "counts": None, "attempts": [
                {"source": "stats-fd", "error": "EIO: no"}, {"source": "debugfs", "error": "ENOENT: gone"}]}
        return {"source": "stats-fd", "counts": answer, "attempts": []}

    def close(self):
        self.closed += 1


def measure(reads):
    return mmap.SourceMappings(reads.read, reads.close)


def test_fall_of_huge_mappings_between_start_and_last_read_is_the_split():
    reads = Reads(counts(100, 400, 2), counts(60, 20000), counts(0, 51600))
    m = measure(reads)
    m.start()
    m.sample({"memory_iteration": 1}, 0.5)
    m.sample({"memory_iteration": 2}, 1.0)
    result = m.finish()
    assert result["huge_split"] == 102
    assert result["at_start"] == counts(100, 400, 2)
    assert result["last_read"] == dict(counts(0, 51600), at_s=1.0, memory_iteration=2)
    assert result["reads"] == 2 and result["source"] == "stats-fd" and result["error"] is None
    assert reads.closed == 1


def test_nothing_left_to_split_after_a_presplit_measures_zero():
    m = measure(Reads(counts(0, 98304), counts(0, 98304)))
    m.start()
    m.sample({"memory_iteration": 1}, 0.5)
    assert m.finish()["huge_split"] == 0


def test_a_failed_read_at_the_end_keeps_the_last_good_one():
    m = measure(Reads(counts(10), counts(3), None))
    m.start()
    m.sample({"memory_iteration": 1}, 0.5)
    m.sample({"memory_iteration": 2}, 1.0)
    result = m.finish()
    assert result["huge_split"] == 7 and result["reads"] == 1 and result["error"] is None


def test_unreadable_at_start_says_why_and_reads_no_more():
    reads = Reads(None, counts(1))
    m = measure(reads)
    m.start()
    m.sample({"memory_iteration": 1}, 0.5)
    result = m.finish()
    assert result["huge_split"] is None and result["at_start"] is None and result["reads"] == 0
    assert result["error"] == "stats-fd: EIO: no; debugfs: ENOENT: gone"
    assert reads.answers == [counts(1)] and reads.closed == 1


def test_a_migration_that_ends_before_any_poll_has_no_split_figure():
    m = measure(Reads(counts(5)))
    m.start()
    result = m.finish()
    assert result["huge_split"] is None and result["at_start"] == counts(5) and result["last_read"] is None


def test_a_domain_without_vm_fd_is_reported_not_raised(monkeypatch):
    def tcg(name, uuid):
        raise NotKvmAccelerated("QEMU pid 7 of domain %s holds no anon_inode:kvm-vm fd" % uuid)
    monkeypatch.setattr(mmap, "open_source_vm", tcg)
    m = mmap.SourceMappings.open("g1", "u-1")
    m.start()
    m.sample({"memory_iteration": 1}, 0.5)
    result = m.finish()
    assert result["error"].startswith("QEMU pid 7 of domain u-1 holds no") and result["huge_split"] is None


def test_malformed_process_state_is_reported_not_raised(monkeypatch):
    def garbled(name, uuid):
        raise ValueError("substring not found")
    monkeypatch.setattr(mmap, "open_source_vm", garbled)
    m = mmap.SourceMappings.open("g1", "u-1")
    m.start()
    assert m.finish()["error"] == "ValueError: substring not found"
