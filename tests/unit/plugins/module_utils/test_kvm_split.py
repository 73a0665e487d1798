"""The split driver: argument checks, passes, resume, rate limit, errno mapping.

The resume and rate tests use ``FakeSplitKernel`` in place of fcntl.ioctl: this machine's
kernel has no KVM_SPLIT_HUGE_PAGES, so nothing here can answer -EINTR mid-range. The fake
implements the documented contract (kernel-patch/README.md, "uAPI") and nothing more.
The real kernel's answers (ENOTTY to the owner, EIO to a foreign caller) are tested too.
"""
import errno
import os

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import errors as kvm_errors, ioctl as kvm_ioctl
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import split as kvm_split, uapi as kvm_uapi

GIB = 1 << 30


class FakeSplitKernel:
    """Advances gpa/size by at most ``step`` bytes per call and returns -EINTR while work is left
    every ``interrupt_every``-th call, as the patched kernel does on a pending signal."""

    def __init__(self, step=GIB // 2, interrupt_every=2, split_per_call=3):
        self.step = step
        self.interrupt_every = interrupt_every
        self.split_per_call = split_per_call
        self.calls = []

    def __call__(self, fd, request, buf, mutate):
        assert request == kvm_uapi.KVM_SPLIT_HUGE_PAGES and mutate is True
        state = kvm_uapi.unpack_split(buf)
        self.calls.append(dict(state))
        assert state["nr_split"] == 0 and state["reserved0"] == 0
        while state["size"]:
            advance = min(self.step, state["size"])
            state["gpa"] += advance
            state["size"] -= advance
            state["nr_split"] += self.split_per_call
            if state["size"] and len(self.calls) % self.interrupt_every == 0:
                buf[:] = kvm_uapi.SPLIT_STRUCT.pack(*[state[name] for name in kvm_uapi.SPLIT_STRUCT_FIELDS])
                raise OSError(errno.EINTR, "Interrupted system call")
        buf[:] = kvm_uapi.SPLIT_STRUCT.pack(*[state[name] for name in kvm_uapi.SPLIT_STRUCT_FIELDS])
        return 0


def test_two_passes_hold_only_on_the_last_and_resume_after_eintr():
    kernel = FakeSplitKernel()
    progress = []
    driver = kvm_split.SplitDriver(7, chunk=2 * GIB, ioctl=kernel,
                                   progress=lambda *args: progress.append(args))
    passes = driver.split(0, 5 * GIB, kvm_uapi.PAGE_SIZE, hold=True)
    assert [record["pass"] for record in passes] == ["1g->2m", "2m->4k"]
    first_calls = [call for call in kernel.calls if call["page_size"] == kvm_uapi.HUGE_2M]
    last_calls = [call for call in kernel.calls if call["page_size"] == kvm_uapi.PAGE_SIZE]
    assert all(call["flags"] == 0 for call in first_calls)
    assert all(call["flags"] == kvm_uapi.KVM_SPLIT_HUGE_PAGES_HOLD for call in last_calls)
    # chunks [0,2G) [2G,4G) [4G,5G); every 2nd call is interrupted half a GiB in, and the
    # re-issued call continues from the gpa the kernel wrote back
    assert [call["gpa"] for call in first_calls] == [0, 2 * GIB, 2 * GIB + GIB // 2, 4 * GIB, 4 * GIB + GIB // 2]
    assert passes[0]["resumes"] == 2
    # 10 half-GiB steps per pass, 3 splits each, across resumed calls
    assert passes[0]["nr_split"] == passes[1]["nr_split"] == 30
    assert [entry[:2] for entry in progress] == [("1g->2m", 2 * GIB), ("1g->2m", 4 * GIB), ("1g->2m", 5 * GIB),
                                                 ("2m->4k", 2 * GIB), ("2m->4k", 4 * GIB), ("2m->4k", 5 * GIB)]


def test_target_2m_is_one_pass():
    kernel = FakeSplitKernel(interrupt_every=1000)
    passes = kvm_split.SplitDriver(7, ioctl=kernel).split(0, 2 * GIB, kvm_uapi.HUGE_2M)
    assert [record["pass"] for record in passes] == ["1g->2m"]
    assert {call["page_size"] for call in kernel.calls} == {kvm_uapi.HUGE_2M}
    assert passes[0]["page_size"] == kvm_uapi.HUGE_2M


def test_release_uses_page_size_zero_and_release_flag():
    kernel = FakeSplitKernel(interrupt_every=1000)
    record = kvm_split.SplitDriver(7, ioctl=kernel).release(0, GIB)
    assert record["pass"] == "release"
    assert [(call["page_size"], call["flags"]) for call in kernel.calls] == [
        (0, kvm_uapi.KVM_SPLIT_HUGE_PAGES_RELEASE)]


def test_rate_limit_sleeps_to_the_requested_pace():
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds
    driver = kvm_split.SplitDriver(7, chunk=GIB, rate_gib_s=2.0, ioctl=FakeSplitKernel(interrupt_every=1000),
                                   clock=lambda: now[0], sleep=sleep)
    driver.run_pass(0, 4 * GIB, kvm_uapi.HUGE_2M, 0, "1g->2m")
    # 4 GiB at 2 GiB/s: 0.5 s after each of the first three chunks, none after the last
    assert sleeps == [0.5, 0.5, 0.5]


def test_stalled_eintr_gives_up_with_the_range():
    def always_eintr(fd, request, buf, mutate):
        raise OSError(errno.EINTR, "Interrupted system call")
    with pytest.raises(kvm_errors.KvmIoctlFailed, match="no progress") as raised:
        kvm_split.SplitDriver(7, ioctl=always_eintr).split(0, GIB, kvm_uapi.HUGE_2M)
    assert raised.value.progress == {"gpa": 0, "size": GIB}


def test_stops_when_qemu_exits_between_chunks():
    alive = iter([True, False])
    driver = kvm_split.SplitDriver(7, ioctl=FakeSplitKernel(interrupt_every=1000), keep_going=lambda: next(alive))
    with pytest.raises(kvm_errors.ProcessMismatch, match="QEMU exited during 1g->2m after 1073741824 of"):
        driver.split(0, 3 * GIB, kvm_uapi.HUGE_2M)


@pytest.mark.parametrize("err,cls,text", [
    (errno.EOPNOTSUPP, kvm_errors.Unsupported, "no TDP MMU"),
    (errno.EINVAL, kvm_errors.KvmIoctlFailed, "Invalid argument"),
    (errno.ENOMEM, kvm_errors.KvmIoctlFailed, "at gpa 0x0"),
])
def test_errno_mapping(err, cls, text):
    def fail(fd, request, buf, mutate):
        raise OSError(err, os.strerror(err))
    with pytest.raises(cls, match=text):
        kvm_split.SplitDriver(7, ioctl=fail).split(0, GIB, kvm_uapi.HUGE_2M)


def test_real_unpatched_kernel_answers_enotty_to_the_owner(require_kvm):  # pylint: disable=unused-argument
    kvm_fd = kvm_ioctl.open_kvm()
    vm_fd = kvm_ioctl.create_vm(kvm_fd)
    try:
        if kvm_ioctl.check_extension(kvm_fd, kvm_uapi.KVM_CAP_SPLIT_HUGE_PAGES):
            pytest.skip("kernel has KVM_SPLIT_HUGE_PAGES")
        with pytest.raises(kvm_errors.Unsupported, match="ENOTTY -- kernel without the ioctl"):
            kvm_split.SplitDriver(vm_fd).split(0, GIB, kvm_uapi.PAGE_SIZE)
    finally:
        os.close(vm_fd)
        os.close(kvm_fd)


@pytest.mark.parametrize("gpa,size,text", [
    (-4096, GIB, "gpa must not be negative"),
    (0, -GIB, "size must not be negative"),
    (0, 0, "size must be > 0"),
    (4095, GIB, "4 KiB aligned"),
    (0, GIB + 1, "4 KiB aligned"),
    (0, 1 << 60, "beyond 2"),
    (0, 1.5, "must be an integer"),
    (0, True, "must be an integer"),
])
def test_bad_ranges_are_refused_before_any_ioctl(gpa, size, text):
    def must_not_run(*args):
        raise AssertionError("ioctl issued for a bad range")
    with pytest.raises(kvm_errors.InvalidArgument, match=text):
        kvm_split.SplitDriver(7, ioctl=must_not_run).split(gpa, size, kvm_uapi.PAGE_SIZE)


@pytest.mark.parametrize("rate", [0, -1, float("nan"), float("inf"), 1e9, "fast", True])
def test_bad_rates_are_refused(rate):
    with pytest.raises(kvm_errors.InvalidArgument, match="rate must be"):
        kvm_split.validate_rate(rate)


@pytest.mark.parametrize("chunk", [0, -GIB, 4096, 3 << 20, 65 * GIB, 1.0])
def test_bad_chunks_are_refused(chunk):
    with pytest.raises(kvm_errors.InvalidArgument, match="chunk must be"):
        kvm_split.validate_chunk(chunk)


# 1 and 2 were the level-based series' values: never taken for page sizes.
@pytest.mark.parametrize("page_size", [0, 1, 2, 3, -1, "4k", None, 1 << 30, 8192])
def test_bad_page_sizes_are_refused(page_size):
    with pytest.raises(kvm_errors.InvalidArgument, match="target page size"):
        kvm_split.passes_for(page_size)


def test_passes_by_page_size():
    assert kvm_split.passes_for(4096) == [2 << 20, 4096]
    assert kvm_split.passes_for(2 << 20) == [2 << 20]


def test_guest_range_covers_ram_above_the_pci_hole():
    assert kvm_split.guest_range(64 << 20) == (0, 5 * GIB)
    assert kvm_split.guest_range(512 * GIB) == (0, 516 * GIB)
    for bad in (0, -1, 1 << 60, 1.0):
        with pytest.raises(kvm_errors.InvalidArgument):
            kvm_split.guest_range(bad)
