"""Listing the VM's holds with KVM_SPLIT_HUGE_PAGES_QUERY: the walk, merging, errors.

``FakeQueryKernel`` stands in for fcntl.ioctl: the real query needs the patched kernel,
which this machine does not run (tests/kernel exercises it under the patched KVM). The
fake answers as the uAPI says: for the window [gpa, gpa+size), the first range held at
exactly page_size that intersects it, clipped to it, or gpa = window end and size 0.
"""
import errno

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import errors as kvm_errors
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import query as kvm_query, uapi as kvm_uapi

GIB = 1 << 30
K4, M2 = 4096, 2 << 20
X86_CAP = K4 | M2


class FakeQueryKernel:
    """``held`` maps a page size to its ranges [(gpa, size)] in the order the kernel keeps them:
    unmerged, as memslots and address spaces split them."""

    def __init__(self, held, fail=None):
        self.held = held
        self.fail = fail
        self.calls = []

    def __call__(self, fd, request, buf, mutate):
        assert request == kvm_uapi.KVM_SPLIT_HUGE_PAGES and mutate is True
        state = kvm_uapi.unpack_split(buf)
        self.calls.append(dict(state))
        if self.fail:
            raise self.fail.pop(0) if isinstance(self.fail, list) else self.fail
        assert state["flags"] == kvm_uapi.KVM_SPLIT_HUGE_PAGES_QUERY and state["nr_split"] == 0
        start, end = state["gpa"], state["gpa"] + state["size"]
        assert state["size"] > 0 and state["gpa"] % K4 == 0 and state["size"] % K4 == 0
        found = sorted((max(gpa, start), min(gpa + size, end)) for gpa, size in self.held.get(state["page_size"], ())
                       if gpa < end and gpa + size > start)
        low, high = found[0] if found else (end, end)
        buf[:] = kvm_uapi.pack_split(low, high - low, state["page_size"], state["flags"])
        return 0


def test_merge_joins_adjacent_and_overlapping_ranges():
    assert kvm_query.merge_ranges([(4 * GIB, GIB), (0, GIB), (GIB, GIB), (GIB // 2, GIB), (8 * GIB, K4)]) == [
        (0, 2 * GIB), (4 * GIB, GIB), (8 * GIB, K4)]
    assert kvm_query.merge_ranges([(0, 2 * GIB), (GIB, K4)]) == [(0, 2 * GIB)]   # contained
    assert kvm_query.merge_ranges([]) == []


def test_walk_lists_one_range_per_call_and_merges_memslot_and_smm_pieces():
    # a hold over two adjacent memslots comes as two ranges; the SMM address space's range
    # overlaps the first one; and a separate hold further up
    kernel = FakeQueryKernel({K4: [(0, GIB), (GIB, 2 * GIB), (GIB // 2, GIB // 4), (4 * GIB, GIB)]})
    assert kvm_query.held_ranges_at(7, K4, kernel) == [(0, 3 * GIB), (4 * GIB, GIB)]
    # each call continues from the end of the previous answer, with the rest of the window
    assert [(call["gpa"], call["gpa"] + call["size"]) for call in kernel.calls] == [
        (0, kvm_query.MAX_GPA), (GIB, kvm_query.MAX_GPA), (3 * GIB, kvm_query.MAX_GPA),
        (5 * GIB, kvm_query.MAX_GPA)]
    assert {call["page_size"] for call in kernel.calls} == {K4}


def test_walk_of_a_vm_holding_nothing_is_one_call():
    kernel = FakeQueryKernel({})
    assert kvm_query.held_ranges_at(7, M2, kernel) == []
    assert len(kernel.calls) == 1


def test_kernel_holds_asks_each_accepted_size():
    kernel = FakeQueryKernel({K4: [(0, GIB)], M2: [(8 * GIB, M2), (8 * GIB + M2, M2)]})
    assert kvm_query.kernel_holds(7, X86_CAP, kernel) == {
        "ranges": [{"page_size": K4, "gpa": 0, "size": GIB}, {"page_size": M2, "gpa": 8 * GIB, "size": 2 * M2}],
        "error": None}
    # the 2m hold comes in two adjacent pieces: one call each, and one finding nothing more
    assert [call["page_size"] for call in kernel.calls] == [K4, K4, M2, M2, M2]


@pytest.mark.parametrize("cap, text", [(0, "absent (0)"), (0x3, "older presplit kernel series")])
def test_no_query_without_a_page_size_capability(cap, text):
    def must_not_run(*args):
        raise AssertionError("ioctl issued")
    holds = kvm_query.kernel_holds(7, cap, must_not_run)
    assert holds["ranges"] is None and text in holds["error"]


@pytest.mark.parametrize("err, text", [
    (errno.EINVAL, "does not answer KVM_SPLIT_HUGE_PAGES_QUERY"),
    (errno.EIO, "refuses VM ioctls from a process other than QEMU"),
    (errno.EOPNOTSUPP, errno.errorcode[errno.EOPNOTSUPP]),
])
def test_errors_make_the_holds_unknown(err, text):
    holds = kvm_query.kernel_holds(7, X86_CAP, FakeQueryKernel({}, fail=OSError(err, "x")))
    assert holds["ranges"] is None and text in holds["error"]


def test_an_interrupted_query_is_asked_again():
    kernel = FakeQueryKernel({K4: [(0, GIB)]}, fail=[OSError(errno.EINTR, "Interrupted system call")])
    assert kvm_query.held_ranges_at(7, K4, kernel) == [(0, GIB)]
    assert kernel.calls[0]["gpa"] == kernel.calls[1]["gpa"] == 0


def test_endless_interruptions_give_up():
    kernel = FakeQueryKernel({}, fail=OSError(errno.EINTR, "Interrupted system call"))
    with pytest.raises(kvm_errors.KvmIoctlFailed, match="interrupted 100 times"):
        kvm_query.held_ranges_at(7, K4, kernel)
    assert "interrupted" in kvm_query.kernel_holds(7, X86_CAP, kernel)["error"]


@pytest.mark.parametrize("answer", [(0, GIB), (2 * GIB, 2 * GIB)])
def test_an_answer_outside_the_window_stops_the_walk(answer):
    """The walk must end even if a kernel answers before the window (it would loop) or past it."""
    def kernel(fd, request, buf, mutate):
        state = kvm_uapi.unpack_split(buf)
        reply = answer if state["gpa"] == GIB else (GIB, GIB)
        buf[:] = kvm_uapi.pack_split(reply[0], reply[1], state["page_size"], state["flags"])
    with pytest.raises(kvm_errors.KvmIoctlFailed, match="answered"):
        kvm_query.held_ranges_at(7, K4, kernel, start=0, end=3 * GIB)


def test_range_arithmetic():
    ranges = [(0, GIB), (2 * GIB, GIB)]
    assert kvm_query.clip_ranges(ranges, GIB // 2, 2 * GIB) == [(GIB // 2, GIB // 2), (2 * GIB, GIB // 2)]
    assert kvm_query.subtract_range(ranges, GIB // 2, 2 * GIB) == [(0, GIB // 2), (GIB * 5 // 2, GIB // 2)]
    assert kvm_query.intersect_ranges(ranges, [(GIB // 2, 2 * GIB)]) == [(GIB // 2, GIB // 2), (2 * GIB, GIB // 2)]
    assert kvm_query.total_bytes([(0, GIB), (GIB // 2, GIB)]) == GIB + GIB // 2
