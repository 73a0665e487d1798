# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placement facts of one libvirt host: its free capacity and its domains, in the
shape ``presplit.kvm.evacuation_plan`` takes for ``hosts[]`` and ``domains[]``.

Host capacity
  memory_free_mib   min(MemAvailable, MemTotal - hugetlb pool - memory of the running
                    domains not backed by hugetlbfs) - reserve.  MemAvailable is the
                    kernel's estimate of what new workloads can get without swapping
                    (libvirt's virNodeGetFreeMemory is MemFree, which ignores reclaimable
                    page cache; virNodeGetMemoryStats has no "available").  A guest only
                    uses the RAM it has touched, and MemAvailable counts the rest as free
                    though the guest may touch it at any time, so the committed sizes
                    bound it too.  The reserve covers the host itself and QEMU overhead.
  hugepages_*_free  free_hugepages - resv_hugepages from sysfs: reserved pages are
                    promised to mappings (a hugetlbfs-backed guest not yet faulted in)
                    and cannot be given again; virNodeGetFreePages reports
                    free_hugepages only.
  vcpus_free        floor(host CPUs x overcommit) - vCPUs of the active domains.

Domains
  backing           hugetlb-2M, hugetlb-1G, thp or none: presplit_kvm_helper.memory's
                    classification, the one host_info reports too.
  pinned            the domain has a host device (<hostdev>, <interface type='hostdev'>
                    without transient teaming): a passed-through PCI function, USB device
                    or mediated device lives on this host and libvirt 9.0 / QEMU 7.2 cannot
                    move its state, so the guest can only be shut down and started again
                    here.  Also when our metadata says so (<pinned reason="..."/>, e.g.
                    local storage).
  migratable        false, with reasons, when libvirt refuses to migrate it for another
                    reason we can see in the XML, or its state does not allow it.
  anti_affinity     <anti-affinity group="..."/> elements of our metadata element
                    (PLACEMENT_NS), set with ``virsh metadata``.
