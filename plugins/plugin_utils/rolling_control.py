# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The operator's control of a rolling maintenance: whether the next host may start."""

import datetime
import math

from ansible_collections.presplit.kvm.plugins.module_utils.migration_schedule import ScheduleError
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.domain import has_control_characters

WINDOW_EXAMPLE = '2026-12-07T06:00:00Z'


def window_end_epoch(window_end):
    """The end of the maintenance window (an ISO 8601 time with its zone) in epoch seconds.
    A time without a zone is refused: the controller's zone and the hosts' may differ."""
    if not isinstance(window_end, str) or has_control_characters(window_end):
        raise ScheduleError('rolling_maintenance_window_end must be an ISO 8601 time with its zone, such as %s,'
                            ' got %r' % (WINDOW_EXAMPLE, window_end))
    try:
        end = datetime.datetime.fromisoformat(window_end)
    except ValueError:
        end = None
    if end is None or end.tzinfo is None:
        raise ScheduleError('rolling_maintenance_window_end %r is not an ISO 8601 time with its zone, such as %s'
                            % (window_end, WINDOW_EXAMPLE))
    return end.timestamp()


def host_start_blocker(window_end, now_epoch, stop_file, stop_file_exists):
    """Why the next host must not start ('' when it may): the operator's stop file exists,
    or the maintenance window (window_end, '' for none) has ended by now_epoch."""
    if stop_file and stop_file_exists:
        return 'the stop file %s exists' % stop_file
    if window_end:
        end = window_end_epoch(window_end)
        if isinstance(now_epoch, bool) or not isinstance(now_epoch, (int, float)) or not math.isfinite(now_epoch):
            raise ScheduleError('the current time must be epoch seconds, got %r' % (now_epoch,))
        if now_epoch >= end:
            return 'the maintenance window ended at %s' % window_end
    return ''
