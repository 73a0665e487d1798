"""The lab guest's workload (roles/lab/files/presplit-guest.c) never sleeps past its slice, however
slowly its clock reads come back.

Under nested TCG two clock reads can be milliseconds apart; the workload once checked the time,
read it again and slept for the unsigned difference, which wrapped to about 71 minutes when the
slice ended in between, and a guest looked hung (tests/e2e). Here the workload runs on this
machine against a clock whose reads come back 1 ms apart and now and then much later (an
LD_PRELOAD shim over clock_gettime and usleep), so a slice ends between two reads again and
again; the old loop slept 4294964296 us under the first pattern.

With a disk (a file here; /dev/vda in a lab guest) it formats, rewrites and verifies 4 KiB
blocks, and reports a corrupted one.
"""
import os
import re
import shutil
import subprocess
import threading

import pytest

SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "lab", "files", "presplit-guest.c")
SLICE_US = 1000 * 1000 // 20        # SLICES_PER_SECOND in presplit-guest.c
SHIM = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static unsigned long long fake_ns = 1000000000ULL, reads, sleeps, longest_us;

int clock_gettime(clockid_t clock, struct timespec *ts)
{
    (void)clock;
    /* Reads come back 1 ms apart, every PERIOD-th one BIG_MS later. */
    unsigned long long period = strtoull(getenv("PERIOD"), NULL, 10);

    fake_ns += (reads % period == period - 1 ? strtoull(getenv("BIG_MS"), NULL, 10) : 1ULL) * 1000000ULL;
    ts->tv_sec = fake_ns / 1000000000ULL;
    ts->tv_nsec = fake_ns % 1000000000ULL;
    if (++reads == 20000) {
        fflush(stdout);
        fprintf(stderr, "longest_sleep_us=%llu sleeps=%llu\n", longest_us, sleeps);
        _exit(0);
    }
    return 0;
}

int usleep(useconds_t us)
{
    if (us > longest_us)
        longest_us = us;
    sleeps++;
    fake_ns += 1000ULL * us;
    return 0;
}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler (build-essential, installed by scripts/install-deps.sh) is needed"
    out = tmp_path_factory.mktemp("workload")
    (out / "shim.c").write_text(SHIM)
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(out / "presplit-guest"), SOURCE], check=True)
    subprocess.run([compiler, "-O2", "-Wall", "-shared", "-fPIC", "-o", str(out / "shim.so"), str(out / "shim.c")],
                   check=True)
    return out


@pytest.mark.parametrize("period, big_ms", [(13, 20), (13, 30), (17, 45), (11, 30), (7, 10)])
def test_no_sleep_outlasts_its_slice_when_reads_are_slow(built, period, big_ms):
    env = dict(os.environ, LD_PRELOAD=str(built / "shim.so"), PERIOD=str(period), BIG_MS=str(big_ms))
    proc = subprocess.run([str(built / "presplit-guest"), "1", "1"], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"longest_sleep_us=(\d+) sleeps=(\d+)", proc.stderr)
    assert found, proc.stderr
    assert int(found.group(2)) > 100, proc.stderr      # it did sleep between slices
    assert 0 < int(found.group(1)) <= SLICE_US, proc.stderr
    # And it still worked: status lines with every page verified.
    assert "errors=0" in proc.stdout and "errors=1" not in proc.stdout


def _run_until(command, done, hang_guard_s=120):
    """Run the workload until a status line satisfies done(line); return the lines printed.
    hang_guard_s only bounds a workload that never gets there (it prints a line a second)."""
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        timer = threading.Timer(hang_guard_s, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("presplit-guest seq=") and done(line):
                    break
        finally:
            timer.cancel()
            proc.kill()
    return lines


def _field(line, name):
    return int(re.search(r"(?:^| )%s=(\d+)" % name, line).group(1))


def test_disk_blocks_are_written_and_verified(built, tmp_path):
    """A blank 2 MiB file as the disk: formatted to generation 0, rewritten 200 blocks a second,
    every block verified over whole passes, nothing wrong; the fields sit before errors=."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (2 << 20))
    lines = _run_until([str(built / "presplit-guest"), "1", "0", str(disk), "200"],
                       lambda line: _field(line, "disk_passes") >= 2)
    last = lines[-1]
    assert re.search(r" disk_mib=2 disk_written_blocks=\d+ disk_verified_blocks=\d+ disk_passes=\d+ disk_errors=0"
                     r" errors=0$", last), lines
    assert _field(last, "disk_written_blocks") > 0 and _field(last, "disk_verified_blocks") >= 2 * 512


def test_a_corrupted_disk_block_is_reported(built, tmp_path):
    """An image made with --disk-pattern holds generation 0 everywhere; one flipped bit in the
    middle of block 100 (where the blank-image check at start does not look) is found."""
    disk = tmp_path / "base.raw"
    subprocess.run([str(built / "presplit-guest"), "--disk-pattern", str(disk), "1"], check=True)
    data = bytearray(disk.read_bytes())
    assert len(data) == 1 << 20
    data[100 * 4096 + 2048] ^= 1
    disk.write_bytes(bytes(data))
    lines = _run_until([str(built / "presplit-guest"), "1", "0", str(disk), "0"],
                       lambda line: _field(line, "disk_passes") >= 1)
    assert "presplit-guest DISK MISMATCH block=100 word=256 generation=0" in lines, lines
    assert _field(lines[-1], "disk_errors") >= 1 and _field(lines[-1], "disk_written_blocks") == 0
