# -*- coding: utf-8 -*-
# Copyright (c) presplit.kvm developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of a live migration: option checks, libvirt flags and typed
parameters, the stepped max-downtime schedule and the completion timeout.

Nothing here talks to libvirt, so all of it is unit-tested directly.  The
libvirt constants are passed in as a namespace (the ``libvirt`` module in
production) so this file imports without python3-libvirt.
"""

import ipaddress
import re

from ansible_collections.presplit.kvm.plugins.module_utils.domain_disks import COPY_STORAGE
from ansible_collections.presplit.kvm.plugins.module_utils.option_checks import option_problem
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.domain import DEFAULT_URI

TRANSPORTS = ("ssh", "tcp", "tls")
COMPLETION_TIMEOUT_ACTIONS = ("abort", "postcopy", "pause")
COMPRESSION_METHODS = ("xbzrle", "mt")

# presplit.kvm.live_migrate's options. Quantities carry their unit in the name; the names
# used before stay as aliases for this release (changelogs/fragments/option_names.yml).
ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True, aliases=["domain"]),
    uri=dict(type="str", default=DEFAULT_URI, aliases=["source_uri"]),
    destination_uri=dict(type="str"),
    destination_host=dict(type="str"),
    transport=dict(type="str", choices=list(TRANSPORTS), default="ssh"),
    migration_uri=dict(type="str"),
    migration_address=dict(type="str"),
    peer_to_peer=dict(type="bool", default=True),
    tunnelled=dict(type="bool", default=False),
    persistent=dict(type="bool", default=True),
    undefine_source=dict(type="bool", default=True),
    copy_storage=dict(type="str", choices=list(COPY_STORAGE), default="none"),
    copy_storage_disks=dict(type="list", elements="str"),
    bandwidth_mib_per_s=dict(type="int", default=0, aliases=["bandwidth"]),
    max_downtime_ms=dict(type="int", default=500, aliases=["max_downtime"]),
    downtime_steps=dict(type="int", default=10),
    downtime_delay_s_per_gib=dict(type="int", default=75, aliases=["downtime_delay"]),
    auto_converge=dict(type="bool", default=False),
    auto_converge_initial=dict(type="int"),
    auto_converge_increment=dict(type="int"),
    post_copy=dict(type="bool", default=False),
    parallel_connections=dict(type="int", default=0),
    compression=dict(type="list", elements="str", choices=list(COMPRESSION_METHODS)),
    tls=dict(type="bool", default=False),
    tls_destination=dict(type="str"),
    completion_timeout_s_per_gib=dict(type="int", default=800, aliases=["completion_timeout"]),
    completion_timeout_action=dict(type="str", choices=list(COMPLETION_TIMEOUT_ACTIONS), default="abort"),
    progress_timeout_s=dict(type="int", default=0),
    poll_interval_s=dict(type="float", default=0.5, aliases=["poll_interval"]),
)
MUTUALLY_EXCLUSIVE = [("destination_uri", "destination_host"), ("migration_uri", "migration_address")]
REQUIRED_ONE_OF = [("destination_uri", "destination_host")]

# The documented range of each numeric option, checked before anything connects: a count
# without a bound (downtime_steps) would build a schedule as long as it says.
RANGES = {
    "bandwidth_mib_per_s": (0, 1048576),
    "max_downtime_ms": (0, 600000),
    "downtime_steps": (1, 100),
    "downtime_delay_s_per_gib": (0, 86400),
    # QEMU's cpu-throttle-initial and -increment.
    "auto_converge_initial": (1, 99),
    "auto_converge_increment": (1, 99),
    # QEMU's multifd-channels.
    "parallel_connections": (0, 255),
    "completion_timeout_s_per_gib": (0, 86400),
    "progress_timeout_s": (0, 86400),
    "poll_interval_s": (0.01, 60),
}

# Options that end up in a libvirt URI, a lookup or a message: no control characters.
TEXT_OPTIONS = ("name", "uri", "destination_uri", "destination_host", "migration_uri", "migration_address",
                "tls_destination", "copy_storage_disks")

# What to give instead of a host option for a URI with more than a host.
URI_INSTEAD = {
    "destination_host": "; give destination_uri for a URI with a user, a port or parameters",
    "migration_address": "; give migration_uri for a URI with a scheme or a port",
}

# A DNS label; underscores are not DNS but real host names carry them, and libvirt takes them.
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")

_CANONICAL_NAMES = dict(
    [(name, name) for name in ARGUMENT_SPEC]
    + [(alias, name) for name, spec in ARGUMENT_SPEC.items() for alias in spec.get("aliases", ())])

# driver[+transport]://[user@][host][:port]/path[?params]; libvirt itself judges the rest.
_URI_RE = re.compile(r"^[a-z][a-z0-9]*(\+[a-z0-9]+)?://[^\s/]*/\S*$")

# Nova sizes time-based knobs by the data to move, with a floor so tiny guests
# still get a usable schedule (nova.virt.libvirt.migration uses 2 GiB).
MIN_DATA_GIB = 2.0
GIB = 1024 ** 3


class MigrationOptionError(ValueError):
    """A user-supplied option, or a combination of them, is not valid."""


def canonical_options(options, what="options"):
    """options (live_migrate arguments, by their names or aliases) by their names: what the
    roles pass as module_defaults and per-domain arguments, so that a name and its alias
    never both reach the module. Raises MigrationOptionError for an unknown option, or an
    option given twice."""
    if not isinstance(options, dict):
        raise MigrationOptionError("%s must be a mapping of presplit.kvm.live_migrate options, got %s"
                                   % (what, type(options).__name__))
    canonical = {}
    for key, value in options.items():
        name = _CANONICAL_NAMES.get(key)
        if name is None:
            raise MigrationOptionError("%s: %r is not an option of presplit.kvm.live_migrate" % (what, key))
        if name in canonical:
            raise MigrationOptionError("%s: %s is given twice (as %s and an alias)" % (what, name, key))
        canonical[name] = value
    return canonical


def destination_uri(params):
    """The libvirt URI of the destination daemon, from an explicit URI or a host + transport."""
    if params.get("destination_uri"):
        return params["destination_uri"]
    host = params.get("destination_host")
    if not host:
        raise MigrationOptionError("destination_uri or destination_host must name the destination, got an empty value")
    return "qemu+%s://%s/system" % (params.get("transport") or "ssh", uri_host(host))


def migration_data_uri(params):
    """The URI of the migration data stream (VIR_MIGRATE_PARAM_URI), or None for libvirt's
    default (the destination's host name): migration_uri as given, or tcp:// to
    migration_address, the destination's address on a migration network."""
    if params.get("migration_address"):
        return "tcp://%s" % uri_host(params["migration_address"], "migration_address")
    return params.get("migration_uri") or None


def uri_host(host, option="destination_host"):
    """host (the value of option) as the host of a URI: a host name or an IP address and
    nothing else, so that it cannot add a user, a port, a path or URI parameters (such as
    no_verify or keyfile) to the URI the module builds."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return "[%s]" % host if address.version == 6 else host
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_HOST_LABEL_RE.match(label) for label in name.split(".")):
        raise MigrationOptionError("%s %r is not a host name or an IP address%s"
                                   % (option, host, URI_INSTEAD.get(option, "")))
    return host


def validate(params):
    """Raise MigrationOptionError naming the first problem found in params.

    params is the module's parameter dict (after Ansible's type conversion).
    """
    problem = option_problem(params, RANGES, TEXT_OPTIONS)
    if problem:
        raise MigrationOptionError(problem)
    uri = destination_uri(params)
    if not _URI_RE.match(uri):
        raise MigrationOptionError(
            "destination URI %r is not a libvirt URI such as qemu+ssh://host/system" % uri)
    if not params.get("name"):
        raise MigrationOptionError("name must be a domain name or UUID")

    data_uri = migration_data_uri(params)
    tunnelled = params.get("tunnelled")
    if tunnelled and data_uri:
        raise MigrationOptionError("migration_uri and migration_address cannot be combined with tunnelled migration:"
                                   " its data goes over the libvirt connection")
    if tunnelled and not params.get("peer_to_peer"):
        raise MigrationOptionError("tunnelled migration requires peer_to_peer")
    if tunnelled and params.get("post_copy"):
        raise MigrationOptionError("post_copy cannot be combined with tunnelled migration")
    if tunnelled and params.get("parallel_connections"):
        raise MigrationOptionError("parallel_connections cannot be combined with tunnelled migration")
    if tunnelled and params.get("tls"):
        raise MigrationOptionError("tls (QEMU native TLS) cannot be combined with tunnelled migration")
    if tunnelled and params.get("copy_storage") not in (None, "none"):
        raise MigrationOptionError("copy_storage cannot be combined with tunnelled migration: libvirt copies disks"
                                   " over NBD connections of their own, beside the migration stream")
    disks = params.get("copy_storage_disks")
    if disks is not None and (not disks or not all(disks) or len(set(disks)) != len(disks)):
        raise MigrationOptionError("copy_storage_disks must list disk targets (such as vda), each once, got %r" % disks)
    if params.get("undefine_source") and not params.get("persistent"):
        raise MigrationOptionError(
            "undefine_source without persistent would leave the domain defined nowhere")

    if not params.get("auto_converge"):
        for name in ("auto_converge_initial", "auto_converge_increment"):
            if params.get(name) is not None:
                raise MigrationOptionError("%s requires auto_converge" % name)

    action = params.get("completion_timeout_action")
    if action == "postcopy" and not params.get("post_copy"):
        raise MigrationOptionError("completion_timeout_action=postcopy requires post_copy")
    if params.get("parallel_connections") == 1:
        raise MigrationOptionError("parallel_connections must be 0 (off) or at least 2")


def migration_flags(params, lv, copy_disks=()):
    """The virDomainMigrateFlags bitmask for params; lv holds the VIR_MIGRATE_* constants.
    copy_disks: the disk targets the migration copies (domain_disks.disks_to_copy); none
    means no storage copy whatever copy_storage says (libvirt would copy every disk it
    does not know to be shared, network disks included)."""
    flags = lv.VIR_MIGRATE_LIVE | lv.VIR_MIGRATE_ABORT_ON_ERROR
    if copy_disks:
        flags |= lv.VIR_MIGRATE_NON_SHARED_INC if params.get("copy_storage") == "top" else lv.VIR_MIGRATE_NON_SHARED_DISK
    optional = (
        ("peer_to_peer", lv.VIR_MIGRATE_PEER2PEER),
        ("tunnelled", lv.VIR_MIGRATE_TUNNELLED),
        ("persistent", lv.VIR_MIGRATE_PERSIST_DEST),
        ("undefine_source", lv.VIR_MIGRATE_UNDEFINE_SOURCE),
        ("auto_converge", lv.VIR_MIGRATE_AUTO_CONVERGE),
        ("post_copy", lv.VIR_MIGRATE_POSTCOPY),
        ("tls", lv.VIR_MIGRATE_TLS),
        ("compression", lv.VIR_MIGRATE_COMPRESSED),
        ("parallel_connections", lv.VIR_MIGRATE_PARALLEL),
    )
    for name, bit in optional:
        if params.get(name):
            flags |= bit
    return flags


def migration_params(params, lv, copy_disks=()):
    """The VIR_MIGRATE_PARAM_* typed parameters for migrate3/migrateToURI3; copy_disks as
    for migration_flags.

    Only parameters the user set are passed, so libvirt's defaults apply otherwise.
    """
    typed = {}
    if copy_disks:
        # libvirt-python turns a list into repeated typed parameters for this key.
        typed[lv.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = list(copy_disks)
    data_uri = migration_data_uri(params)
    if data_uri:
        typed[lv.VIR_MIGRATE_PARAM_URI] = data_uri
    if params.get("bandwidth_mib_per_s"):
        typed[lv.VIR_MIGRATE_PARAM_BANDWIDTH] = int(params["bandwidth_mib_per_s"])
    if params.get("auto_converge_initial") is not None:
        typed[lv.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INITIAL] = int(params["auto_converge_initial"])
    if params.get("auto_converge_increment") is not None:
        typed[lv.VIR_MIGRATE_PARAM_AUTO_CONVERGE_INCREMENT] = int(params["auto_converge_increment"])
    if params.get("parallel_connections"):
        typed[lv.VIR_MIGRATE_PARAM_PARALLEL_CONNECTIONS] = int(params["parallel_connections"])
    if params.get("compression"):
        # libvirt-python turns a list into repeated typed parameters for this key.
        typed[lv.VIR_MIGRATE_PARAM_COMPRESSION] = list(params["compression"])
    if params.get("tls") and params.get("tls_destination"):
        typed[lv.VIR_MIGRATE_PARAM_TLS_DESTINATION] = params["tls_destination"]
    return typed


def data_gib(memory_bytes):
    """GiB that scale the downtime delay and completion timeout (Nova's floor of 2 GiB)."""
    return max(float(memory_bytes) / GIB, MIN_DATA_GIB)


def downtime_schedule(max_downtime_ms, steps, delay_s, memory_bytes):
    """Nova's stepped max-downtime schedule: a list of (seconds_after_start, downtime_ms).

    The first step (at 0 s) allows max_downtime / steps; each following step, delay_s
    per GiB of guest RAM later, adds an equal share until max_downtime is reached.  A
    small downtime first lets an idle guest finish with a tiny pause, and only a busy
    guest that does not converge gets a larger one.
    """
    delay = delay_s * data_gib(memory_bytes)
    base = float(max_downtime_ms) / steps
    offset = (max_downtime_ms - base) / steps
    return [(delay * i, int(round(base + offset * i))) for i in range(steps + 1)]


def completion_deadline_s(completion_timeout_s_per_gib, memory_bytes):
    """Seconds after which the completion action applies, or None if disabled."""
    if not completion_timeout_s_per_gib:
        return None
    return completion_timeout_s_per_gib * data_gib(memory_bytes)


def due_downtime(schedule, elapsed_s, applied_index):
    """The schedule step to apply now, as (index, downtime_ms), or None.

    applied_index is the index of the last step already applied (-1 for none).  If the
    poller fell behind, it jumps to the latest due step rather than replaying each one.
    """
    due = None
    for index in range(applied_index + 1, len(schedule)):
        if schedule[index][0] <= elapsed_s:
            due = (index, schedule[index][1])
        else:
            break
    return due
