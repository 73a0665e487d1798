# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A libvirt domain's memory as its XML says it: units and how its RAM is backed.

The one classification the host helper (``host_info``, ``kvm-presplit status``) and the
planner's facts (``placement_facts``) share, so both say the same of one guest:

  hugetlb-2M / hugetlb-1G  <memoryBacking><hugepages> with that page size (the general
                           <page> when sizes differ per NUMA node, the host's default
                           size when no <page> is given); other sizes are ``none``
  thp                      the host's THP settings let QEMU's guest RAM have huge pages:
                           anonymous RAM with THP enabled always or madvise (QEMU madvises
                           guest RAM MADV_HUGEPAGE); memfd RAM with shmem_enabled allowing it
  none                     anything else (file-backed RAM, THP off)
"""

import re

UNIT_BYTES = {"b": 1, "bytes": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1000, "m": 1 << 20, "mib": 1 << 20,
              "mb": 1000 ** 2, "g": 1 << 30, "gib": 1 << 30, "gb": 1000 ** 3, "t": 1 << 40, "tib": 1 << 40,
              "tb": 1000 ** 4}
HUGETLB_BACKINGS = {2048: "hugetlb-2M", 1048576: "hugetlb-1G"}     # page size in KiB
THP_ANON_MODES = ("always", "madvise")
THP_SHMEM_MODES = ("always", "within_size", "advise", "force")
DEFAULT_HUGEPAGE_KIB = 2048


def scaled_bytes(value, unit, default_unit="KiB"):
    """Bytes of a libvirt scaled integer (``<memory unit='MiB'>384</memory>``, a page size).
    Raises ValueError, saying what is wrong, for anything but a whole number in a unit libvirt
    knows: a file that is not what libvirt wrote must not pass as some size."""
    unit_name = (unit or default_unit).lower()
    if unit_name not in UNIT_BYTES:
        raise ValueError("unknown unit %r" % (unit,))
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,20}", text):
        raise ValueError("%r is not a whole number" % (value,))
    return int(text) * UNIT_BYTES[unit_name]


def scaled_kib(value, unit, default_unit="KiB"):
    return scaled_bytes(value, unit, default_unit) // 1024


def memory_backing(root, thp_enabled, shmem_enabled, default_hugepage_kib=DEFAULT_HUGEPAGE_KIB):
    """(backing, hugetlb page KiB or None, reason) of a <domain> element (see the module doc)."""
    hugepages = root.find("memoryBacking/hugepages")
    if hugepages is not None:
        pages = hugepages.findall("page")
        if not pages:
            size = default_hugepage_kib
            how = "host default huge page size"
        else:
            general = [page for page in pages if not page.get("nodeset")]
            chosen = general[0] if general else max(pages, key=lambda p: scaled_kib(p.get("size"), p.get("unit")))
            size = scaled_kib(chosen.get("size"), chosen.get("unit"))
            sizes = set(scaled_kib(p.get("size"), p.get("unit")) for p in pages)
            how = "<page size=%d KiB>" % size if len(sizes) == 1 else \
                "mixed page sizes per NUMA node (%s KiB), the general one counted" % ", ".join(
                    str(s) for s in sorted(sizes))
        if size in HUGETLB_BACKINGS:
            return HUGETLB_BACKINGS[size], size, "hugetlbfs, %s" % how
        return "none", size, "hugetlbfs page size %s KiB is not one the planner models (2M, 1G)" % size
    source = root.find("memoryBacking/source")
    source_type = source.get("type") if source is not None else None
    if source_type == "memfd":
        if shmem_enabled in THP_SHMEM_MODES:
            return "thp", None, "memfd RAM and shmem_enabled=%s" % shmem_enabled
        return "none", None, "memfd RAM and shmem_enabled=%s" % shmem_enabled
    if source_type == "file":
        return "none", None, "file-backed RAM (memory_backing_dir): no transparent huge pages"
    if thp_enabled in THP_ANON_MODES:
        return "thp", None, "anonymous RAM, QEMU madvises it MADV_HUGEPAGE, THP enabled=%s" % thp_enabled
    return "none", None, "anonymous RAM, THP enabled=%s" % thp_enabled
