# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record of the holds this helper placed, so repeated runs can be idempotent.

Each HOLD is recorded in ``/run/presplit-kvm/holds/<uuid>.json`` (tmpfs: gone after a
reboot, like the holds) with its range and target ``page_size`` in bytes, keyed to the
QEMU process (pid + starttime): a record for another QEMU process of the same domain
(restarted, migrated back) is stale and ignored. After the split the record also keeps
``kernel_ranges``, what the kernel then reported held at that size: the kernel holds
only memory that memslots cover, which the recorded range, all of the guest's address
space, does not tell. The kernel also drops holds by itself (dirty logging switched off,
a memslot deleted), which the record cannot see: ``compare_with_kernel`` sets the record
beside the ranges the kernel reports (query.kernel_holds).
"""

import json
import os
import time

from .query import clip_ranges, intersect_ranges, merge_ranges, subtract_range, total_bytes
from .uapi import HUGE_2M, PAGE_SIZE, page_size_name


DEFAULT_STATE_DIR = "/run/presplit-kvm/holds"
# The level-based helper recorded ``target_level`` (1 = 4k, 2 = 2m) instead of page_size.
LEGACY_LEVELS = {1: PAGE_SIZE, 2: HUGE_2M}


def upgrade_record(record):
    """A record in the current format: one written by the level-based helper gets its
    page size, so a hold taken before an upgrade can still be compared and released."""
    if "page_size" in record or record.get("target_level") not in LEGACY_LEVELS:
        return record
    upgraded = dict(record, page_size=LEGACY_LEVELS[record["target_level"]])
    del upgraded["target_level"]
    return upgraded


def _held_seconds(record, now):
    since = record.get("since")
    if not isinstance(since, (int, float)):
        return None
    return round(max(0.0, (time.time() if now is None else now) - since), 1)


def _pairs(ranges):
    return [(item["gpa"], item["size"]) for item in ranges]


def _record_status(record, ranges):
    """(status, message) of a record against the kernel's ranges [{'page_size', 'gpa', 'size'}]."""
    gpa, size, page_size = record["gpa"], record["size"], record["page_size"]
    anywhere = clip_ranges(_pairs(ranges), gpa, size)
    if not anywhere:
        return "stale-record", ("recorded, but the kernel holds none of it: dirty logging was switched off "
                                "(a migration failed or was cancelled) or something else released it; "
                                "a release clears the record")
    small_enough = clip_ranges(_pairs(item for item in ranges if item["page_size"] <= page_size), gpa, size)
    # Without the kernel's ranges from the time of the hold, the parts of the range outside
    # memslots cannot be told from holds dropped since: what is held must then be small enough.
    expected = merge_ranges(tuple(pair) for pair in record.get("kernel_ranges") or ()) or merge_ranges(anywhere)
    missing = total_bytes(expected) - total_bytes(intersect_ranges(expected, small_enough))
    if not missing:
        return "held", "held at %s or smaller" % page_size_name(page_size)
    return "partial", ("%d of %d bytes are no longer held at %s or smaller: the kernel dropped part of the "
                       "hold (e.g. a memslot went away) or the split that took it was cut short; split with "
                       "hold again, or release" % (missing, total_bytes(expected), page_size_name(page_size)))


def unrecorded_ranges(record, ranges):
    """The kernel's ranges, or their parts, outside the recorded range."""
    if record is None:
        return list(ranges)
    return [{"page_size": item["page_size"], "gpa": gpa, "size": size}
            for item in ranges
            for gpa, size in subtract_range([(item["gpa"], item["size"])], record["gpa"], record["size"])]


def compare_with_kernel(record, kernel_pages, kernel_holds, now=None):
    """This helper's record of one VM's hold against what the kernel reports: the ranges it
    holds (``kernel_holds``: {'ranges': [...] or None, 'error'}, see query.kernel_holds)
    and its count of held pages (``kernel_pages``: {'pages', 'error'}, see counts.held_pages),
    kept as a cross-check (``pages_agree``: both say something is held, or both nothing).

    status, for a recorded hold:
      held          the kernel holds what was recorded at the recorded page size or smaller
                    (``held_seconds`` since the hold)
      partial       it holds some of it, but not all at that size or smaller
      stale-record  it holds none of it: dirty logging was switched off (its migration failed
                    or was cancelled) or something else released it
    without a record:
      none          the kernel holds nothing
      unrecorded    the kernel holds ranges, listed in ``unrecorded``: a hold that outlived
                    the run that took it, or another tool's
    and for either:
      unknown       the kernel cannot be asked what it holds (no KVM_SPLIT_HUGE_PAGES_QUERY,
                    an older series, or the VM fd refused it)
    ``unrecorded`` also lists held ranges outside a record; the message then names them.
    """
    ranges = kernel_holds["ranges"]
    pages = kernel_pages["pages"]
    check = {"kernel_pages": pages, "kernel_ranges": ranges, "recorded": record is not None,
             "held_seconds": None, "unrecorded": [], "pages_agree": None}
    if ranges is None:
        check.update(status="unknown", message=kernel_holds["error"] or "the kernel cannot be asked what it holds")
        return check
    if pages is not None:
        check["pages_agree"] = bool(pages) == bool(ranges)
    check["unrecorded"] = unrecorded_ranges(record, ranges)
    if record is None:
        if ranges:
            check.update(status="unrecorded",
                         message="the kernel holds %d ranges that this helper did not record: a hold that "
                                 "outlived the run that took it, or another tool's; release --force drops "
                                 "the guest's" % len(ranges))
        else:
            check.update(status="none", message="nothing held")
        return check
    status, message = _record_status(record, ranges)
    if status != "stale-record":
        check["held_seconds"] = _held_seconds(record, now)
    if check["unrecorded"]:
        message += "; the kernel also holds %d ranges outside the record" % len(check["unrecorded"])
    check.update(status=status, message=message)
    return check


class HoldState:
    def __init__(self, state_dir=DEFAULT_STATE_DIR):
        self.state_dir = state_dir

    def _path(self, uuid):
        return os.path.join(self.state_dir, "%s.json" % uuid)

    def get(self, identity):
        """The hold record for this exact QEMU process, or None."""
        try:
            with open(self._path(identity.uuid)) as handle:
                record = upgrade_record(json.load(handle))
        except (OSError, ValueError):
            return None
        if record.get("pid") != identity.pid or record.get("starttime") != identity.starttime:
            return None
        if not all(isinstance(record.get(key), int) for key in ("page_size", "gpa", "size")):
            return None     # not a record of any version of this helper
        return record

    def put(self, identity, page_size, gpa, size, kernel_ranges=None, since=None):
        """Record a hold; ``kernel_ranges`` is what the kernel reported held once the split ran."""
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        record = {"uuid": identity.uuid, "pid": identity.pid, "starttime": identity.starttime,
                  "page_size": page_size, "gpa": gpa, "size": size,
                  "since": time.time() if since is None else since}
        if kernel_ranges is not None:
            record["kernel_ranges"] = [list(pair) for pair in kernel_ranges]
        tmp = self._path(identity.uuid) + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(record, handle)
        os.rename(tmp, self._path(identity.uuid))
        return record

    def drop(self, identity):
        try:
            os.unlink(self._path(identity.uuid))
        except FileNotFoundError:
            pass
