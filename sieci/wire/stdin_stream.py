"""A job's stdin on the wire (``stdin=stream``), and its terminal (``tty=``), with no I/O in it.

Once the job is accepted, the client sends one block, ``ENDSEQ <terminator> stdin``, whose
payload is items in the extended results' raw form (framing.ItemsBlockReader frames them): ``1 <n>``
and then n bytes of stdin, and, with a terminal, ``w <cols> <rows>`` when it is resized; its
terminator follows when stdin ends. A sieci master relays it to the worker item by item (see
stdin_relay.py), and the worker feeds it to the job (job_stdin.py). See docs/protocol.md.
"""

from sieci.wire.protocol import RAW_TAGS, STDOUT, RemoteProtocolError, encode_header, parse_raw_header
from sieci.wire.results import ItemDecoder
from sieci.wire.upload_format import TTY_FIELD

STDIN_FIELD = b"stdin"  # the field that names a stdin block in its header
RESIZE_TAG = b"w "
LARGEST_TERMINAL = 0xFFFF  # columns or rows: the kernel's struct winsize holds them in 16 bits
_DATA_TAG = RAW_TAGS[STDOUT]


def encode_stdin_header(terminator):
    return encode_header(terminator, [STDIN_FIELD])


def is_stdin_header(header):
    return STDIN_FIELD in header.fields


def stdin_items(data, terminator):
    """The pieces, to send in order, of items carrying ``data``: raw, each a piece of ``data`` in which
    the terminator does not occur whole (so no line of them can end the block, even for a reader that
    searches); ``data`` itself, not copied, when it holds none."""
    pieces = []
    for piece in _apart_from(data, terminator):
        pieces += [_DATA_TAG + b"%d\n" % len(piece), piece]
    return pieces


def _apart_from(data, terminator):
    """``data`` cut in the middle of every occurrence of ``terminator``; an occurrence that overlaps
    one already cut spans that cut too."""
    found = data.find(terminator)
    if found < 0:
        return [data] if data else []
    pieces, start = [], 0
    while found >= 0:
        cut = found + len(terminator) // 2
        pieces.append(data[start:cut])
        start = cut
        found = data.find(terminator, cut)
    pieces.append(data[start:])
    return [piece for piece in pieces if piece]


def encode_resize(columns, rows):
    return RESIZE_TAG + b"%d %d\n" % (columns, rows)


def tty_field(columns, rows):
    return TTY_FIELD + b"=%dx%d" % (columns, rows)


def parse_size(columns, rows):
    """``(columns, rows)`` from their digits; RemoteProtocolError unless each is 1 to LARGEST_TERMINAL."""
    if not (columns.isdigit() and rows.isdigit() and 0 < int(columns) <= LARGEST_TERMINAL
            and 0 < int(rows) <= LARGEST_TERMINAL):
        raise RemoteProtocolError(f"not a terminal's size: {columns[:20]!r} by {rows[:20]!r}")
    return int(columns), int(rows)


def terminal_size(header):
    """The ``(columns, rows)`` of the terminal an upload asks for (``tty=``), or None."""
    value = header.field(TTY_FIELD)
    if value is None:
        return None
    columns, _, rows = value.partition(b"x")
    return parse_size(columns, rows)


class Resize:
    """The client's terminal now has ``columns`` and ``rows``."""

    def __init__(self, columns, rows):
        self.columns = columns
        self.rows = rows

    def __eq__(self, other):
        return isinstance(other, Resize) and (self.columns, self.rows) == (other.columns, other.rows)

    def __repr__(self):
        return f"Resize({self.columns}, {self.rows})"


class StdinDecoder(ItemDecoder):
    """A stdin block's payload, in any chunking, into bytes of stdin and Resize events.

    A raw item's bytes pass through as they come, however long it says it
    is; another line longer than ``max_line`` breaks the protocol, as does
    anything but a raw stdin item, a resize, or a line with an unknown
    lower-case tag (room for later additions, ignored).
    """

    what = "a stdin line"

    @property
    def between_items(self):
        return not self._raw_left and not self._partial

    def feed(self, data):
        if self._partial:
            data, self._partial = self._partial + data, b""
        events, position = [], 0
        while position < len(data):
            if self._raw_left:
                piece = data[position:position + self._raw_left]
                events.append(piece)
                self._raw_left -= len(piece)
                position += len(piece)
                continue
            end = data.find(b"\n", position)
            if end < 0:
                self._keep_partial(data[position:])
                break
            self._decode_line(bytes(data[position:end + 1]), events)
            position = end + 1
        return events

    def _decode_line(self, line, events):
        if line.startswith(_DATA_TAG):
            self._raw_left = parse_raw_header(line)[1]
        elif line.startswith(RESIZE_TAG):
            words = line.split()
            if len(words) != 3:
                raise RemoteProtocolError(f"a malformed resize {line[:80]!r}")
            events.append(Resize(*parse_size(words[1], words[2])))
        elif not (line[:1].islower() and line[1:2] in (b" ", b"\n")):
            raise RemoteProtocolError(f"not a stdin item: {line[:80]!r}")
