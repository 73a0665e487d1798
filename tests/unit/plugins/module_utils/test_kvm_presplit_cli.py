"""``kvm-presplit`` end to end in a subprocess, against real QEMU processes on this machine's
unpatched /dev/kvm (host mode "none"): status, split, release, exit codes, hostile input."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.cli import ProgressBar, render_status

CLI = ("import sys\n"
       "from ansible_collections.presplit.kvm.plugins.module_utils.presplit_kvm_helper.cli import main\n"
       "sys.exit(main(sys.argv[1:]))\n")
HOSTILE = "web 01 'prod' \"x\" $(reboot); `id` & ü ☃"


@pytest.fixture
def cli(qemu_domains, run_python, tmp_path):
    def run(*args):
        return run_python(CLI, "--no-libvirt", "--run-dir", qemu_domains.run_dir,
                          "--state-dir", str(tmp_path / "holds"), *args)
    return run


def test_status_json_reports_mode_none_tcg_and_the_eio(cli, qemu_domains):
    kvm = qemu_domains.start(HOSTILE)
    tcg = qemu_domains.start("tcg-1", accel="tcg")
    result = cli("--json", "status")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["mode"] == "none" and facts["kvm_capabilities"]["split_huge_pages"] == 0
    domains = {dom["name"]: dom for dom in facts["domains"]}
    assert domains["tcg-1"]["status"] == "not KVM-accelerated" and domains["tcg-1"]["accelerator"] == "tcg"
    assert domains["tcg-1"]["pid"] == tcg["pid"]
    assert domains[HOSTILE]["status"] == "ok" and domains[HOSTILE]["accelerator"] == "kvm"
    assert domains[HOSTILE]["counts_attempts"][0]["error"].startswith("EIO: the kernel refuses VM ioctls")
    # without the capability nothing can be asked what it holds
    check = domains[HOSTILE]["hold_check"]
    assert check["status"] == "unknown" and check["kernel_ranges"] is None
    assert check["message"] == "KVM_CAP_SPLIT_HUGE_PAGES absent (0)"
    assert kvm["proc"].poll() is None     # QEMU untouched and alive


def test_status_table_names_the_reason(cli, qemu_domains):
    qemu_domains.start(HOSTILE)
    result = cli("status")
    assert result.returncode == 0, result.stderr
    assert "mode none" in result.stdout
    assert "reason: KVM_CAP_SPLIT_HUGE_PAGES absent (0)" in result.stdout
    assert HOSTILE in result.stdout and "stats-fd failed: EIO" in result.stdout


def test_split_on_unpatched_host_exits_3_and_dry_run_explains(cli, qemu_domains):
    qemu_domains.start(HOSTILE)
    result = cli("split", HOSTILE, "--hold")
    assert result.returncode == 3
    assert "host mode 'none'" in result.stderr
    dry = cli("--json", "split", HOSTILE, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    (entry,) = json.loads(dry.stdout)["results"]
    assert entry["supported"] is False and entry["changed"] is True
    assert entry["passes_planned"] == ["1g->2m", "2m->4k"]
    assert "tdp_mmu" in entry["unsupported_reason"] or "KVM_CAP" in entry["unsupported_reason"]


def test_exit_codes_per_failure_and_mixed(cli, qemu_domains):
    qemu_domains.start("tcg-2", accel="tcg")
    assert cli("split", "tcg-2").returncode == 5
    assert cli("split", "no such; domain").returncode == 4
    mixed = cli("--json", "split", "tcg-2", "no such; domain")
    assert mixed.returncode == 10
    codes = [entry["error"]["code"] for entry in json.loads(mixed.stdout)["results"]]
    assert codes == ["not_kvm_accelerated", "domain_not_found"]


@pytest.mark.parametrize("args,text", [
    (["--rate", "-1"], "rate must be from 0.01 to 4096 GiB/s"),
    (["--rate", "0"], "rate must be from 0.01 to 4096 GiB/s"),
    (["--rate", "1e12"], "rate must be from 0.01 to 4096 GiB/s"),
    (["--rate", "nan"], "rate must be from 0.01 to 4096 GiB/s"),
    (["--chunk-mib", "-2"], "chunk must be"),
    (["--chunk-mib", "3"], "chunk must be"),
    (["--chunk-mib", "99999999"], "chunk must be"),
])
def test_absurd_rates_and_sizes_exit_2_touching_nothing(cli, qemu_domains, args, text):
    dom = qemu_domains.start("victim")
    result = cli("split", "victim", *args)
    assert result.returncode == 2, result.stderr
    assert text in result.stderr
    assert dom["proc"].poll() is None


def test_argparse_rejects_non_numbers_with_exit_2(cli):
    result = cli("split", "x", "--rate", "fast")
    assert result.returncode == 2 and "invalid float value" in result.stderr


@pytest.mark.parametrize("command", ["split", "release", "status"])
def test_a_name_with_a_newline_is_refused_on_one_line(cli, command):
    result = cli(command, "web\nFAILED")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "%s'web\\nFAILED': domain 'web\\nFAILED': libvirt names cannot contain '/' or control characters"
        % ("kvm-presplit: " if command != "status" else "")]


def test_pid_that_vanished_is_exit_7(cli, qemu_domains):
    dom = qemu_domains.start("gone")
    dom["proc"].kill()
    dom["proc"].wait()
    result = cli("--json", "split", "gone", "--dry-run")
    assert result.returncode == 7
    assert json.loads(result.stdout)["results"][0]["error"]["code"] == "process_mismatch"


def test_reused_pid_is_refused(cli, qemu_domains):
    """The pid file names a live QEMU of another domain (as after a pid reuse)."""
    other = qemu_domains.start("other")
    qemu_domains.register("stale", "11111111-2222-3333-4444-555555555555", other["pid"])
    result = cli("--json", "status", "stale")
    entry = json.loads(result.stdout)["domains"][0]
    assert entry["status"] == "error" and entry["error"]["code"] == "process_mismatch"
    assert "is QEMU for uuid %s" % other["uuid"] in entry["error"]["message"]
    assert result.returncode == 7


def test_status_of_all_survives_one_broken_domain(cli, qemu_domains):
    good = qemu_domains.start("good")
    qemu_domains.start("torn")
    with open("%s/torn.pid" % qemu_domains.run_dir, "w") as handle:
        handle.write("%d\n" % (good["pid"]))
    result = cli("--json", "status")
    domains = {dom["name"]: dom for dom in json.loads(result.stdout)["domains"]}
    assert domains["good"]["status"] == "ok"
    assert domains["torn"]["status"] == "error" and "disagree" in domains["torn"]["error"]["message"]
    assert result.returncode == 7


def test_release_without_hold_is_a_no_op(cli, qemu_domains):
    qemu_domains.start("idle")
    result = cli("release", "idle")
    assert result.returncode == 0
    assert "no hold recorded, nothing released" in result.stdout
    assert cli("release", "idle", "--force").returncode == 3


def test_release_of_a_tcg_domain_holds_nothing(cli, qemu_domains):
    qemu_domains.start("tcg-3", accel="tcg")
    result = cli("release", "tcg-3")
    assert result.returncode == 0, result.stderr
    assert "not KVM-accelerated (TCG), holds nothing" in result.stdout


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_debugfs_source_in_a_private_mount_namespace(qemu_domains, tmp_path, collections_path):
    """debugfs is not mounted on this host; mount it only inside a private mount namespace."""
    dom = qemu_domains.start("debugfs guest")
    script = ('mount -t debugfs none /sys/kernel/debug && PYTHONPATH="%s" "%s" -c "$0" "$@"'
              % (collections_path, sys.executable))
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, CLI,
                             "--json", "--no-libvirt", "--run-dir", qemu_domains.run_dir,
                             "--state-dir", str(tmp_path / "h"), "status", "debugfs guest"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)["domains"][0]
    assert entry["counts_source"] == "debugfs"
    assert entry["counts"] == {"pages_4k": 0, "pages_2m": 0, "pages_1g": 0}
    assert entry["counts_attempts"][0]["source"] == "stats-fd"
    assert dom["proc"].poll() is None


def test_progress_bar_draws_on_a_tty_only():
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        progress = ProgressBar(tty, "web01")
        progress("1g->2m", 1 << 30, 4 << 30, 12)
        progress("1g->2m", 4 << 30, 4 << 30, 40)
    # The pty hands each write over to the master on its own (a kernel work item): one read
    # may see only the first. Read until the closed slave's EIO, which comes after the rest.
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    drawn = drawn.decode()
    os.close(master)
    assert "web01" in drawn and "[#######" in drawn and " 25% split 12" in drawn and "100% split 40" in drawn
    with open(os.devnull, "w") as not_a_tty:
        assert ProgressBar(not_a_tty, "web01").enabled is False


def _facts_with(hold, check):
    dom = {"name": "web01", "accelerator": "kvm", "pid": 41, "memory_backing": "thp", "counts": None,
           "counts_source": None, "counts_attempts": [], "hold": hold, "hold_check": check, "status": "ok",
           "error": None}
    return {"kernel_release": "6.12", "kvm_vendor_modules": ["kvm_intel"], "mode": "patched", "mode_reason": "r",
            "tdp_mmu": True, "eager_page_split": True, "preempt_model": "full", "thp_mode": "always",
            "hugetlb_pools": {}, "inventory_source": "run-dir", "libvirt_error": None, "domains": [dom]}


def test_status_table_shows_the_kernels_ranges_and_what_needs_the_operator():
    gib = 1 << 30
    record = {"page_size": 4096, "gpa": 0, "size": 5 * gib}
    ranges = [{"page_size": 4096, "gpa": 0, "size": gib}, {"page_size": 2 << 20, "gpa": 8 * gib, "size": 2 << 20}]
    check = {"status": "partial", "message": "half of it", "recorded": True, "kernel_ranges": ranges,
             "unrecorded": ranges[1:]}
    table = render_status(_facts_with(record, check))
    assert "held@4k" in table
    assert "web01: kernel holds 4k [0x0, 0x40000000)" in table
    assert "web01: kernel holds 2m [0x200000000, 0x200200000)" in table
    assert "web01: hold partial: half of it" in table
    assert "web01: unrecorded 2m [0x200000000, 0x200200000)" in table
    # a hold found as recorded needs no line beyond the ranges
    held = dict(check, status="held", unrecorded=[], kernel_ranges=ranges[:1])
    lines = render_status(_facts_with(record, held)).splitlines()
    assert [line for line in lines if line.startswith("  web01:")] == ["  web01: kernel holds 4k [0x0, 0x40000000)"]
