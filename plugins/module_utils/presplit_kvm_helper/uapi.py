# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""KVM uAPI numbers and structs used by the host helper -- the ONE place they live.

Upstream values come from include/uapi/linux/kvm.h. The KVM_SPLIT_HUGE_PAGES values
come from the kernel patch in kernel-patch/ (its uapi header hunk is the source of
truth); tests/unit/plugins/module_utils/test_kvm_uapi.py parses that hunk and fails
when these constants drift from it.
"""

import struct


KVMIO = 0xAE

# asm-generic/ioctl.h encoding (x86 uses the generic layout).
_IOC_NRBITS = 8
_IOC_TYPEBITS = 8
_IOC_SIZEBITS = 14
_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = _IOC_NRSHIFT + _IOC_NRBITS
_IOC_SIZESHIFT = _IOC_TYPESHIFT + _IOC_TYPEBITS
_IOC_DIRSHIFT = _IOC_SIZESHIFT + _IOC_SIZEBITS
IOC_NONE = 0
IOC_WRITE = 1
IOC_READ = 2


def ioc(direction, ioc_type, nr, size):
    """Encode an ioctl request number like the kernel's _IOC() macro."""
    if size >= (1 << _IOC_SIZEBITS):
        raise ValueError("ioctl argument size %d does not fit in %d bits" % (size, _IOC_SIZEBITS))
    return ((direction << _IOC_DIRSHIFT) | (ioc_type << _IOC_TYPESHIFT)
            | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT))


def io(ioc_type, nr):
    return ioc(IOC_NONE, ioc_type, nr, 0)


def iowr(ioc_type, nr, size):
    return ioc(IOC_READ | IOC_WRITE, ioc_type, nr, size)


# --- upstream ioctls (system fd /dev/kvm and VM fd) -------------------------
KVM_GET_API_VERSION = io(KVMIO, 0x00)
KVM_CREATE_VM = io(KVMIO, 0x01)
KVM_CHECK_EXTENSION = io(KVMIO, 0x03)
KVM_GET_STATS_FD = io(KVMIO, 0xCE)
KVM_API_VERSION = 12

# --- upstream capabilities reported by host_info ------------------------------
KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168
KVM_CAP_DIRTY_LOG_RING = 192
KVM_CAP_BINARY_STATS_FD = 203
KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223

# --- KVM_SPLIT_HUGE_PAGES (kernel-patch/) -------------------------------------
# Values from kernel-patch/README.md "uAPI"; test_kvm_uapi.py holds them equal to
# the patch's include/uapi/linux/kvm.h hunk.
KVM_CAP_SPLIT_HUGE_PAGES = 1024
KVM_SPLIT_HUGE_PAGES_NR = 0xF0

# struct kvm_split_huge_pages {
#     __u64 gpa; __u64 size; __u64 page_size; __u64 flags;
#     __u64 nr_split; __u64 reserved[3];
# };
SPLIT_STRUCT = struct.Struct("=8Q")
SPLIT_STRUCT_FIELDS = ("gpa", "size", "page_size", "flags", "nr_split",
                       "reserved0", "reserved1", "reserved2")
KVM_SPLIT_HUGE_PAGES = iowr(KVMIO, KVM_SPLIT_HUGE_PAGES_NR, SPLIT_STRUCT.size)

KVM_SPLIT_HUGE_PAGES_HOLD = 1 << 0
KVM_SPLIT_HUGE_PAGES_RELEASE = 1 << 1
KVM_SPLIT_HUGE_PAGES_QUERY = 1 << 2

# page_size is the target page size in bytes, and the capability is the OR of the sizes
# the kernel accepts. RELEASE takes page_size 0.
PAGE_SIZE = 4096
HUGE_2M = 2 << 20
HUGE_1G = 1 << 30
PAGE_SIZE_RELEASE = 0
PAGE_SIZE_NAMES = {PAGE_SIZE: "4k", HUGE_2M: "2m"}
PAGE_SIZE_BY_NAME = {"4k": PAGE_SIZE, "2m": HUGE_2M}

# The first series' capability was a bitmask of x86 levels (bit N-1 = level N, 0x3 on
# x86) and its struct had __u32 target_level/flags where page_size is now: a value with
# no bit >= 12 set comes from that series, and any ioctl built here would be misread.
_OLD_LEVEL_MASK = PAGE_SIZE - 1


def is_old_level_cap(cap_value):
    """Whether KVM_CAP_SPLIT_HUGE_PAGES comes from the older, level-based series."""
    return cap_value != 0 and not cap_value & ~_OLD_LEVEL_MASK


def cap_problem(cap_value):
    """Why this helper cannot split with this capability value, or None when it can."""
    if cap_value == 0:
        return "KVM_CAP_SPLIT_HUGE_PAGES absent (0)"
    if is_old_level_cap(cap_value):
        return ("KVM_CAP_SPLIT_HUGE_PAGES = %#x is a level bitmask: an older presplit kernel series, "
                "unsupported by this helper, which needs the series whose capability lists page sizes"
                % cap_value)
    return None


def page_sizes_from_cap(cap_value):
    """The target page sizes the capability accepts, ascending; [] when absent or from
    the older series (which this helper must not drive)."""
    if is_old_level_cap(cap_value):
        return []
    return [1 << bit for bit in range(12, cap_value.bit_length()) if cap_value & (1 << bit)]


def page_size_names_from_cap(cap_value):
    """The accepted sizes this helper has names for, e.g. ['4k', '2m']."""
    return [PAGE_SIZE_NAMES[size] for size in page_sizes_from_cap(cap_value) if size in PAGE_SIZE_NAMES]


def cap_accepts(cap_value, page_size):
    return page_size in page_sizes_from_cap(cap_value)


def page_size_name(page_size):
    """'4k' for 4096; a size without a name as its number of bytes."""
    return PAGE_SIZE_NAMES.get(page_size, str(page_size))


def pack_split(gpa, size, page_size, flags):
    return bytearray(SPLIT_STRUCT.pack(gpa, size, page_size, flags, 0, 0, 0, 0))


def unpack_split(buf):
    return dict(zip(SPLIT_STRUCT_FIELDS, SPLIT_STRUCT.unpack(bytes(buf))))
