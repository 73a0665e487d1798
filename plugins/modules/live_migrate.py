#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) presplit.kvm developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: live_migrate
short_description: Live-migrate one libvirt/KVM domain and monitor the migration
version_added: 0.1.0
description:
  - Live-migrates one running domain from the libvirt daemon of the host the module runs on
    (the source) to a destination libvirt daemon, with C(migrateToURI3) (peer-to-peer) or
    C(migrate3) (direct) and typed migration parameters.
  - While the migration runs, the module polls the job statistics (data processed and
    remaining, iterations, dirty rate), raises the allowed downtime step by step as OpenStack
    Nova does, and applies the completion-timeout action when the migration takes too long.
  - Returns the statistics of the completed job and a summary of the progress seen.
  - In check mode it checks, without moving anything, that the domain runs on the source, the
    destination is reachable, no domain with that name or UUID exists on the destination, the
    destination has enough free memory and can run the domain's CPU model.
  - A real peer-to-peer migration of a running domain starts at once, while the module connects
    to the destination in the background (an ssh connection takes about a second); libvirt's
    prepare phase on the destination then refuses a name clash, a CPU it cannot run or memory
    it cannot get. Direct migrations run the checks first.
  - Idempotent, a domain already running on the destination and not on the source is reported
    with C(changed=false).
  - When the migration fails or is aborted, the module verifies that the domain still runs on
    the source and removes anything the failed migration left defined on the destination, then
    fails with a message saying what happened.
author:
  - presplit.kvm developers (@presplit-kvm)
requirements:
  - libvirt-python (Debian package C(python3-libvirt)) on the source host
extends_documentation_fragment:
  - presplit.kvm.attributes
  - presplit.kvm.attributes.kvm_host
attributes:
  check_mode:
    description: Runs every pre-check and reports C(changed=true) when a migration would run.
