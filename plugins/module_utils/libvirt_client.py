# -*- coding: utf-8 -*-
# Copyright (c) presplit.kvm developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small helpers over libvirt-python: connect, find a domain, read what the
migration pre-checks need (memory, CPU compatibility, free memory)."""

import threading
import xml.etree.ElementTree as ET

try:
    import libvirt
    LIBVIRT_IMPORT_ERROR = None
except ImportError as exc:  # reported by the module with missing_required_lib
    libvirt = None
    LIBVIRT_IMPORT_ERROR = exc

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.domain import DEFAULT_URI, lookup_domain
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.host import default_hugepage_kib
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.memory import memory_backing

# The option of the modules in the presplit.kvm.libvirt action group (doc fragment presplit.kvm.libvirt).
LIBVIRT_ARGUMENT_SPEC = dict(uri=dict(type="str", default=DEFAULT_URI))


class LibvirtClientError(Exception):
    """A libvirt call failed; the message says which call and on which URI."""


def quiet_libvirt():
    """Stop libvirt printing every error on stderr; errors still raise libvirtError."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# A peer that goes silent (a host that lost power, a cut link, a frozen daemon) must not
# hold a call for TCP's retransmission timeout (about 15 minutes) or forever: libvirt's
# keepalive closes a connection that has not answered for KEEPALIVE_INTERVAL_S *
# KEEPALIVE_COUNT seconds, and the call waiting on it fails (virsh's own defaults). The
# client sends its keepalive messages from an event loop, which the process must run.
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 6
_event_loop_lock = threading.Lock()
_event_loop = []


def _run_events():
    while True:
        libvirt.virEventRunDefaultImpl()


def start_event_loop():
    """libvirt's default event loop in a daemon thread, once per process; registered before
    the first connection opens, as keepalive requires."""
    with _event_loop_lock:
        if not _event_loop:
            libvirt.virEventRegisterDefaultImpl()
            thread = threading.Thread(target=_run_events, name="libvirt-events", daemon=True)
            thread.start()
            _event_loop.append(thread)


# How long opening a connection may take. An ssh login and libvirt's handshake take a
# second or two; keepalive only starts once the connection is open, and a peer that
# accepts it and never answers (a frozen daemon) would hold libvirt.open forever.
CONNECT_TIMEOUT_S = 60


def open_connection(uri, role, timeout_s=CONNECT_TIMEOUT_S):
    """A read-write connection to uri, with keepalive where the driver has it; role
    ("source"/"destination") names it in errors."""
    start_event_loop()
    opened = {}

    def connect():
        try:
            opened["conn"] = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            opened["error"] = exc

    # A daemon thread, so that one that never returns is left behind, not waited for.
    opener = threading.Thread(target=connect, name="libvirt-open", daemon=True)
    opener.start()
    opener.join(timeout_s)
    if opener.is_alive():
        raise LibvirtClientError("cannot connect to %s libvirt %s: no answer in %g s" % (role, uri, timeout_s))
    if "error" in opened:
        raise LibvirtClientError("cannot connect to %s libvirt %s: %s" % (role, uri, opened["error"]))
    conn = opened.get("conn")
    if conn is None:
        raise LibvirtClientError("cannot connect to %s libvirt %s" % (role, uri))
    try:
        conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
    except libvirt.libvirtError:
        # Drivers that run in this process (test:///) have no peer to lose.
        pass
    return conn


def find_domain(conn, name_or_uuid):
    """The domain called name_or_uuid (a UUID, else a name: presplit_kvm_helper.domain.lookup_domain),
    or None if there is none."""
    try:
        return lookup_domain(conn, name_or_uuid)
    except libvirt.libvirtError as exc:
        raise LibvirtClientError("looking up domain %s on %s: %s" % (name_or_uuid, conn.getURI(), exc))


# Every libvirt constant the collection names, with the number libvirt's stable ABI gives
# it: an older binding may predate a constant, and code that only computes (the planner's
# facts, tests) runs without the binding. A unit test holds these numbers to the binding's.
CONSTANT_FALLBACKS = {}


def libvirt_constant(name, value):
    """The binding's libvirt.<name>, else value."""
    CONSTANT_FALLBACKS[name] = value
    return getattr(libvirt, name, value)


STATE_NAMES = {
    libvirt_constant("VIR_DOMAIN_NOSTATE", 0): "no state",
    libvirt_constant("VIR_DOMAIN_RUNNING", 1): "running",
    libvirt_constant("VIR_DOMAIN_BLOCKED", 2): "blocked",
    libvirt_constant("VIR_DOMAIN_PAUSED", 3): "paused",
    libvirt_constant("VIR_DOMAIN_SHUTDOWN", 4): "shutting down",
    libvirt_constant("VIR_DOMAIN_SHUTOFF", 5): "shut off",
    libvirt_constant("VIR_DOMAIN_CRASHED", 6): "crashed",
    libvirt_constant("VIR_DOMAIN_PMSUSPENDED", 7): "suspended by power management",
}

NODE_MEMORY_STATS_ALL_CELLS = libvirt_constant("VIR_NODE_MEMORY_STATS_ALL_CELLS", -1)
ERR_NO_SUPPORT = libvirt_constant("VIR_ERR_NO_SUPPORT", 3)


