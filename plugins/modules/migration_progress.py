#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r'''
---
module: migration_progress
short_description: Read how far the live migrations running from a host have got
version_added: 0.1.0
description:
  - "Reads, through libvirt on the migration source, the job statistics of each domain in O(domains) and says for each
    whether it is V(migrating) (an outgoing migration job is running), V(running) (running here without a job: its
    migration has not started yet, or has ended and failed) or V(gone) (no longer running here: migrated, or stopped)."
  - Meant to be polled with C(until) while M(presplit.kvm.live_migrate) runs in the background (C(async)), as the
    C(presplit.kvm.live_migration) role does; the C(presplit.kvm.migration_progress) callback plugin prints one line
    per poll from its result, so a long run shows how far each migration has got.
  - With O(wait_s), it reads again every second and returns when a domain stops migrating or after O(wait_s)
    seconds, whichever comes first, so a poll loop notices the end of a migration at once.
  - Only reads; it never changes a domain or a job.
author:
  - presplit.kvm developers (@presplit)
requirements:
  - libvirt-python (Debian package C(python3-libvirt)) on the host
extends_documentation_fragment:
  - presplit.kvm.attributes
  - presplit.kvm.attributes.read_only
  - presplit.kvm.attributes.kvm_host
  - presplit.kvm.libvirt
attributes:
  platform:
    description: Runs on the migration source host.
options:
  domains:
    description: Domains to report on, by name or UUID. Control characters are refused, here and in O(uri).
    type: list
    elements: str
    required: true
  wait_s:
    description: Seconds to watch before returning (0 to 86400), unless a domain stops migrating sooner; V(0) reads once.
    type: int
    default: 0
'''

EXAMPLES = r'''
- name: Follow the migrations started in the background until none is running
  presplit.kvm.migration_progress:
    domains: [web1, db1]
    wait_s: 10
  register: progress
  until: progress.migrating == 0
  retries: 360
  delay: 0
'''

RETURN = r'''
migrations:
  description:
    - One entry per domain of O(domains), in that order. C(state) is V(migrating), V(running) or V(gone) (see the
      description). For a migrating domain also C(elapsed_s), C(iteration) (memory pass, libvirt's count),
      C(memory_total_bytes), C(memory_processed_bytes) (sent so far, passes after the first included),
      C(memory_remaining_bytes), C(percent) (share of the guest's memory not left to send),
      C(bandwidth_mib_per_s) and C(dirty_rate_pages_s) as libvirt reports them. A figure libvirt gives as something
      other than a number is left out, and C(error) names it with its value; the other domains are reported as usual.
  returned: always
  type: list
  elements: dict
  sample:
    - {"domain": "web1", "state": "migrating", "elapsed_s": 42.1, "iteration": 2, "memory_total_bytes": 8589934592,
       "memory_processed_bytes": 9126805504, "memory_remaining_bytes": 402653184, "percent": 95.3,
       "bandwidth_mib_per_s": 1100.0, "dirty_rate_pages_s": 12000}
    - {"domain": "db1", "state": "gone"}
migrating:
  description: How many domains of O(domains) have a migration job running.
  returned: always
  type: int
  sample: 1
running:
  description: How many domains of O(domains) run on the host without a migration job.
  returned: always
  type: int
  sample: 0
'''

import time

from ansible_collections.presplit.kvm.plugins.module_utils import libvirt_client
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_client import find_domain, open_connection
from ansible_collections.presplit.kvm.plugins.module_utils.libvirt_module import libvirt_errors, libvirt_module
from ansible_collections.presplit.kvm.plugins.module_utils.migration_monitor import (
    job_figure, job_is_active, malformed_figures)
from ansible_collections.presplit.kvm.plugins.module_utils.option_checks import option_problem

MIB = 1024 * 1024
# (entry name, libvirt job statistics key) of the figures a migrating domain's entry carries.
FIGURES = (("iteration", "memory_iteration"), ("memory_total_bytes", "memory_total"),
           ("memory_processed_bytes", "memory_processed"), ("memory_remaining_bytes", "memory_remaining"),
           ("dirty_rate_pages_s", "memory_dirty_rate"))
MAX_WAIT_S = 86400
# Seconds between two reads while watching (wait_s).
WATCH_INTERVAL_S = 1.0


def is_running_here(domain, lv):
    try:
        return domain is not None and bool(domain.isActive())
    except lv.libvirtError:
        # Gone after the lookup: an undefine-source migration ending.
        return False


def domain_progress(domain, lv):
    """The progress entry of one domain (see RETURN), without its name."""
    if not is_running_here(domain, lv):
        return {"state": "gone"}
    try:
        stats = domain.jobStats()
    except lv.libvirtError:
        # Gone since, or a driver without job statistics.
        return {"state": "running"} if is_running_here(domain, lv) else {"state": "gone"}
    return job_progress(stats, lv)


def job_progress(stats, lv):
    """The progress entry of a running domain from its virDomainGetJobStats dict."""
    if not job_is_active(stats, lv):
        return {"state": "running"}
    entry = {"state": "migrating", "elapsed_s": round((job_figure(stats, "time_elapsed") or 0) / 1000.0, 1)}
    for name, key in FIGURES:
        if job_figure(stats, key) is not None:
            entry[name] = stats[key]
    total = job_figure(stats, "memory_total")
    remaining = job_figure(stats, "memory_remaining")
    if total and remaining is not None:
        entry["percent"] = round(100.0 * (total - remaining) / total, 1)
    if job_figure(stats, "memory_bps") is not None:
        entry["bandwidth_mib_per_s"] = round(stats["memory_bps"] / float(MIB), 1)
    malformed = malformed_figures(stats, ["time_elapsed", "memory_bps"] + [key for _name, key in FIGURES])
    if malformed:
        entry["error"] = "job statistics not numbers, left out: %s" % ", ".join(
            "%s=%r" % (key, stats[key]) for key in malformed)
    return entry


def read_progress(conn, names, lv):
    migrations = []
    for name in names:
        entry = {"domain": name}
        entry.update(domain_progress(find_domain(conn, name), lv))
        migrations.append(entry)
    return migrations


def count(migrations, state):
    return sum(1 for m in migrations if m["state"] == state)


def main():
    module = libvirt_module(dict(domains=dict(type="list", elements="str", required=True),
                                 wait_s=dict(type="int", default=0)))
    problem = option_problem(module.params, {"wait_s": (0, MAX_WAIT_S)}, ("uri", "domains"))
    if problem:
        module.fail_json(msg=problem)
    lv = libvirt_client.libvirt
    with libvirt_errors(module):
        conn = open_connection(module.params["uri"], "source")
        migrations = read_progress(conn, module.params["domains"], lv)
        deadline = time.monotonic() + module.params["wait_s"]
        while time.monotonic() < deadline:
            time.sleep(min(WATCH_INTERVAL_S, max(0.0, deadline - time.monotonic())))
            latest = read_progress(conn, module.params["domains"], lv)
            stopped = count(latest, "migrating") < count(migrations, "migrating")
            migrations = latest
            if stopped:
                break
    module.exit_json(changed=False, migrations=migrations,
                     migrating=count(migrations, "migrating"), running=count(migrations, "running"))


if __name__ == "__main__":
    main()