"""

import os
import re
import xml.etree.ElementTree as ET

from ansible_collections.presplit.kvm.plugins.module_utils.domain_disks import classify, domain_disks, local_disk_mib, mount_table
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.memory import DEFAULT_HUGEPAGE_KIB, memory_backing, scaled_kib
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.host import hugetlb_page_counts, thp_mode, thp_shmem_mode
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import (
    STATE_NAMES, active_domains, host_cpus, libvirt_constant)
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_dirty_rate import (
    DEFAULT_MODE, MEASURED, measure_dirty_rates)

PLACEMENT_NS = 'https://presplit-kvm.invalid/xmlns/placement/1'
PLACEMENT_KEY = 'presplit'
DEFAULT_CPU_GROUP = 'default'
DEFAULT_MEMORY_RESERVE_MIB = 1024
# OpenStack Nova's default cpu_allocation_ratio since Yoga.
DEFAULT_VCPU_OVERCOMMIT = 4.0
# The domain states in which libvirt migrates a domain.
MIGRATABLE_STATES = (libvirt_constant("VIR_DOMAIN_RUNNING", 1), libvirt_constant("VIR_DOMAIN_BLOCKED", 2),
                     libvirt_constant("VIR_DOMAIN_PAUSED", 3))
# QEMU 8.2 added migration of vhost-user-fs (virtiofs); before, the device blocks it.
QEMU_VIRTIOFS_MIGRATION = 8002000


class PlacementError(Exception):
    """Host facts that cannot be read."""


# -- host ---------------------------------------------------------------------------------

def parse_meminfo(text):
    """/proc/meminfo as {field: KiB} (HugePages_* are page counts)."""
    values = {}
    for line in text.splitlines():
        match = re.match(r'^([\w()]+):\s+(\d+)', line)
        if match:
            values[match.group(1)] = int(match.group(2))
    return values


def read_meminfo(proc_root='/proc'):
    try:
        with open(os.path.join(proc_root, 'meminfo')) as handle:
            return parse_meminfo(handle.read())
    except (IOError, OSError) as exc:
        raise PlacementError('reading %s/meminfo: %s' % (proc_root, exc))


def hugepage_pools(sys_root='/sys'):
    """{page KiB: {'total', 'free', 'reserved', 'available'}}: reserved pages are promised
    to mappings already, so only the rest can be given to an arriving guest."""
    pools = hugetlb_page_counts(sys_root)
    for counts in pools.values():
        counts['available'] = max(0, counts['free'] - counts['reserved'])
    return pools


def host_capacity(name, meminfo, pools, cpus, domains, memory_reserve_mib=DEFAULT_MEMORY_RESERVE_MIB,
                  vcpu_overcommit=DEFAULT_VCPU_OVERCOMMIT, cpu_group=DEFAULT_CPU_GROUP, kernel_mode=None,
                  bandwidth_mib_per_s=None):
    """(host entry for evacuation_plan, details) from meminfo, hugepage pools, the host's
    CPU count and the entries (from domain_facts) of every active domain."""
    if memory_reserve_mib < 0:
        raise PlacementError('memory_reserve_mib must not be negative, got %r' % memory_reserve_mib)
    if vcpu_overcommit <= 0:
        raise PlacementError('vcpu_overcommit must be positive, got %r' % vcpu_overcommit)
    total_kib = meminfo.get('MemTotal', 0)
    if 'MemAvailable' in meminfo:
        available_kib = meminfo['MemAvailable']
    else:   # kernels before 3.14
        available_kib = sum(meminfo.get(field, 0) for field in ('MemFree', 'Buffers', 'Cached'))
    if 'Hugetlb' in meminfo:
        hugetlb_kib = meminfo['Hugetlb']
    else:   # kernels before 4.16: default-size pool only
        hugetlb_kib = meminfo.get('HugePages_Total', 0) * meminfo.get('Hugepagesize', 0)
    committed_kib = sum(entry['memory_mib'] * 1024 for entry in domains if not entry['backing'].startswith('hugetlb'))
    headroom_kib = total_kib - hugetlb_kib - committed_kib
    memory_free_mib = max(0, min(available_kib, headroom_kib) // 1024 - memory_reserve_mib)
    vcpus_used = sum(entry['vcpus'] for entry in domains)
    vcpus_capacity = int(cpus * vcpu_overcommit + 1e-9)
    host = {
        'name': name,
        'memory_free_mib': int(memory_free_mib),
        'hugepages_2m_free': pools.get(2048, {}).get('available', 0),
        'hugepages_1g_free': pools.get(1048576, {}).get('available', 0),
        'vcpus_free': max(0, vcpus_capacity - vcpus_used),
        'cpu_group': cpu_group,
    }
    if kernel_mode is not None:
        host['kernel_mode'] = kernel_mode
    if bandwidth_mib_per_s is not None:
        host['bandwidth_mib_per_s'] = bandwidth_mib_per_s
    details = {
        'mem_total_mib': total_kib // 1024,
        'mem_available_mib': available_kib // 1024,
        'hugetlb_pool_mib': hugetlb_kib // 1024,
        'committed_guest_mib': committed_kib // 1024,
        'memory_reserve_mib': memory_reserve_mib,
        'memory_bound': 'MemAvailable' if available_kib <= headroom_kib else 'committed',
        'cpus': cpus,
        'vcpu_overcommit': vcpu_overcommit,
        'vcpus_capacity': vcpus_capacity,
        'vcpus_used': vcpus_used,
        'hugepage_pools': dict(('%dkB' % size, pool) for size, pool in sorted(pools.items())),
    }
    return host, details


# -- domains ------------------------------------------------------------------------------

def _local(tag):
    return tag.rsplit('}', 1)[-1]


def placement_metadata(root):
    """Our metadata element of a <domain>: {'anti_affinity': [...], 'pinned': [reasons],
    'cpu_group': str or None, 'errors': [...]}.

    virsh and libvirt put the element and its children in PLACEMENT_NS; children are
    matched by local name so that hand-written XML without a prefix on them works too.
    """
    found = {'anti_affinity': [], 'pinned': [], 'cpu_group': None, 'errors': []}
    metadata = root.find('metadata')
    if metadata is None:
        return found
    for element in metadata.findall('{%s}placement' % PLACEMENT_NS):
        for child in element:
            kind = _local(child.tag)
            if kind == 'anti-affinity':
                group = (child.get('group') or child.text or '').strip()
                if group:
                    if group not in found['anti_affinity']:
                        found['anti_affinity'].append(group)
                else:
                    found['errors'].append('<anti-affinity> without a group')
            elif kind == 'pinned':
                found['pinned'].append('metadata: %s' % (child.get('reason') or 'pinned by its owner'))
            elif kind == 'cpu-group':
                found['cpu_group'] = (child.get('name') or child.text or '').strip() or None
            else:
                found['errors'].append('unknown placement element <%s>' % kind)
    found['anti_affinity'].sort()
    return found


def pinned_reasons(root, metadata):
    reasons = []
    devices = root.find('devices')
    if devices is not None:
        for hostdev in devices.findall('hostdev'):
            reasons.append('host device (<hostdev mode=%s type=%s>)' % (hostdev.get('mode'), hostdev.get('type')))
        for interface in devices.findall('interface'):
            if interface.get('type') != 'hostdev':
                continue
            teaming = interface.find('teaming')
            if teaming is not None and teaming.get('type') == 'transient':
                continue    # a failover VF: unplugged by libvirt before migration
            reasons.append('host network device (<interface type=hostdev>)')
    return reasons + metadata['pinned']


def not_migratable_reasons(root, state, qemu_version=None):
    reasons = []
    if state not in MIGRATABLE_STATES:
        reasons.append('state %s' % STATE_NAMES.get(state, state))
    devices = root.find('devices')
    if devices is not None:
        for shmem in devices.findall('shmem'):
            model = shmem.find('model')
            if model is not None and model.get('type') == 'ivshmem':
                reasons.append('legacy ivshmem device %s' % shmem.get('name'))
            elif shmem.get('role') != 'master':
                reasons.append("shmem device %s without role='master'" % shmem.get('name'))
        if qemu_version is None or qemu_version < QEMU_VIRTIOFS_MIGRATION:
            for filesystem in devices.findall('filesystem'):
                driver = filesystem.find('driver')
                if driver is not None and driver.get('type') == 'virtiofs':
                    reasons.append('virtiofs filesystem (QEMU before 8.2 cannot migrate vhost-user-fs)')
    for feature in root.findall('cpu/feature'):
        if feature.get('name') == 'invtsc' and feature.get('policy') in ('require', 'force'):
            if not any(timer.get('name') == 'tsc' and timer.get('frequency') for timer in root.findall('clock/timer')):
                reasons.append('invtsc CPU feature without a TSC frequency (<clock><timer name=tsc frequency=...>)')
    return reasons


def domain_facts(domain_xml, host, state, thp_enabled, shmem_enabled, default_hugepage_kib=DEFAULT_HUGEPAGE_KIB,
                 qemu_version=None):
    """(domain entry for evacuation_plan, details) from a live domain XML."""
    root = ET.fromstring(domain_xml) if not hasattr(domain_xml, 'tag') else domain_xml
    memory = root.find('memory')
    memory_kib = scaled_kib(memory.text.strip(), memory.get('unit')) if memory is not None else 0
    vcpu = root.find('vcpu')
    if vcpu is None:
        vcpus = 1
    else:
        vcpus = int(vcpu.get('current') or (vcpu.text or '1').strip())
    metadata = placement_metadata(root)
    backing, hugepage_kib, backing_reason = memory_backing(root, thp_enabled, shmem_enabled, default_hugepage_kib)
    pinned = pinned_reasons(root, metadata)
    blocked = not_migratable_reasons(root, state, qemu_version)
    name = root.findtext('name')
    entry = {
        'name': name,
        'host': host,
        'memory_mib': -(-memory_kib // 1024),
        'vcpus': vcpus,
        'backing': backing,
        'anti_affinity': metadata['anti_affinity'],
        'pinned': bool(pinned),
        'migratable': not blocked,
        'dirty_rate_mib_per_s': 0.0,
    }
    if metadata['cpu_group']:
        entry['cpu_group'] = metadata['cpu_group']
    details = {
        'uuid': root.findtext('uuid'),
        'virt_type': root.get('type'),
        'state': STATE_NAMES.get(state, 'unknown'),
        'memory_kib': memory_kib,
        'backing_reason': backing_reason,
        'hugepage_kib': hugepage_kib,
        'pinned_reasons': pinned,
        'not_migratable_reasons': blocked,
        'metadata_errors': metadata['errors'],
    }
    return entry, details


# -- gathering ----------------------------------------------------------------------------

def _wanted(names):
    if not names:
        return None
    return set(name.lower() for name in names)


def allocated_bytes(path):
    """The bytes a disk image takes on its filesystem, or None when it cannot be read."""
    try:
        return os.stat(path).st_blocks * 512
    except (OSError, ValueError):
        return None


def gather_placement_facts(conn, host_name, cpu_group=DEFAULT_CPU_GROUP,
                           memory_reserve_mib=DEFAULT_MEMORY_RESERVE_MIB, vcpu_overcommit=DEFAULT_VCPU_OVERCOMMIT,
                           names=None, measure=True, seconds=1, mode=DEFAULT_MODE, timeout=None,
                           kernel_mode=None, bandwidth_mib_per_s=None, sys_root='/sys', proc_root='/proc'):
    """Host capacity, domains and dirty rates of the libvirt host behind conn.

    Capacity always accounts every active domain; ``names`` (names or UUIDs) only limits
    the domains returned and measured.
    """
    meminfo = read_meminfo(proc_root)
    thp_enabled, shmem_enabled = thp_mode(sys_root), thp_shmem_mode(sys_root)
    pools = hugepage_pools(sys_root)
    default_hugepage_kib = meminfo.get('Hugepagesize', DEFAULT_HUGEPAGE_KIB)
    try:
        qemu_version = conn.getVersion()
    except Exception:  # pylint: disable=broad-except
        qemu_version = None
    try:
        with open(os.path.join(proc_root, 'self', 'mountinfo')) as table:
            mounts = mount_table(table.read())
    except OSError:
        mounts = []
    entries, details, handles, vanished = [], {}, {}, []
    for domain in active_domains(conn):
        try:
            name = domain.name()
            state = domain.state()[0]
            xml = domain.XMLDesc(0)
        except Exception:  # pylint: disable=broad-except
            vanished.append(domain.name())     # stopped between the listing and now
            continue
        entry, detail = domain_facts(xml, host_name, state, thp_enabled, shmem_enabled, default_hugepage_kib,
                                     qemu_version)
        disks = domain_disks(xml)
        classify(disks, mounts)
        entry['local_disk_mib'], entry['local_disk_top_mib'] = local_disk_mib(disks, allocated_bytes)
        entries.append(entry)
        details[name] = detail
        handles[name] = domain
    host, host_details = host_capacity(host_name, meminfo, pools, host_cpus(conn), entries, memory_reserve_mib,
                                       vcpu_overcommit, cpu_group, kernel_mode, bandwidth_mib_per_s)
    host_details.update({'thp_enabled': thp_enabled, 'shmem_thp_enabled': shmem_enabled,
                         'default_hugepage_kib': default_hugepage_kib, 'domains_active': len(entries)})
    wanted = _wanted(names)
    missing = []
    if wanted is not None:
        selected = [entry for entry in entries
                    if entry['name'].lower() in wanted or (details[entry['name']]['uuid'] or '').lower() in wanted]
        seen = set()
        for entry in selected:
            seen.add(entry['name'].lower())
            seen.add((details[entry['name']]['uuid'] or '').lower())
        missing = [name for name in names if name.lower() not in seen]
        entries = selected
    dirty = {}
    if measure and entries:
        dirty = measure_dirty_rates(conn, [handles[entry['name']] for entry in entries], seconds, mode, timeout)
        for entry in entries:
            result = dirty.get(entry['name'])
            if result and result['mib_per_s'] is not None:
                entry['dirty_rate_mib_per_s'] = result['mib_per_s']
    return {
        'host': host,
        'domains': entries,
        'dirty_rate': dirty,
        'host_details': host_details,
        'domain_details': dict((entry['name'], details[entry['name']]) for entry in entries),
        'missing': missing,
        'vanished': vanished,
    }


def unmeasured(facts):
    """Names of returned domains whose dirty rate was asked for but not measured."""
    return sorted(name for name, result in facts['dirty_rate'].items()
                  if result['status'] != MEASURED and result['mib_per_s'] is None)
