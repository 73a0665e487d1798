# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The disks of a domain as a live migration sees them: where each one's data lives,
which ones the destination cannot see (files on a filesystem of the source alone), and
which ones a migration with ``copy_storage`` copies.

Pure logic over the domain XML and the source host's mount table, unit-tested directly;
storage_copy.py does what needs libvirt.
"""

import os
import xml.etree.ElementTree as ET

# live_migrate's copy_storage: nothing, every image of the chain into one image on the
# destination (VIR_MIGRATE_NON_SHARED_DISK), or the top image only, over backing images the
# destination has at the same paths (VIR_MIGRATE_NON_SHARED_INC).
COPY_STORAGE = ("none", "all", "top")

# Filesystems every host that mounts them sees the same files on: libvirt's own list
# (virFileIsSharedFS and virFileIsClusterFS), so that this check and libvirt's refusal of an
# unsafe migration agree.
SHARED_FILESYSTEMS = frozenset((
    "nfs", "nfs4", "gfs2", "ocfs2", "afs", "smb3", "smbfs", "cifs", "ceph", "gpfs", "beegfs",
    "fuse.glusterfs", "fuse.quobyte",
))


MIB = 1 << 20


class DiskProblem(ValueError):
    """The domain's disks and copy_storage do not make a safe migration; the message says
    which disks and what to give instead."""


class Disk:
    """One <disk> of a domain: ``target`` (vda), ``kind`` (its type attribute: file, block,
    network, volume, ...), ``path`` (file or device; a volume's once resolved), ``pool`` and
    ``volume`` (type volume), ``image_format`` (qcow2, raw), ``readonly``, ``shareable`` and
    ``backing`` (the backing chain as [(path, format)], nearest first)."""

    __slots__ = ("target", "kind", "path", "pool", "volume", "image_format", "readonly", "shareable",
                 "backing", "filesystem")

    def __init__(self, element):
        source = element.find("source")
        self.target = (element.find("target").get("dev") if element.find("target") is not None else None) or "?"
        self.kind = element.get("type") or "file"
        self.path = None
        self.pool = self.volume = None
        if source is not None:
            self.path = source.get("file") or source.get("dev") or None
            self.pool, self.volume = source.get("pool"), source.get("volume")
        driver = element.find("driver")
        self.image_format = driver.get("type") if driver is not None else None
        self.readonly = element.find("readonly") is not None or element.get("device") in ("cdrom", "floppy")
        self.shareable = element.find("shareable") is not None
        self.backing = _backing_chain(element)
        # Set by classify(): the filesystem type of a file disk's path on the source.
        self.filesystem = None

    def has_source(self):
        return bool(self.path or self.volume or self.kind == "network")

    def describe(self):
        where = self.path or ("%s/%s" % (self.pool, self.volume) if self.volume else "no source")
        if self.filesystem:
            return "%s (%s on %s)" % (self.target, where, self.filesystem)
        return "%s (%s)" % (self.target, where)


def _backing_chain(element):
    chain = []
    backing = element.find("backingStore")
    while backing is not None:
        source = backing.find("source")
        path = (source.get("file") or source.get("dev")) if source is not None else None
        if not path:
            break
        image_format = backing.find("format")
        chain.append((path, image_format.get("type") if image_format is not None else None))
        backing = backing.find("backingStore")
    return chain


def domain_disks(xml_text):
    """The <disk> devices of a domain's XML, as Disk objects, in their order."""
    root = ET.fromstring(xml_text)
    return [Disk(element) for element in root.findall("devices/disk")]


def mount_table(mountinfo_text):
    """[(mount point, filesystem type)] of a /proc/<pid>/mountinfo text, the later mounts
    last (a later mount on the same point hides the earlier one)."""
    mounts = []
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        separator = fields.index("-")
        if separator + 1 >= len(fields):
            continue
        mounts.append((_unescape(fields[4]), fields[separator + 1]))
    return mounts


def _unescape(field):
    """A mountinfo field with its octal escapes (a space is \\040) decoded."""
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_of(path, mounts):
    """The filesystem type of the mount that holds path (its longest mount point prefix,
    the last mount on it), or None when no mount holds it."""
    best, best_length = None, -1
    for point, fstype in mounts:
        prefix = point.rstrip("/") + "/"
        if (path == point or path.startswith(prefix)) and len(point) >= best_length:
            best, best_length = fstype, len(point)
    return best


def classify(disks, mounts, realpath=os.path.realpath):
    """Set each file disk's ``filesystem`` from mounts (mount_table of the source)."""
    for disk in disks:
        if disk.path and disk.kind in ("file", "volume"):
            disk.filesystem = filesystem_of(realpath(disk.path), mounts)


def writable(disk):
    return disk.has_source() and not disk.readonly and not disk.shareable


def on_local_filesystem(disk):
    """A writable file disk on a filesystem only the source sees: what libvirt refuses to
    migrate without a copy (its 'Migration without shared storage is unsafe')."""
    return writable(disk) and disk.filesystem is not None and disk.filesystem not in SHARED_FILESYSTEMS


def local_disk_mib(disks, allocated_bytes):
    """(MiB of whole chains, MiB of top images) of the disks on a local filesystem: what a
    migration with copy_storage all, or top, copies. allocated_bytes(path) gives an image's
    allocated bytes, or None when it cannot be read (counted as 0). Each image counts at
    least 1 MiB, so that a domain with a local disk never counts 0."""
    chains = tops = 0
    for disk in disks:
        if not on_local_filesystem(disk):
            continue
        sizes = [max(1, -(-(allocated_bytes(path) or 0) // MIB))
                 for path in [disk.path] + [backing_path for backing_path, _format in disk.backing]]
        tops += sizes[0]
        chains += sum(sizes)
    return chains, tops


def disks_to_copy(copy_storage, copy_storage_disks, disks):
    """The targets a migration copies (VIR_MIGRATE_PARAM_MIGRATE_DISKS) for copy_storage and
    copy_storage_disks (a list of targets, or None for every disk on a local filesystem).

    Raises DiskProblem when the migration would leave a local disk behind (the guest would
    run on the destination over whatever file, stale or missing, has that path there), when
    copy_storage_disks names what the domain does not have or what cannot be copied, or when
    copy_storage=top meets a disk with no backing chain (it copies only a top image)."""
    by_target = dict((disk.target, disk) for disk in disks)
    local = [disk for disk in disks if on_local_filesystem(disk)]
    if copy_storage == "none":
        if copy_storage_disks:
            raise DiskProblem("copy_storage_disks needs copy_storage all or top")
        if local:
            raise DiskProblem(
                "disks on a filesystem of the source alone would be left behind: %s; give copy_storage=all to copy"
                " them during the migration (top when the destination has their backing images), or move them to"
                " shared storage" % ", ".join(disk.describe() for disk in local))
        return []
    if copy_storage_disks:
        for target in copy_storage_disks:
            disk = by_target.get(target)
            if disk is None:
                raise DiskProblem("copy_storage_disks: the domain has no disk %s (it has %s)"
                                  % (target, ", ".join(sorted(by_target)) or "none"))
            if not writable(disk):
                raise DiskProblem("copy_storage_disks: disk %s cannot be copied: it is read-only, shareable or has"
                                  " no source" % disk.describe())
        left = [disk for disk in local if disk.target not in copy_storage_disks]
        if left:
            raise DiskProblem("copy_storage_disks leaves disks on a filesystem of the source alone behind: %s"
                              % ", ".join(disk.describe() for disk in left))
        chosen = [by_target[target] for target in copy_storage_disks]
    else:
        chosen = local
    if copy_storage == "top":
        flat = [disk for disk in chosen if not disk.backing or disk.kind != "file" or disk.image_format != "qcow2"]
        if flat:
            raise DiskProblem(
                "copy_storage=top copies the top image of a qcow2 file over a backing chain the destination has;"
                " %s has none: give copy_storage=all" % ", ".join(disk.describe() for disk in flat))
    return [disk.target for disk in chosen]
