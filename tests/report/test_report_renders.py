# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration report opens in a real browser: headless Chromium renders it without a
console message, draws the timeline's bars, and paints the phase colours on screen.

Needs the Debian package ``chromium``. Run:
  .venv/bin/python -m pytest tests/report -q -p no:cacheprovider    (from the repository root)
"""

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "build", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

from ansible_collections.presplit.kvm.plugins.module_utils.migration_report import (  # noqa: E402
    PHASE_COLOURS, build_record, render_html)

CHROMIUM = shutil.which("chromium")
VIEWPORT = (1100, 1500)
# A console line as Chromium logs it with --enable-logging=stderr: [...:INFO:CONSOLE:1] "text", source: ...
CONSOLE_LINE = re.compile(r":CONSOLE[:(]")
FAILURE_RED = (0xC6, 0x28, 0x28)
T0 = 1764090000.0


def run_result(domain, destination, wave_start, presplit_s, migration_s, downtime_ms, status="migrated", msg=""):
    migrated = status == "migrated"
    return {
        "domain": domain, "source": "hv01", "destination": destination, "status": status, "changed": migrated,
        # As in the lab: about a second of the launched migration is start-up, not the libvirt job.
        "total_time_ms": int(migration_s * 1000) - 900 if migrated else None,
        "downtime_ms": downtime_ms if migrated else None, "iterations": 4 if migrated else None,
        "data_transferred": int(migration_s * 118 * 2 ** 20) if migrated else None,
        "presplit_started": T0 + wave_start, "presplit_ended": T0 + wave_start + presplit_s,
        "migration_started": T0 + wave_start + presplit_s,
        "migration_ended": T0 + wave_start + presplit_s + migration_s,
        "msg": msg or "running on %s only" % destination,
    }


def realistic_record():
    """Three waves of two migrations off hv01, one failing, one domain with an awkward name."""
    results = [
        run_result("db-primary", "hv02", 0.0, 1.8, 14.2, 164),
        run_result("web-01", "hv03", 0.0, 1.8, 4.1, 112),
        run_result("cache \"<eu>\" & ünïcode", "hv03", 16.3, 0.9, 6.0, 138),
        run_result("batch-7", "hv02", 16.3, 0.9, 9.5, 0, status="failed",
                   msg="migration did not complete within the completion timeout of 8 s and was aborted: "
                       "domain is running on the source and absent on the destination"),
        run_result("web-02", "hv02", 27.0, 0.6, 3.4, 95),
        run_result("metrics", "hv03", 27.0, 0.6, 5.2, 201),
    ]
    results.append({"domain": "dns", "source": "hv01", "destination": "hv02", "status": "already_migrated",
                    "changed": False, "total_time_ms": None, "downtime_ms": None, "iterations": None,
                    "data_transferred": None, "presplit_started": None, "presplit_ended": None,
                    "migration_started": None, "migration_ended": None, "msg": "already running on hv02"})
    plan = {"waves": [{"wave": 1 + index // 2, "migrations": [
        {"domain": r["domain"], "source": "hv01", "destination": r["destination"], "mode": "pre_copy",
         "wave": 1 + index // 2, "duration_s": round((r["migration_ended"] - r["migration_started"]) * factor, 3),
         "downtime_ms": 150.0}]} for index, (r, factor) in enumerate(zip(results, (0.9, 1.1, 1.0, 0.5, 1.3, 0.8)))],
        "summary": {"makespan_s": 31.5}}
    return build_record(results, plan, title="Evacuation of hv01 \u2014 maintenance window 42")


def chromium(args, user_data_dir, timeout=90):
    """Run headless Chromium on loopback-only local files; returns (stdout, stderr)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--user-data-dir=%s" % user_data_dir, "--enable-logging=stderr", "--v=0",
               "--force-color-profile=srgb", "--hide-scrollbars",
               "--window-size=%d,%d" % VIEWPORT] + args
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=True,
                          universal_newlines=True)
    return done.stdout, done.stderr


def png_pixels(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit, non-interlaced RGB or RGBA PNG."""
    with open(path, "rb") as png:
        data = png.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, header = 8, b"", None
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, colour_type, _compression, _filter, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, "unexpected PNG format %r" % (header,)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + predictor) & 0xFF
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        previous = line
    return width, height, rows


def hex_rgb(colour):
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def console_lines(stderr):
    return [line for line in stderr.splitlines() if CONSOLE_LINE.search(line)]


@pytest.fixture(scope="module")
def browser_profile(tmp_path_factory):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y --no-install-recommends chromium")
    return tmp_path_factory.mktemp("chromium-profile")


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    page = tmp_path_factory.mktemp("report") / "report.html"
    page.write_text(render_html(realistic_record()), encoding="utf-8")
    return page


def test_console_scan_catches_a_console_message(tmp_path, browser_profile):
    """The scan below is only worth something if it sees what a page logs."""
    page = tmp_path / "canary.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("canary")</script>', encoding="utf-8")
    _out, err = chromium(["--dump-dom", page.as_uri()], str(browser_profile))
    assert any("canary" in line for line in console_lines(err)), err


def test_report_renders_its_bars_without_console_messages(report_page, browser_profile):
    dom, err = chromium(["--dump-dom", report_page.as_uri()], str(browser_profile))

    assert console_lines(err) == []
    # Six timed migrations: one outgoing bar each on hv01 and one incoming bar on a destination.
    assert len(re.findall(r'<g class="bar out ', dom)) == 6
    assert len(re.findall(r'<g class="bar in ', dom)) == 6
    assert len(re.findall(r'class="phase presplit"', dom)) == 6
    # The failed migration is outlined in red in both lanes it touched.
    assert len(re.findall(r'class="failed-outline"', dom)) == 2
    assert "1 failed migration" in dom and "batch-7" in dom
    assert "cache &quot;&lt;eu&gt;&quot; &amp; ünïcode" in dom or 'cache "&lt;eu&gt;" &amp; ünïcode' in dom
    # Self-contained: nothing to fetch from anywhere.
    assert not re.search(r'(?:src|href)\s*=\s*"(?:https?:)?//', dom)


def test_screenshot_paints_the_phases_and_the_failure(report_page, browser_profile, tmp_path):
    shot = tmp_path / "report.png"
    _out, err = chromium(["--screenshot=%s" % shot, report_page.as_uri()], str(browser_profile))

    assert console_lines(err) == []
    width, height, rows = png_pixels(str(shot))
    assert (width, height) == VIEWPORT
    counts = {}
    for row in rows:
        for pixel in row:
            counts[pixel] = counts.get(pixel, 0) + 1
    background = max(counts, key=counts.get)
    assert background == (255, 255, 255)
    # A page that did not render would be one colour; this one is mostly white with a lot drawn on it.
    assert len(counts) > 50
    assert width * height - counts[background] > width * height // 20
    # Every phase colour and the failure red cover real area, not a stray pixel.
    for name in ("presplit", "setup", "precopy", "downtime", "incoming", "failed"):
        assert counts.get(hex_rgb(PHASE_COLOURS[name]), 0) >= 30, name
    assert counts.get(FAILURE_RED, 0) >= 30
    shutil.copy(str(shot), os.environ.get("REPORT_SCREENSHOT", str(tmp_path / "kept.png")))
