#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: split_huge_pages
short_description: Pre-split the huge EPT/NPT mappings of running KVM domains before migration
version_added: 0.1.0
description:
  - Takes the VM fd of each domain's QEMU with C(pidfd_open) and C(pidfd_getfd), after proving the
    process is that domain's QEMU (libvirt pid file and status XML, C(/proc/PID/exe) a qemu-system
    binary, C(-uuid) matching, the same process when the fd is taken).
  - Issues C(KVM_SPLIT_HUGE_PAGES) over the guest's physical address range in chunks, 1G to 2M and
    then 2M to 4K, optionally rate-limited, and with O(hold=true) keeps the range split until
    released (or until dirty logging is switched off, which is what a failed migration does).
    Memory that KVM is already dirty logging (a migration under way) is not split, as dirty logging
    splits it itself.
  - Returns the mapping counts before and after, the source of the counts, and per-pass timings.
  - Idempotent. A domain with no mapping above the target level (and, with O(hold=true), a hold
    recorded for its current QEMU process) is left alone with C(changed=false).
  - O(state=released) drops the hold this module placed. Without a hold record nothing is done
    unless O(force_release=true), because a release lets KVM collapse the range back to huge pages.
    A domain that no longer runs on this host (migrated away) holds nothing and is reported as C(absent).
  - Needs a kernel with the presplit patch series whose capability lists page sizes (host mode
    V(patched), see M(presplit.kvm.host_info)); a kernel with the older, level-based series is
    treated as unpatched and never sent the ioctl.
    Elsewhere, and for TCG domains, O(on_unsupported) decides between failing, warning and skipping.
author:
  - presplit.kvm developers (@presplit-kvm)
requirements:
  - Linux >= 5.6 (pidfd_getfd) and Python >= 3.8 on the host
  - root, or C(CAP_SYS_PTRACE)
  - libvirt-python (Debian package C(python3-libvirt)) to tell stopped domains from unknown ones
extends_documentation_fragment:
  - presplit.kvm.attributes
  - presplit.kvm.attributes.kvm_host
  - presplit.kvm.libvirt
  - presplit.kvm.host_helper
attributes:
  check_mode:
    description: Reports the current counts and what would be split or released; issues no ioctl.
options:
  domains:
    description:
      - Names or UUIDs of running domains on this host.
      - Control characters are refused, here and in the connection and directory options.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(split) splits (and with O(hold) holds); V(released) drops holds.
    type: str
    choices: [split, released]
    default: split
  level:
    description: Target mapping level. V(4k) runs both passes, V(2m) only splits 1G mappings.
    type: str
    choices: [4k, 2m]
    default: 4k
  hold:
    description: Keep the range at O(level) or below until released.
    type: bool
    default: false
  rate_gib_per_s:
    description:
      - Limit in GiB of guest physical address space per second, 0.01 to 4096. Unlimited when not given.
    type: float
    aliases: [rate]
  chunk_mib:
    description: Size of the range handled by one ioctl, in MiB, 2 to 65536 and a multiple of 2.
    type: int
    default: 1024
  force_release:
    description: With O(state=released), release even when no hold of this module is recorded.
    type: bool
    default: false
  on_unsupported:
    description:
      - What to do with a domain that cannot be pre-split here, because the kernel lacks the
        ioctl or the domain is not KVM-accelerated (TCG).
      - V(fail) fails the task, V(warn) reports a warning and carries on, V(skip) carries on silently.
    type: str
    choices: [fail, warn, skip]
    default: fail
seealso:
  - module: presplit.kvm.host_info
"""

EXAMPLES = r"""
- name: Pre-split and hold a domain right before migrating it
  presplit.kvm.split_huge_pages:
    domains: [web01]
    level: 4k
    hold: true
    rate_gib_per_s: 8
  register: presplit

- name: Carry on with a warning on hosts without the kernel patch
  presplit.kvm.split_huge_pages:
    domains: "{{ batch }}"
    hold: true
    on_unsupported: warn

- name: Drop the hold after a failed migration
  presplit.kvm.split_huge_pages:
    domains: [web01]
    state: released
