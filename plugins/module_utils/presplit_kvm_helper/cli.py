# -*- coding: utf-8 -*-
# Copyright: presplit.kvm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``kvm-presplit``: the host helper for operators, same code as the Ansible modules.

The presplit role installs these module_utils as a package next to a small launcher
(roles/presplit/tasks/install.yml), so the CLI needs no Ansible.
"""

import argparse
import json
import sys

from .domain import DEFAULT_RUN_DIR, DEFAULT_URI, shown
from .errors import EXIT_STATUS_DOC, PresplitError, exit_status_for_code
from .hold_state import DEFAULT_STATE_DIR
from .ops import PresplitHost
from .uapi import page_size_name


EXIT_MIXED = 10
EXIT_INTERRUPTED = 130
BAR_WIDTH = 30


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kvm-presplit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pre-split a running KVM guest's huge EPT/NPT mappings before live migration.",
        epilog=EXIT_STATUS_DOC + "\n\nNeeds root or CAP_SYS_PTRACE: the VM fd is taken out of QEMU "
                                 "with pidfd_getfd(2).")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    parser.add_argument("--uri", default=DEFAULT_URI, help="libvirt URI (default: %(default)s)")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR,
                        help="libvirt QEMU run directory with <name>.pid/<name>.xml (default: %(default)s)")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                        help="where holds placed by this helper are recorded (default: %(default)s)")
    parser.add_argument("--no-libvirt", action="store_true",
                        help="do not connect to libvirt; find running domains from --run-dir only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    status = sub.add_parser("status", help="host mode, capabilities and per-domain mapping counts")
    status.add_argument("domains", nargs="*", metavar="DOMAIN", help="name or UUID (default: all running)")

    split = sub.add_parser("split", help="split huge mappings of running domains")
    split.add_argument("domains", nargs="+", metavar="DOMAIN", help="name or UUID")
    split.add_argument("--level", choices=("4k", "2m"), default="4k", help="target level (default: %(default)s)")
    split.add_argument("--hold", action="store_true", help="keep the range split until released")
    split.add_argument("--rate", type=float, metavar="GIB_PER_S",
                       help="limit to this many GiB of guest address space per second")
    split.add_argument("--chunk-mib", type=int, default=1024, metavar="MIB",
                       help="bytes per ioctl, multiple of 2 (default: %(default)s)")
    split.add_argument("--dry-run", action="store_true", help="report counts and what would be split")

    release = sub.add_parser("release", help="drop holds placed by 'split --hold'")
    release.add_argument("domains", nargs="+", metavar="DOMAIN", help="name or UUID")
    release.add_argument("--force", action="store_true",
                         help="issue RELEASE even without a hold record (lets KVM collapse huge pages back)")
    release.add_argument("--dry-run", action="store_true", help="report what would be released")
    return parser


class ProgressBar:
    """One self-overwriting line on a TTY; silent otherwise."""

    def __init__(self, stream, domain):
        self.stream = stream
        self.domain = domain
        self.enabled = stream.isatty()

    def __call__(self, label, done, total, nr_split):
        if not self.enabled:
            return
        filled = BAR_WIDTH * done // total
        self.stream.write("\r%-20.20s %-7s [%s%s] %3d%% split %d" % (
            self.domain, label, "#" * filled, "." * (BAR_WIDTH - filled), 100 * done // total, nr_split))
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _fmt_counts(counts):
    if counts is None:
        return ["-", "-", "-"]
    return [str(counts.get(name, "-")) for name in ("pages_4k", "pages_2m", "pages_1g")]


def hold_label(record):
    if not record:
        return "-"
    return "held@%s" % page_size_name(record["page_size"])


def _fmt_range(item):
    return "%s [%#x, %#x)" % (page_size_name(item["page_size"]), item["gpa"], item["gpa"] + item["size"])


def _table(rows):
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def render_status(facts):
    vendors = ",".join(facts["kvm_vendor_modules"]) or "absent"
    lines = ["host: kernel %s, KVM %s, mode %s" % (facts["kernel_release"], vendors, facts["mode"]),
             "  reason: %s" % facts["mode_reason"],
             "  tdp_mmu=%s eager_page_split=%s preempt=%s THP=%s hugetlb=%s" % (
                 facts["tdp_mmu"], facts["eager_page_split"], facts["preempt_model"] or "unknown", facts["thp_mode"],
                 ", ".join("%s:%d/%d" % (size, pool["free"], pool["total"])
                           for size, pool in sorted(facts["hugetlb_pools"].items())) or "-"),
             "  domains from %s%s" % (facts["inventory_source"],
                                      " (%s)" % facts["libvirt_error"] if facts["libvirt_error"] else "")]
    rows = [["DOMAIN", "ACCEL", "PID", "BACKING", "4K", "2M", "1G", "SOURCE", "HOLD", "STATUS"]]
    for dom in facts["domains"]:
        status = dom["status"] if not dom["error"] else "%s: %s" % (dom["status"], dom["error"]["message"])
        rows.append([dom["name"], dom["accelerator"], str(dom["pid"] or "-"), dom["memory_backing"]]
                    + _fmt_counts(dom["counts"])
                    + [dom["counts_source"] or "none", hold_label(dom["hold"]), status])
    lines.append(_table(rows))
    for dom in facts["domains"]:
        for attempt in dom["counts_attempts"]:
            lines.append("  %s: %s failed: %s" % (dom["name"], attempt["source"], attempt["error"]))
        lines.extend(_hold_check_lines(dom["name"], dom.get("hold_check")))
    return "\n".join(lines)


def _hold_check_lines(name, check):
    """What the kernel holds, and the hold check when it needs the operator."""
    if not check:
        return []
    lines = ["  %s: kernel holds %s" % (name, _fmt_range(item)) for item in check.get("kernel_ranges") or ()]
    if check["status"] in ("stale-record", "partial", "unrecorded"):
        lines.append("  %s: hold %s: %s" % (name, check["status"], check["message"]))
    if check["recorded"]:
        # Without a record all the kernel holds is unrecorded, and listed above.
        lines.extend("  %s: unrecorded %s" % (name, _fmt_range(item)) for item in check["unrecorded"])
    return lines


def render_result(command, result):
    if command == "split":
        verb = "would split" if result["dry_run"] else "split"
        if not result["changed"]:
            return "%s: nothing to do (no huge mappings above %s%s)" % (
                result["domain"], result["target_level"], ", hold in place" if result["hold_record"] else "")
        if result["dry_run"]:
            return "%s: %s %s huge mappings to %s in %s (counts from %s)%s" % (
                result["domain"], verb, "?" if result["would_split"] is None else result["would_split"],
                result["target_level"], " then ".join(result["passes_planned"]), result["counts_source"] or "nowhere",
                "" if result["supported"] else "; NOT possible here: %s" % result["unsupported_reason"])
        return "%s: split %d mappings in %.3fs (%s); 4K/2M/1G before %s after %s" % (
            result["domain"], result["nr_split"], result["seconds"],
            ", ".join("%s %.3fs" % (rec["pass"], rec["seconds"]) for rec in result["passes"]),
            "/".join(_fmt_counts(result["before"])), "/".join(_fmt_counts(result["after"])))
    if result.get("accelerator") == "tcg":
        return "%s: not KVM-accelerated (TCG), holds nothing" % result["domain"]
    if not result["changed"]:
        held = result.get("kernel_held_pages")
        return "%s: no hold recorded, nothing released (%suse --force to release anyway)" % (
            result["domain"], "the kernel holds %d pages; " % held if held else "")
    return "%s: %s hold" % (result["domain"], "would release" if result["dry_run"] else "released")


def _exit_status(codes):
    statuses = set(exit_status_for_code(code) for code in codes)
    if not statuses:
        return 0
    return statuses.pop() if len(statuses) == 1 else EXIT_MIXED


def run(args, out=sys.stdout, err=sys.stderr):
    host = PresplitHost(uri=args.uri, run_dir=args.run_dir, state_dir=args.state_dir,
                        use_libvirt=not args.no_libvirt)
    errors = []
    results = []
    try:
        if args.command == "status":
            facts = host.facts(with_domains=not args.domains)
            if args.domains:
                facts["domains"] = []
                for ident in args.domains:
                    try:
                        facts["domains"].append(host.inspect(ident))
                    except PresplitError as exc:
                        errors.append(exc.code)
                        results.append({"domain": ident, "error": exc.as_dict()})
            errors.extend(dom["error"]["code"] for dom in facts["domains"] if dom["status"] == "error")
            out.write(json.dumps(dict(facts, errors=results), indent=2, sort_keys=True) + "\n" if args.json
                      else render_status(facts) + "\n")
            for failed in results:
                if not args.json:
                    err.write("%s: %s\n" % (shown(failed["domain"]), failed["error"]["message"]))
            return _exit_status(errors)
        for ident in args.domains:
            try:
                if args.command == "split":
                    result = host.split(ident, level=args.level, hold=args.hold, rate_gib_s=args.rate,
                                        chunk=args.chunk_mib * (1 << 20),
                                        dry_run=args.dry_run,
                                        progress=None if args.json else ProgressBar(err, shown(ident)))
                else:
                    result = host.release(ident, force=args.force, dry_run=args.dry_run)
                results.append(result)
                if not args.json:
                    out.write(render_result(args.command, result) + "\n")
            except PresplitError as exc:
                errors.append(exc.code)
                results.append({"domain": ident, "error": exc.as_dict()})
                if not args.json:
                    err.write("kvm-presplit: %s: %s\n" % (shown(ident), exc))
        if args.json:
            out.write(json.dumps({"results": results}, indent=2, sort_keys=True) + "\n")
        return _exit_status(errors)
    finally:
        host.close()


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        sys.stderr.write("\nkvm-presplit: interrupted; a split with --hold may have held part of the "
                         "range (the hold is recorded): 'kvm-presplit release DOMAIN' drops it\n")
        return EXIT_INTERRUPTED
    except PresplitError as exc:
        if args.json:
            sys.stdout.write(json.dumps({"error": exc.as_dict()}) + "\n")
        else:
            sys.stderr.write("kvm-presplit: %s\n" % exc)
        return exc.exit_status
