# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Current mapping counts (pages_4k/2m/1g) of a running VM, from the best source there is.

Sources, in order, each reporting why it failed:
  stats-fd          KVM_GET_STATS_FD through the duplicated VM fd (patched kernels allow
                    foreign callers this ioctl; unpatched ones answer EIO)
  debugfs           /sys/kernel/debug/kvm/<qemu pid>-<qemu fd>/pages_* (needs debugfs mounted)
  qemu-query-stats  QMP query-stats through libvirt's qemuMonitorCommand (QEMU >= 7.1)
"""

import errno
import json
import os

from .ioctl import get_stats_fd
from .stats import MAPPING_STATS, StatsFormatError, held_pages_from_stats_fd, mapping_counts_from_stats_fd
from .uapi import HUGE_2M


DEBUGFS_KVM = "/sys/kernel/debug/kvm"
QUERY_STATS = json.dumps({"execute": "query-stats",
                          "arguments": {"target": "vm",
                                        "providers": [{"provider": "kvm", "names": list(MAPPING_STATS)}]}})


def explain_oserror(exc):
    if exc.errno == errno.EIO:
        return ("EIO: the kernel refuses VM ioctls from a process other than QEMU "
                "(unpatched kernel, or the VM is dead)")
    return "%s: %s" % (errno.errorcode.get(exc.errno, exc.errno), exc.strerror)


def counts_from_stats_fd(vm_fd):
    stats_fd = get_stats_fd(vm_fd)
    try:
        return mapping_counts_from_stats_fd(stats_fd)
    finally:
        os.close(stats_fd)


def held_pages(vm_fd):
    """What the kernel holds of the VM, in 4 KiB pages: {'pages': int or None, 'error': str or None}.
    None without an error: the kernel does not count held pages (an older series)."""
    try:
        stats_fd = get_stats_fd(vm_fd)
        try:
            return {"pages": held_pages_from_stats_fd(stats_fd), "error": None}
        finally:
            os.close(stats_fd)
    except OSError as exc:
        return {"pages": None, "error": explain_oserror(exc)}
    except StatsFormatError as exc:
        return {"pages": None, "error": str(exc)}


def counts_from_debugfs(qemu_pid, qemu_vm_fd, root=DEBUGFS_KVM):
    if not os.path.isdir(root):
        raise OSError(errno.ENOENT, "%s does not exist (debugfs not mounted?)" % root)
    vm_dir = os.path.join(root, "%d-%d" % (qemu_pid, qemu_vm_fd))
    counts = {}
    for name in MAPPING_STATS:
        try:
            with open(os.path.join(vm_dir, name)) as handle:
                counts[name] = int(handle.read().strip())
        except OSError as exc:
            if exc.errno != errno.ENOENT or name == "pages_4k":
                raise OSError(exc.errno, "%s: %s" % (os.path.join(vm_dir, name), exc.strerror))
    return counts


def counts_from_query_stats(libvirt_domain):
    import libvirt_qemu  # pylint: disable=import-outside-toplevel
    reply = json.loads(libvirt_qemu.qemuMonitorCommand(libvirt_domain, QUERY_STATS, 0))
    counts = {}
    for provider in reply.get("return", []):
        if provider.get("provider") != "kvm":
            continue
        for stat in provider.get("stats", []):
            if stat.get("name") in MAPPING_STATS:
                counts[stat["name"]] = int(stat["value"])
    if not counts:
        raise ValueError("query-stats returned no kvm mapping stats: %s" % json.dumps(reply)[:200])
    return counts


def read_mapping_counts(handle=None, libvirt_domain=None, debugfs_root=DEBUGFS_KVM):
    """{'source': name or None, 'counts': {...} or None, 'attempts': [{'source', 'error'}]}."""
    attempts = []
    sources = []
    if handle is not None:
        sources.append(("stats-fd", lambda: counts_from_stats_fd(handle.vm_fd)))
        sources.append(("debugfs", lambda: counts_from_debugfs(handle.identity.pid, handle.owner_fd, debugfs_root)))
    if libvirt_domain is not None:
        sources.append(("qemu-query-stats", lambda: counts_from_query_stats(libvirt_domain)))
    for name, read in sources:
        try:
            return {"source": name, "counts": read(), "attempts": attempts}
        except OSError as exc:
            attempts.append({"source": name, "error": explain_oserror(exc)})
        except (StatsFormatError, ValueError, ImportError) as exc:
            attempts.append({"source": name, "error": str(exc)})
        except Exception as exc:  # pylint: disable=broad-except  # libvirtError has no stable base here
            attempts.append({"source": name, "error": "%s: %s" % (type(exc).__name__, exc)})
    return {"source": None, "counts": None, "attempts": attempts}


def huge_mappings(counts, page_size):
    """How many mappings are larger than the target page size (None when counts are unknown)."""
    if counts is None:
        return None
    bigger = ("pages_1g",) if page_size == HUGE_2M else ("pages_2m", "pages_1g")
    return sum(counts.get(name, 0) for name in bigger)
