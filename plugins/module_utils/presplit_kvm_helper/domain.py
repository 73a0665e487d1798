# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resolve a libvirt domain (name or UUID) to what the helper needs: state, QEMU pid,
virt type and memory layout.

libvirt (python3-libvirt) is asked first, because only it can tell "not defined" from
"not running". The QEMU pid always comes from libvirt's run directory: the pid file
``<run_dir>/<name>.pid`` and the status XML ``<run_dir>/<name>.xml`` must agree. When
libvirt is not importable or not reachable, the status files alone describe the running
domains, and the result says so (``inventory_source``).
"""

import os
import re
import xml.etree.ElementTree as ET

from .errors import DomainNotFound, DomainNotRunning, InvalidArgument, MalformedState, PresplitError, ProcessMismatch
from .memory import scaled_bytes


DEFAULT_URI = "qemu:///system"
DEFAULT_RUN_DIR = "/run/libvirt/qemu"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
MAX_IDENT_LEN = 1024


def has_control_characters(text):
    """True when text holds a C0 or C1 control character (a newline, a NUL byte, DEL, ...)."""
    return any(ord(char) < 0x20 or 0x7f <= ord(char) < 0xa0 for char in text)


def shown(ident):
    """ident as one line of output: as it is, or quoted with escapes if it holds control
    characters (a newline in a name must not split an error into two lines)."""
    return repr(ident) if has_control_characters(ident) else ident


def validate_ident(ident):
    """Refuse identifiers that cannot be a libvirt domain or would escape run_dir."""
    if not isinstance(ident, str) or not ident:
        raise InvalidArgument("domain must be a non-empty string, got %r" % (ident,))
    if len(ident) > MAX_IDENT_LEN:
        raise InvalidArgument("domain identifier longer than %d characters" % MAX_IDENT_LEN)
    if "/" in ident or ident in (".", "..") or has_control_characters(ident):
        raise InvalidArgument("domain %r: libvirt names cannot contain '/' or control characters" % ident)
    return ident


def is_uuid(text):
    """Whether text is a UUID as libvirt accepts one (with or without dashes)."""
    return isinstance(text, str) and bool(UUID_RE.fullmatch(text))


def normalize_uuid(text):
    hexdigits = text.replace("-", "").lower()
    return "-".join((hexdigits[:8], hexdigits[8:12], hexdigits[12:16], hexdigits[16:20], hexdigits[20:]))


def _memory_bytes(element):
    if element is None or not (element.text or "").strip():
        return 0
    return scaled_bytes(element.text, element.get("unit"))


def lookup_domain(conn, ident):
    """The virDomain called ``ident`` on libvirt connection ``conn``, or None if there is none.

    As virsh resolves a domain: by UUID first when ``ident`` is one (any case, with or
    without dashes), then by name, so a domain whose name looks like a UUID is still found.
    Other libvirt errors propagate (libvirt.libvirtError) for the caller to word.
    """
    import libvirt  # pylint: disable=import-outside-toplevel
    lookups = [conn.lookupByName]
    if is_uuid(ident):
        lookups.insert(0, lambda text: conn.lookupByUUIDString(normalize_uuid(text)))
    for lookup in lookups:
        try:
            return lookup(ident)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return None


class DomainInfo:
    """What the helper knows about one domain. ``pid`` is None unless it is running."""

    def __init__(self, name, uuid, active, virt_type, memory_bytes, hugepage_sizes, pid, inventory_source, xml):
        self.name = name
        self.uuid = uuid
        self.active = active
        self.virt_type = virt_type              # 'kvm' or 'qemu' (TCG) from the domain XML
        self.memory_bytes = memory_bytes        # max of memory, currentMemory, maxMemory
        self.hugepage_sizes = hugepage_sizes    # hugetlbfs page sizes in bytes, [] when none
        self.pid = pid
        self.inventory_source = inventory_source
        self.xml = xml                          # the <domain> element, for memory.memory_backing
        self.listing_error = None               # set by listings, which must not stop at one bad domain

    @property
    def kvm_accelerated(self):
        return self.virt_type == "kvm"


def parse_domain_xml(domain_xml):
    """(name, uuid, virt_type, memory_bytes, hugepage_sizes) from a <domain> element/text.
    Raises MalformedState naming the domain and what is wrong with its description."""
    root = ET.fromstring(domain_xml) if isinstance(domain_xml, str) else domain_xml
    name = root.findtext("name")
    if not name:
        raise MalformedState("a domain description without a <name>")
    uuid = root.findtext("uuid")
    if not is_uuid(uuid):
        raise MalformedState("domain %r: <uuid> %r is not a UUID" % (name, uuid))
    try:
        memory = max(_memory_bytes(root.find(tag)) for tag in ("memory", "currentMemory", "maxMemory"))
        pages = [scaled_bytes(page.get("size"), page.get("unit"))
                 for page in root.findall("./memoryBacking/hugepages/page")]
    except ValueError as exc:
        raise MalformedState("domain %r: its memory or page size: %s" % (name, exc))
    if root.find("./memoryBacking/hugepages") is not None and not pages:
        pages.append(0)     # default hugetlbfs size; the size itself is the host's default
    return name, normalize_uuid(uuid), root.get("type"), memory, pages


def _read_int_file(path):
    with open(path) as handle:
        return int(handle.read().strip())


def pid_from_run_dir(name, run_dir=DEFAULT_RUN_DIR):
    """QEMU pid of running domain ``name``: pid file and status XML must agree."""
    pid_path = os.path.join(run_dir, name + ".pid")
    status_path = os.path.join(run_dir, name + ".xml")
    pids = {}
    try:
        pids["pid file"] = _read_int_file(pid_path)
    except (OSError, ValueError):
        pass
    try:
        status_pid = ET.parse(status_path).getroot().get("pid")
        if status_pid is not None:
            pids["status XML"] = int(status_pid)
    except (OSError, ET.ParseError, ValueError):
        pass
    if not pids:
        raise DomainNotRunning("domain %r has no QEMU pid in %s (not running?)" % (name, run_dir))
    if len(set(pids.values())) != 1:
        raise ProcessMismatch("domain %r: pid file and status XML disagree (%s)" % (
            name, ", ".join("%s=%d" % item for item in sorted(pids.items()))))
    return list(pids.values())[0]


def _status_domains(run_dir):
    """Running domains described by libvirt's status files: [(file name, <domain> element)]."""
    try:
        entries = sorted(os.listdir(run_dir))
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.endswith(".xml"):
            continue
        try:
            root = ET.parse(os.path.join(run_dir, entry)).getroot()
        except (OSError, ET.ParseError):
            continue
        domain = root.find("domain") if root.tag == "domstatus" else None
        if domain is not None:
            found.append((entry, domain))
    return found


