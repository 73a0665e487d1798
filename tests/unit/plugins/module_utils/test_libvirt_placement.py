"""Placement facts: XML parsing and capacity arithmetic on libvirt 9.0 domain XML, and the
whole gathering against libvirt's real test driver with a host tree of our own."""
import pytest

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_placement as lp

NS = lp.PLACEMENT_NS

# A lab guest as libvirt 9.0 dumps it (virsh dumpxml), metadata set with virsh metadata.
LAB_GUEST = """<domain type='qemu' id='2'>
  <name>busy</name>
  <uuid>0e2564f6-a89e-4cb6-9f95-fe808c645673</uuid>
  <metadata>
    <presplit:placement xmlns:presplit="%s">
      <presplit:anti-affinity group="db"/>
      <presplit:anti-affinity group="rack1"/>
    </presplit:placement>
  </metadata>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <kernel>/var/cache/presplit-kvm/lab/guest/vmlinuz</kernel>
  </os>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'><target type='isa-serial' port='0'/></serial>
  </devices>
</domain>""" % NS

HUGE_1G = """<domain type='kvm' id='7'>
  <name>db1</name>
  <uuid>6c1b1d8e-3f0a-4d7e-9a43-2f2b0c9f1e10</uuid>
  <memory unit='KiB'>16777216</memory>
  <currentMemory unit='KiB'>16777216</currentMemory>
  <memoryBacking>
    <hugepages>
      <page size='1048576' unit='KiB'/>
    </hugepages>
    <locked/>
  </memoryBacking>
  <vcpu placement='static' current='6'>8</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <cpu mode='host-passthrough' check='none' migratable='on'>
    <feature policy='require' name='invtsc'/>
  </cpu>
  <clock offset='utc'>
    <timer name='tsc' frequency='2994374000'/>
  </clock>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>"""

HUGE_PER_NODE = """<domain type='kvm'>
  <name>numa</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='GiB'>4</memory>
  <memoryBacking>
    <hugepages>
      <page size='2' unit='M' nodeset='1'/>
      <page size='1' unit='G' nodeset='0'/>
    </hugepages>
  </memoryBacking>
  <vcpu>4</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""

GPU = """<domain type='kvm'>
  <name>gpu1</name>
  <uuid>22222222-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>8388608</memory>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <vcpu placement='static'>4</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <cpu mode='host-model'><feature policy='require' name='invtsc'/></cpu>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source>
    </hostdev>
    <interface type='hostdev' managed='yes'>
      <source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x1'/></source>
      <teaming type='transient' persistent='ua-backup0'/>
    </interface>
    <interface type='hostdev' managed='yes'>
      <source><address type='pci' domain='0x0000' bus='0x03' slot='0x10' function='0x2'/></source>
    </interface>
    <shmem name='legacy'><model type='ivshmem'/><size unit='M'>4</size></shmem>
    <shmem name='plain' role='peer'><model type='ivshmem-plain'/></shmem>
    <shmem name='owner' role='master'><model type='ivshmem-plain'/></shmem>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs'/><source dir='/srv/share'/><target dir='share'/>
    </filesystem>
  </devices>
  <metadata>
    <placement xmlns='%s'><pinned reason='local NVMe'/><cpu-group name='epyc'/><colour/></placement>
    <other:thing xmlns:other='https://example.invalid/other'><other:anti-affinity group='no'/></other:thing>
  </metadata>
