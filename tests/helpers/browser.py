"""A real browser for the tests: Debian's headless Chromium, driven with its own command line, and
a PNG reader small enough to count a screenshot's colours without a dependency.

Each run is bounded in time and its whole process group is killed when it ends: Chromium leaves
helper processes behind otherwise.
"""

import os
import shutil
from html.parser import HTMLParser
import signal
import struct
import subprocess  # gevent's: tests/conftest.py patched the standard library first
import zlib

import pytest

# Debian's names: the full browser, then the smaller package that only runs headless.
BROWSERS = ("chromium", "chromium-headless-shell")
RUN_TIMEOUT = 60.0
# The page polls every 2 s; this much virtual time lets it fetch twice before the browser dumps or shoots.
VIRTUAL_TIME_MS = 5000


def find_browser():
    """The path of a headless Chromium, or a skip that says none is installed."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no headless browser installed ({' or '.join(BROWSERS)}: apt-get install chromium)")


def run_browser(browser, profile, url, *options):
    """Run ``browser`` headless on ``url`` with ``options``; its stdout."""
    argv = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", f"--user-data-dir={profile}",
            f"--virtual-time-budget={VIRTUAL_TIME_MS}", *options, url]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{os.path.basename(browser)} did not finish within {RUN_TIMEOUT:g} s: {argv}")
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{stderr.decode(errors='replace')[-3000:]}"
    return stdout


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Page(HTMLParser):
    """What a dumped DOM shows: each table's body rows (``tables[id]``: lists of the cells' texts), the tags
    of every element, and the text of each element with an id (``texts[id]``) and of the title."""

    def __init__(self, dom):
        super().__init__()
        self.tables, self.tags, self.texts = {}, set(), {}
        self._table = self._cell = self._element = None
        self.feed(dom)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag == "td" and self._table is not None:
            self._cell = ""
        elif "id" in attrs or tag == "title":
            self._element = attrs.get("id", tag)
            self.texts[self._element] = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "td" and self._cell is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag == "thead" and self._table is not None:
            self._table.clear()  # the header's row
        self._element = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        elif self._element is not None:
            self.texts[self._element] += data


def png_colours(path):
    """The set of distinct colours of an 8-bit RGB or RGBA PNG (as Chromium writes them)."""
    with open(path, "rb") as file:
        data = file.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    chunks, position = {}, 8
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunks.setdefault(kind, []).append(data[position + 8:position + 8 + length])
        position += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format: depth {depth}, colour type {colour_type}"
    pixel_size = 3 if colour_type == 2 else 4
    rows = _unfiltered_rows(zlib.decompress(b"".join(chunks[b"IDAT"])), width * pixel_size, height, pixel_size)
    return {bytes(row[i:i + pixel_size]) for row in rows for i in range(0, len(row), pixel_size)}


def _unfiltered_rows(raw, stride, height, pixel_size):
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth)."""
    previous = bytearray(stride)
    for start in range(0, height * (stride + 1), stride + 1):
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = row[i - pixel_size] if i >= pixel_size else 0
            up = previous[i]
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                up_left = previous[i - pixel_size] if i >= pixel_size else 0
                row[i] = (row[i] + _paeth(left, up, up_left)) & 0xFF
        yield row
        previous = row


def _paeth(left, up, up_left):
    estimate = left + up - up_left
    distances = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if distances[0] <= distances[1] and distances[0] <= distances[2]:
        return left
    return up if distances[1] <= distances[2] else up_left
