# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The split driver: KVM_SPLIT_HUGE_PAGES over a guest-physical range, in chunks.

As in the seed thread, a split to 4K runs as two passes, 1G->2M then 2M->4K, so the
first pass frees the 1G mappings' cost early and each pass's chunks stay short. HOLD
is only set on the last pass, at the final page size: a hold at 2M from the first pass
would be replaced straight away. Each chunk is one ioctl that the kernel cuts short with
-EINTR when a signal is pending, having advanced ``gpa``/``size`` in the struct; the driver
re-issues the same struct until ``size`` is 0. Between chunks it reports progress,
sleeps to honour the rate limit (GiB of guest address space per second), and asks
``keep_going`` whether QEMU is still alive.
"""

import errno
import fcntl
import time

from .errors import InvalidArgument, KvmIoctlFailed, ProcessMismatch, Unsupported
from .uapi import (HUGE_1G, HUGE_2M, KVM_SPLIT_HUGE_PAGES, KVM_SPLIT_HUGE_PAGES_HOLD,
                   KVM_SPLIT_HUGE_PAGES_RELEASE, PAGE_SIZE, PAGE_SIZE_RELEASE, pack_split, unpack_split)


MAX_GPA = 1 << 57                 # 5-level paging: no guest-physical address goes beyond
DEFAULT_CHUNK = HUGE_1G           # the kernel itself works in <= 1 GiB chunks
MAX_CHUNK = 64 * HUGE_1G
MAX_RATE_GIB_S = 4096.0           # beyond this a "limit" is a typo, not a limit
MIN_RATE_GIB_S = 0.01             # 10 MiB/s: 1 TiB of guest address space in under 30 hours
LOW_MEMORY_TOP = 4 * HUGE_1G      # x86: RAM above the PCI hole starts at 4 GiB
RESUME_ERRNOS = (errno.EINTR,)
MAX_STALLED_RESUMES = 1000       # -EINTR without progress this often: something is wrong


def passes_for(page_size):
    """Target page sizes of the passes that reach ``page_size``."""
    if page_size == PAGE_SIZE:
        return [HUGE_2M, PAGE_SIZE]
    if page_size == HUGE_2M:
        return [HUGE_2M]
    raise InvalidArgument("target page size must be 4096 (4k) or %d (2m), got %r" % (HUGE_2M, page_size))


def pass_label(page_size):
    return "1g->2m" if page_size == HUGE_2M else "2m->4k"


def guest_range(memory_bytes):
    """[0, end) covering all RAM of an x86 guest with ``memory_bytes``: RAM sits below
    the PCI hole and from 4 GiB up, so 4 GiB + RAM, rounded to 1 GiB, bounds it.
    The kernel skips the holes without memslots."""
    if not isinstance(memory_bytes, int) or memory_bytes <= 0:
        raise InvalidArgument("guest memory size must be a positive integer, got %r" % (memory_bytes,))
    end = LOW_MEMORY_TOP + memory_bytes
    end = (end + HUGE_1G - 1) // HUGE_1G * HUGE_1G
    if end > MAX_GPA:
        raise InvalidArgument("guest memory size %d is absurd (range would end beyond 2^57)" % memory_bytes)
    return 0, end


def validate_range(gpa, size):
    for name, value in (("gpa", gpa), ("size", size)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument("%s must be an integer, got %r" % (name, value))
        if value < 0:
            raise InvalidArgument("%s must not be negative, got %d" % (name, value))
        if value % PAGE_SIZE:
            raise InvalidArgument("%s must be 4 KiB aligned, got %d" % (name, value))
    if size == 0:
        raise InvalidArgument("size must be > 0")
    if gpa + size > MAX_GPA:
        raise InvalidArgument("range %#x+%#x ends beyond 2^57" % (gpa, size))


def validate_chunk(chunk):
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < HUGE_2M or chunk > MAX_CHUNK \
            or chunk % HUGE_2M:
        raise InvalidArgument("chunk must be a multiple of 2 MiB between 2 MiB and %d GiB, got %r"
                              % (MAX_CHUNK // HUGE_1G, chunk))
    return chunk


def validate_rate(rate_gib_s):
    """None = unlimited; otherwise MIN_RATE_GIB_S to MAX_RATE_GIB_S GiB/s (a rate near 0
    would pace the split over years)."""
    if rate_gib_s is None:
        return None
    if isinstance(rate_gib_s, bool) or not isinstance(rate_gib_s, (int, float)):
        raise InvalidArgument("rate must be a number of GiB/s, got %r" % (rate_gib_s,))
    if not MIN_RATE_GIB_S <= rate_gib_s <= MAX_RATE_GIB_S:   # also rejects NaN
        raise InvalidArgument("rate must be from %g to %g GiB/s, got %r" % (MIN_RATE_GIB_S, MAX_RATE_GIB_S, rate_gib_s))
    return float(rate_gib_s)


def _raise_for_errno(exc, request, progress):
    where = "at gpa %#x with %#x bytes left" % (request["gpa"], request["size"])
    if exc.errno == errno.EIO:
        raise Unsupported("KVM_SPLIT_HUGE_PAGES through the duplicated VM fd: EIO -- the kernel refuses "
                          "VM ioctls from a process other than QEMU (unpatched kernel) or the VM is dead")
    if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP):
        raise Unsupported("KVM_SPLIT_HUGE_PAGES: %s -- %s" % (
            errno.errorcode[exc.errno],
            "kernel without the ioctl" if exc.errno == errno.ENOTTY else "no TDP MMU on this host"))
    raise KvmIoctlFailed("KVM_SPLIT_HUGE_PAGES failed %s: %s" % (where, exc.strerror),
                         errno_value=exc.errno, progress=progress)


class SplitDriver:
    """Issues KVM_SPLIT_HUGE_PAGES on one VM fd. ``ioctl`` is fcntl.ioctl except in unit
    tests of the resume logic, which need a kernel answering -EINTR on cue."""

    def __init__(self, vm_fd, chunk=DEFAULT_CHUNK, rate_gib_s=None, progress=None, keep_going=None,
                 ioctl=fcntl.ioctl, clock=time.monotonic, sleep=time.sleep):
        self.vm_fd = vm_fd
        self.chunk = validate_chunk(chunk)
        self.rate_bytes_s = None if rate_gib_s is None else validate_rate(rate_gib_s) * HUGE_1G
        self.progress = progress
        self.keep_going = keep_going
        self._ioctl = ioctl
        self._clock = clock
        self._sleep = sleep

    def _issue(self, gpa, size, page_size, flags):
        """One ioctl, resumed until done; returns (nr_split, resumes)."""
        buf = pack_split(gpa, size, page_size, flags)
        resumes = stalled = 0
        nr_split = 0
        while True:
            left_before = unpack_split(buf)["size"]
            try:
                self._ioctl(self.vm_fd, KVM_SPLIT_HUGE_PAGES, buf, True)
            except OSError as exc:
                state = unpack_split(buf)
                if exc.errno not in RESUME_ERRNOS:
                    _raise_for_errno(exc, state, {"gpa": state["gpa"], "size": state["size"]})
                # The kernel advanced gpa/size past finished work; nr_split counts this call only.
                nr_split += state["nr_split"]
                resumes += 1
                stalled = 0 if state["size"] < left_before else stalled + 1
                if stalled > MAX_STALLED_RESUMES:
                    raise KvmIoctlFailed("KVM_SPLIT_HUGE_PAGES made no progress in %d retries at gpa %#x"
                                         % (stalled, state["gpa"]), errno_value=exc.errno,
                                         progress={"gpa": state["gpa"], "size": state["size"]})
                buf = pack_split(state["gpa"], state["size"], page_size, flags)   # nr_split back to 0
                continue
            state = unpack_split(buf)
            if state["size"] != 0:
                raise KvmIoctlFailed("KVM_SPLIT_HUGE_PAGES returned 0 with %#x bytes left at %#x"
                                     % (state["size"], state["gpa"]))
            return nr_split + state["nr_split"], resumes

    def run_pass(self, gpa, size, page_size, flags, label):
        """Walk [gpa, gpa+size) chunk by chunk; returns a per-pass record."""
        started = self._clock()
        done = nr_split = resumes = 0
        while done < size:
            if self.keep_going is not None and not self.keep_going():
                raise ProcessMismatch("QEMU exited during %s after %d of %d bytes; stopped" % (label, done, size))
            step = min(self.chunk, size - done)
            chunk_split, chunk_resumes = self._issue(gpa + done, step, page_size, flags)
            done += step
            nr_split += chunk_split
            resumes += chunk_resumes
            if self.progress is not None:
                self.progress(label, done, size, nr_split)
            if self.rate_bytes_s and done < size:
                ahead = done / self.rate_bytes_s - (self._clock() - started)
                if ahead > 0:
                    self._sleep(ahead)
        return {"pass": label, "page_size": page_size, "gpa": gpa, "size": size,
                "nr_split": nr_split, "resumes": resumes, "seconds": round(self._clock() - started, 6)}

    def split(self, gpa, size, page_size, hold=False):
        validate_range(gpa, size)
        sizes = passes_for(page_size)
        records = []
        for index, pass_size in enumerate(sizes):
            last = index == len(sizes) - 1
            flags = KVM_SPLIT_HUGE_PAGES_HOLD if (hold and last) else 0
            records.append(self.run_pass(gpa, size, pass_size, flags, pass_label(pass_size)))
        return records

    def release(self, gpa, size):
        validate_range(gpa, size)
        return self.run_pass(gpa, size, PAGE_SIZE_RELEASE, KVM_SPLIT_HUGE_PAGES_RELEASE, "release")
