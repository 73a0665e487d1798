# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""KVM binary statistics (stats fd) parser, modelled on tools/kvm/kvm_stat.

Layout (include/uapi/linux/kvm.h): a kvm_stats_header at offset 0, an id string,
``num_desc`` descriptors of (16 + name_size) bytes each, and a data block where the
descriptor ``offset`` locates ``size`` u64 values.
"""

import os
import struct


HEADER = struct.Struct("=6I")      # flags, name_size, num_desc, id_offset, desc_offset, data_offset
DESC = struct.Struct("=IhHII")     # flags, exponent, size, offset, bucket_size (+ name)
VALUE = struct.Struct("=Q")

STATS_TYPE_MASK = 0xF
STATS_TYPE_NAMES = {0: "cumulative", 1: "instant", 2: "peak", 3: "linear_hist", 4: "log_hist"}
STATS_UNIT_MASK = 0xF0
STATS_UNIT_NAMES = {0x00: "none", 0x10: "bytes", 0x20: "seconds", 0x30: "cycles", 0x40: "boolean"}

# Mapping-count stats (x86: kvm_vm_stat.pages[] -> pages_4k, pages_2m, pages_1g).
MAPPING_STATS = ("pages_4k", "pages_2m", "pages_1g")
# 4 KiB pages that KVM_SPLIT_HUGE_PAGES holds keep small (the series since 2026-12).
HELD_STAT = "pages_held"


class StatsFormatError(ValueError):
    pass


def _pread_exact(fd, length, offset):
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise StatsFormatError("stats fd: short read (%d of %d bytes at %d)" % (len(data), length, offset))
    return data


class StatsDescriptor:
    __slots__ = ("name", "flags", "exponent", "size", "offset", "bucket_size")

    def __init__(self, name, flags, exponent, size, offset, bucket_size):
        self.name = name
        self.flags = flags
        self.exponent = exponent
        self.size = size
        self.offset = offset
        self.bucket_size = bucket_size

    @property
    def type_name(self):
        return STATS_TYPE_NAMES.get(self.flags & STATS_TYPE_MASK, "unknown")

    @property
    def unit_name(self):
        return STATS_UNIT_NAMES.get(self.flags & STATS_UNIT_MASK, "unknown")


class StatsFd:
    """Parsed view of one stats fd. Descriptors are read once; values on each read()."""

    def __init__(self, fd):
        self.fd = fd
        (self.flags, name_size, num_desc, id_offset, desc_offset,
         self.data_offset) = HEADER.unpack(_pread_exact(fd, HEADER.size, 0))
        if name_size == 0 or num_desc == 0:
            raise StatsFormatError("stats fd: empty header (name_size=%d, num_desc=%d)" % (name_size, num_desc))
        self.id = _pread_exact(fd, name_size, id_offset).split(b"\0", 1)[0].decode("ascii", "replace")
        desc_len = DESC.size + name_size
        block = _pread_exact(fd, desc_len * num_desc, desc_offset)
        self.descriptors = {}
        for index in range(num_desc):
            raw = block[index * desc_len:(index + 1) * desc_len]
            flags, exponent, size, offset, bucket_size = DESC.unpack_from(raw)
            name = raw[DESC.size:].split(b"\0", 1)[0].decode("ascii", "replace")
            self.descriptors[name] = StatsDescriptor(name, flags, exponent, size, offset, bucket_size)

    def names(self):
        return sorted(self.descriptors)

    def read(self, names=None):
        """Return {name: int} for scalar stats or {name: [int, ...]} for histograms."""
        wanted = self.descriptors if names is None else names
        values = {}
        for name in wanted:
            desc = self.descriptors.get(name)
            if desc is None:
                continue
            raw = _pread_exact(self.fd, desc.size * VALUE.size, self.data_offset + desc.offset)
            items = [VALUE.unpack_from(raw, i * VALUE.size)[0] for i in range(desc.size)]
            values[name] = items[0] if desc.size == 1 else items
        return values


def mapping_counts_from_stats_fd(stats_fd):
    """pages_4k/2m/1g from a VM stats fd; absent names are left out (e.g. non-x86)."""
    return StatsFd(stats_fd).read(MAPPING_STATS)


def held_pages_from_stats_fd(stats_fd):
    """The kernel's count of held 4 KiB pages, or None when it does not count them."""
    return StatsFd(stats_fd).read((HELD_STAT,)).get(HELD_STAT)
