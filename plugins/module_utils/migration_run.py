# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One live migration as presplit.kvm.live_migrate runs it: the checks, the destination
probe, the monitored migration call, the recovery after a failure and the failure text.

``run(params, check_mode)`` takes the module's parameters (ARGUMENT_SPEC) and returns its
result, or raises MigrationFailed (with the partial result), MigrationOptionError,
LibvirtClientError or libvirt.libvirtError; the module only maps those to fail_json.
"""

import threading
import time

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_client
from ansible_collections.presplit.kvm.plugins.module_utils.domain_disks import DiskProblem, disks_to_copy
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import (
    LibvirtClientError,
    domain_presence,
    find_domain,
    open_connection,
)
from ansible_collections.presplit.kvm.plugins.module_utils.migration_mappings import SourceMappings
from ansible_collections.presplit.kvm.plugins.module_utils.migration_monitor import (
    MigrationMonitor,
    completed_summary,
    progress_summary,
)
from ansible_collections.presplit.kvm.plugins.module_utils.migration_options import (
    completion_deadline_s,
    data_gib,
    destination_uri,
    downtime_schedule,
    migration_data_uri,
    migration_flags,
    migration_params,
    validate,
)
from ansible_collections.presplit.kvm.plugins.module_utils.storage_copy import DestinationImages, source_disks


class MigrationFailed(Exception):
    """The migration did not happen; the message says why and where the domain is."""


class StepClock:
    """Wall time of the module's steps, in seconds, each from the end of the one before
    (``lap``): where the module spends its time besides the migration call itself."""

    def __init__(self):
        self.steps = {}
        self._last = time.monotonic()

    def lap(self, step):
        now = time.monotonic()
        self.steps[step] = round(now - self._last, 3)
        self._last = now


def preflight_checks(source_domain, dest_conn):
    """Checks that can fail without moving anything; raises MigrationFailed."""
    memory = libvirt_client.domain_memory_bytes(source_domain)
    room = libvirt_client.destination_memory(source_domain, dest_conn)
    if room["available_bytes"] is not None and room["available_bytes"] < memory:
        raise MigrationFailed("destination %s has %d MiB of %s, domain %s needs %d MiB"
                              % (dest_conn.getURI(), room["available_bytes"] // 2 ** 20, room["what"],
                                 source_domain.name(), memory // 2 ** 20))
    cpu = libvirt_client.cpu_compatibility(source_domain, dest_conn)
    if cpu["result"] in ("incompatible", "error"):
        raise MigrationFailed("destination %s cannot run the CPU of domain %s (%s: %s)"
                              % (dest_conn.getURI(), source_domain.name(), cpu["detail"], cpu["result"]))
    return {"memory_bytes": memory, "destination_free_memory_bytes": room["available_bytes"],
            "destination_memory": room["what"], "cpu": cpu}


def destination_clash(dest_conn, source_domain):
    """Describe a domain on the destination sharing the UUID or name, or return None."""
    for key in (source_domain.UUIDString(), source_domain.name()):
        found = find_domain(dest_conn, key)
        if found is not None:
            return "domain %s (UUID %s, %s) already exists on the destination %s" % (
                found.name(), found.UUIDString(), libvirt_client.domain_state(found), dest_conn.getURI())
    return None


def start_migration_call(params, uuid, dest_conn, dest_uri, flags, typed):
    """The blocking migration call, on a source connection of its own.

    The monitor polls the job and applies the timeout action through the module's source
    connection while this call blocks in another thread.  On one shared connection,
    libvirt 9.0's client left such a second call (abortJob, jobStats) waiting until the
    migration ended, so an abort at the completion timeout never reached libvirtd.
    """
    domain = open_connection(params["uri"], "source").lookupByUUIDString(uuid)
    if params["peer_to_peer"]:
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
        conn = probe.connection()
        # Closed by keepalive: the destination stopped answering during the migration.
        if conn.isAlive():
            return conn
        error = LibvirtClientError("the connection to the destination libvirt %s was lost" % probe.uri)
    except LibvirtClientError as exc:
        error = exc
    except libvirt_client.libvirt.libvirtError as exc:
        error = LibvirtClientError("the connection to the destination libvirt %s was lost: %s" % (probe.uri, exc))
    for _attempt in range(attempts):
        time.sleep(delay_s)
        try:
            return open_connection(probe.uri, "destination")
        except LibvirtClientError as exc:
            error = exc
    raise error


def plan_storage(params, result, source_domain, dest_conn):
    """The disk targets the migration copies and their DestinationImages, with
    result["storage"] filled in; raises MigrationFailed (nothing moved) when the domain's
    disks and copy_storage do not make a safe migration."""
    disks = source_disks(source_domain)
    try:
        targets = disks_to_copy(params["copy_storage"], params["copy_storage_disks"], disks)
        images = DestinationImages(dest_conn, [disk for disk in disks if disk.target in targets])
        if targets and params["copy_storage"] == "top":
            images.check_top()
    except DiskProblem as exc:
        raise MigrationFailed("domain %s: %s; nothing was migrated" % (source_domain.name(), exc), result)
    result["storage"] = {
        "copy_storage": params["copy_storage"],
        "copied_disks": targets,
        "disks": [{"target": disk.target, "type": disk.kind, "path": disk.path, "filesystem": disk.filesystem,
                   "readonly": disk.readonly, "shareable": disk.shareable, "copied": disk.target in targets}
                  for disk in disks],
        "created_on_destination": [],
    }
    return targets, images


def drop_created_images(source_conn, dest_conn, uuid, images):
    """After a failure: delete the disk images the attempt created on the destination, but
    only while the domain runs on the source and not on the destination (else they may hold
    its only current disks). Returns what was done, as sentences."""
    try:
        source_domain = find_domain(source_conn, uuid)
        dest_domain = find_domain(dest_conn, uuid)
    except LibvirtClientError as exc:
        return ["left the disk images the migration created on the destination: %s" % exc]
    if source_domain is None or not source_domain.isActive() or (dest_domain is not None and dest_domain.isActive()):
        return []
    return images.remove_created(dest_conn)


def recover_after_failure(source_conn, probe, uuid, outcome, created_nothing_before, images):
    """After a failed migration: resume a guest we paused, drop an inactive definition and
    the disk images the migration left on the destination, and check where the domain is.
    Returns a sentence."""
    lv = libvirt_client.libvirt
    notes = []
    source_domain = find_domain(source_conn, uuid)
    if source_domain is not None and outcome.paused_by_monitor and source_domain.state()[0] == lv.VIR_DOMAIN_PAUSED:
        source_domain.resume()
        notes.append("resumed the guest the timeout action had paused")
    source_state = libvirt_client.domain_state(source_domain) if source_domain is not None else "absent"
    try:
        dest_conn = destination_after_failure(probe)
        leftover = find_domain(dest_conn, uuid)
        if (leftover is not None and not leftover.isActive() and created_nothing_before
                and source_domain is not None and source_domain.isActive()):
            leftover.undefine()
            notes.append("undefined the inactive copy the migration left on the destination")
            leftover = find_domain(dest_conn, uuid)
        notes.extend(drop_created_images(source_conn, dest_conn, uuid, images))
    except (LibvirtClientError, lv.libvirtError) as exc:
        # (a destination that stops answering now: keepalive ends the wait)
        notes.append("domain is %s on the source; the destination could not be checked (%s)" % (source_state, exc))
        return "; ".join(notes)
    dest_state = libvirt_client.domain_state(leftover) if leftover is not None else "absent"
    notes.append("domain is %s on the source and %s on the destination" % (source_state, dest_state))
    return "; ".join(notes)


def describe_failure(params, outcome, deadline_s, memory_bytes, probe):
    if outcome.stalled is not None:
        return ("migration aborted after %d s without progress (progress_timeout_s): the data remaining last reached"
                " a new low (%d MiB) %.0f s into the migration, the abort came at %.0f s: %s"
                % (params["progress_timeout_s"], outcome.stalled["lowest_remaining_bytes"] // 2 ** 20,
                   outcome.stalled["progress_at_s"], outcome.stalled["at_s"], outcome.error))
    if outcome.timed_out and outcome.timeout_action == "abort":
        return ("migration did not complete within the completion timeout of %.0f s (completion_timeout_s_per_gib"
                " %d x %.1f GiB counted for %d MiB of RAM) and was aborted: %s"
                % (deadline_s, params["completion_timeout_s_per_gib"], data_gib(memory_bytes),
                   memory_bytes // 2 ** 20, outcome.error))
    prefix = "migration failed"
    if outcome.timed_out:
        prefix += " after the completion timeout action %s" % outcome.timeout_action
    data_uri = migration_data_uri(params)
    if data_uri:
        # libvirt's own text rarely names it (peer-to-peer: "End of file while reading data").
        prefix += " (data stream to %s)" % data_uri
    if probe.error is not None:
        # Say first what the operator has to fix; libvirt's own text follows.
        prefix = "%s; %s" % (probe.error, prefix)
    return "%s: %s" % (prefix, outcome.error)


def check_destination(params, result, source_domain, dest_conn):
    """Idempotence and the destination-side checks. Returns True if already migrated."""
    dest_uri = result["destination_uri"]
    dest_domain = find_domain(dest_conn, source_domain.UUIDString() if source_domain else params["name"])
    source_active = source_domain is not None and source_domain.isActive()
    if dest_domain is not None and dest_domain.isActive():
        if source_active:
            raise MigrationFailed("domain %s is running on both the source and the destination %s"
                                  % (params["name"], dest_uri))
        result.update(already_migrated=True, domain=dest_domain.name(), uuid=dest_domain.UUIDString(),
                      destination=domain_presence(dest_domain))
        return True
    if source_domain is None:
        raise MigrationFailed("domain %s not found on the source %s (nor running on the destination %s)"
                              % (params["name"], params["uri"], dest_uri))
    if not source_active:
        raise MigrationFailed("domain %s is %s on the source; live migration needs a running domain"
                              % (source_domain.name(), libvirt_client.domain_state(source_domain)))
    clash = destination_clash(dest_conn, source_domain)
    if clash:
        raise MigrationFailed(clash)
    result["checks"] = preflight_checks(source_domain, dest_conn)
    return False


def run(params, check_mode):
    """The module's result for ``params``; see the module docstring for what it raises."""
    result = dict(changed=False, already_migrated=False, source_uri=params["uri"])
    clock = StepClock()
    result["timings_s"] = clock.steps
    validate(params)
    dest_uri = destination_uri(params)
    result["destination_uri"] = dest_uri
    result["migration_uri"] = migration_data_uri(params)
    lv = libvirt_client.libvirt

    source_conn = open_connection(params["uri"], "source")
    source_domain = find_domain(source_conn, params["name"])
    # The destination connection (about a second over ssh) opens while the source is read.
    probe = DestinationProbe(dest_uri, source_domain.UUIDString() if source_domain else params["name"])
    probe.start()
    if source_domain is not None:
        result.update(domain=source_domain.name(), uuid=source_domain.UUIDString())
    clock.lap("source")
    # Every migration checks the destination first, whoever called the module: libvirt's
    # prepare phase refuses an active namesake, but neither a stale inactive definition
    # nor memory the destination does not have (THP guest RAM is allocated as it arrives).
    try:
        dest_conn = probe.connection()
    except LibvirtClientError as exc:
        if source_domain is None:
            # Gone from the source: it may run on that destination (a post-check after a
            # migration, when the destination then stopped answering), or nowhere.
            raise MigrationFailed("%s; domain %s is not on the source and the destination cannot be checked"
                                  % (exc, params["name"]), result)
        raise MigrationFailed("%s; domain is %s on the source, nothing was migrated"
                              % (exc, libvirt_client.domain_state(source_domain)), result)
    clock.lap("destination_wait")
    already_migrated = check_destination(params, result, source_domain, dest_conn)
    if not already_migrated:
        copy_disks, images = plan_storage(params, result, source_domain, dest_conn)
    clock.lap("checks")
    if already_migrated:
        return result
    memory = result["checks"]["memory_bytes"]
    result["changed"] = True
    if check_mode:
        return result
    if copy_disks and params["copy_storage"] == "top":
        images.create_top(source_domain)
        result["storage"]["created_on_destination"] = images.created_paths()

    schedule = []
    if params["max_downtime_ms"]:
        schedule = downtime_schedule(params["max_downtime_ms"], params["downtime_steps"],
                                     params["downtime_delay_s_per_gib"], memory)
    deadline_s = completion_deadline_s(params["completion_timeout_s_per_gib"], memory)
    # The guest's huge mappings split inside the migration (0 after a pre-split with hold).
    mappings = SourceMappings.open(result["domain"], result["uuid"])
    try:
        mappings.start()
        clock.lap("mappings")
        started_at = time.time()
        call = start_migration_call(params, result["uuid"], probe.conn, dest_uri,
                                    migration_flags(params, lv, copy_disks), migration_params(params, lv, copy_disks))
        monitor = MigrationMonitor(source_domain, call, lv, params["poll_interval_s"], schedule, deadline_s,
                                   params["completion_timeout_action"], on_sample=mappings.sample,
                                   progress_timeout_s=params["progress_timeout_s"] or None)
        outcome = monitor.run()
        clock.lap("migration")
    except Exception:
        # Before the migration could start (the source connection of its call, say).
        drop_created_images(source_conn, probe.conn, result["uuid"], images)
        raise
    finally:
        result["source_mappings"] = mappings.finish()
    result.update(progress=progress_summary(outcome.samples), actions=outcome.actions,
                  downtime_schedule=[[round(at, 3), ms] for at, ms in schedule],
                  started_at=round(started_at, 3), elapsed_s=round(outcome.elapsed_s, 3))
    if outcome.error is not None:
        result["changed"] = outcome.paused_by_monitor or outcome.post_copy_started
        probe.join()
        created_nothing_before = probe.domain_before is None or probe.domain_before["active"]
        state = recover_after_failure(source_conn, probe, result["uuid"], outcome, created_nothing_before, images)
        raise MigrationFailed("%s; %s" % (describe_failure(params, outcome, deadline_s, memory, probe), state),
                              result)
    dest_conn = probe.connection()
    stats = completed_job_stats(source_domain, dest_conn, result["uuid"])
    result.update(job_stats=stats, migration=completed_summary(stats),
                  destination=domain_presence(find_domain(dest_conn, result["uuid"])))
    clock.lap("after")
    return result
