"""A domain's disks as a live migration sees them: parsing, the filesystem of each file,
what copy_storage copies and what it refuses. The lab's test_storage_copy.py migrates
guests on real local qcow2 disks; this covers the cases a lab cannot build (NFS, SAN
devices, network disks, odd mount tables)."""

import pytest
from hypothesis import given, strategies as st

from ansible_collections.presplit.kvm.plugins.module_utils import domain_disks as dd

MOUNTINFO = "\n".join([
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
    "30 22 0:5 / /dev rw shared:2 - devtmpfs udev rw",
    "41 22 0:40 / /var/lib/nova rw - nfs4 filer:/nova rw,vers=4.2",
    "42 22 8:2 / /var/lib/libvirt/images rw - xfs /dev/sda2 rw",
    "43 22 0:41 / /mnt/my\\040disks rw - ceph 10.0.0.1:/ rw",
    "44 42 0:42 / /var/lib/libvirt/images/gluster rw - fuse.glusterfs gl:/vol rw",
    "garbage line",
    "",
])

DOMAIN = """<domain type='kvm'><name>app1</name><devices>
  <disk type='file' device='disk'>
    <driver name='qemu' type='qcow2'/>
    <source file='/var/lib/libvirt/images/app1.qcow2'/>
    <backingStore type='file'><format type='qcow2'/><source file='/var/cache/base.qcow2'/>
      <backingStore type='file'><format type='raw'/><source file='/var/cache/base.raw'/><backingStore/></backingStore>
    </backingStore>
    <target dev='vda' bus='virtio'/>
  </disk>
  <disk type='file' device='disk'>
    <driver name='qemu' type='raw'/>
    <source file='/var/lib/nova/instances/app1/disk'/>
    <target dev='vdb' bus='virtio'/>
  </disk>
  <disk type='block' device='disk'>
    <source dev='/dev/mapper/san-lun7'/>
    <target dev='vdc' bus='virtio'/>
  </disk>
  <disk type='network' device='disk'>
    <driver name='qemu' type='raw'/>
    <source protocol='rbd' name='pool/app1'/>
    <target dev='vdd' bus='virtio'/>
  </disk>
  <disk type='file' device='cdrom'>
    <source file='/var/lib/libvirt/images/install.iso'/>
    <target dev='sda' bus='sata'/>
    <readonly/>
  </disk>
  <disk type='file' device='disk'>
    <source file='/var/lib/libvirt/images/shared.raw'/>
    <target dev='vde' bus='virtio'/>
    <shareable/>
  </disk>
  <disk type='file' device='cdrom'><target dev='sdb' bus='sata'/></disk>
</devices></domain>"""


def disks(xml=DOMAIN):
    parsed = dd.domain_disks(xml)
    dd.classify(parsed, dd.mount_table(MOUNTINFO), realpath=lambda path: path)
    return parsed


def test_parse_and_classify():
    by_target = {disk.target: disk for disk in disks()}
    vda = by_target["vda"]
    assert (vda.kind, vda.path, vda.image_format, vda.filesystem) == (
        "file", "/var/lib/libvirt/images/app1.qcow2", "qcow2", "xfs")
    assert vda.backing == [("/var/cache/base.qcow2", "qcow2"), ("/var/cache/base.raw", "raw")]
    assert by_target["vdb"].filesystem == "nfs4"
    assert by_target["vdc"].kind == "block" and by_target["vdc"].filesystem is None
    assert by_target["vdd"].kind == "network" and by_target["vdd"].has_source()
    assert by_target["sda"].readonly and by_target["vde"].shareable
    assert not by_target["sdb"].has_source()
    local = [disk.target for disk in by_target.values() if dd.on_local_filesystem(disk)]
    assert local == ["vda"]


@pytest.mark.parametrize("path, fstype", [
    ("/var/lib/libvirt/images/a.qcow2", "xfs"),
    ("/var/lib/libvirt/images/gluster/a.qcow2", "fuse.glusterfs"),
    ("/var/lib/libvirt/imagesX/a.qcow2", "ext4"),      # a longer name is not under the mount
    ("/mnt/my disks/a.raw", "ceph"),                    # \040 in mountinfo is a space
    ("/var/lib/nova", "nfs4"),
    ("/", "ext4"),
])
def test_filesystem_of(path, fstype):
    assert dd.filesystem_of(path, dd.mount_table(MOUNTINFO)) == fstype


