# -*- coding: utf-8 -*-
# Copyright (c) presplit.kvm developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source guest's huge mappings across its live migration, as KVM counts them.

KVM makes no huge mapping in a memslot while dirty logging is on, so during a migration the
guest's count of 2 MiB + 1 GiB mappings only falls: every fall is a huge mapping split (or
zapped) inside the migration, by the dirty-log enable or by the CLEARs of its passes, with
the guest's vCPUs waiting on mmu_lock.  After a pre-split with HOLD there is nothing left to
split and the fall is 0; that is what this measures.

The counts are read through a duplicate of QEMU's VM fd (stats fd on a patched kernel,
debugfs otherwise), at the start and at every poll of the migration job; the last read
while the job ran is compared with the first.  Never QEMU's query-stats here: libvirt
holds the domain's job for the migration.  Measuring is best effort: a domain that cannot
be read (TCG, no ptrace rights, no debugfs on a stock kernel) gets the reason and the
migration goes on.
"""

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.counts import huge_mappings, read_mapping_counts
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.domain import pid_from_run_dir
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.errors import PresplitError
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.process import take_vm_fd
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.uapi import PAGE_SIZE


def open_source_vm(name, uuid):
    """The VM fd handle of the running domain's QEMU; raises PresplitError."""
    return take_vm_fd(pid_from_run_dir(name), uuid)


class SourceMappings:
    """Mapping counts of one guest on the migration source: the first read and the last.

    read: a callable returning read_mapping_counts()'s dict; close: called once at the end.
    """

    def __init__(self, read, close):
        self._read = read
        self._close = close
        self.source = None
        self.at_start = None
        self.last_read = None
        self.reads = 0
        self.error = None

    @classmethod
    def open(cls, name, uuid):
        """For the running domain; a domain that cannot be read gives an instance that
        only reports why."""
        try:
            handle = open_source_vm(name, uuid)
        # Measuring never stops a migration: whatever the host's /proc or libvirt's run
        # directory hold, the reason is reported instead.
        except Exception as exc:  # pylint: disable=broad-except
            measure = cls(None, None)
            measure.error = str(exc) if isinstance(exc, PresplitError) else "%s: %s" % (type(exc).__name__, exc)
            return measure
        return cls(lambda: read_mapping_counts(handle), handle.close)

    def _counts(self):
        """(counts or None, why not)."""
        result = self._read()
        if result["counts"] is None:
            return None, "; ".join("%s: %s" % (a["source"], a["error"]) for a in result["attempts"])
        self.source = result["source"]
        return result["counts"], None

    def start(self):
        if self._read is None:
            return
        self.at_start, self.error = self._counts()
        if self.at_start is None:
            self._stop()

    def sample(self, stats, elapsed):
        """At a poll of the running job (stats: its libvirt job statistics).  A read that
        fails here (QEMU ending as the job completes) keeps the last good one."""
        if self._read is None:
            return
        counts, _why = self._counts()
        if counts is None:
            return
        self.reads += 1
        self.last_read = dict(counts, at_s=round(elapsed, 3), memory_iteration=stats.get("memory_iteration"))

    def _stop(self):
        if self._close is not None:
            self._close()
        self._read = self._close = None

    def finish(self):
        """Close the VM fd and return the result's C(source_mappings)."""
        self._stop()
        split = None
        if self.at_start is not None and self.last_read is not None:
            # Huge = above 4K: what a split to 4K leaves none of.
            split = huge_mappings(self.at_start, PAGE_SIZE) - huge_mappings(self.last_read, PAGE_SIZE)
        return {"source": self.source, "at_start": self.at_start, "last_read": self.last_read,
                "reads": self.reads, "huge_split": split, "error": self.error}