</domain>""" % NS

MEMINFO = """MemTotal:       24683952 kB
MemFree:        22403404 kB
MemAvailable:   20510384 kB
Buffers:           63208 kB
Cached:          1864564 kB
HugePages_Total:      16
HugePages_Free:       12
HugePages_Rsvd:        2
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:         2129920 kB
"""


def parse(xml, state=1, thp="madvise", shmem="never", qemu_version=7002022):
    return lp.domain_facts(xml, "hv01", state, thp, shmem, 2048, qemu_version)


def test_lab_guest_as_libvirt_dumps_it():
    entry, details = parse(LAB_GUEST)
    assert entry == {"name": "busy", "host": "hv01", "memory_mib": 128, "vcpus": 1, "backing": "thp",
                     "anti_affinity": ["db", "rack1"], "pinned": False, "migratable": True,
                     "dirty_rate_mib_per_s": 0.0}
    assert details["uuid"] == "0e2564f6-a89e-4cb6-9f95-fe808c645673"
    assert details["virt_type"] == "qemu" and details["state"] == "running"
    assert "MADV_HUGEPAGE" in details["backing_reason"]


@pytest.mark.parametrize("thp, backing", [("always", "thp"), ("madvise", "thp"), ("never", "none"), (None, "none")])
def test_anonymous_ram_follows_the_thp_mode(thp, backing):
    assert parse(LAB_GUEST, thp=thp)[0]["backing"] == backing


def test_hugetlb_1g_current_vcpus_and_invtsc_with_frequency():
    entry, details = parse(HUGE_1G)
    assert (entry["backing"], entry["memory_mib"], entry["vcpus"]) == ("hugetlb-1G", 16384, 6)
    assert details["hugepage_kib"] == 1048576
    assert entry["migratable"] and entry["pinned"] is False and entry["anti_affinity"] == []


def test_hugepages_without_page_use_the_host_default_size():
    xml = HUGE_1G.replace("<page size='1048576' unit='KiB'/>", "")
    assert parse(xml)[0]["backing"] == "hugetlb-2M"
    assert lp.domain_facts(xml, "hv01", 1, "never", "never", 1048576)[0]["backing"] == "hugetlb-1G"


def test_per_node_page_sizes_and_units():
    entry, details = parse(HUGE_PER_NODE)
    assert entry["memory_mib"] == 4096
    assert entry["backing"] == "hugetlb-1G"     # no general page: the largest counts
    assert "mixed page sizes" in details["backing_reason"]


def test_unmodelled_hugepage_size_is_plain_memory():
    entry, details = parse(HUGE_1G.replace("size='1048576' unit='KiB'", "size='16' unit='MiB'"))
    assert entry["backing"] == "none" and details["hugepage_kib"] == 16384
    assert "not one the planner models" in details["backing_reason"]


def test_memfd_ram_follows_shmem_thp():
    assert parse(GPU, shmem="never")[0]["backing"] == "none"
    assert parse(GPU, shmem="advise")[0]["backing"] == "thp"
    assert parse(GPU, thp="always", shmem="deny")[0]["backing"] == "none"


def test_host_devices_pin_and_what_libvirt_refuses_is_not_migratable():
    entry, details = parse(GPU)
    assert entry["pinned"] is True
    assert details["pinned_reasons"] == ["host device (<hostdev mode=subsystem type=pci>)",
                                         "host network device (<interface type=hostdev>)",
                                         "metadata: local NVMe"]
    assert entry["migratable"] is False
    assert details["not_migratable_reasons"] == [
        "legacy ivshmem device legacy", "shmem device plain without role='master'",
        "virtiofs filesystem (QEMU before 8.2 cannot migrate vhost-user-fs)",
        "invtsc CPU feature without a TSC frequency (<clock><timer name=tsc frequency=...>)"]
    assert entry["cpu_group"] == "epyc"
    assert entry["anti_affinity"] == []      # another namespace's element is not ours
    assert details["metadata_errors"] == ["unknown placement element <colour>"]
    newer = parse(GPU, qemu_version=8002000)[1]["not_migratable_reasons"]
    assert not [reason for reason in newer if "virtiofs" in reason]


@pytest.mark.parametrize("state, migratable", [(1, True), (2, True), (3, True), (6, False), (7, False)])
def test_state_decides_migratable(state, migratable):
    entry, details = parse(LAB_GUEST, state=state)
    assert entry["migratable"] is migratable
    if not migratable:
        assert details["not_migratable_reasons"][0].startswith("state ")


def test_metadata_children_without_prefix_and_text_groups():
    xml = LAB_GUEST.replace(
        '<presplit:anti-affinity group="db"/>', '<anti-affinity>web</anti-affinity><anti-affinity group="db"/>'
        '<anti-affinity group="db"/><anti-affinity/>')
    entry, details = parse(xml)
    assert entry["anti_affinity"] == ["db", "rack1", "web"]
    assert details["metadata_errors"] == ["<anti-affinity> without a group"]


def test_meminfo_parsing():
    info = lp.parse_meminfo(MEMINFO)
    assert info["MemAvailable"] == 20510384 and info["HugePages_Rsvd"] == 2 and info["Hugetlb"] == 2129920


def domains(*specs):
    return [{"memory_mib": memory, "vcpus": vcpus, "backing": backing} for memory, vcpus, backing in specs]


def test_capacity_takes_the_smaller_memory_bound_and_the_reserve():
    meminfo = lp.parse_meminfo(MEMINFO)
    pools = {2048: {"total": 16, "free": 12, "reserved": 2, "available": 10},
             1048576: {"total": 2, "free": 1, "reserved": 0, "available": 1}}
    guests = domains((8192, 4, "thp"), (1024, 2, "hugetlb-1G"), (4096, 8, "none"))
    host, details = lp.host_capacity("hv01", meminfo, pools, 8, guests, memory_reserve_mib=1024,
                                     vcpu_overcommit=1.5, cpu_group="epyc", kernel_mode="patched")
    # MemTotal 24105 MiB - hugetlb 2080 MiB - committed 12288 MiB = 9737 MiB < MemAvailable 20029 MiB
    headroom = (24683952 - 2129920) // 1024 - 12288
    assert host == {"name": "hv01", "memory_free_mib": headroom - 1024, "hugepages_2m_free": 10,
                    "hugepages_1g_free": 1, "vcpus_free": 0, "cpu_group": "epyc", "kernel_mode": "patched"}
    assert details["memory_bound"] == "committed" and details["vcpus_used"] == 14
    assert details["vcpus_capacity"] == 12 and details["committed_guest_mib"] == 12288

    idle_host, idle = lp.host_capacity("hv02", meminfo, {}, 8, [], 0, 4.0, bandwidth_mib_per_s=1192)
    assert idle_host["memory_free_mib"] == 20510384 // 1024 and idle["memory_bound"] == "MemAvailable"
    assert idle_host["vcpus_free"] == 32 and idle_host["bandwidth_mib_per_s"] == 1192
    assert "kernel_mode" not in idle_host and idle_host["hugepages_1g_free"] == 0


def test_capacity_never_goes_negative_and_checks_its_knobs():
    host = lp.host_capacity("hv01", {"MemTotal": 1 << 20, "MemAvailable": 1 << 19}, {}, 1,
                            domains((2048, 4, "none")), memory_reserve_mib=0, vcpu_overcommit=1.0)[0]
    assert host["memory_free_mib"] == 0 and host["vcpus_free"] == 0
    with pytest.raises(lp.PlacementError):
        lp.host_capacity("hv01", {}, {}, 1, [], memory_reserve_mib=-1)
    with pytest.raises(lp.PlacementError):
        lp.host_capacity("hv01", {}, {}, 1, [], vcpu_overcommit=0)


def test_old_kernels_without_memavailable_or_hugetlb_lines():
    meminfo = {"MemTotal": 4 << 20, "MemFree": 1 << 20, "Buffers": 0, "Cached": 1 << 20,
               "HugePages_Total": 512, "Hugepagesize": 2048}
    host, details = lp.host_capacity("old", meminfo, {}, 2, [], memory_reserve_mib=0)
    assert details["mem_available_mib"] == 2048 and details["hugetlb_pool_mib"] == 1024
    assert host["memory_free_mib"] == 2048


@pytest.fixture
def host_tree(tmp_path):
    """/proc/meminfo and /sys/kernel/mm of a host with 2M and 1G pools."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "meminfo").write_text(MEMINFO)
    sys_root = tmp_path / "sys"
    thp = sys_root / "kernel/mm/transparent_hugepage"
    thp.mkdir(parents=True)
    (thp / "enabled").write_text("always [madvise] never\n")
    (thp / "shmem_enabled").write_text("always within_size advise [never] deny force\n")
    for size, (total, free, resv) in {2048: (16, 12, 2), 1048576: (4, 3, 0)}.items():
        pool = sys_root / ("kernel/mm/hugepages/hugepages-%dkB" % size)
        pool.mkdir(parents=True)
        for name, value in (("nr_hugepages", total), ("free_hugepages", free), ("resv_hugepages", resv)):
            (pool / name).write_text("%d\n" % value)
    return {"proc": str(proc), "sys": str(sys_root)}


