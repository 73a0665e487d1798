"""Whether a rolling maintenance may start its next host: the stop file and the window."""

import datetime

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.presplit.kvm.plugins.module_utils.migration_schedule import ScheduleError
from ansible_collections.presplit.kvm.plugins.plugin_utils.rolling_control import host_start_blocker

END = "2026-12-07T06:00:00Z"
END_EPOCH = datetime.datetime(2026, 12, 7, 6, tzinfo=datetime.timezone.utc).timestamp()


def test_a_host_starts_inside_the_window_without_a_stop_file():
    assert host_start_blocker(END, END_EPOCH - 1, "/srv/stop", False) == ""
    assert host_start_blocker("", END_EPOCH + 10 ** 6, "", False) == ""


def test_the_window_end_is_when_no_host_starts_any_more():
    assert host_start_blocker(END, END_EPOCH, "", False) == "the maintenance window ended at %s" % END
    # The same instant in another zone.
    assert host_start_blocker("2026-12-07T07:00:00+01:00", END_EPOCH, "", False).startswith("the maintenance window")


def test_the_stop_file_stops_the_run_first():
    assert host_start_blocker(END, END_EPOCH + 5, "/srv/stop", True) == "the stop file /srv/stop exists"


@pytest.mark.parametrize("window_end", ["2026-12-07T06:00:00", "tomorrow 6am", "2026-13-07T06:00:00Z", "06:00Z",
                                        "2026-12-07T06:00:00Z\nFAILED", 1765087200])
def test_a_window_end_that_is_not_a_zoned_iso_time_is_refused(window_end):
    with pytest.raises(ScheduleError, match="rolling_maintenance_window_end"):
        host_start_blocker(window_end, END_EPOCH, "", False)


@settings(max_examples=300, deadline=None)
@given(window_end=st.text(max_size=40),
       now=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 12, 10 ** 12)))
def test_hostile_windows_give_a_reason_or_a_one_line_error(window_end, now):
    try:
        reason = host_start_blocker(window_end, now, "", False)
    except ScheduleError as error:
        assert "\n" not in str(error).replace(repr(window_end), "")
        return
    assert reason in ("", "the maintenance window ended at %s" % window_end)
