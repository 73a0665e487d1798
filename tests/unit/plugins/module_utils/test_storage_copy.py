"""The destination side of a storage copy against libvirt's test driver, whose default
node has an active pool "default-pool" over /default-pool: which images existed before,
the top image the module creates, and the clean-up after a failure that deletes what the
attempt created and nothing else. The lab's test_storage_copy.py does the same on real
hosts with real images."""

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils import domain_disks, storage_copy

libvirt = pytest.importorskip("libvirt")

DISK = """<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
  <source file='%s'/>
  <backingStore type='file'><format type='raw'/><source file='/images/base.raw'/></backingStore>
  <target dev='%s' bus='virtio'/></disk>"""


def disks(*paths):
    targets = ["vda", "vdb", "vdc"]
    xml = "<domain><devices>%s</devices></domain>" % "".join(DISK % (path, targets[i]) for i, path in enumerate(paths))
    return domain_disks.domain_disks(xml)


@pytest.fixture
def conn():
    connection = libvirt.open("test:///default")
    pool = connection.storagePoolLookupByName("default-pool")
    pool.createXML("<volume><name>stale.qcow2</name><capacity>1048576</capacity></volume>", 0)
    yield connection
    connection.close()


class _Source:
    """The source domain as create_top reads it, through libvirt's blockInfo: each disk's capacity."""

    def blockInfo(self, target):  # pylint: disable=invalid-name
        return [64 * 1048576, 0, 0]


def test_what_existed_before_is_seen_through_the_pool(conn):
    images = storage_copy.DestinationImages(conn, disks("/default-pool/new.qcow2", "/default-pool/stale.qcow2",
                                                        "/nowhere/x.qcow2"))
    assert [entry["existed"] for entry in images.entries] == [False, True, None]


def test_top_refuses_an_image_there_already_or_no_pool(conn):
    with pytest.raises(domain_disks.DiskProblem, match="already has /default-pool/stale.qcow2 .disk vda."):
        storage_copy.DestinationImages(conn, disks("/default-pool/stale.qcow2")).check_top()
    with pytest.raises(domain_disks.DiskProblem, match="no active storage pool whose target is /nowhere"):
        storage_copy.DestinationImages(conn, disks("/nowhere/x.qcow2")).check_top()


def test_created_images_and_only_those_are_removed(conn):
    images = storage_copy.DestinationImages(conn, disks("/default-pool/new.qcow2", "/default-pool/stale.qcow2"))
    images.entries = images.entries[:1]
    images.check_top()
    images.create_top(_Source())
    pool = conn.storagePoolLookupByName("default-pool")
    assert images.created_paths() == ["/default-pool/new.qcow2"]
    assert pool.storageVolLookupByName("new.qcow2").info()[1] == 64 * 1048576
    notes = images.remove_created(conn)
    assert notes == ["deleted the image /default-pool/new.qcow2 of disk vda the migration had created on the destination"]
    assert "new.qcow2" not in pool.listVolumes() and "stale.qcow2" in pool.listVolumes()
    assert images.created_paths() == []


def test_top_image_xml_names_its_backing_image():
    xml = storage_copy.top_image_xml("a&b.qcow2", 1024, "/images/base <1>.raw", "raw")
    assert "<name>a&amp;b.qcow2</name>" in xml and "<path>/images/base &lt;1&gt;.raw</path>" in xml
    assert "<format type=\"raw\" />" in xml or "<format type=\"raw\"/>" in xml
