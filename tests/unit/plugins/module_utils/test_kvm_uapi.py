"""The helper's KVM_SPLIT_HUGE_PAGES constants equal the kernel patch's uapi header.

The header hunk (``include/uapi/linux/kvm.h``) is read out of ``kernel-patch/*.patch`` in
series order; the struct layout is computed from its field declarations with C's natural
alignment, and the ioctl number is encoded from it as _IOWR would.
"""
import glob
import os
import re

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


def test_struct_layout_matches(header):
    fields, size = layout(header[1])
    assert size == kvm_uapi.SPLIT_STRUCT.size == 64
    helper_fields = []
    offset = 0
    for code in re.findall(r"\d*[QI]", kvm_uapi.SPLIT_STRUCT.format.lstrip("=")):
        count = int(code[:-1] or 1)
        width = 8 if code[-1] == "Q" else 4
        helper_fields.append((offset, width, count))
        offset += width * count
    assert [field[1:] for field in fields] == helper_fields
    assert [field[0] for field in fields] == ["gpa", "size", "target_level", "flags", "nr_split", "reserved"]


def test_ioctl_number_matches_iowr_encoding(header):
    defines, body = header
    match = re.match(r"_IOWR\(\s*KVMIO\s*,\s*(\w+)\s*,\s*struct kvm_split_huge_pages\s*\)",
                     defines["KVM_SPLIT_HUGE_PAGES"])
    assert match, defines["KVM_SPLIT_HUGE_PAGES"]
    size = layout(body)[1]
    expected = (3 << 30) | (size << 16) | (0xAE << 8) | c_int(match.group(1))
    assert kvm_uapi.KVM_SPLIT_HUGE_PAGES == expected
    assert kvm_uapi.KVM_SPLIT_HUGE_PAGES_NR == c_int(match.group(1))


def test_level_values_match(header):
    defines = header[0]
    assert c_int(defines["KVM_SPLIT_HUGE_PAGES_LEVEL_4K"]) == kvm_uapi.LEVEL_4K
    assert c_int(defines["KVM_SPLIT_HUGE_PAGES_LEVEL_2M"]) == kvm_uapi.LEVEL_2M


def test_flag_bits_match(header):
    defines = header[0]
    for name, value in (("KVM_SPLIT_HUGE_PAGES_HOLD", kvm_uapi.KVM_SPLIT_HUGE_PAGES_HOLD),
                        ("KVM_SPLIT_HUGE_PAGES_RELEASE", kvm_uapi.KVM_SPLIT_HUGE_PAGES_RELEASE)):
        assert name in defines, "%s is not defined in the patch's include/uapi/linux/kvm.h" % name
        assert c_int(defines[name]) == value


def test_ioc_encoding_reproduces_upstream_numbers():
    # Known values from include/uapi/linux/kvm.h, so the encoder itself is checked.
    assert kvm_uapi.KVM_CHECK_EXTENSION == 0xAE03
    assert kvm_uapi.KVM_GET_STATS_FD == 0xAECE
    assert kvm_uapi.iowr(0xAE, 0xD5, 64) == 0xC040AED5   # KVM_PRE_FAULT_MEMORY


def test_levels_from_cap_decodes_bitmask():
    assert kvm_uapi.levels_from_cap(0x3) == ["4k", "2m"]
    assert kvm_uapi.levels_from_cap(0x2) == ["2m"]
    assert kvm_uapi.levels_from_cap(0) == []
