"""The e2e tier's run reports as a browser shows them.

    python3 check-report.py REPORT.html GUEST...

Opens the page in headless Chromium (the Debian package, as tests/report does) and prints
one line per guest with what its row in the statistics table says: the hosts' kernel modes,
status, pre-split time, huge mappings before / after the pre-split, huge mappings split
inside the migration. Exits 1 when Chromium logs a console message, the page has no
timeline, or a guest has no row or its row is not "migrated" with both kernel modes known and
both huge-mapping cells filled in.
"""

import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile

CONSOLE_LINE = re.compile(r":CONSOLE[:(]")
COLUMNS = ("domain", "from", "to", "kernel modes from / to", "status", "pre-split",
           "huge mappings before / after pre-split", "huge mappings split in the migration")
MODES = "(patched|eager-split-only|none)"


class StatsTable(html.parser.HTMLParser):
    """The rows (lists of cell texts) of the page's <table class="stats">."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self._in_table = False
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "stats") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif self._in_table and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def dump_dom(page):
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--user-data-dir=%s" % profile,
             "--enable-logging=stderr", "--v=0", "--dump-dom", "file://" + os.path.abspath(page)],
            capture_output=True, text=True, timeout=120, check=False)
    return proc.stdout, [line for line in proc.stderr.splitlines() if CONSOLE_LINE.search(line)]


def main(page, guests):
    dom, console = dump_dom(page)
    table = StatsTable()
    table.feed(dom)
    ok = True
    if console:
        print("%s: console messages: %s" % (page, " | ".join(console)))
        ok = False
    if "<svg" not in dom:
        print("%s: no timeline drawn" % page)
        ok = False
    head = table.rows[0] if table.rows else []
    if tuple(head[:len(COLUMNS)]) != COLUMNS:
        print("%s: statistics table columns are %s" % (page, head))
        return 1
    rows = {row[0]: dict(zip(head, row)) for row in table.rows[1:] if row}
    for guest in guests:
        row = rows.get(guest)
        if row is None:
            print("%s: no row for %s" % (page, guest))
            ok = False
            continue
        print("%s: %s %s -> %s (%s) %s, pre-split %s, huge before / after pre-split %s, split in the migration %s"
              % (os.path.basename(page), guest, row["from"], row["to"], row[COLUMNS[3]], row["status"],
                 row["pre-split"], row[COLUMNS[6]], row[COLUMNS[7]]))
        if (row["status"] != "migrated" or not re.fullmatch(MODES + " / " + MODES, row[COLUMNS[3]])
                or not row[COLUMNS[6]] or not re.fullmatch(r"\d+", row[COLUMNS[7]])):
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