def domain_state(domain):
    """Human-readable state of a domain (libvirt's virDomainState)."""
    return STATE_NAMES.get(domain.state()[0], "unknown")


def domain_memory_bytes(domain):
    """The domain's maximum memory, which is what a migration may have to copy."""
    return domain.maxMemory() * 1024


def domain_presence(domain):
    """A small dict describing a domain on one host, or None."""
    if domain is None:
        return None
    return {
        "name": domain.name(),
        "uuid": domain.UUIDString(),
        "active": bool(domain.isActive()),
        "persistent": bool(domain.isPersistent()),
        "state": domain_state(domain),
    }


def _cpu_compare_name(result):
    return {
        libvirt.VIR_CPU_COMPARE_INCOMPATIBLE: "incompatible",
        libvirt.VIR_CPU_COMPARE_IDENTICAL: "identical",
        libvirt.VIR_CPU_COMPARE_SUPERSET: "superset",
    }.get(result, "error")


def cpu_compatibility(domain, dest_conn):
    """Whether the destination hypervisor can run the domain's CPU model.

    Returns {"result": identical|superset|incompatible|skipped, "detail": ...}.  A domain
    without a CPU model (e.g. a TCG guest on QEMU's default CPU) or with host-passthrough
    is compared by what the destination hypervisor offers for the same emulator, arch,
    machine and virt type; host-passthrough compares the source host CPU instead.
    """
    root = ET.fromstring(domain.XMLDesc(0))
    os_type = root.find("os/type")
    emulator = root.findtext("devices/emulator")
    virttype = root.get("type")
    arch = os_type.get("arch") if os_type is not None else None
    machine = os_type.get("machine") if os_type is not None else None
    cpu = root.find("cpu")
    if cpu is None or (cpu.find("model") is None and cpu.get("mode") != "host-passthrough"):
        return {"result": "skipped",
                "detail": "domain defines no CPU model; QEMU's default %s CPU needs nothing from the host"
                % (virttype or "")}
    if cpu.get("mode") == "host-passthrough":
        source_caps = ET.fromstring(domain.connect().getCapabilities())
        host_cpu = source_caps.find("host/cpu")
        cpu_xml = ET.tostring(host_cpu, encoding="unicode")
        detail = "source host CPU (domain uses host-passthrough)"
    else:
        cpu_xml = ET.tostring(cpu, encoding="unicode")
        detail = "domain CPU model %s" % cpu.findtext("model")
    try:
        result = dest_conn.compareHypervisorCPU(emulator, arch, machine, virttype, cpu_xml, 0)
    except libvirt.libvirtError as exc:
        raise LibvirtClientError("comparing %s on the destination: %s" % (detail, exc))
    return {"result": _cpu_compare_name(result), "detail": detail}


def destination_memory(domain, dest_conn):
    """What dest_conn's host has for the RAM of domain (on this host, the source):
    {"available_bytes", "what"}; available_bytes is None when the destination cannot say.

    A hugetlbfs-backed domain needs free huge pages of its page size there: QEMU reserves
    them as it starts. Any other needs memory the kernel can hand out: free memory plus
    buffers and page cache, since MemFree alone refuses a host whose page cache fills its
    RAM. A domain's <hugepages> without a <page> size gets the host's default size; this
    host's stands for the destination's."""
    root = ET.fromstring(domain.XMLDesc(0))
    _backing, page_kib, _reason = memory_backing(root, None, None, default_hugepage_kib())
    try:
        if page_kib is not None:
            what = "free %d KiB huge pages" % page_kib
            free_pages = dest_conn.getFreePages([page_kib], -1, 1) or {}
            count = free_pages.get(-1, {}).get(page_kib)
            return {"available_bytes": None if count is None else count * page_kib * 1024, "what": what}
        try:
            stats = dest_conn.getMemoryStats(NODE_MEMORY_STATS_ALL_CELLS)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != ERR_NO_SUPPORT:
                raise
            # A driver without node memory statistics (libvirt's test driver).
            return {"available_bytes": dest_conn.getFreeMemory(), "what": "free memory"}
        kib = sum(int(stats.get(key, 0)) for key in ("free", "buffers", "cached"))
        return {"available_bytes": kib * 1024, "what": "free, buffer and page-cache memory"}
    except libvirt.libvirtError as exc:
        raise LibvirtClientError("reading the free memory of the destination %s: %s" % (dest_conn.getURI(), exc))


def active_domains(conn):
    """Every active (running, paused, ...) domain of conn, sorted by name."""
    try:
        domains = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
    except libvirt.libvirtError as exc:
        raise LibvirtClientError("listing the domains of %s: %s" % (conn.getURI(), exc))
    return sorted(domains, key=lambda domain: domain.name())


def host_cpus(conn):
    """Number of active host CPUs (virNodeGetInfo)."""
    try:
        return conn.getInfo()[2]
    except libvirt.libvirtError as exc:
        raise LibvirtClientError("reading the node information of %s: %s" % (conn.getURI(), exc))


def host_name(conn):
    """The host name libvirtd reports (virConnectGetHostname)."""
    try:
        return conn.getHostname()
    except libvirt.libvirtError as exc:
        raise LibvirtClientError("reading the host name of %s: %s" % (conn.getURI(), exc))
