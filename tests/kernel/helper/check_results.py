# Host side of tests/kernel/run-helper.sh: turns the guest's observations
# (KDATA lines from guest_driver.py) into one PASS/FAIL line per check.
#
#   python3 tests/kernel/helper/check_results.py RESULTS_LOG
#
# Every check listed here must pass; a check whose data is missing (the
# driver died before it, or L2 never came up) fails as "no data".  Exit
# status 0, or CHECKS_FAILED when a check failed.  The dmesg and
# guest-finished checks and the totals are run-helper.sh's.
"""Assertions on the guest's KDATA lines (see the header comment)."""

import json
import sys

PAGES_PER_2M = 512
EIO = 5
EXIT_INVALID_ARGUMENT = 2
EXIT_PROCESS_MISMATCH = 7
# This script's own exit status when checks failed; anything else but 0 means it crashed.
CHECKS_FAILED = 3


def load(path):
    data = {}
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line in stream:
            line = line.rstrip("\r\n")
            if line == "KLOAD ok":
                data["guest/load-modules"] = True
            elif line.startswith("KDRIVER exit="):
                data["guest/driver"] = int(line.split("=", 1)[1])
            elif line.startswith("KDATA "):
                check, payload = line.split(" ", 2)[1:]
                try:
                    record = json.loads(payload)
                except ValueError:
                    continue  # cut short by a dying guest: its check fails as "no data"
                data.setdefault(check, []).append(record)
    return data


def domain_row(status_out):
    domains = status_out.get("domains", []) if isinstance(status_out, dict) else []
    return domains[0] if len(domains) == 1 else {}


def first_result(cli_out):
    results = cli_out.get("results", []) if isinstance(cli_out, dict) else []
    return results[0] if results else {}


def huge_gone(after):
    return after.get("pages_2m") == 0 and after.get("pages_1g") == 0


def check_split_hold(rec):
    before, after = rec["before"], rec["after"]
    nr_split = sum(p["nr_split"] for p in rec["passes"])
    passed = (before.get("pages_2m", 0) > 0 and huge_gone(after) and nr_split == before["pages_2m"]
              and after["pages_4k"] >= before["pages_4k"] + before["pages_2m"] * PAGES_PER_2M
              and rec["progress_calls"] > 0)
    return passed, "before %s after %s, %d split" % (before, after, nr_split)


def check_cli_split(rec):
    res = first_result(rec["out"])
    before, after = res.get("before", {}), res.get("after", {})
    passed = (rec["exit"] == 0 and res.get("changed") is True and before.get("pages_2m", 0) > 0
              and huge_gone(after) and after.get("pages_4k", 0) > before.get("pages_4k", 0)
              and res.get("hold") is True and bool(res.get("hold_record")))
    return passed, "exit %s, 2M %s -> %s, 4K %s -> %s, %.2fs" % (
        rec["exit"], before.get("pages_2m"), after.get("pages_2m"), before.get("pages_4k"),
        after.get("pages_4k"), res.get("seconds", 0))


def check_cli_status(rec, held):
    dom = domain_row(rec["out"])
    counts = dom.get("counts") or {}
    check = dom.get("hold_check") or {}
    if held:
        passed = (bool(dom.get("hold")) and dom["hold"].get("page_size") == 4096 and huge_gone(counts)
                  and check.get("status") == "held" and (check.get("kernel_pages") or 0) > 0
                  and any(item["page_size"] == 4096 for item in check.get("kernel_ranges") or ())
                  and check.get("pages_agree") is True)
    else:
        passed = not dom.get("hold") and counts.get("pages_2m", 0) > 0 and check.get("status") == "none"
    passed = passed and rec["exit"] == 0 and dom.get("accelerator") == "kvm" and dom.get("counts_source") == "stats-fd"
    return passed, "exit %s, %s %s %s hold=%s hold_check=%s" % (
        rec["exit"], dom.get("accelerator"), dom.get("counts_source"), counts, dom.get("hold"), check)


def check_hold_check(rec, status):
    """The record against what the kernel reports holding (its QUERY ranges and its count):
    'none' once released, 'unrecorded', with the ranges listed, for a hold the kernel has
    and the helper lost the record of."""
    check = domain_row(rec["out"]).get("hold_check") or {}
    pages = check.get("kernel_pages")
    ranges = check.get("kernel_ranges")
    if status == "none":
        passed = pages == 0 and ranges == []
    else:
        passed = (pages or 0) > 0 and bool(ranges) and check.get("unrecorded") == ranges
    passed = passed and rec["exit"] == 0 and check.get("status") == status
    return passed, "exit %s hold_check=%s" % (rec["exit"], check)


def check_release_force(rec):
    res = first_result(rec["out"])
    passed = rec["exit"] == 0 and res.get("changed") is True and res.get("kernel_held_pages") == 0
    return passed, "exit %s changed=%s kernel_held_pages=%s" % (
        rec["exit"], res.get("changed"), res.get("kernel_held_pages"))


