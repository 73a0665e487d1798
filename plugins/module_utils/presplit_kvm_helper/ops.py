# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the CLI and the modules do to domains: inspect, split, release.

Every operation validates its arguments and resolves and proves the QEMU process before
the first ioctl; any error before that point leaves the VM untouched.
"""

import fcntl
import time

from .counts import held_pages, huge_mappings, read_mapping_counts
from .domain import DEFAULT_RUN_DIR, DEFAULT_URI, DomainInventory, require_running
from .errors import InvalidArgument, NotKvmAccelerated, PresplitError, Unsupported
from .hold_state import DEFAULT_STATE_DIR, HoldState, compare_with_kernel
from .host import default_hugepage_kib, host_facts, kvm_capabilities, thp_mode, thp_shmem_mode, virt_versions
from .memory import memory_backing
from .process import take_vm_fd
from .query import clip_ranges, kernel_holds
from .split import DEFAULT_CHUNK, SplitDriver, guest_range, pass_label, passes_for, validate_chunk, validate_rate
from .uapi import PAGE_SIZE_BY_NAME, cap_accepts, cap_problem, is_old_level_cap


def parse_level(name):
    """The target page size in bytes of a level name ('4k', '2m')."""
    if name not in PAGE_SIZE_BY_NAME:
        raise InvalidArgument("level must be one of %s, got %r" % (", ".join(sorted(PAGE_SIZE_BY_NAME)), name))
    return PAGE_SIZE_BY_NAME[name]


class PresplitHost:
    """Operations on the local host's domains. ``split_capability`` and ``split_ioctl`` are
    the two kernel entry points of a split; tests of the idempotence logic replace them on a
    host whose kernel lacks the ioctl."""

    split_ioctl = staticmethod(fcntl.ioctl)

    @staticmethod
    def split_capability():
        return kvm_capabilities().get("split_huge_pages", 0)

    def __init__(self, uri=DEFAULT_URI, run_dir=DEFAULT_RUN_DIR, state_dir=DEFAULT_STATE_DIR,
                 use_libvirt=True, sys_root="/sys"):
        self.inventory = DomainInventory(uri, run_dir, use_libvirt)
        self.holds = HoldState(state_dir)
        self.sys_root = sys_root

    def close(self):
        self.inventory.close()

    # -- facts ------------------------------------------------------------------------
    def facts(self, with_domains=True):
        facts = host_facts(self.sys_root)
        facts["inventory_source"] = self.inventory.source
        facts["libvirt_error"] = self.inventory.libvirt_error
        if self.inventory.conn is not None:
            facts.update(virt_versions(self.inventory.conn))
        if with_domains:
            modes = self._memory_modes()
            facts["domains"] = [self._describe(info, modes) for info in self.inventory.running()]
        return facts

    def inspect(self, ident):
        return self._describe(self.inventory.lookup(ident), self._memory_modes())

    def _memory_modes(self):
        """What memory.memory_backing needs of the host: THP for anonymous and shmem memory, the
        default hugetlb page size."""
        return thp_mode(self.sys_root), thp_shmem_mode(self.sys_root), default_hugepage_kib()

    def _describe(self, info, memory_modes):
        # A domain whose description is malformed has no XML to classify.
        backing, _page_kib, backing_reason = (memory_backing(info.xml, *memory_modes) if info.xml is not None
                                              else (None, None, None))
        entry = {"name": info.name, "uuid": info.uuid, "running": info.active, "pid": info.pid,
                 "accelerator": "kvm" if info.kvm_accelerated else "tcg" if info.virt_type == "qemu"
                 else info.virt_type,
                 "memory_bytes": info.memory_bytes, "memory_backing": backing, "memory_backing_reason": backing_reason,
                 "hugepage_sizes": info.hugepage_sizes, "counts": None, "counts_source": None,
                 "counts_attempts": [], "hold": None, "hold_check": None, "error": None}
        if not info.active:
            entry["status"] = "not running"
            return entry
        if info.listing_error is not None:
            entry.update(status="error", error=info.listing_error.as_dict())
            return entry
        if not info.kvm_accelerated:
            entry["status"] = "not KVM-accelerated"
            return entry
        try:
            with take_vm_fd(info.pid, info.uuid) as handle:
                entry.update(self._counts(handle, info))
                entry["hold"] = self.holds.get(handle.identity)
                entry["hold_check"] = compare_with_kernel(
                    entry["hold"], held_pages(handle.vm_fd),
                    kernel_holds(handle.vm_fd, self.split_capability(), self.split_ioctl))
            entry["status"] = "ok"
        except NotKvmAccelerated as exc:
            entry.update(status="not KVM-accelerated", accelerator="tcg", error=exc.as_dict())
        except PresplitError as exc:
            entry.update(status="error", error=exc.as_dict())
        return entry

    def _counts(self, handle, info):
        result = read_mapping_counts(handle, self.inventory.libvirt_domain(info))
        return {"counts": result["counts"], "counts_source": result["source"],
                "counts_attempts": result["attempts"]}

    # -- split / release ----------------------------------------------------------------
    def _running_kvm_domain(self, ident):
        info = require_running(self.inventory.lookup(ident))
        if not info.kvm_accelerated:
            raise NotKvmAccelerated("domain %r runs with virt type %r (TCG), not KVM: nothing to split"
                                    % (info.name, info.virt_type))
        return info

    def split(self, ident, level="4k", hold=False, rate_gib_s=None, chunk=DEFAULT_CHUNK, dry_run=False,
              progress=None):
        target = parse_level(level)
        validate_rate(rate_gib_s)
        validate_chunk(chunk)
        info = self._running_kvm_domain(ident)
        gpa, size = guest_range(info.memory_bytes)
        split_cap = self.split_capability()
        supported = cap_accepts(split_cap, target)
        result = {"domain": info.name, "uuid": info.uuid, "pid": info.pid, "target_level": level, "hold": hold,
                  "range": {"gpa": gpa, "size": size}, "supported": supported,
                  "passes_planned": [pass_label(pass_size) for pass_size in passes_for(target)],
                  "changed": False, "dry_run": dry_run}
        if not supported and not dry_run:
            raise Unsupported(self._unsupported_reason(split_cap, level))
        with take_vm_fd(info.pid, info.uuid) as handle:
            before = self._counts(handle, info)
            record = self.holds.get(handle.identity)
            result.update(before=before["counts"], counts_source=before["counts_source"],
                          counts_attempts=before["counts_attempts"], hold_record=record)
            remaining = huge_mappings(before["counts"], target)
            held_enough = record is not None and record["page_size"] <= target
            if remaining == 0 and (held_enough or not hold):
                result["huge_mappings_left"] = 0
                return result
            result["changed"] = True
            if dry_run:
                result["would_split"] = remaining
                if not supported:
                    result["unsupported_reason"] = self._unsupported_reason(split_cap, level)
                return result
            if hold:
                # Recorded first: an interrupted or failed split may leave part of the range
                # held, and only a record lets a later release find it.
                result["hold_record"] = self.holds.put(handle.identity, target, gpa, size)
            started = time.monotonic()
            driver = SplitDriver(handle.vm_fd, chunk=chunk, rate_gib_s=rate_gib_s, progress=progress,
                                 keep_going=handle.owner_alive, ioctl=self.split_ioctl)
            result["passes"] = driver.split(gpa, size, target, hold=hold)
            result["seconds"] = round(time.monotonic() - started, 6)
            result["nr_split"] = sum(done["nr_split"] for done in result["passes"])
            after = self._counts(handle, info)
            result["after"] = after["counts"]
            result["huge_mappings_left"] = huge_mappings(after["counts"], target)
            result["kernel_held_pages"] = held_pages(handle.vm_fd)["pages"]
            if hold:
                result["hold_record"] = self._note_kernel_ranges(handle, result["hold_record"], split_cap)
        return result

    def _note_kernel_ranges(self, handle, record, split_cap):
        """The record with what the kernel now holds of it at its page size, which tells the
        parts of the range that memslots cover; unchanged when the kernel cannot say."""
        holds = kernel_holds(handle.vm_fd, split_cap, self.split_ioctl)
        if holds["ranges"] is None:
            return record
        held = [(item["gpa"], item["size"]) for item in holds["ranges"] if item["page_size"] == record["page_size"]]
        return self.holds.put(handle.identity, record["page_size"], record["gpa"], record["size"],
                              kernel_ranges=clip_ranges(held, record["gpa"], record["size"]),
                              since=record["since"])

    def release(self, ident, force=False, dry_run=False):
        """Drop this helper's hold. Without a hold record only ``force`` issues RELEASE,
        because RELEASE also lets KVM collapse the range back to huge pages."""
        info = require_running(self.inventory.lookup(ident))
        if not info.kvm_accelerated:
            # TCG: there is no KVM VM, so no hold to drop (the release path must not fail here)
            return {"domain": info.name, "uuid": info.uuid, "pid": info.pid, "hold_record": None,
                    "changed": False, "dry_run": dry_run, "accelerator": "tcg"}
        gpa, size = guest_range(info.memory_bytes)
        with take_vm_fd(info.pid, info.uuid) as handle:
            record = self.holds.get(handle.identity)
            result = {"domain": info.name, "uuid": info.uuid, "pid": info.pid, "hold_record": record,
                      "changed": record is not None or force, "dry_run": dry_run,
                      "kernel_held_pages": held_pages(handle.vm_fd)["pages"]}
            if not result["changed"] or dry_run:
                return result
            split_cap = self.split_capability()
            if cap_problem(split_cap):
                # An older series reads the struct differently: no ioctl built here may reach it.
                raise Unsupported(self._unsupported_reason(split_cap, "release"))
            if record is not None:
                gpa, size = record["gpa"], record["size"]
            driver = SplitDriver(handle.vm_fd, keep_going=handle.owner_alive, ioctl=self.split_ioctl)
            result["passes"] = [driver.release(gpa, size)]
            self.holds.drop(handle.identity)
            result["kernel_held_pages"] = held_pages(handle.vm_fd)["pages"]
        return result

    def _unsupported_reason(self, split_cap, level):
        if is_old_level_cap(split_cap):
            return cap_problem(split_cap)
        if split_cap:
            return "KVM_CAP_SPLIT_HUGE_PAGES = %#x does not accept level %s" % (split_cap, level)
        facts = host_facts(self.sys_root)
        return "host mode %r: %s" % (facts["mode"], facts["mode_reason"])


# Options every host-helper module takes; documented by the presplit.kvm.host_helper
# doc fragment, so the two stay in step.
HOST_ARGUMENT_SPEC = dict(
    uri=dict(type="str", default=DEFAULT_URI),
    run_dir=dict(type="path", default=DEFAULT_RUN_DIR),
    state_dir=dict(type="path", default=DEFAULT_STATE_DIR),
    use_libvirt=dict(type="bool", default=True),
)


def host_from_params(params):
    """The PresplitHost described by a module's HOST_ARGUMENT_SPEC parameters."""
    return PresplitHost(uri=params["uri"], run_dir=params["run_dir"], state_dir=params["state_dir"],
                        use_libvirt=params["use_libvirt"])
