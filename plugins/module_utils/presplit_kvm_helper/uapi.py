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
#     __u64 gpa; __u64 size; __u32 target_level; __u32 flags;
#     __u64 nr_split; __u64 reserved[4];
# };
SPLIT_STRUCT = struct.Struct("=QQIIQ4Q")
SPLIT_STRUCT_FIELDS = ("gpa", "size", "target_level", "flags", "nr_split",
                       "reserved0", "reserved1", "reserved2", "reserved3")
KVM_SPLIT_HUGE_PAGES = iowr(KVMIO, KVM_SPLIT_HUGE_PAGES_NR, SPLIT_STRUCT.size)

KVM_SPLIT_HUGE_PAGES_HOLD = 1 << 0
KVM_SPLIT_HUGE_PAGES_RELEASE = 1 << 1

# target_level values and the capability's level bitmask (bit N-1 = level N).
# RELEASE takes target_level 0.
LEVEL_RELEASE = 0
LEVEL_4K = 1
LEVEL_2M = 2
LEVEL_NAMES = {LEVEL_4K: "4k", LEVEL_2M: "2m"}
LEVEL_BY_NAME = {"4k": LEVEL_4K, "2m": LEVEL_2M}
PAGE_SIZE = 4096
HUGE_2M = 2 << 20
HUGE_1G = 1 << 30


def levels_from_cap(cap_value):
    """Decode the KVM_CAP_SPLIT_HUGE_PAGES bitmask into level names, e.g. ['4k', '2m']."""
    return [name for level, name in sorted(LEVEL_NAMES.items()) if cap_value & (1 << (level - 1))]


def pack_split(gpa, size, target_level, flags):
    return bytearray(SPLIT_STRUCT.pack(gpa, size, target_level, flags, 0, 0, 0, 0, 0))


def unpack_split(buf):
    return dict(zip(SPLIT_STRUCT_FIELDS, SPLIT_STRUCT.unpack(bytes(buf))))
