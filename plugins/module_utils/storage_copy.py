# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The storage side of a live migration, through libvirt: the source domain's disks as
domain_disks sees them, and on the destination the images a copy writes to.

libvirt creates the destination image of a full copy itself (in the storage pool whose
target is the image's directory), but not the top image of a copy of the top layer
(VIR_MIGRATE_NON_SHARED_INC: "pre-creation of storage targets for incremental storage
migration is not supported"): DestinationImages creates that one over the backing image the
destination has. After a failed migration it deletes what the attempt created, so that
nothing is left half-moved.
"""

import os
import xml.etree.ElementTree as ET

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_client
from ansible_collections.presplit.kvm.plugins.module_utils.domain_disks import DiskProblem, classify, domain_disks, mount_table
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import LibvirtClientError

MOUNTINFO = "/proc/self/mountinfo"


def source_disks(domain, mountinfo=MOUNTINFO):
    """The domain's disks (domain_disks.Disk), a volume's path resolved through the source's
    storage pools, each file's filesystem read from this host's mount table: the module runs
    on the source host."""
    lv = libvirt_client.libvirt
    disks = domain_disks(domain.XMLDesc(0))
    conn = domain.connect()
    for disk in disks:
        if disk.kind == "volume" and disk.volume and not disk.path:
            try:
                disk.path = conn.storagePoolLookupByName(disk.pool).storageVolLookupByName(disk.volume).path()
            except lv.libvirtError as exc:
                raise LibvirtClientError("resolving volume %s of pool %s (disk %s of %s): %s"
                                         % (disk.volume, disk.pool, disk.target, domain.name(), exc))
    with open(mountinfo) as table:
        classify(disks, mount_table(table.read()))
    return disks


def _pool_for(conn, directory):
    """The active storage pool of conn whose target is directory, refreshed, or None.
    (Found by listing the pools: virStoragePoolLookupByTargetPath is what libvirt's own
    pre-creation uses, but not every driver has it.)"""
    lv = libvirt_client.libvirt
    try:
        for pool in conn.listAllStoragePools(lv.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            target = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
            if target and os.path.normpath(target) == os.path.normpath(directory):
                pool.refresh(0)
                return pool
    except lv.libvirtError:
        return None
    return None


def _volume(pool, name):
    lv = libvirt_client.libvirt
    try:
        return pool.storageVolLookupByName(name)
    except lv.libvirtError:
        return None


def top_image_xml(name, capacity_bytes, backing_path, backing_format):
    """The storage volume XML of a qcow2 top image over backing_path."""
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", unit="bytes").text = str(int(capacity_bytes))
    ET.SubElement(ET.SubElement(volume, "target"), "format", type="qcow2")
    backing = ET.SubElement(volume, "backingStore")
    ET.SubElement(backing, "path").text = backing_path
    ET.SubElement(backing, "format", type=backing_format or "raw")
    return ET.tostring(volume, encoding="unicode")


class DestinationImages:
    """The destination images of the disks a migration copies: whether each existed before
    (seen through a storage pool of the destination whose target is its directory; unknown
    without one), the top images this module created, and the clean-up after a failure."""

    def __init__(self, dest_conn, disks):
        self.dest_conn = dest_conn
        self.entries = []
        for disk in disks:
            directory, name = os.path.split(disk.path or "")
            pool = _pool_for(dest_conn, directory) if disk.path else None
            existed = None if pool is None else _volume(pool, name) is not None
            self.entries.append({"disk": disk, "directory": directory, "name": name, "pool": pool, "existed": existed,
                                 "created": False})

    def check_top(self):
        """What copy_storage=top needs of the destination, before anything moves: a pool to
        create the top image in, and no image there already (a stale one would keep clusters
        the copy does not overwrite). Raises DiskProblem."""
        uri = self.dest_conn.getURI()
        for entry in self.entries:
            disk = entry["disk"]
            if entry["pool"] is None:
                raise DiskProblem(
                    "copy_storage=top: the destination %s has no active storage pool whose target is %s, where the"
                    " module creates the top image of disk %s over its backing image (virsh pool-define-as NAME dir"
                    " --target %s)" % (uri, os.path.dirname(disk.path), disk.target, os.path.dirname(disk.path)))
            if entry["existed"]:
                raise DiskProblem(
                    "copy_storage=top: the destination %s already has %s (disk %s); a top image left there would mix"
                    " its own clusters into the copy: remove it first" % (uri, disk.path, disk.target))

    def create_top(self, source_domain):
        """Create each top image over its backing image (which the destination must have at
        the same path). Raises LibvirtClientError; what was created is deleted first."""
        lv = libvirt_client.libvirt
        for entry in self.entries:
            disk = entry["disk"]
            backing_path, backing_format = disk.backing[0]
            try:
                capacity = source_domain.blockInfo(disk.target)[0]
                entry["pool"].createXML(top_image_xml(entry["name"], capacity, backing_path, backing_format), 0)
            except lv.libvirtError as exc:
                self.remove_created(self.dest_conn)
                raise LibvirtClientError(
                    "creating the top image %s of disk %s on the destination %s over %s (the destination needs that"
                    " backing image at the same path): %s; nothing was migrated"
                    % (disk.path, disk.target, self.dest_conn.getURI(), backing_path, exc))
            entry["created"] = True

    def created_paths(self):
        return [entry["disk"].path for entry in self.entries if entry["created"]]

    def remove_created(self, dest_conn):
        """Delete every image the attempt created: the top images this module made and the
        images a full copy made where none existed before. Only after a failure, with the
        domain not running on the destination. dest_conn: a connection to the destination (the
        one the images were seen through may have broken with the migration). Returns what
        it did, as sentences."""
        lv = libvirt_client.libvirt
        notes = []
        for entry in self.entries:
            if entry["existed"] is not False:
                continue
            disk = entry["disk"]
            pool = _pool_for(dest_conn, entry["directory"])
            if pool is None:
                notes.append("could not check for the image %s of disk %s on the destination: no storage pool found"
                             % (disk.path, disk.target))
                continue
            try:
                volume = _volume(pool, entry["name"])
                if volume is not None:
                    volume.delete(0)
                    notes.append("deleted the image %s of disk %s the migration had created on the destination"
                                 % (disk.path, disk.target))
                entry["created"] = False
            except lv.libvirtError as exc:
                notes.append("could not delete the image %s of disk %s the migration created on the destination: %s"
                             % (disk.path, disk.target, exc))
        return notes