def test_later_mount_on_the_same_point_wins():
    mounts = dd.mount_table("1 0 8:1 / / rw - ext4 a rw\n2 1 0:3 / /data rw - ext4 b rw\n3 1 0:4 / /data rw - nfs c rw")
    assert dd.filesystem_of("/data/x", mounts) == "nfs"


def test_no_mount_holds_the_path():
    assert dd.filesystem_of("/x", []) is None


def test_none_refuses_a_local_disk_naming_it_and_the_fix():
    with pytest.raises(dd.DiskProblem) as problem:
        dd.disks_to_copy("none", None, disks())
    message = str(problem.value)
    assert "vda (/var/lib/libvirt/images/app1.qcow2 on xfs)" in message
    assert "copy_storage=all" in message and "vdb" not in message


def test_none_on_shared_storage_copies_nothing():
    shared = [disk for disk in disks() if disk.target != "vda"]
    assert dd.disks_to_copy("none", None, shared) == []


def test_all_copies_the_local_disks_only():
    """Not the NFS file, the SAN device, the RBD image, the ISO or the shareable disk:
    mirroring a shared image onto itself would destroy it."""
    assert dd.disks_to_copy("all", None, disks()) == ["vda"]
    assert dd.disks_to_copy("top", None, disks()) == ["vda"]


def test_explicit_list_adds_a_local_block_device():
    assert dd.disks_to_copy("all", ["vda", "vdc"], disks()) == ["vda", "vdc"]


@pytest.mark.parametrize("copy_storage, listed, message", [
    ("none", ["vda"], "copy_storage_disks needs copy_storage all or top"),
    ("all", ["vdz"], "the domain has no disk vdz (it has sda, sdb, vda, vdb, vdc, vdd, vde)"),
    ("all", ["vda", "sda"], "disk sda (/var/lib/libvirt/images/install.iso on xfs) cannot be copied"),
    ("all", ["vda", "sdb"], "disk sdb (no source) cannot be copied"),
    ("all", ["vdc"], "leaves disks on a filesystem of the source alone behind: vda"),
    ("top", ["vda", "vdc"], "vdc (/dev/mapper/san-lun7) has none: give copy_storage=all"),
])
def test_refusals(copy_storage, listed, message):
    with pytest.raises(dd.DiskProblem) as problem:
        dd.disks_to_copy(copy_storage, listed, disks())
    assert message in str(problem.value)


def test_top_needs_a_backing_chain():
    flat = DOMAIN.replace("<backingStore type='file'><format type='qcow2'/><source file='/var/cache/base.qcow2'/>", "<x>") \
        .replace("<backingStore type='file'><format type='raw'/><source file='/var/cache/base.raw'/><backingStore/>"
                 "</backingStore>\n    </backingStore>", "</x>")
    assert dd.domain_disks(flat)[0].backing == []
    with pytest.raises(dd.DiskProblem, match="vda .* has none"):
        dd.disks_to_copy("top", None, disks(flat))


@given(st.text(max_size=300))
def test_mount_table_never_raises(text):
    for point, fstype in dd.mount_table(text):
        assert isinstance(point, str) and isinstance(fstype, str)


def test_local_disk_mib_counts_local_chains_and_tops():
    """vda is local: its top image and both backing images (wherever they are: a full copy
    flattens the chain); the NFS, SAN, network, read-only and shareable disks are not."""
    sizes = {"/var/lib/libvirt/images/app1.qcow2": 5 * dd.MIB + 1, "/var/cache/base.qcow2": 0,
             "/var/cache/base.raw": None}
    chains, tops = dd.local_disk_mib(disks(), sizes.get)
    assert (chains, tops) == (6 + 1 + 1, 6)
    assert dd.local_disk_mib([disk for disk in disks() if disk.target != "vda"], sizes.get) == (0, 0)
