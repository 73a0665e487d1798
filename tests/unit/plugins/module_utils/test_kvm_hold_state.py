"""The helper's hold record set against what the kernel reports holding, and the record file."""
import json
from types import SimpleNamespace

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.hold_state import (
    HoldState, compare_with_kernel, upgrade_record)

GIB = 1 << 30
K4, M2 = 4096, 2 << 20
# A hold at 4k over [0, 5 GiB) of a guest whose memslots cover [0, 1 GiB) and [4 GiB, 4.5 GiB).
SLOTS = [[0, GIB], [4 * GIB, GIB // 2]]
RECORD = {"uuid": "u", "pid": 1, "starttime": 2, "page_size": K4, "gpa": 0, "size": 5 * GIB, "since": 100.0,
          "kernel_ranges": SLOTS}
PAGES = {"pages": 393216, "error": None}


def held(*ranges):
    return {"ranges": [{"page_size": size, "gpa": gpa, "size": length} for size, gpa, length in ranges],
            "error": None}


ALL_4K = held((K4, 0, GIB), (K4, 4 * GIB, GIB // 2))


@pytest.mark.parametrize("record, kernel, status", [
    (None, held(), "none"),
    (RECORD, ALL_4K, "held"),
    # a 2m record is held by 4k holds too: the recorded size or smaller
    (dict(RECORD, page_size=M2), ALL_4K, "held"),
    # a 4k record is not held by 2m holds
    (RECORD, held((M2, 0, GIB), (M2, 4 * GIB, GIB // 2)), "partial"),
    # the second memslot's hold is gone (slot deleted)
    (RECORD, held((K4, 0, GIB)), "partial"),
    (RECORD, held((K4, 0, GIB), (K4, 4 * GIB, GIB // 4)), "partial"),
    (RECORD, held(), "stale-record"),
    (None, ALL_4K, "unrecorded"),
])
def test_status_from_record_and_kernel_ranges(record, kernel, status):
    check = compare_with_kernel(record, PAGES, kernel, now=160.0)
    assert check["status"] == status
    assert check["kernel_ranges"] == kernel["ranges"]
    assert check["recorded"] is (record is not None)
    assert check["held_seconds"] == (60.0 if status in ("held", "partial") else None)
    assert check["message"]


def test_partial_says_how_much_is_missing():
    check = compare_with_kernel(RECORD, PAGES, held((K4, 0, GIB)))
    assert check["message"].startswith("%d of %d bytes are no longer held at 4k" % (GIB // 2, GIB + GIB // 2))


def test_record_without_kernel_ranges_is_held_when_all_held_is_small_enough():
    """A record from before the split finished (or an older helper) cannot tell memslot holes
    from dropped holds: held when what is held of it is at the recorded size or smaller."""
    record = dict(RECORD)
    del record["kernel_ranges"]
    assert compare_with_kernel(record, PAGES, held((K4, 0, GIB)))["status"] == "held"
    mixed = held((K4, 0, GIB), (M2, 4 * GIB, GIB // 2))
    assert compare_with_kernel(record, PAGES, mixed)["status"] == "partial"


def test_unrecorded_lists_the_ranges():
    check = compare_with_kernel(None, PAGES, ALL_4K)
    assert check["unrecorded"] == ALL_4K["ranges"]
    assert "2 ranges" in check["message"]


def test_ranges_outside_a_record_are_listed_beside_its_status():
    record = dict(RECORD, size=GIB, kernel_ranges=[[0, GIB]])
    kernel = held((K4, GIB // 2, GIB), (M2, 8 * GIB, M2))
    check = compare_with_kernel(record, PAGES, kernel)
    assert check["status"] == "partial"      # [0, 0.5 GiB) of the record is not held
    assert check["unrecorded"] == [{"page_size": K4, "gpa": GIB, "size": GIB // 2},
                                   {"page_size": M2, "gpa": 8 * GIB, "size": M2}]
    assert "also holds 2 ranges outside the record" in check["message"]


def test_a_hold_at_a_larger_size_inside_the_record_is_not_stale():
    check = compare_with_kernel(RECORD, PAGES, held((M2, 0, GIB)))
    assert check["status"] == "partial" and check["unrecorded"] == []


@pytest.mark.parametrize("pages, ranges, agree", [
    (262144, [{"page_size": K4, "gpa": 0, "size": GIB}], True),
    (0, [], True),
    (0, [{"page_size": K4, "gpa": 0, "size": GIB}], False),
    (512, [], False),
    (None, [], None),
])
def test_pages_held_is_a_cross_check(pages, ranges, agree):
    check = compare_with_kernel(None, {"pages": pages, "error": None}, {"ranges": ranges, "error": None})
    assert check["pages_agree"] is agree
    assert check["kernel_pages"] == pages


@pytest.mark.parametrize("record", [None, RECORD])
def test_unknown_when_the_kernel_cannot_be_asked(record):
    kernel = {"ranges": None, "error": "EINVAL: the kernel does not answer KVM_SPLIT_HUGE_PAGES_QUERY"}
    check = compare_with_kernel(record, PAGES, kernel)
    assert check == {"kernel_pages": PAGES["pages"], "kernel_ranges": None, "recorded": record is not None,
                     "held_seconds": None, "unrecorded": [], "pages_agree": None,
                     "status": "unknown", "message": kernel["error"]}


def test_malformed_since_is_not_an_age():
    check = compare_with_kernel(dict(RECORD, since="yesterday"), PAGES, ALL_4K)
    assert check["status"] == "held" and check["held_seconds"] is None


IDENTITY = SimpleNamespace(uuid="0b1c", pid=41, starttime=9001)


def write_record(tmp_path, record):
    (tmp_path / "0b1c.json").write_text(json.dumps(record))
    return HoldState(str(tmp_path))


@pytest.mark.parametrize("level, page_size", [(1, K4), (2, M2)])
def test_a_record_of_the_level_based_helper_reads_as_a_page_size(tmp_path, level, page_size):
    old = {"uuid": "0b1c", "pid": 41, "starttime": 9001, "target_level": level, "gpa": 0, "size": 5 * GIB,
           "since": 100.0}
    record = write_record(tmp_path, old).get(IDENTITY)
    assert record["page_size"] == page_size and "target_level" not in record
    assert (record["gpa"], record["size"], record["since"]) == (0, 5 * GIB, 100.0)
    # and it compares like a current one
    assert compare_with_kernel(record, PAGES, held((K4, 0, GIB)))["status"] == "held"


def test_upgrade_leaves_current_and_unknown_records_alone():
    assert upgrade_record(RECORD) is RECORD
    odd = {"target_level": 3, "gpa": 0, "size": GIB}
    assert upgrade_record(odd) is odd


def test_a_record_without_a_page_size_is_no_record(tmp_path):
    odd = {"uuid": "0b1c", "pid": 41, "starttime": 9001, "target_level": 3, "gpa": 0, "size": GIB}
    assert write_record(tmp_path, odd).get(IDENTITY) is None


def test_put_records_page_size_and_kernel_ranges(tmp_path):
    holds = HoldState(str(tmp_path / "holds"))
    first = holds.put(IDENTITY, K4, 0, 5 * GIB)
    assert "kernel_ranges" not in first and "target_level" not in first
    again = holds.put(IDENTITY, K4, 0, 5 * GIB, kernel_ranges=[(0, GIB)], since=first["since"])
    assert holds.get(IDENTITY) == again
    assert again["page_size"] == K4 and again["kernel_ranges"] == [[0, GIB]] and again["since"] == first["since"]
    assert holds.get(SimpleNamespace(uuid="0b1c", pid=41, starttime=1)) is None   # another QEMU process
