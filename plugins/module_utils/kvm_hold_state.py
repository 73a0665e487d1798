# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Record of the holds this helper placed, so repeated runs can be idempotent.

The kernel offers no way to read a hold back, so each HOLD is recorded in
``/run/presplit-kvm/holds/<uuid>.json`` (tmpfs: gone after a reboot, like the holds),
keyed to the QEMU process (pid + starttime): a record for another QEMU process of the
same domain (restarted, migrated back) is stale and ignored. The kernel also drops a
hold when dirty logging is switched off; the record cannot see that, which is why
callers compare it with the live mapping counts before trusting it.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import time

__metaclass__ = type

DEFAULT_STATE_DIR = "/run/presplit-kvm/holds"


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