class DomainInventory:
    """Finds domains through libvirt when reachable, else through the status files."""

    def __init__(self, uri=DEFAULT_URI, run_dir=DEFAULT_RUN_DIR, use_libvirt=True):
        self.uri = uri
        self.run_dir = run_dir
        self.conn = None
        self.libvirt_error = None
        if use_libvirt:
            self._connect()
        else:
            self.libvirt_error = "libvirt not used (disabled by caller)"

    def _connect(self):
        try:
            import libvirt  # pylint: disable=import-outside-toplevel
        except ImportError:
            self.libvirt_error = "python3-libvirt is not installed"
            return
        try:
            # libvirt prints connection errors to stderr by default; we report them ourselves.
            libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
            self.conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            self.libvirt_error = "cannot connect to %s: %s" % (self.uri, exc)

    @property
    def source(self):
        return "libvirt" if self.conn is not None else "status-dir"

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def lookup(self, ident):
        """DomainInfo for a name or UUID; raises DomainNotFound / InvalidArgument."""
        validate_ident(ident)
        if self.conn is not None:
            return self._lookup_libvirt(ident)
        return self._lookup_status(ident)

    def libvirt_domain(self, info):
        """The virDomain object (for QEMU monitor access), or None without libvirt."""
        if self.conn is None:
            return None
        return self.conn.lookupByUUIDString(info.uuid)

    def running(self):
        """DomainInfo of every running domain."""
        if self.conn is not None:
            import libvirt  # pylint: disable=import-outside-toplevel
            flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
            return [self._listed(lambda dom=dom: self._info_from_libvirt(dom, strict=False), dom.name())
                    for dom in self.conn.listAllDomains(flags)]
        return [self._listed(lambda domain=domain: self._info_from_element(domain, strict=False),
                             domain.findtext("name") or entry)
                for entry, domain in _status_domains(self.run_dir)]

    def _listed(self, describe, name):
        """describe()'s DomainInfo, or for a domain whose description is malformed, one that
        says so (the listing goes on with the others)."""
        try:
            return describe()
        except MalformedState as exc:
            info = DomainInfo(name, None, True, None, 0, [], None, self.source, None)
            info.listing_error = exc
            return info

    def _lookup_libvirt(self, ident):
        import libvirt  # pylint: disable=import-outside-toplevel
        try:
            dom = lookup_domain(self.conn, ident)
        except libvirt.libvirtError as exc:
            raise DomainNotFound("libvirt lookup of domain %r failed: %s" % (ident, exc))
        if dom is None:
            raise DomainNotFound("no domain %r (by name or UUID) in %s" % (ident, self.uri))
        return self._info_from_libvirt(dom)

    def _with_pid(self, info, strict):
        if not info.active:
            return info
        try:
            info.pid = pid_from_run_dir(info.name, self.run_dir)
        except PresplitError as exc:
            if strict:
                raise
            info.listing_error = exc
        return info

    def _info_from_libvirt(self, dom, strict=True):
        root = ET.fromstring(dom.XMLDesc(0))
        name, uuid, virt_type, memory, pages = parse_domain_xml(root)
        return self._with_pid(DomainInfo(name, uuid, bool(dom.isActive()), virt_type, memory, pages, None,
                                         "libvirt", root), strict)

    def _lookup_status(self, ident):
        wanted_uuid = normalize_uuid(ident) if is_uuid(ident) else None
        for _entry, domain in _status_domains(self.run_dir):
            uuid = domain.findtext("uuid")
            if domain.findtext("name") == ident or (wanted_uuid and is_uuid(uuid) and normalize_uuid(uuid) == wanted_uuid):
                return self._info_from_element(domain)
        raise DomainNotFound("no running domain %r in %s (%s, so defined-but-stopped domains "
                             "cannot be told apart from unknown ones)" % (ident, self.run_dir, self.libvirt_error))

    def _info_from_element(self, domain, strict=True):
        name, uuid, virt_type, memory, pages = parse_domain_xml(domain)
        return self._with_pid(DomainInfo(name, uuid, True, virt_type, memory, pages, None, "status-dir", domain),
                              strict)


def require_running(info):
    if not info.active:
        raise DomainNotRunning("domain %r is not running; nothing to split" % info.name)
    return info