"""

RETURN = r"""
domains:
  description: One result per domain, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    domain:
      description: Domain name (or the identifier given, when it could not be resolved).
      type: str
    uuid:
      description: Domain UUID.
      type: str
    pid:
      description: QEMU pid.
      type: int
    status:
      description:
        - C(split), C(unchanged), C(would split), C(released), C(would release), C(unsupported),
          C(skipped), or C(absent) (O(state=released) for a domain not running here).
      type: str
    changed:
      description: Whether this domain was (or in check mode would be) changed.
      type: bool
    dry_run:
      description: Whether this was a check-mode prediction.
      type: bool
      returned: unless status is C(unsupported), C(skipped) or C(absent)
    accelerator:
      description: V(tcg) when O(state=released) met a TCG domain, which holds nothing.
      type: str
      returned: with O(state=released) for TCG domains
    target_level:
      description: Target level.
      type: str
      returned: with O(state=split)
    range:
      description: Guest physical range worked on, C(gpa) and C(size) in bytes.
      type: dict
      returned: with O(state=split)
    supported:
      description: Whether this host accepts the target level.
      type: bool
      returned: with O(state=split)
    before:
      description: Mapping counts before (C(pages_4k), C(pages_2m), C(pages_1g)), null when unreadable.
      type: dict
      returned: with O(state=split)
    after:
      description: Mapping counts after the split.
      type: dict
      returned: when a split ran
    counts_source:
      description: C(stats-fd), C(debugfs), C(qemu-query-stats) or null.
      type: str
      returned: with O(state=split)
    counts_attempts:
      description: Count sources that failed first, each with C(source) and C(error).
      type: list
      elements: dict
      returned: with O(state=split)
    passes:
      description:
        - One record per pass with C(pass) (C(1g->2m), C(2m->4k), C(release)), C(page_size)
          (the target page size in bytes the ioctl was given, 0 for a release), C(gpa), C(size),
          C(nr_split), C(resumes) (ioctl restarts after -EINTR) and C(seconds).
      type: list
      elements: dict
      returned: when ioctls ran
    nr_split:
      description: Huge mappings split over all passes.
      type: int
      returned: when a split ran
    seconds:
      description: Wall time of the split.
      type: float
      returned: when a split ran
    huge_mappings_left:
      description: Mappings still above the target level afterwards (null when unreadable).
      type: int
      returned: when a split ran or nothing was left to split
    hold_record:
      description:
        - The recorded hold, null when none; C(page_size) (target page size in bytes), C(gpa),
          C(size), C(uuid), C(pid), C(starttime) (QEMU's) and C(since).
        - After a split with O(hold=true), also C(kernel_ranges), the C([gpa, size]) pairs the
          kernel then reported held at C(page_size) (absent when the kernel cannot be asked).
        - A record written by an earlier version of the collection is read with its
          C(target_level) turned into C(page_size).
      type: dict
    kernel_held_pages:
      description:
        - 4 KiB pages the kernel holds for the VM afterwards (its C(pages_held) statistic); null
          when the kernel does not count them.
      type: int
      returned: when a split ran, and with O(state=released) on a KVM-accelerated domain
    error:
      description: C(code) and C(message) when the domain could not be handled here.
      type: dict
      returned: with status C(unsupported), C(skipped) or C(absent)
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.presplit.kvm.plugins.module_utils.option_checks import option_problem
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.errors import (
    DomainNotFound, DomainNotRunning, NotKvmAccelerated, PresplitError, Unsupported)
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.ops import HOST_ARGUMENT_SPEC, host_from_params
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.split import (
    MAX_CHUNK, MAX_RATE_GIB_S, MIN_RATE_GIB_S)
from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.uapi import HUGE_2M


def _status(result, state):
    if state == "released":
        if not result["changed"]:
            return "unchanged"
        return "would release" if result["dry_run"] else "released"
    if not result["changed"]:
        return "unchanged"
    return "would split" if result["dry_run"] else "split"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            domains=dict(type="list", elements="str", required=True),
            state=dict(type="str", choices=["split", "released"], default="split"),
            level=dict(type="str", choices=["4k", "2m"], default="4k"),
            hold=dict(type="bool", default=False),
            rate_gib_per_s=dict(type="float", aliases=["rate"]),
            chunk_mib=dict(type="int", default=1024),
            force_release=dict(type="bool", default=False),
            on_unsupported=dict(type="str", choices=["fail", "warn", "skip"], default="fail"),
            **HOST_ARGUMENT_SPEC
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params["domains"]:
        module.fail_json(msg="domains must name at least one domain")
    # The helper's own bounds, in the units of the options.
    ranges = {"rate_gib_per_s": (MIN_RATE_GIB_S, MAX_RATE_GIB_S), "chunk_mib": (HUGE_2M >> 20, MAX_CHUNK >> 20)}
    problem = option_problem(params, ranges, ("domains",) + tuple(HOST_ARGUMENT_SPEC))
    if problem:
        module.fail_json(msg=problem)
    host = host_from_params(params)
    results = []
    try:
        for ident in params["domains"]:
            try:
                if params["state"] == "split":
                    result = host.split(ident, level=params["level"], hold=params["hold"],
                                        rate_gib_s=params["rate_gib_per_s"], chunk=params["chunk_mib"] * (1 << 20),
                                        dry_run=module.check_mode)
                    if not result["supported"] and "unsupported_reason" in result:
                        # check mode: predict what the real run would do with this domain
                        raise Unsupported(result["unsupported_reason"])
                else:
                    result = host.release(ident, force=params["force_release"], dry_run=module.check_mode)
                result["status"] = _status(result, params["state"])
            except (DomainNotFound, DomainNotRunning) as exc:
                if params["state"] != "released":
                    module.fail_json(msg="%s: %s" % (ident, exc), error=exc.as_dict(), domains=results)
                # A hold lives and dies with its QEMU process: a domain gone from here holds nothing.
                result = {"domain": ident, "changed": False, "error": exc.as_dict(), "status": "absent"}
            except (Unsupported, NotKvmAccelerated) as exc:
                if params["on_unsupported"] == "fail":
                    module.fail_json(msg="%s: %s" % (ident, exc), error=exc.as_dict(), domains=results)
                if params["on_unsupported"] == "warn":
                    module.warn("%s: %s" % (ident, exc))
                result = {"domain": ident, "changed": False, "error": exc.as_dict(),
                          "status": "unsupported" if params["on_unsupported"] == "warn" else "skipped"}
            except PresplitError as exc:
                module.fail_json(msg="%s: %s" % (ident, exc), error=exc.as_dict(), domains=results)
            results.append(result)
    finally:
        host.close()
    module.exit_json(changed=any(result["changed"] for result in results), domains=results)


if __name__ == "__main__":
    main()