def check_exit(rec, status, changed=None):
    res = first_result(rec["out"])
    passed = rec["exit"] == status and (changed is None or res.get("changed") is changed)
    error = res.get("error") or (rec["out"].get("error") if isinstance(rec["out"], dict) else None)
    return passed, "exit %s changed=%s%s" % (rec["exit"], res.get("changed"),
                                             " error: %s" % error["message"] if error else "")


def check_invalid_argument(rec):
    # Refused by the helper itself, before any ioctl.
    return rec["error"] == "InvalidArgument", rec.get("message", "accepted")


# Each check: (name, data key, predicate on the first record for that key).
# Predicates only get records that exist; they return (passed, detail shown with the result).
CHECKS = [
    ("guest/load-modules", "guest/load-modules", lambda rec: (rec is True, "patched kvm + kvm-amd")),
    ("guest/driver-exit", "guest/driver", lambda rec: (rec == 0, "exit %s" % rec)),
    ("helper/host-mode-patched", "helper/host-mode",
     lambda rec: (rec["mode"] == "patched", "%s (%s)" % (rec["mode"], rec["reason"]))),
    ("helper/pidfd-getfd-foreign-vm", "helper/pidfd-getfd",
     lambda rec: (rec["link"] == "anon_inode:kvm-vm", rec["link"])),
    ("helper/other-vm-ioctls-still-eio", "helper/other-ioctls-eio",
     lambda rec: (rec["errno"] == EIO, "errno %s" % (rec.get("error") or rec["errno"]))),
    ("helper/split-foreign-vm-with-hold", "helper/split-hold", check_split_hold),
    ("helper/hold-keeps-refault-at-4k", "helper/held-refault",
     lambda rec: (huge_gone(rec["counts"]) and rec["counts"]["pages_4k"] > 0, str(rec["counts"]))),
    ("helper/second-split-splits-nothing", "helper/split-again",
     lambda rec: (rec["nr_split"] == 0, "nr_split %d" % rec["nr_split"])),
    ("helper/release-lets-2m-back", "helper/release-refault",
     lambda rec: (rec["counts"]["pages_2m"] > 0, "after release + refault %s" % rec["counts"])),
    # 2 GiB in 256 MiB chunks at 8 GiB/s: 7 sleeps pacing to 7/8 of 0.25 s.
    ("helper/rate-limit-paces", "helper/rate-limit",
     lambda rec: (rec["seconds"] >= 0.2, "%.3fs for 2 GiB at 8 GiB/s" % rec["seconds"])),
    ("helper/bad-range-unaligned-refused", "helper/bad-range-unaligned", check_invalid_argument),
    ("helper/bad-range-empty-refused", "helper/bad-range-empty", check_invalid_argument),
    ("cli/l2-guest-touched-memory", "cli/l2-touched",
     lambda rec: (rec["touched"], "after %ss; L2 console: %r; qemu stderr: %r" % (
         rec["seconds"], rec["l2_console_tail"], rec["qemu_stderr"]))),
    ("cli/status-before", "cli/status", lambda rec: check_cli_status(rec, held=False)),
    ("cli/dry-run-splits-nothing", "cli/dry-run",
     lambda rec: (rec["exit"] == 0 and first_result(rec["out"]).get("would_split", 0) > 0
                  and "after" not in first_result(rec["out"]),
                  "exit %s would_split=%s" % (rec["exit"], first_result(rec["out"]).get("would_split")))),
    ("cli/split-hold-rate", "cli/split", check_cli_split),
    ("cli/split-again-unchanged", "cli/split-again", lambda rec: check_exit(rec, 0, changed=False)),
    ("cli/status-shows-hold", "cli/status-held", lambda rec: check_cli_status(rec, held=True)),
    ("cli/release", "cli/release", lambda rec: check_exit(rec, 0, changed=True)),
    ("cli/release-again-unchanged", "cli/release-again", lambda rec: check_exit(rec, 0, changed=False)),
    ("cli/kernel-holds-nothing-after-release", "cli/status-released", lambda rec: check_hold_check(rec, "none")),
    ("cli/unrecorded-hold-reported", "cli/status-unrecorded", lambda rec: check_hold_check(rec, "unrecorded")),
    ("cli/release-force-drops-unrecorded-hold", "cli/release-force", check_release_force),
    ("cli/bad-rate-exit-2", "cli/bad-rate", lambda rec: check_exit(rec, EXIT_INVALID_ARGUMENT)),
    ("cli/qemu-gone-exit-7", "cli/qemu-gone", lambda rec: check_exit(rec, EXIT_PROCESS_MISMATCH)),
]


def main(path):
    data = load(path)
    failed = 0
    for name, key, predicate in CHECKS:
        records = data.get(key)
        if records is None:
            passed, detail = False, "no data"
        else:
            rec = records[0] if isinstance(records, list) else records
            try:
                passed, detail = predicate(rec)
            except (KeyError, TypeError, AttributeError) as exc:
                passed, detail = False, "unexpected data (%r): %s" % (exc, json.dumps(rec)[:300])
        print("%s  %s  %s" % ("PASS" if passed else "FAIL", name, detail))
        failed += not passed
    return CHECKS_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
