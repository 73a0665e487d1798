# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts about kvm modules for the presplit.kvm.kernel_stage role, as one JSON object.

  python3 kvm_modules.py inspect DIR   kvm.ko, kvm-amd.ko, kvm-intel.ko in DIR: the kernel
                                       release they were built for (vermagic) and their
                                       GNU build IDs; exit 1 with {"error": ...} if unusable
  python3 kvm_modules.py state         the running kernel, the loaded kvm modules (build ID,
                                       refcount, holders) and the processes holding /dev/kvm
                                       or a VM fd

A module's identity is its GNU build ID: the kernel exposes the loaded one in
/sys/module/<name>/notes, so a rerun can tell whether the loaded modules already are the
staged ones (Debian kernels have no srcversion for kvm). Standard library only, Python 3.8
or later: it runs on the build host and on the KVM hosts.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import struct
import sys

__metaclass__ = type

MODULES = {"kvm": "kvm.ko", "kvm_amd": "kvm-amd.ko", "kvm_intel": "kvm-intel.ko"}
VENDORS = ("kvm_amd", "kvm_intel")
NT_GNU_BUILD_ID = 3
SHT_NOBITS = 8


class Unusable(Exception):
    pass


def note_build_id(data):
    """The build ID in a blob of ELF notes, as hex, or None."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        name_end = pos + 12 + ((namesz + 3) & ~3)
        desc = data[name_end:name_end + descsz]
        if ntype == NT_GNU_BUILD_ID and data[pos + 12:pos + 12 + namesz].rstrip(b"\0") == b"GNU":
            return desc.hex()
        pos = name_end + ((descsz + 3) & ~3)
    return None


def elf_sections(path):
    """{section name: bytes} of an x86-64 ELF relocatable file."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:6] != b"\x7fELF\x02\x01":
        raise Unusable("%s is not a 64-bit little-endian ELF file" % path)
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
        names_offset = headers[shstrndx][4]
        sections = {}
        for name_off, sh_type, _flags, _addr, offset, size in headers:
            start = names_offset + name_off
            name = data[start:data.index(b"\0", start)].decode("ascii", "replace")
            if sh_type != SHT_NOBITS and offset + size > len(data):
                raise Unusable("%s is truncated: section %s ends past the end of the file" % (path, name))
            sections[name] = data[offset:offset + size]
    except (struct.error, IndexError, ValueError):
        raise Unusable("%s is truncated or corrupt (section headers unreadable)" % path) from None
    return sections


def inspect_file(path):
    if not os.path.isfile(path):
        raise Unusable("%s does not exist" % path)
    sections = elf_sections(path)
    modinfo = dict(item.split(b"=", 1) for item in sections.get(".modinfo", b"").split(b"\0") if b"=" in item)
    vermagic = modinfo.get(b"vermagic", b"").decode("ascii", "replace").split()
    build_id = note_build_id(sections.get(".note.gnu.build-id", b""))
    if not vermagic or build_id is None:
        raise Unusable("%s is not a kernel module with a vermagic and a GNU build ID" % path)
    return {"file": os.path.basename(path), "release": vermagic[0], "build_id": build_id}


def inspect(directory):
    modules = dict((name, inspect_file(os.path.join(directory, filename))) for name, filename in MODULES.items())
    releases = sorted(set(info["release"] for info in modules.values()))
    if len(releases) != 1:
        raise Unusable("the modules in %s were built for different kernels: %s" % (directory, ", ".join(releases)))
    return {"release": releases[0], "modules": modules}


def read(path, default=None):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return default


def loaded_module(name):
    base = "/sys/module/" + name
    # Only a loadable module has initstate (a built-in one may still have /sys/module/<name>).
    if read(base + "/initstate") is None:
        return None
    try:
        holders = sorted(os.listdir(base + "/holders"))
    except OSError:
        holders = []
    refcnt = read(base + "/refcnt", b"0")
    return {"build_id": note_build_id(read(base + "/notes/.note.gnu.build-id", b"")),
            "refcnt": int(refcnt), "holders": holders}


def kvm_users():
    """Processes with /dev/kvm or a VM fd open: what stops an unload."""
    users = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        what = set()
        for fd in fds:
            try:
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target in ("/dev/kvm", "anon_inode:kvm-vm"):
                what.add(target)
        if what:
            comm = read("/proc/%s/comm" % pid, b"?").decode("utf-8", "replace").strip()
            users.append({"pid": int(pid), "comm": comm, "fds": sorted(what)})
    return users


def cpu_vendor_module():
    for line in read("/proc/cpuinfo", b"").decode("utf-8", "replace").splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return "kvm_amd" if "svm" in flags else "kvm_intel" if "vmx" in flags else None
    return None


def state():
    loaded = dict((name, info) for name, info in ((name, loaded_module(name)) for name in MODULES) if info)
    vendors = [name for name in VENDORS if name in loaded]
    return {"release": os.uname()[2], "loaded": loaded,
            "vendor": vendors[0] if vendors else cpu_vendor_module(), "users": kvm_users()}


def main(argv):
    try:
        if argv[1:2] == ["inspect"] and len(argv) == 3:
            result = inspect(argv[2])
        elif argv[1:] == ["state"]:
            result = state()
        else:
            raise Unusable("usage: kvm_modules.py inspect DIR | state")
    except Unusable as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
