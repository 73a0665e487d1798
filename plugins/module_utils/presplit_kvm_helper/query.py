# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Holds read back from the kernel with KVM_SPLIT_HUGE_PAGES_QUERY.

The kernel answers one range per call, for one target page size: the first range held at
exactly that size inside the window, clipped to it, or an empty range at the window's end.
Listing walks the window in gpa order. A hold spanning two memslots comes back as two
adjacent ranges and the SMM address space's ranges may overlap ones already seen, so the
ranges of each size are merged here. Ranges are (gpa, size) pairs in bytes.
"""

import errno
import fcntl

from .counts import explain_oserror
from .errors import KvmIoctlFailed
from .split import MAX_GPA
from .uapi import KVM_SPLIT_HUGE_PAGES, KVM_SPLIT_HUGE_PAGES_QUERY, cap_problem, pack_split, page_sizes_from_cap, unpack_split


MAX_QUERY_RETRIES = 100       # a read-only call interrupted this often: something is wrong


def merge_ranges(ranges):
    """``ranges`` sorted, with adjacent and overlapping ones joined."""
    merged = []
    for gpa, size in sorted(ranges):
        if merged and gpa <= merged[-1][0] + merged[-1][1]:
            start = merged[-1][0]
            merged[-1] = (start, max(merged[-1][1], gpa + size - start))
        else:
            merged.append((gpa, size))
    return merged


def clip_ranges(ranges, gpa, size):
    """The parts of ``ranges`` inside [gpa, gpa+size)."""
    clipped = []
    for start, length in ranges:
        low, high = max(start, gpa), min(start + length, gpa + size)
        if low < high:
            clipped.append((low, high - low))
    return clipped


def intersect_ranges(ranges, others):
    """The merged parts of ``ranges`` that ``others`` also cover."""
    return merge_ranges([part for gpa, size in others for part in clip_ranges(ranges, gpa, size)])


def subtract_range(ranges, gpa, size):
    """The parts of ``ranges`` outside [gpa, gpa+size)."""
    left = []
    for start, length in ranges:
        end = start + length
        if start < gpa:
            left.append((start, min(end, gpa) - start))
        if end > gpa + size:
            after = max(start, gpa + size)
            left.append((after, end - after))
    return left


def total_bytes(ranges):
    return sum(size for _gpa, size in merge_ranges(ranges))


def _query_once(vm_fd, page_size, gpa, end, ioctl):
    """The kernel's answer (gpa, size) for the window [gpa, end)."""
    for _attempt in range(MAX_QUERY_RETRIES):
        buf = pack_split(gpa, end - gpa, page_size, KVM_SPLIT_HUGE_PAGES_QUERY)
        try:
            ioctl(vm_fd, KVM_SPLIT_HUGE_PAGES, buf, True)
        except OSError as exc:
            # A query changes nothing, so an interrupted one is simply asked again.
            if exc.errno != errno.EINTR:
                raise
            continue
        state = unpack_split(buf)
        return state["gpa"], state["size"]
    raise KvmIoctlFailed("KVM_SPLIT_HUGE_PAGES_QUERY interrupted %d times at gpa %#x" % (MAX_QUERY_RETRIES, gpa),
                         errno_value=errno.EINTR)


def held_ranges_at(vm_fd, page_size, ioctl=fcntl.ioctl, start=0, end=MAX_GPA):
    """The merged ranges of [start, end) held at exactly ``page_size``."""
    ranges = []
    gpa = start
    while gpa < end:
        found, size = _query_once(vm_fd, page_size, gpa, end, ioctl)
        if size == 0:
            break
        if found < gpa or found + size > end:
            # Continuing from an answer outside the window could walk backwards forever.
            raise KvmIoctlFailed("KVM_SPLIT_HUGE_PAGES_QUERY answered %#x+%#x for the window [%#x, %#x)"
                                 % (found, size, gpa, end))
        ranges.append((found, size))
        gpa = found + size
    return merge_ranges(ranges)


def _explain_query_error(exc):
    if exc.errno == errno.EINVAL:
        return "EINVAL: the kernel does not answer KVM_SPLIT_HUGE_PAGES_QUERY (a series without it)"
    return "KVM_SPLIT_HUGE_PAGES_QUERY: %s" % explain_oserror(exc)


def kernel_holds(vm_fd, cap_value, ioctl=fcntl.ioctl):
    """Every range the VM holds, for each page size the capability accepts:
    {'ranges': [{'page_size', 'gpa', 'size'}] or None, 'error': str or None}."""
    sizes = page_sizes_from_cap(cap_value)
    if not sizes:
        return {"ranges": None, "error": cap_problem(cap_value)}
    try:
        ranges = [{"page_size": page_size, "gpa": gpa, "size": size}
                  for page_size in sizes for gpa, size in held_ranges_at(vm_fd, page_size, ioctl)]
    except OSError as exc:
        return {"ranges": None, "error": _explain_query_error(exc)}
    except KvmIoctlFailed as exc:
        return {"ranges": None, "error": str(exc)}
    return {"ranges": ranges, "error": None}
