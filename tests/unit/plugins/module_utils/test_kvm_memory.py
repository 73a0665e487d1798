"""presplit_kvm_helper.memory: units, and the one backing classification that host_info (through
the helper's PresplitHost) and placement_facts (through libvirt_placement) both report."""
import os
from xml.etree import ElementTree as ET

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_placement import domain_facts
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper import memory
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.host import default_hugepage_kib
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.ops import PresplitHost

BACKINGS = {
    "anonymous": "",
    "hugetlb-2M": "<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>",
    "hugetlb-1G": "<memoryBacking><hugepages><page size='1' unit='G'/></hugepages></memoryBacking>",
    "hugetlb-16M": "<memoryBacking><hugepages><page size='16' unit='MiB'/></hugepages></memoryBacking>",
    "hugetlb-default": "<memoryBacking><hugepages/></memoryBacking>",
    "hugetlb-per-node": "<memoryBacking><hugepages><page size='1' unit='GiB' nodeset='0'/>"
                        "<page size='2' unit='MiB'/></hugepages></memoryBacking>",
    "memfd": "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>",
    "file": "<memoryBacking><source type='file'/></memoryBacking>",
}
THP = [("always", "never"), ("madvise", "advise"), ("never", "never"), ("never", "within_size")]


def domain_xml(name, backing):
    return ("<domain type='qemu'><name>%s</name><uuid>11111111-2222-3333-4444-%012d</uuid>"
            "<memory unit='MiB'>64</memory>%s<os><type>hvm</type></os></domain>"
            % (name, len(name), BACKINGS[backing]))


@pytest.mark.parametrize("value, unit, expected", [
    ("384", "MiB", 384 << 20), (" 2 ", "GiB", 2 << 30), ("2048", None, 2 << 20), ("1", "G", 1 << 30),
    ("5", "KB", 5000), ("7", "bytes", 7)])
def test_scaled_bytes(value, unit, expected):
    assert memory.scaled_bytes(value, unit) == expected


@pytest.mark.parametrize("thp, shmem", THP)
@pytest.mark.parametrize("backing", sorted(BACKINGS))
def test_host_info_and_placement_classify_a_guest_alike(tmp_path, backing, thp, shmem):
    """One guest, one answer: the helper (host_info, kvm-presplit) and the planner's facts agree."""
    thp_dir = tmp_path / "sys" / "kernel" / "mm" / "transparent_hugepage"
    thp_dir.mkdir(parents=True)
    (thp_dir / "enabled").write_text(" ".join("[%s]" % m if m == thp else m for m in ("always", "madvise", "never")))
    (thp_dir / "shmem_enabled").write_text(" ".join(
        "[%s]" % m if m == shmem else m for m in ("always", "within_size", "advise", "never", "deny", "force")))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    name = "g-" + backing
    xml = domain_xml(name, backing)
    (run_dir / (name + ".xml")).write_text("<domstatus pid='%d'>%s</domstatus>" % (os.getpid(), xml))
    (run_dir / (name + ".pid")).write_text(str(os.getpid()))

    host = PresplitHost(run_dir=str(run_dir), state_dir=str(tmp_path / "holds"), use_libvirt=False,
                        sys_root=str(tmp_path / "sys"))
    try:
        seen = host.inspect(name)
    finally:
        host.close()
    entry, details = domain_facts(xml, "h1", 1, thp, shmem, default_hugepage_kib())
    assert seen["status"] == "not KVM-accelerated"      # a TCG domain: nothing was touched
    assert (seen["memory_backing"], seen["memory_backing_reason"]) == (entry["backing"], details["backing_reason"])


@pytest.mark.parametrize("backing, thp, shmem, expected", [
    ("hugetlb-2M", "never", "never", "hugetlb-2M"),
    ("hugetlb-1G", "always", "never", "hugetlb-1G"),
    ("hugetlb-16M", "always", "never", "none"),
    ("hugetlb-per-node", "never", "never", "hugetlb-2M"),
    ("anonymous", "madvise", "never", "thp"),
    ("anonymous", "never", "always", "none"),
    ("memfd", "always", "never", "none"),
    ("memfd", "never", "advise", "thp"),
    ("file", "always", "always", "none"),
])
def test_classification(backing, thp, shmem, expected):
    assert memory.memory_backing(ET.fromstring(domain_xml("g", backing)), thp, shmem)[0] == expected


def test_default_hugepage_size_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nHugepagesize:    1048576 kB\nHugetlb: 0 kB\n")
    assert default_hugepage_kib(str(meminfo)) == 1048576
    assert default_hugepage_kib(str(tmp_path / "missing")) == memory.DEFAULT_HUGEPAGE_KIB