options:
  domain:
    description: Name or UUID of the domain to migrate.
    type: str
    required: true
  source_uri:
    description: libvirt URI of the source daemon, normally the local one.
    type: str
    default: qemu:///system
  destination_uri:
    description:
      - libvirt URI of the destination daemon, for example C(qemu+ssh://h2/system).
      - Mutually exclusive with O(destination_host).
    type: str
  destination_host:
    description:
      - Destination host name; the URI is built as C(qemu+<transport>://<host>/system).
      - Mutually exclusive with O(destination_uri); one of the two is required.
    type: str
  transport:
    description: libvirt transport used with O(destination_host).
    type: str
    choices: [ssh, tcp, tls]
    default: ssh
  migration_uri:
    description:
      - URI of the migration data stream (for example C(tcp://192.0.2.12)), to pick the network
        it uses. By default libvirt uses the destination host name.
    type: str
  peer_to_peer:
    description:
      - The source libvirtd connects to the destination itself (C(VIR_MIGRATE_PEER2PEER)).
      - When false, this module drives a direct (client-managed) migration over its own
        connections to both daemons.
    type: bool
    default: true
  tunnelled:
    description: Tunnel the migration data through the libvirtd connection. Requires O(peer_to_peer).
    type: bool
    default: false
  persistent:
    description: Define the domain persistently on the destination.
    type: bool
    default: true
  undefine_source:
    description: Undefine the domain on the source once the migration succeeded. Requires O(persistent).
    type: bool
    default: true
  bandwidth:
    description: Bandwidth limit of the migration in MiB/s, C(0) for no limit.
    type: int
    default: 0
  max_downtime:
    description:
      - Largest allowed downtime in milliseconds, reached at the end of the stepped schedule.
      - The schedule starts at O(max_downtime) / O(downtime_steps) and adds an equal share every
        O(downtime_delay) seconds per GiB of guest RAM (at least 2 GiB), like Nova's
        C(live_migration_downtime), C(_steps) and C(_delay).
      - C(0) leaves the hypervisor's default downtime alone.
    type: int
    default: 500
  downtime_steps:
    description: Number of steps of the downtime schedule after the first one.
    type: int
    default: 10
  downtime_delay:
    description: Seconds per GiB of guest RAM between two steps of the downtime schedule.
    type: int
    default: 75
  auto_converge:
    description: Throttle the guest's vCPUs when the migration does not converge.
    type: bool
    default: false
  auto_converge_initial:
    description: Initial CPU throttling percentage of auto-converge. Requires O(auto_converge).
    type: int
  auto_converge_increment:
    description: Throttling increment percentage of auto-converge. Requires O(auto_converge).
    type: int
  post_copy:
    description:
      - Allow switching the migration to post-copy (C(VIR_MIGRATE_POSTCOPY)); the switch itself is
        made by O(completion_timeout_action=postcopy).
      - Once in post-copy, a failure loses the domain (its state is split between the hosts).
    type: bool
    default: false
  parallel_connections:
    description: Number of parallel migration connections, C(0) for a single one.
    type: int
    default: 0
  compression:
    description: Compression methods for the memory stream.
    type: list
    elements: str
    choices: [xbzrle, mt]
  tls:
    description: Encrypt the migration data with QEMU native TLS (C(VIR_MIGRATE_TLS)).
    type: bool
    default: false
  tls_destination:
    description: Host name expected in the destination's TLS certificate, when it differs.
    type: str
  completion_timeout:
    description:
      - Seconds per GiB of guest RAM (at least 2 GiB) the migration may take before
        O(completion_timeout_action) applies. C(0) disables the timeout.
    type: int
    default: 800
  completion_timeout_action:
    description:
      - What to do when the completion timeout is reached.
      - V(abort) cancels the migration; the domain keeps running on the source.
      - V(postcopy) switches to post-copy; requires O(post_copy).
      - V(pause) suspends the guest so that the migration completes; the destination resumes it.
    type: str
    choices: [abort, postcopy, pause]
    default: abort
  poll_interval:
    description: Seconds between two polls of the migration job statistics.
    type: float
    default: 0.5
notes:
  - The module runs on the source host and needs a libvirt connection to the destination too.
  - With O(peer_to_peer=true) the source libvirtd resolves and authenticates to the destination
    URI itself (for C(qemu+ssh) it uses root's ssh keys on the source host).
  - The CPU check uses C(compareHypervisorCPU) on the destination; a domain without a CPU model
    (QEMU's default CPU) is reported as C(skipped).
"""

EXAMPLES = r"""
- name: Migrate web1 to h2 over ssh, peer-to-peer
  presplit.kvm.live_migrate:
    domain: web1
    destination_host: h2

- name: Migrate a busy guest with auto-converge and a bandwidth cap, abort after 300 s/GiB
  presplit.kvm.live_migrate:
    domain: 0ed4c3a4-4a1e-4bb0-9f0c-6b3f3f6cd1a1
    destination_uri: qemu+tcp://h3/system
    bandwidth: 1000
    auto_converge: true
    auto_converge_initial: 20
    auto_converge_increment: 10
    completion_timeout: 300
    completion_timeout_action: abort

- name: Switch to post-copy if pre-copy has not converged after 120 s/GiB
  presplit.kvm.live_migrate:
    domain: db1
    destination_host: h2
    post_copy: true
    completion_timeout: 120
    completion_timeout_action: postcopy

- name: Only check that db1 could move to h3
  presplit.kvm.live_migrate:
    domain: db1
    destination_host: h3
  check_mode: true
"""

RETURN = r"""
domain:
  description: Name of the domain.
  returned: always
  type: str
  sample: g1
uuid:
  description: UUID of the domain.
  returned: always
  type: str
  sample: 0ed4c3a4-4a1e-4bb0-9f0c-6b3f3f6cd1a1
source_uri:
  description: libvirt URI of the source.
  returned: always
  type: str
  sample: qemu:///system
destination_uri:
  description: libvirt URI of the destination.
  returned: always
  type: str
  sample: qemu+ssh://h2/system
already_migrated:
  description: True when the domain was already running on the destination and not on the source.
  returned: always
  type: bool
  sample: false
checks:
  description: Results of the destination checks.
  returned: in check mode and for direct migrations, when the domain runs on the source
  type: dict
  contains:
    memory_bytes:
      description: Maximum memory of the domain.
      type: int
    destination_free_memory_bytes:
      description: Free memory on the destination.
      type: int
    cpu:
      description: CPU comparison on the destination, C(result) and C(detail).
      type: dict
  sample:
    memory_bytes: 134217728
    destination_free_memory_bytes: 20000000000
    cpu: {result: skipped, detail: domain defines no CPU model}
destination:
  description: The domain as found on the destination afterwards (name, uuid, active, persistent, state).
  returned: when the domain runs on the destination
  type: dict
  sample: {name: g1, uuid: 0ed4c3a4-4a1e-4bb0-9f0c-6b3f3f6cd1a1, active: true, persistent: true, state: running}
migration:
  description: Figures of the completed migration job, with unit-suffixed names.
  returned: when a migration ran and succeeded
  type: dict
  sample:
    total_time_ms: 2310
    downtime_ms: 120
    setup_time_ms: 8
    iterations: 3
    data_transferred_bytes: 140000000
    data_total_bytes: 135000000
    memory_bps: 120000000
job_stats:
  description: Raw C(VIR_DOMAIN_JOB_STATS_COMPLETED) statistics as libvirt returns them.
  returned: when a migration ran and succeeded
  type: dict
  sample: {time_elapsed: 2310, downtime: 120, memory_iteration: 3}
progress:
  description: Summary of the job statistics polled while the migration ran.
  returned: when a migration ran
  type: dict
  contains:
    samples:
      description: Number of polls that saw an active job.
      type: int
    max_iteration:
      description: Highest memory iteration seen.
      type: int
    peak_dirty_rate_pages_s:
      description: Highest dirty rate seen, in pages per second.
      type: int
    last_data_remaining:
      description: Bytes remaining at the last poll.
      type: int
    history:
      description: Up to 20 evenly spread samples (C(at_s) plus libvirt job statistics keys).
      type: list
      elements: dict
  sample: {samples: 4, max_iteration: 2, history: []}
source_mappings:
  description:
    - The guest's mappings on the source as KVM counts them (through a duplicate of QEMU's VM fd, the stats fd
      on a patched kernel, debugfs otherwise; needs root), read before the migration and at every poll of
      its job. KVM makes no huge mapping while dirty logging is on, so the fall of the huge count between
      the first read and the last one taken while the job ran is the huge mappings split inside the
      migration (by the dirty-log enable and the CLEARs of its passes, with the vCPUs waiting); 0 after a
      pre-split with hold.
    - A migration that ends between two polls may miss the last splits; C(last_read) says when it was taken.
  returned: when a migration ran
  type: dict
  contains:
    source:
      description: C(stats-fd) or C(debugfs); null when the counts could not be read.
      type: str
    at_start:
      description: C(pages_4k), C(pages_2m), C(pages_1g) before the migration started; null when unreadable.
      type: dict
    last_read:
      description:
        - The counts at the last poll of the running job, with C(at_s) (seconds into the migration) and
          C(memory_iteration) (the job's pass then); null when no poll read them.
      type: dict
    reads:
      description: Polls that read the counts.
      type: int
    huge_split:
      description:
        - 2 MiB + 1 GiB mappings at the start minus those at the last read; null when either is missing.
      type: int
    error:
      description: Why the counts could not be read (for example a TCG domain has no VM fd); null otherwise.
      type: str
  sample:
    source: stats-fd
    at_start: {pages_4k: 476, pages_2m: 121, pages_1g: 0}
    last_read: {pages_4k: 62428, pages_2m: 0, pages_1g: 0, at_s: 12.5, memory_iteration: 2}
    reads: 24
    huge_split: 121
    error: null
actions:
  description: What the monitor did during the migration (downtime steps, timeout action).
  returned: when a migration ran
  type: list
  elements: dict
  sample: [{at_s: 0.5, action: max_downtime, value: 50}]
downtime_schedule:
  description: The stepped max-downtime schedule as [seconds after start, downtime in ms] pairs.
  returned: when a migration ran
  type: list
  elements: list
  sample: [[0.0, 50], [150.0, 95]]
elapsed_s:
  description: Wall time of the migration call, in seconds.
  returned: when a migration ran
  type: float
  sample: 2.41
started_at:
  description:
    - When the migration call started, in seconds since the epoch by the source host's clock; with RV(elapsed_s)
      it places the migration on a timeline (the run report does).
  returned: when a migration ran
  type: float
  sample: 1795629472.613
"""

import threading
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_client
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import (
    LibvirtClientError,
    domain_presence,
    find_domain,
    open_connection,
)
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.domain import DEFAULT_URI
from ansible_collections.presplit.kvm.plugins.module_utils.migration_mappings import SourceMappings
from ansible_collections.presplit.kvm.plugins.module_utils.migration_monitor import (
    MigrationMonitor,
    completed_summary,
    progress_summary,
)
from ansible_collections.presplit.kvm.plugins.module_utils.migration_options import (
    COMPLETION_TIMEOUT_ACTIONS,
    COMPRESSION_METHODS,
    TRANSPORTS,
    MigrationOptionError,
    completion_deadline_s,
    data_gib,
    destination_uri,
    downtime_schedule,
    migration_flags,
    migration_params,
    validate,
)

ARGUMENT_SPEC = dict(
    domain=dict(type="str", required=True),
    source_uri=dict(type="str", default=DEFAULT_URI),
    destination_uri=dict(type="str"),
    destination_host=dict(type="str"),
    transport=dict(type="str", choices=list(TRANSPORTS), default="ssh"),
    migration_uri=dict(type="str"),
    peer_to_peer=dict(type="bool", default=True),
    tunnelled=dict(type="bool", default=False),
    persistent=dict(type="bool", default=True),
    undefine_source=dict(type="bool", default=True),
    bandwidth=dict(type="int", default=0),
    max_downtime=dict(type="int", default=500),
    downtime_steps=dict(type="int", default=10),
    downtime_delay=dict(type="int", default=75),
    auto_converge=dict(type="bool", default=False),
    auto_converge_initial=dict(type="int"),
    auto_converge_increment=dict(type="int"),
    post_copy=dict(type="bool", default=False),
    parallel_connections=dict(type="int", default=0),
    compression=dict(type="list", elements="str", choices=list(COMPRESSION_METHODS)),
    tls=dict(type="bool", default=False),
    tls_destination=dict(type="str"),
    completion_timeout=dict(type="int", default=800),
    completion_timeout_action=dict(type="str", choices=list(COMPLETION_TIMEOUT_ACTIONS), default="abort"),
    poll_interval=dict(type="float", default=0.5),
)


class MigrationFailed(Exception):
    """The migration did not happen; the message says why and where the domain is."""


def preflight_checks(source_domain, dest_conn):
    """Checks that can fail without moving anything; raises MigrationFailed."""
    memory = libvirt_client.domain_memory_bytes(source_domain)
    free = libvirt_client.free_memory_bytes(dest_conn)
    if free < memory:
        raise MigrationFailed("destination %s has %d MiB free, domain %s needs %d MiB"
                              % (dest_conn.getURI(), free // 2 ** 20, source_domain.name(), memory // 2 ** 20))
    cpu = libvirt_client.cpu_compatibility(source_domain, dest_conn)
    if cpu["result"] in ("incompatible", "error"):
        raise MigrationFailed("destination %s cannot run the CPU of domain %s (%s: %s)"
                              % (dest_conn.getURI(), source_domain.name(), cpu["detail"], cpu["result"]))
    return {"memory_bytes": memory, "destination_free_memory_bytes": free, "cpu": cpu}


def destination_clash(dest_conn, source_domain):
    """Describe a domain on the destination sharing the UUID or name, or return None."""
    for key in (source_domain.UUIDString(), source_domain.name()):
        found = find_domain(dest_conn, key)
        if found is not None:
            return "domain %s (UUID %s, %s) already exists on the destination %s" % (
                found.name(), found.UUIDString(), libvirt_client.domain_state(found), dest_conn.getURI())
    return None


def start_migration_call(module, uuid, dest_conn, dest_uri, flags, typed):
    """The blocking migration call, on a source connection of its own.

    The monitor polls the job and applies the timeout action through the module's source
    connection while this call blocks in another thread.  On one shared connection,
    libvirt 9.0's client left such a second call (abortJob, jobStats) waiting until the
    migration ended, so an abort at the completion timeout never reached libvirtd.
    """
    domain = open_connection(module.params["source_uri"], "source").lookupByUUIDString(uuid)
    if module.params["peer_to_peer"]:
        return lambda: domain.migrateToURI3(dest_uri, typed, flags)
    return lambda: domain.migrate3(dest_conn, typed, flags)


def completed_job_stats(source_domain, dest_conn, uuid):
    """Completed-job statistics: libvirt keeps them on the destination domain, and on the
    source domain while it is still defined there."""
    lv = libvirt_client.libvirt
    candidates = [find_domain(dest_conn, uuid), source_domain]
    for domain in candidates:
        if domain is None:
            continue
        try:
            stats = domain.jobStats(lv.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except lv.libvirtError:
            continue
        if stats.get("type") == lv.VIR_DOMAIN_JOB_COMPLETED:
            return stats
    return {}


# After a failure, new connections tried to check the destination, this far apart.
DESTINATION_CHECK_ATTEMPTS = 3
DESTINATION_CHECK_DELAY_S = 2.0


class DestinationProbe(threading.Thread):
    """Connect to the destination and look the domain up, in the background.

    A connection over ssh takes about a second; a real peer-to-peer migration does not
    need it to start (the source libvirtd makes its own), so the module only waits for
    it before the checks that need it and after the migration.
    """

    def __init__(self, uri, name_or_uuid):
        super(DestinationProbe, self).__init__(name="destination-probe")
        self.daemon = True
        self.uri = uri
        self._name_or_uuid = name_or_uuid
        self.conn = None
        self.domain_before = None
        self.error = None

    def run(self):
        try:
            self.conn = open_connection(self.uri, "destination")
            self.domain_before = domain_presence(find_domain(self.conn, self._name_or_uuid))
        except (LibvirtClientError, libvirt_client.libvirt.libvirtError) as exc:
            self.error = str(exc)

    def connection(self):
        """The destination connection, once ready; raises LibvirtClientError if it failed."""
        self.join()
        if self.error is not None:
            raise LibvirtClientError(self.error)
        return self.conn


def destination_after_failure(probe, attempts=DESTINATION_CHECK_ATTEMPTS, delay_s=DESTINATION_CHECK_DELAY_S):
    """A connection to the destination to check it after a failure: the probe's, or a new
    one when the probe's failed; the failure that broke the migration (an ssh session that
    dropped, a daemon restarting) may have broken the probe's too, and where the domain is
    matters more now than before."""
    try:
        return probe.connection()
    except LibvirtClientError as exc:
        error = exc
    for _attempt in range(attempts):
        time.sleep(delay_s)
        try:
            return open_connection(probe.uri, "destination")
        except LibvirtClientError as exc:
            error = exc
    raise error


def recover_after_failure(source_conn, probe, uuid, outcome, created_nothing_before):
    """After a failed migration: resume a guest we paused, drop an inactive definition the
    migration left on the destination, and check where the domain is. Returns a sentence."""
    lv = libvirt_client.libvirt
    notes = []
    source_domain = find_domain(source_conn, uuid)
    if source_domain is not None and outcome.paused_by_monitor and source_domain.state()[0] == lv.VIR_DOMAIN_PAUSED:
        source_domain.resume()
        notes.append("resumed the guest the timeout action had paused")
    source_state = libvirt_client.domain_state(source_domain) if source_domain is not None else "absent"
    try:
        dest_conn = destination_after_failure(probe)
    except LibvirtClientError as exc:
        notes.append("domain is %s on the source; the destination could not be checked (%s)" % (source_state, exc))
        return "; ".join(notes)
    leftover = find_domain(dest_conn, uuid)
    if (leftover is not None and not leftover.isActive() and created_nothing_before
            and source_domain is not None and source_domain.isActive()):
        leftover.undefine()
        notes.append("undefined the inactive copy the migration left on the destination")
        leftover = find_domain(dest_conn, uuid)
    dest_state = libvirt_client.domain_state(leftover) if leftover is not None else "absent"
    notes.append("domain is %s on the source and %s on the destination" % (source_state, dest_state))
    return "; ".join(notes)


def describe_failure(module, outcome, deadline_s, memory_bytes, probe):
    if outcome.timed_out and outcome.timeout_action == "abort":
        return ("migration did not complete within the completion timeout of %.0f s (completion_timeout %d s/GiB"
                " x %.1f GiB counted for %d MiB of RAM) and was aborted: %s"
                % (deadline_s, module.params["completion_timeout"], data_gib(memory_bytes),
                   memory_bytes // 2 ** 20, outcome.error))
    prefix = "migration failed"
    if outcome.timed_out:
        prefix += " after the completion timeout action %s" % outcome.timeout_action
    if probe.error is not None:
        # Say first what the operator has to fix; libvirt's own text follows.
        prefix = "%s; %s" % (probe.error, prefix)
    return "%s: %s" % (prefix, outcome.error)


def check_destination(params, result, source_domain, dest_conn):
    """Idempotence and the destination-side checks. Returns True if already migrated."""
    dest_uri = result["destination_uri"]
    dest_domain = find_domain(dest_conn, source_domain.UUIDString() if source_domain else params["domain"])
    source_active = source_domain is not None and source_domain.isActive()
    if dest_domain is not None and dest_domain.isActive():
        if source_active:
            raise MigrationFailed("domain %s is running on both the source and the destination %s"
                                  % (params["domain"], dest_uri))
        result.update(already_migrated=True, domain=dest_domain.name(), uuid=dest_domain.UUIDString(),
                      destination=domain_presence(dest_domain))
        return True
    if source_domain is None:
        raise MigrationFailed("domain %s not found on the source %s (nor running on the destination %s)"
                              % (params["domain"], params["source_uri"], dest_uri))
    if not source_active:
        raise MigrationFailed("domain %s is %s on the source; live migration needs a running domain"
                              % (source_domain.name(), libvirt_client.domain_state(source_domain)))
    clash = destination_clash(dest_conn, source_domain)
    if clash:
        raise MigrationFailed(clash)
    result["checks"] = preflight_checks(source_domain, dest_conn)
    return False


def run(module):
    params = module.params
    result = dict(changed=False, already_migrated=False, source_uri=params["source_uri"])
    validate(params)
    dest_uri = destination_uri(params)
    result["destination_uri"] = dest_uri
    lv = libvirt_client.libvirt
    libvirt_client.quiet_libvirt()

    source_conn = open_connection(params["source_uri"], "source")
    source_domain = find_domain(source_conn, params["domain"])
    probe = DestinationProbe(dest_uri, source_domain.UUIDString() if source_domain else params["domain"])
    probe.start()
    if source_domain is not None:
        result.update(domain=source_domain.name(), uuid=source_domain.UUIDString())
    # A real peer-to-peer migration of a running domain starts at once: libvirt's prepare
    # phase on the destination refuses a clash, a CPU it cannot run or memory it cannot
    # get, and the destination checks run in check mode (the role's pre-check).
    start_now = (source_domain is not None and source_domain.isActive() and params["peer_to_peer"]
                 and not module.check_mode)
    if start_now:
        memory = libvirt_client.domain_memory_bytes(source_domain)
    else:
        if check_destination(params, result, source_domain, probe.connection()):
            return result
        memory = result["checks"]["memory_bytes"]
    result["changed"] = True
    if module.check_mode:
        return result

    schedule = []
    if params["max_downtime"]:
        schedule = downtime_schedule(params["max_downtime"], params["downtime_steps"],
                                     params["downtime_delay"], memory)
    deadline_s = completion_deadline_s(params["completion_timeout"], memory)
    # The guest's huge mappings split inside the migration (0 after a pre-split with hold).
    mappings = SourceMappings.open(result["domain"], result["uuid"])
    try:
        mappings.start()
        started_at = time.time()
        call = start_migration_call(module, result["uuid"], probe.conn, dest_uri,
                                    migration_flags(params, lv), migration_params(params, lv))
        monitor = MigrationMonitor(source_domain, call, lv, params["poll_interval"], schedule, deadline_s,
                                   params["completion_timeout_action"], on_sample=mappings.sample)
        outcome = monitor.run()
    finally:
        result["source_mappings"] = mappings.finish()
    result.update(progress=progress_summary(outcome.samples), actions=outcome.actions,
                  downtime_schedule=[[round(at, 3), ms] for at, ms in schedule],
                  started_at=round(started_at, 3), elapsed_s=round(outcome.elapsed_s, 3))
    if outcome.error is not None:
        result["changed"] = outcome.paused_by_monitor or outcome.post_copy_started
        probe.join()
        created_nothing_before = probe.domain_before is None or probe.domain_before["active"]
        state = recover_after_failure(source_conn, probe, result["uuid"], outcome, created_nothing_before)
        raise MigrationFailed("%s; %s" % (describe_failure(module, outcome, deadline_s, memory, probe), state),
                              result)
    dest_conn = probe.connection()
    stats = completed_job_stats(source_domain, dest_conn, result["uuid"])
    result.update(job_stats=stats, migration=completed_summary(stats),
                  destination=domain_presence(find_domain(dest_conn, result["uuid"])))
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if libvirt_client.LIBVIRT_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("libvirt-python (python3-libvirt)"),
                         exception=str(libvirt_client.LIBVIRT_IMPORT_ERROR))
    try:
        result = run(module)
    except MigrationOptionError as exc:
        module.fail_json(msg="invalid options: %s" % exc)
    except MigrationFailed as exc:
        partial = exc.args[1] if len(exc.args) > 1 else {}
        module.fail_json(msg=exc.args[0], **partial)
    except LibvirtClientError as exc:
        module.fail_json(msg=str(exc))
    except libvirt_client.libvirt.libvirtError as exc:
        module.fail_json(msg="libvirt error: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
