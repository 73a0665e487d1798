"""tests/kernel/lib/boot.sh's boot_retrying_boot_crash, with a stand-in boot function (a
real one boots the 6.12 guest under TCG for minutes; the kernel tier runs that): a guest
that died before its init's first line boots once more, and nothing else is retried."""
import os
import subprocess

import pytest

BOOT_SH = os.path.join(os.path.dirname(__file__), "..", "..", "kernel", "lib", "boot.sh")
OOPS = "[    1.139362] Oops: double fault: 0000 [#1] PREEMPT SMP NOPTI"

# fake_boot writes, per boot, the console and results the next entry of OUTCOMES says:
# "crash" (an Oops before any result line), "ok" (the marker, then a result), or
# "late-crash" (the marker, then an Oops: a crash after something of ours ran).
SCRIPT = r"""
source "$BOOT_SH"
boots=0
fake_boot() {
    local logs=$1 outcome
    boots=$((boots + 1))
    outcome=$(echo "$OUTCOMES" | cut -d, -f"$boots")
    rm -f "$logs/console.log" "$logs/results.log"
    case $outcome in
    crash) echo "$OOPS" >"$logs/console.log"; : >"$logs/results.log" ;;
    ok) echo booted >"$logs/console.log"; printf 'KPHASE begin patched\r\nKTEST ok x\r\n' >"$logs/results.log" ;;
    late-crash) echo "$OOPS" >"$logs/console.log"; printf 'KPHASE begin patched\r\n' >"$logs/results.log" ;;
    esac
}
boot_retrying_boot_crash "$LOGS" KPHASE fake_boot "$LOGS"
echo "boots=$boots status=$?"
"""


@pytest.mark.parametrize("outcomes, boots, retried, results", [
    ("ok", 1, False, "KTEST ok"),
    ("crash,ok", 2, True, "KTEST ok"),
    ("crash,crash", 2, True, ""),
    ("late-crash", 1, False, "KPHASE begin"),
])
def test_only_a_guest_that_died_before_its_first_line_boots_again(tmp_path, outcomes, boots, retried, results):
    run = subprocess.run(["bash", "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60,
                         env=dict(os.environ, BOOT_SH=BOOT_SH, OOPS=OOPS, OUTCOMES=outcomes, LOGS=str(tmp_path)))
    assert "boots=%d " % boots in run.stdout, run.stdout + run.stderr
    assert ("== KNOWN: the guest kernel died while booting, before any test: %s" % OOPS in run.stdout) == retried
    assert (tmp_path / "console-boot-crash.log").exists() == retried
    assert results in (tmp_path / "results.log").read_text()
    if not results:
        assert (tmp_path / "results.log").read_text() == ""