def test_sysfs_readers(host_tree):
    assert (lp.thp_mode(host_tree["sys"]), lp.thp_shmem_mode(host_tree["sys"])) == ("madvise", "never")
    assert lp.hugepage_pools(host_tree["sys"]) == {
        2048: {"total": 16, "free": 12, "reserved": 2, "available": 10},
        1048576: {"total": 4, "free": 3, "reserved": 0, "available": 3}}
    assert lp.hugepage_pools("/nonexistent") == {}
    with pytest.raises(lp.PlacementError):
        lp.read_meminfo("/nonexistent")


TEST_NODE = """<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>6</active><nodes>1</nodes><sockets>1</sockets>
    <cores>6</cores><threads>1</threads></cpu>
  <memory>16777216</memory>
  %s
  <domain type='test'><name>stopped</name><uuid>33333333-2222-3333-4444-555555555555</uuid>
    <memory unit='GiB'>64</memory><vcpu>32</vcpu><os><type>hvm</type></os></domain>
</node>"""


@pytest.fixture
def test_conn(tmp_path):
    libvirt = pytest.importorskip("libvirt")
    from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_client as lc
    guests = []
    for xml in (LAB_GUEST, HUGE_1G, GPU):
        guest = xml.replace("type='qemu'", "type='test'").replace("type='kvm'", "type='test'")
        guests.append(guest.replace(" id='2'", "").replace(" id='7'", ""))
    node = tmp_path / "node.xml"
    node.write_text(TEST_NODE % "\n".join(guests))
    lc.quiet_libvirt()
    conn = libvirt.open("test://%s" % node)
    conn.lookupByName("stopped").destroy()
    yield conn
    conn.close()


