# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record of the holds this helper placed, so repeated runs can be idempotent.

The kernel counts what a VM holds (the ``pages_held`` statistic) but not what range at
which level, so each HOLD is recorded in ``/run/presplit-kvm/holds/<uuid>.json`` (tmpfs:
gone after a reboot, like the holds), keyed to the QEMU process (pid + starttime): a
record for another QEMU process of the same domain (restarted, migrated back) is stale
and ignored. The kernel also drops a hold when dirty logging is switched off, which the
record cannot see: ``compare_with_kernel`` sets the two side by side.
"""

import json
import os
import time


DEFAULT_STATE_DIR = "/run/presplit-kvm/holds"


def compare_with_kernel(record, kernel, now=None):
    """This helper's record of one VM's hold against the kernel's count of held pages
    (``kernel``: {'pages': int or None, 'error': str or None}, see counts.held_pages).

    status:
      none          no record, and the kernel holds nothing
      held          recorded, and the kernel holds pages (``held_seconds`` since the hold)
      stale-record  recorded, but the kernel holds nothing: dirty logging was switched off
                    (its migration failed or was cancelled) or something else released it
      unrecorded    the kernel holds pages this helper has no record of: a hold that
                    outlived the run that took it, or another tool's
      unknown       the kernel does not count held pages (a series before 2026-12), or
                    its statistics could not be read
    """
    pages = kernel["pages"]
    check = {"kernel_pages": pages, "recorded": record is not None, "held_seconds": None}
    if pages is None:
        check.update(status="unknown", message=kernel["error"] or "the kernel does not count held pages")
    elif record is not None and pages:
        since = record.get("since")
        if isinstance(since, (int, float)):
            check["held_seconds"] = round(max(0.0, (time.time() if now is None else now) - since), 1)
        check.update(status="held", message="%d pages held" % pages)
    elif record is not None:
        check.update(status="stale-record",
                     message="recorded, but the kernel holds nothing: dirty logging was switched off "
                             "(a migration failed or was cancelled) or something else released it; "
                             "a release clears the record")
    elif pages:
        check.update(status="unrecorded",
                     message="the kernel holds %d pages that this helper did not record: a hold that "
                             "outlived the run that took it, or another tool's; release --force drops it"
                             % pages)
    else:
        check.update(status="none", message="nothing held")
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
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        if record.get("pid") != identity.pid or record.get("starttime") != identity.starttime:
            return None
        return record

    def put(self, identity, target_level, gpa, size):
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        record = {"uuid": identity.uuid, "pid": identity.pid, "starttime": identity.starttime,
                  "target_level": target_level, "gpa": gpa, "size": size, "since": time.time()}
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
