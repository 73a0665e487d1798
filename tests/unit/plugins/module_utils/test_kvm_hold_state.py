"""The helper's hold record set against the kernel's count of held pages."""
import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.hold_state import compare_with_kernel

RECORD = {"uuid": "u", "pid": 1, "starttime": 2, "target_level": 1, "gpa": 0, "size": 1 << 30, "since": 100.0}


@pytest.mark.parametrize("record, pages, status", [
    (None, 0, "none"),
    (RECORD, 262144, "held"),
    (RECORD, 0, "stale-record"),
    (None, 512, "unrecorded"),
    (None, None, "unknown"),
    (RECORD, None, "unknown"),
])
def test_status_from_record_and_kernel_count(record, pages, status):
    check = compare_with_kernel(record, {"pages": pages, "error": None}, now=160.0)
    assert check["status"] == status
    assert check["kernel_pages"] == pages
    assert check["recorded"] is (record is not None)
    assert check["held_seconds"] == (60.0 if status == "held" else None)
    assert check["message"]


def test_unreadable_stats_name_the_error():
    check = compare_with_kernel(None, {"pages": None, "error": "EIO: refused"})
    assert check == {"kernel_pages": None, "recorded": False, "held_seconds": None,
                     "status": "unknown", "message": "EIO: refused"}


def test_malformed_since_is_not_an_age():
    check = compare_with_kernel(dict(RECORD, since="yesterday"), {"pages": 8, "error": None})
    assert check["status"] == "held" and check["held_seconds"] is None