def test_gather_against_libvirt_test_driver(test_conn, host_tree):
    facts = lp.gather_placement_facts(test_conn, "hv01", cpu_group="epyc", memory_reserve_mib=512,
                                      vcpu_overcommit=2.0, kernel_mode="none", sys_root=host_tree["sys"],
                                      proc_root=host_tree["proc"])
    names = [entry["name"] for entry in facts["domains"]]
    assert names == ["busy", "db1", "gpu1"]           # the stopped domain uses nothing
    by_name = dict((entry["name"], entry) for entry in facts["domains"])
    assert by_name["busy"]["anti_affinity"] == ["db", "rack1"]
    assert by_name["db1"]["backing"] == "hugetlb-1G" and by_name["gpu1"]["pinned"] is True
    host = facts["host"]
    # 6 CPUs x 2.0 - (1 + 6 + 4) vCPUs; committed: busy 128 + gpu1 8192 (db1 is hugetlb)
    assert host["vcpus_free"] == 1
    assert facts["host_details"]["committed_guest_mib"] == 128 + 8192
    assert host["hugepages_2m_free"] == 10 and host["hugepages_1g_free"] == 3
    assert host["cpu_group"] == "epyc" and host["kernel_mode"] == "none"
    # The test driver cannot measure: every domain says so, and counts 0.
    assert set(facts["dirty_rate"]) == set(names)
    assert all(result["status"] == "unsupported" for result in facts["dirty_rate"].values())
    assert lp.unmeasured(facts) == names
    assert all(entry["dirty_rate_mib_per_s"] == 0.0 for entry in facts["domains"])


def test_gather_filters_domains_but_counts_all_of_them(test_conn, host_tree):
    facts = lp.gather_placement_facts(test_conn, "hv01", names=["DB1", "0e2564f6-a89e-4cb6-9f95-fe808c645673",
                                                                "nosuch", "stopped"],
                                      measure=False, sys_root=host_tree["sys"], proc_root=host_tree["proc"])
    assert [entry["name"] for entry in facts["domains"]] == ["busy", "db1"]
    assert facts["missing"] == ["nosuch", "stopped"]
    assert facts["dirty_rate"] == {} and lp.unmeasured(facts) == []
    assert facts["host"]["vcpus_free"] == 6 * 4 - 11
    assert set(facts["domain_details"]) == {"busy", "db1"}
