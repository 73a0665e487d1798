"""The helper's KVM_SPLIT_HUGE_PAGES constants equal the kernel patch's uapi header.

The header hunk (``include/uapi/linux/kvm.h``) is read out of ``kernel-patch/*.patch`` in
series order; the struct layout is computed from its field declarations with C's natural
alignment, and the ioctl number is encoded from it as _IOWR would.
"""
import glob
import os
import re
import sys

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import uapi as kvm_uapi

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
PATCH_DIR = os.path.join(REPO, "kernel-patch")
C_TYPES = {"__u8": 1, "__u16": 2, "__u32": 4, "__u64": 8, "__s8": 1, "__s16": 2, "__s32": 4, "__s64": 8}
STRUCT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}


def series():
    order = os.path.join(PATCH_DIR, "series")
    if os.path.exists(order):
        with open(order) as handle:
            names = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        return [os.path.join(PATCH_DIR, name) for name in names]
    return sorted(glob.glob(os.path.join(PATCH_DIR, "*.patch")))


def uapi_added_lines():
    """'+' lines of every include/uapi/linux/kvm.h hunk in the series, in order."""
    added = []
    for patch in series():
        in_header = False
        with open(patch, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("diff --git "):
                    in_header = line.rstrip().endswith(" b/include/uapi/linux/kvm.h")
                elif in_header and line.startswith("+") and not line.startswith("+++"):
                    added.append(line[1:].rstrip("\n"))
    return added


@pytest.fixture(scope="module")
def header():
    lines = uapi_added_lines()
    if not lines:
        pytest.fail("no include/uapi/linux/kvm.h hunk found in %s/*.patch" % PATCH_DIR)
    text = "\n".join(lines)
    defines = dict(re.findall(r"^#define\s+(KVM_\w+)\s+(.+?)\s*(?:/\*.*)?$", text, re.M))
    body = re.search(r"struct kvm_split_huge_pages\s*\{(.*?)\};", text, re.S)
    if body is None:
        pytest.fail("struct kvm_split_huge_pages not in the patch's uapi hunk")
    return defines, re.sub(r"/\*.*?\*/", "", body.group(1), flags=re.S)


def c_int(expr):
    """Evaluate a constant like 1024, 0xf0, (1U << 1)."""
    expr = re.sub(r"(?<=[0-9a-fA-F])[uU][lL]*\b", "", expr.strip())
    if not re.match(r"^[\s()0-9a-fA-Fx<|+]+$", expr):
        raise ValueError("not a plain integer expression: %r" % expr)
    return eval(expr, {"__builtins__": {}})  # pylint: disable=eval-used  # checked by the regex above


def layout(body):
    """[(name, offset, size, count)] and total size of a C struct body with natural alignment."""
    fields, offset, max_align = [], 0, 1
    for ctype, name, count in re.findall(r"(__[us]\d+)\s+(\w+)(?:\[(\d+)\])?\s*;", body):
        size = C_TYPES[ctype]
        offset = (offset + size - 1) // size * size
        fields.append((name, offset, size, int(count or 1)))
        offset += size * int(count or 1)
        max_align = max(max_align, size)
    return fields, (offset + max_align - 1) // max_align * max_align


def test_capability_number_matches(header):
    defines = header[0]
    assert c_int(defines["KVM_CAP_SPLIT_HUGE_PAGES"]) == kvm_uapi.KVM_CAP_SPLIT_HUGE_PAGES


def elements(fields):
    """[(name, offset, size)] per element, arrays numbered: reserved[3] is reserved0..2."""
    return [(name if count == 1 else "%s%d" % (name, index), offset + index * size, size)
            for name, offset, size, count in fields for index in range(count)]


def helper_elements():
    """The same for uapi.SPLIT_STRUCT, named by SPLIT_STRUCT_FIELDS."""
    widths = []
    for count, code in re.findall(r"(\d*)([QI])", kvm_uapi.SPLIT_STRUCT.format.lstrip("=")):
        widths.extend([8 if code == "Q" else 4] * int(count or 1))
    offsets = [sum(widths[:index]) for index in range(len(widths))]
    return list(zip(kvm_uapi.SPLIT_STRUCT_FIELDS, offsets, widths))


def test_struct_layout_matches(header):
    fields, size = layout(header[1])
    assert size == kvm_uapi.SPLIT_STRUCT.size == 64
    assert elements(fields) == helper_elements()
    assert [field[0] for field in fields] == ["gpa", "size", "page_size", "flags", "nr_split", "reserved"]


def test_ioctl_number_matches_iowr_encoding(header):
    defines, body = header
    match = re.match(r"_IOWR\(\s*KVMIO\s*,\s*(\w+)\s*,\s*struct kvm_split_huge_pages\s*\)",
                     defines["KVM_SPLIT_HUGE_PAGES"])
    assert match, defines["KVM_SPLIT_HUGE_PAGES"]
    size = layout(body)[1]
    expected = (3 << 30) | (size << 16) | (0xAE << 8) | c_int(match.group(1))
    assert kvm_uapi.KVM_SPLIT_HUGE_PAGES == expected
    assert kvm_uapi.KVM_SPLIT_HUGE_PAGES_NR == c_int(match.group(1))


def test_level_defines_are_gone(header):
    # The page-size uAPI replaced them; a hunk still carrying them is the older series.
    defines, body = header
    assert not [name for name in defines if name.startswith("KVM_SPLIT_HUGE_PAGES_LEVEL_")]
    assert "target_level" not in body


def test_flag_bits_match(header):
    defines = header[0]
    for name, value in (("KVM_SPLIT_HUGE_PAGES_HOLD", kvm_uapi.KVM_SPLIT_HUGE_PAGES_HOLD),
                        ("KVM_SPLIT_HUGE_PAGES_RELEASE", kvm_uapi.KVM_SPLIT_HUGE_PAGES_RELEASE),
                        ("KVM_SPLIT_HUGE_PAGES_QUERY", kvm_uapi.KVM_SPLIT_HUGE_PAGES_QUERY)):
        assert name in defines, "%s is not defined in the patch's include/uapi/linux/kvm.h" % name
        assert c_int(defines[name]) == value


def test_ioc_encoding_reproduces_upstream_numbers():
    # Known values from include/uapi/linux/kvm.h, so the encoder itself is checked.
    assert kvm_uapi.KVM_CHECK_EXTENSION == 0xAE03
    assert kvm_uapi.KVM_GET_STATS_FD == 0xAECE
    assert kvm_uapi.iowr(0xAE, 0xD5, 64) == 0xC040AED5   # KVM_PRE_FAULT_MEMORY


@pytest.mark.parametrize("cap, sizes, names", [
    (0x201000, [4096, 2 << 20], ["4k", "2m"]),           # x86
    (0x200000, [2 << 20], ["2m"]),
    (0x1000, [4096], ["4k"]),
    (0x40201000, [4096, 2 << 20, 1 << 30], ["4k", "2m"]),  # a size without a name is accepted, not named
    (0, [], []),
    (0x3, [], []),                                      # the older series' level bitmask
    (0xfff, [], []),
])
def test_capability_decodes_into_page_sizes(cap, sizes, names):
    assert kvm_uapi.page_sizes_from_cap(cap) == sizes
    assert kvm_uapi.page_size_names_from_cap(cap) == names
    assert [kvm_uapi.cap_accepts(cap, size) for size in (4096, 2 << 20)] == [4096 in sizes, (2 << 20) in sizes]


@pytest.mark.parametrize("cap, old", [(0x3, True), (0x1, True), (0xfff, True), (0, False),
                                      (0x201000, False), (0x1003, False)])
def test_old_level_bitmask_recognised(cap, old):
    assert kvm_uapi.is_old_level_cap(cap) is old


def test_cap_problem_names_the_older_series_and_absence():
    assert "older presplit kernel series" in kvm_uapi.cap_problem(0x3)
    assert "0x3" in kvm_uapi.cap_problem(0x3)
    assert kvm_uapi.cap_problem(0) == "KVM_CAP_SPLIT_HUGE_PAGES absent (0)"
    assert kvm_uapi.cap_problem(0x201000) is None


def test_page_size_names_round_trip():
    assert kvm_uapi.PAGE_SIZE_BY_NAME == {"4k": 4096, "2m": 2 << 20}
    for name, size in kvm_uapi.PAGE_SIZE_BY_NAME.items():
        assert kvm_uapi.page_size_name(size) == name
    assert kvm_uapi.page_size_name(1 << 30) == str(1 << 30)


def test_pack_unpack_round_trip_in_u64_fields():
    buf = kvm_uapi.pack_split(0x100000000, 0x40000000, 2 << 20, kvm_uapi.KVM_SPLIT_HUGE_PAGES_QUERY)
    assert len(buf) == 64
    # page_size and flags are whole u64 words at offsets 16 and 24
    assert bytes(buf[16:24]) == (2 << 20).to_bytes(8, sys.byteorder)
    assert bytes(buf[24:32]) == (4).to_bytes(8, sys.byteorder)
    assert kvm_uapi.unpack_split(buf) == {"gpa": 0x100000000, "size": 0x40000000, "page_size": 2 << 20,
                                          "flags": 4, "nr_split": 0, "reserved0": 0, "reserved1": 0,
                                          "reserved2": 0}
    # a value above 32 bits survives: the older struct's u32 fields would have cut it
    assert kvm_uapi.unpack_split(kvm_uapi.pack_split(0, 4096, 1 << 40, 0))["page_size"] == 1 << 40
