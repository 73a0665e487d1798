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
  - Before any migration, and alone in check mode, it checks without moving anything that the
    domain runs on the source, the destination is reachable, no domain with that name or UUID
    exists on the destination, the destination has the memory the domain needs (free huge pages
    of its page size for a hugetlbfs-backed domain, else free, buffer and page-cache memory) and
    can run the domain's CPU model.
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
  name:
    description: Name or UUID of the domain to migrate. Control characters are refused, in every text option.
    type: str
    required: true
    aliases: [domain]
  uri:
    description:
      - libvirt URI of the source daemon, normally the local one.
      - Set for every libvirt module at once with C(module_defaults) and C(group/presplit.kvm.libvirt).
    type: str
    default: qemu:///system
    aliases: [source_uri]
  destination_uri:
    description:
      - libvirt URI of the destination daemon, for example C(qemu+ssh://h2/system).
      - Mutually exclusive with O(destination_host).
    type: str
  destination_host:
    description:
      - Destination host name or IP address; the URI is built as C(qemu+<transport>://<host>/system).
      - Anything else (a user, a port, a path, URI parameters) is refused; give O(destination_uri) for those.
      - Mutually exclusive with O(destination_uri); one of the two is required.
    type: str
  transport:
    description: libvirt transport used with O(destination_host).
    type: str
    choices: [ssh, tcp, tls]
    default: ssh
  migration_uri:
    description:
      - URI of the migration data stream (for example C(tcp://192.0.2.12:49152)), to pick the network
        it uses. By default libvirt uses the destination host name.
      - Mutually exclusive with O(migration_address). Neither can be combined with O(tunnelled), whose data
        goes over the libvirt connection.
    type: str
  migration_address:
    description:
      - The destination's address on a migration network separate from the management one, a host name or
        an IP address and nothing else. The data stream goes to C(tcp://<migration_address>) on a port the
        destination's libvirtd picks. The libvirt connection itself still goes to O(destination_host).
      - The live_migration and rolling_maintenance roles set it from the destination's host variable
        C(presplit_kvm_migration_address) when the inventory gives one.
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
  copy_storage:
    description:
      - Copy the domain's disks to the destination during the migration, for guests on storage the destination
        cannot see (local qcow2 or raw files).
      - V(none) copies nothing, and refuses a domain with a writable disk on a filesystem of the source alone (anything
        but NFS, CIFS/SMB, CephFS, GlusterFS, GFS2, OCFS2, GPFS, BeeGFS, AFS, Quobyte, as libvirt judges it), since the
        guest would then run over whatever file has that path on the destination.
      - V(all) copies every image of each disk's chain into one image on the destination (C(VIR_MIGRATE_NON_SHARED_DISK));
        libvirt creates it in the destination's storage pool whose target is the image's directory, or writes into an
        image that exists there already.
      - V(top) copies only each disk's top qcow2 image (C(VIR_MIGRATE_NON_SHARED_INC)); the destination must have the
        backing images at the same paths (an image cache), and a storage pool whose target is the top image's
        directory, where the module creates the top image first. An image already there is refused.
      - Without O(copy_storage_disks) the disks copied are the writable files on a filesystem of the source alone; network
        disks and block devices (assumed shared, as on a SAN) are never copied unless listed there.
      - After a failed migration the module deletes the images it and libvirt created on the destination (those it saw
        missing before, through a storage pool). After a successful one the source's images stay on the source.
      - Cannot be combined with O(tunnelled).
    type: str
    choices: [none, all, top]
    default: none
  copy_storage_disks:
    description:
      - The disk targets to copy (for example C([vda, vdb])) instead of every disk on a local filesystem, for a block device
        that is local to the source (LVM; the destination must have a device at the same path). Must include every
        writable disk on a local filesystem. Requires O(copy_storage) V(all) or V(top).
    type: list
    elements: str
  bandwidth_mib_per_s:
    description: Bandwidth limit of the migration in MiB/s, 0 to 1048576; C(0) for no limit.
    type: int
    default: 0
    aliases: [bandwidth]
  max_downtime_ms:
    description:
      - Largest allowed downtime in milliseconds, reached at the end of the stepped schedule.
      - The schedule starts at O(max_downtime_ms) / O(downtime_steps) and adds an equal share every
        O(downtime_delay_s_per_gib) seconds per GiB of guest RAM (at least 2 GiB), like Nova's
        C(live_migration_downtime), C(_steps) and C(_delay).
      - 0 to 600000 (10 minutes); C(0) leaves the hypervisor's default downtime alone.
    type: int
    default: 500
    aliases: [max_downtime]
  downtime_steps:
    description: Number of steps of the downtime schedule after the first one, 1 to 100.
    type: int
    default: 10
  downtime_delay_s_per_gib:
    description: Seconds per GiB of guest RAM between two steps of the downtime schedule, 0 to 86400.
    type: int
    default: 75
    aliases: [downtime_delay]
  auto_converge:
    description: Throttle the guest's vCPUs when the migration does not converge.
    type: bool
    default: false
  auto_converge_initial:
    description: Initial CPU throttling percentage of auto-converge, 1 to 99. Requires O(auto_converge).
    type: int
  auto_converge_increment:
    description: Throttling increment percentage of auto-converge, 1 to 99. Requires O(auto_converge).
    type: int
  post_copy:
    description:
      - Allow switching the migration to post-copy (C(VIR_MIGRATE_POSTCOPY)); the switch itself is
        made by O(completion_timeout_action=postcopy).
      - Once in post-copy, a failure loses the domain (its state is split between the hosts).
    type: bool
    default: false
  parallel_connections:
    description: Number of parallel migration connections, 0 to 255; C(0) for a single one, 1 is refused.
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
  completion_timeout_s_per_gib:
    description:
      - Seconds per GiB of guest RAM (at least 2 GiB) the migration may take before
        O(completion_timeout_action) applies, 0 to 86400. C(0) disables the timeout.
    type: int
    default: 800
    aliases: [completion_timeout]
  completion_timeout_action:
    description:
      - What to do when the completion timeout is reached.
      - V(abort) cancels the migration; the domain keeps running on the source.
      - V(postcopy) switches to post-copy; requires O(post_copy).
      - V(pause) suspends the guest so that the migration completes; the destination resumes it.
    type: str
    choices: [abort, postcopy, pause]
    default: abort
  progress_timeout_s:
    description:
      - Seconds, 0 to 86400, after which a migration that makes no progress is aborted, as KubeVirt's
        C(progressTimeout) does; 0 (the default) never aborts.
      - A migration makes progress while the data it still has to send reaches new lows. When it has not for this many
        seconds (a guest that dirties memory faster than the link sends it), the module aborts it; the domain keeps
        running on the source, and the error says when the last new low was reached.
      - Only in pre-copy; once post-copy has started, the migration cannot be aborted.
    type: int
    default: 0
  poll_interval_s:
    description: Seconds between two polls of the migration job statistics, 0.01 to 60.
    type: float
    default: 0.5
    aliases: [poll_interval]
notes:
  - The module runs on the source host and needs a libvirt connection to the destination too.
  - The earlier option names (C(domain), C(source_uri), C(bandwidth), C(max_downtime), C(downtime_delay),
    C(completion_timeout), C(poll_interval)) remain aliases of the names with units.
  - With O(peer_to_peer=true) the source libvirtd resolves and authenticates to the destination
    URI itself (for C(qemu+ssh) it uses root's ssh keys on the source host).
  - "What the module costs beside the migration (RV(timings_s)): its Python start-up, and with O(peer_to_peer=true)
    its own connection to the destination for the checks, one connection more than C(virsh migrate --p2p) (over ssh
    0.5 to 1 s on a busy host; bench/migrate_vs_virsh.py). With O(peer_to_peer=false) the migration runs over that
    connection, but depends on this process until it ends: if it is killed (an Ansible async timeout), libvirt
    cancels the migration, or once the data is sent can leave the guest paused on the source; peer-to-peer
    migrations finish without it."
  - The CPU check uses C(compareHypervisorCPU) on the destination; a domain without a CPU model
    (QEMU's default CPU) is reported as C(skipped).
  - A destination that stops answering (power lost, link cut, libvirtd frozen) does not hold the module
    beyond libvirt's keepalive (30 s without an answer closes the connection); opening a connection gives up
    after 60 s. The failure then says the destination could not be checked, and where the domain runs on
    the source.
"""

EXAMPLES = r"""
- name: Migrate web1 to h2 over ssh, peer-to-peer
  presplit.kvm.live_migrate:
    name: web1
    destination_host: h2

- name: Migrate a busy guest with auto-converge and a bandwidth cap, abort after 300 s/GiB
  presplit.kvm.live_migrate:
    name: 0ed4c3a4-4a1e-4bb0-9f0c-6b3f3f6cd1a1
    destination_uri: qemu+tcp://h3/system
    bandwidth_mib_per_s: 1000
    auto_converge: true
    auto_converge_initial: 20
    auto_converge_increment: 10
    completion_timeout_s_per_gib: 300
    completion_timeout_action: abort

- name: Switch to post-copy if pre-copy has not converged after 120 s/GiB
  presplit.kvm.live_migrate:
    name: db1
    destination_host: h2
    post_copy: true
    completion_timeout_s_per_gib: 120
    completion_timeout_action: postcopy

- name: Move a guest on local qcow2 disks, copying them during the migration
  presplit.kvm.live_migrate:
    name: app1
    destination_host: h2
    copy_storage: all

- name: Only check that db1 could move to h3
  presplit.kvm.live_migrate:
    name: db1
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
migration_uri:
  description:
    - URI the migration data stream goes to (from O(migration_address) or O(migration_uri)); null when libvirt
      picks it from the destination's host name.
  returned: always
  type: str
  sample: tcp://192.0.2.12
already_migrated:
  description: True when the domain was already running on the destination and not on the source.
  returned: always
  type: bool
  sample: false
checks:
  description: Results of the destination checks.
  returned: when the domain runs on the source and not yet on the destination
  type: dict
  contains:
    memory_bytes:
      description: Maximum memory of the domain.
      type: int
    destination_free_memory_bytes:
      description:
        - What the destination has for the domain's RAM (see RV(checks.destination_memory)); null when it
          cannot say.
      type: int
    destination_memory:
      description: What RV(checks.destination_free_memory_bytes) counts.
      type: str
    cpu:
      description: CPU comparison on the destination, C(result) and C(detail).
      type: dict
  sample:
    memory_bytes: 134217728
    destination_free_memory_bytes: 20000000000
    destination_memory: free, buffer and page-cache memory
    cpu: {result: skipped, detail: domain defines no CPU model}
storage:
  description: The domain's disks and what the migration copies of them.
  returned: when the domain runs on the source and not yet on the destination
  type: dict
  contains:
    copy_storage:
      description: O(copy_storage) as given.
      type: str
    copied_disks:
      description: Targets of the disks the migration copies (empty when it copies none).
      type: list
      elements: str
    disks:
      description:
        - Each disk with C(target), C(type) (file, block, network, volume), C(path), C(filesystem) (of a file, on the
          source), C(readonly), C(shareable) and C(copied).
      type: list
      elements: dict
    created_on_destination:
      description: Top images the module created on the destination before the migration (O(copy_storage=top)).
      type: list
      elements: str
  sample:
    copy_storage: all
    copied_disks: [vda]
    disks: [{target: vda, type: file, path: /var/lib/libvirt/images/app1.qcow2, filesystem: ext4, readonly: false,
             shareable: false, copied: true}]
    created_on_destination: []
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
  description: What the monitor did during the migration (downtime steps, the timeout action, a progress-timeout abort).
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
timings_s:
  description:
    - Wall time of the module's steps, in seconds, each from the end of the one before; a step the module did not
      reach is missing. C(source) connecting to the source and reading the domain; C(destination_wait) waiting for
      the destination connection (opened beside the source's); C(checks) the destination checks (namesake, memory,
      CPU) and the disks'; C(mappings) the first read of the guest's huge mappings; C(migration) the migration call, its polls
      included; C(after) the completed job's statistics and the destination's domain.
    - What the module adds to the migration itself (what C(virsh migrate) also spends on its connections aside);
      the Python start-up before them is not counted.
  returned: success, and with the partial result of a failed migration
  type: dict
  sample: {source: 0.041, destination_wait: 0.512, checks: 0.038, mappings: 0.004, migration: 2.431, after: 0.021}
started_at:
  description:
    - When the migration call started, in seconds since the epoch by the source host's clock; with RV(elapsed_s)
      it places the migration on a timeline (the run report does).
  returned: when a migration ran
  type: float
  sample: 1795629472.613
"""

from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_module import libvirt_errors, libvirt_module
from ansible_collections.presplit.kvm.plugins.module_utils.migration_options import (
    ARGUMENT_SPEC, MUTUALLY_EXCLUSIVE, REQUIRED_ONE_OF, MigrationOptionError)
from ansible_collections.presplit.kvm.plugins.module_utils.migration_run import MigrationFailed, run


def main():
    module = libvirt_module(ARGUMENT_SPEC, mutually_exclusive=MUTUALLY_EXCLUSIVE, required_one_of=REQUIRED_ONE_OF)
    with libvirt_errors(module):
        try:
            result = run(module.params, module.check_mode)
        except MigrationOptionError as exc:
            module.fail_json(msg="invalid options: %s" % exc)
        except MigrationFailed as exc:
            partial = exc.args[1] if len(exc.args) > 1 else {}
            module.fail_json(msg=exc.args[0], **partial)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
