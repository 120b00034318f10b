"""Extended results (``v=2``): the job's output, the files it returns and its exit status, encoded and decoded.

No I/O. The worker encodes what its job writes with ``encode_output``, the
files it returns with ``file_items``, and ends with a ``Status`` line; the
client decodes with ``ResultDecoder``. The items' tags, all of them, and raw
chunk headers are in protocol.py, and framing.py reads them, so that masters and clients
can pass raw chunks and files' pieces on by their length.
"""

from sieci import defaults
from sieci.wire.protocol import (DEFAULT_MAX_LINE, LINE_TAGS, OUTPUT_LINE_TAGS, RAW_TAGS, RETURNED, SEAL_TAG, STATUS_TAG,
                                 STREAM_BY_RAW_TAG, RemoteProtocolError, parse_raw_header)
from sieci.wire.upload_format import quote, unquote

OUTPUT_CHUNK = 32 * 1024

# A tagged line's letter: its stream, and the newline its chunk ended with, if any.
_STREAM_BY_TAG = {tags[ended][:1]: (stream, b"\n" if ended == 0 else b"")
                  for stream, tags in OUTPUT_LINE_TAGS.items() for ended in (0, 1)}
# For each tag that can repeat in a run: the line starts that end the run.
_RUN_TAGS = {tag: [b"\n" + other for other in (*LINE_TAGS, *RAW_TAGS.values()) if other != tag]
             for tag in (b"o ", b"e ")}


def encode_output(stream, data, terminator=None):
    """Payload lines carrying ``data`` written by the job to ``stream``.

    Given the block's ``terminator``, data in which it does not occur goes
    raw, after a ``1 <length>`` or ``2 <length>`` line: no line of it can be
    the terminator line. Otherwise (or without one) every line is tagged,
    and no line is longer than OUTPUT_CHUNK plus its tag and newline.
    """
    return b"".join(output_pieces(stream, data, terminator))


def output_pieces(stream, data, terminator=None):
    """``encode_output``'s bytes in pieces to send in order: raw data apart from its header, never copied."""
    if not data:
        return []
    if terminator is not None and terminator not in data:
        return [RAW_TAGS[stream] + str(len(data)).encode() + b"\n", data]
    return [_tagged_lines(stream, data)]


def _tagged_lines(stream, data):
    if len(data) > OUTPUT_CHUNK:
        return b"".join(_tagged_lines(stream, data[i:i + OUTPUT_CHUNK]) for i in range(0, len(data), OUTPUT_CHUNK))
    newline_tag, open_tag = OUTPUT_LINE_TAGS[stream]
    body = newline_tag + data.replace(b"\n", b"\n" + newline_tag)
    if data.endswith(b"\n"):
        return body[: -len(newline_tag)]
    cut = body.rfind(b"\n") + 1
    return body[:cut] + open_tag + body[cut + len(newline_tag):] + b"\n"


def file_items(data, terminator, name=None):
    """Items carrying ``data``, bytes of a file the job returns: ``r <length> <quoted name>`` then the
    bytes on the file's first item (``name``: its path relative to the job's folder, with ``/``),
    ``r <length>`` on the items that go on with the file named last.

    No item holds the block's ``terminator`` whole: ``data`` is cut just inside each place it occurs.
    So no line of a piece can be the terminator line, and a piece's unfinished last line runs into
    the next item's line, which holds a space: a master that reads line by line is never cut short.
    """
    items, start = [], 0
    while True:
        hit = data.find(terminator, start)
        end = len(data) if hit < 0 else hit + 1
        if end > start or name is not None:
            header = RAW_TAGS[RETURNED] + b"%d" % (end - start) + (b" " + quote(name) if name is not None else b"")
            items += [header + b"\n", data[start:end]]
            name = None
        if hit < 0:
            return items
        start = end


def parse_file_name(line):
    """The name on a returned file's first item (``r <length> <quoted name>``), or None on those that
    go on with it."""
    words = line.rstrip(b"\n").split(b" ")
    if len(words) > 3:
        raise RemoteProtocolError(f"malformed returned file's item {line[:80]!r}")
    return unquote(words[2]) if len(words) == 3 else None


class FilePiece:
    """Bytes of a file the job returns, in order: ``name`` (its relative path) on the file's first
    piece, None on the pieces that go on with it."""

    def __init__(self, name, data):
        self.name = name
        self.data = data

    def __eq__(self, other):
        return isinstance(other, FilePiece) and (self.name, self.data) == (other.name, other.data)

    def __repr__(self):
        return f"FilePiece({self.name!r}, {self.data!r})"


class Status:
    """How a job ended, as the last line of extended results says.

    ``kind`` is one of ``exit`` (``value`` = exit code), ``signal`` (``value``
    = signal number), ``limit`` (``value`` = the limit's name: ``time``,
    ``output``...) or ``error`` (the worker could not run the job; ``value`` =
    a short reason word). ``message`` is free text for the user.
    """

    def __init__(self, kind, value, message=b""):
        self.kind = kind
        self.value = value
        self.message = message

    def __eq__(self, other):
        return isinstance(other, Status) and (self.kind, self.value, self.message) == (
            other.kind, other.value, other.message)

    def __repr__(self):
        return f"Status({self.kind!r}, {self.value!r}, {self.message!r})"

    @property
    def exit_code(self):
        """The code a local ``python FILE`` run would have exited with."""
        if self.kind == b"exit":
            return int(self.value) & 0xFF
        if self.kind == b"signal":
            return 128 + int(self.value)
        if self.kind == b"limit":
            return defaults.EXIT_TIME_LIMIT if self.value == b"time" else defaults.EXIT_OTHER_LIMIT
        return defaults.EXIT_FAILED

    def describe(self):
        """For people and logs: ``exited 0``, ``killed by signal 9``, ``hit its time limit``."""
        value = self.value.decode("ascii", "replace")
        if self.kind == b"exit":
            return f"exited {value}"
        if self.kind == b"signal":
            return f"killed by signal {value}"
        if self.kind == b"limit":
            return f"hit its {value} limit"
        return f"could not run ({value})"

    def encode(self):
        line = b" ".join([STATUS_TAG, self.kind, self.value])
        if self.message:
            line += b" " + b" ".join(self.message.split())
        return line + b"\n"


def parse_status(line):
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[0] != STATUS_TAG or parts[1] not in (b"exit", b"signal", b"limit", b"error"):
        raise RemoteProtocolError(f"malformed status line {line[:80]!r}")
    if parts[1] in (b"exit", b"signal") and not parts[2].isdigit():
        raise RemoteProtocolError(f"malformed status line {line[:80]!r}")
    return Status(parts[1], parts[2], parts[3] if len(parts) > 3 else b"")


class ItemDecoder:
    """What decoders of items (raw chunks by their length, lines) share: the raw chunk under way,
    and a line begun, bounded by ``max_line`` (``what`` names such lines in the error)."""

    what = "results line"

    def __init__(self, max_line=DEFAULT_MAX_LINE):
        self.max_line = max_line
        self._partial = b""
        self._raw_left = 0  # bytes of the current raw chunk still to come

    @property
    def complete(self):
        """False while a raw chunk is cut short (the block ended in its middle)."""
        return self._raw_left == 0

    def took_raw(self, size):
        """``size`` bytes of the current raw chunk went on without passing through ``feed``."""
        if not 0 <= size <= self._raw_left:
            raise ValueError(f"took {size} raw bytes, {self._raw_left} were due")
        self._raw_left -= size

    def _keep_partial(self, partial):
        if len(partial) > self.max_line:
            raise RemoteProtocolError(f"{self.what} longer than {self.max_line} bytes")
        self._partial = bytes(partial)


class ResultDecoder(ItemDecoder):
    """Turns extended results payload into ``(stream, bytes)`` and a Status.

    ``feed`` takes payload bytes as they come (any chunking) and returns the
    output they complete, in order, and the files the job returns as
    ``(RETURNED, FilePiece)``. After the block has ended, ``status`` is the
    job's Status, or None if the worker never sent one.
    """

    def __init__(self, max_line=DEFAULT_MAX_LINE + 16):
        super().__init__(max_line)
        self.status = None
        self.status_line = None  # as it came, for the seal
        self.seal = None  # the seal's MAC, if the worker sealed the results
        self._raw_stream = None
        self._file_named = False  # a returned file has begun: pieces without a name go on with it
        self._file_name = None  # the name for the next piece, the first of its file

    @property
    def raw_stream(self):
        """The stream the current raw chunk belongs to, while its bytes are still to come."""
        return self._raw_stream if self._raw_left else None

    def feed(self, data):
        if self._partial:
            data, self._partial = self._partial + data, b""
        output, position, next_other = [], 0, {}
        while position < len(data):
            if self._raw_left:
                piece = data[position:position + self._raw_left]
                self._raw_left -= len(piece)
                position += len(piece)
                if self._raw_stream == RETURNED:
                    piece, self._file_name = FilePiece(self._file_name, piece), None
                output.append((self._raw_stream, [piece]))  # not joined to its neighbours: one copy less
                continue
            end = data.rfind(b"\n", position) + 1
            if end == 0:
                self._keep_partial(data[position:])
                break
            position = self._decode_lines(data, position, end, output, next_other)
        return [(stream, parts[0] if len(parts) == 1 else b"".join(parts)) for stream, parts in output]

    def _decode_lines(self, data, start, end, output, next_other):
        """Decode complete lines from ``start``, up to ``end`` or a raw chunk; returns where it stopped."""
        if self.status is not None:
            raise RemoteProtocolError("results continue after the status line")
        if data[start:start + 2] in STREAM_BY_RAW_TAG:
            stop = data.index(b"\n", start) + 1
            self._raw_stream, self._raw_left = parse_raw_header(data[start:stop])
            if self._raw_stream == RETURNED:
                self._begin_file_piece(data[start:stop], output)
            return stop
        stop = self._end_of_run(data, start, end, next_other)
        if stop:
            tag = data[start:start + 2]
            self._append(output, _STREAM_BY_TAG[tag[:1]][0],
                         data[start + 2:stop - 1].replace(b"\n" + tag, b"\n") + b"\n")
            return stop
        stop = data.index(b"\n", start) + 1
        self._decode_line(data[start:stop], output)
        return stop

    @staticmethod
    def _end_of_run(data, start, end, next_other):
        """Where a run of complete ``o``/``e`` lines from ``start`` ends, or 0 if there is none.

        A run is decoded with a few C-speed scans instead of a Python loop
        over every line: that is what lets megabytes of output stream fast.
        ``next_other`` remembers where each other tag next occurs, so no
        byte is scanned twice for it.
        """
        tag = data[start:start + 2]
        if tag not in _RUN_TAGS:
            return 0
        stop = end
        for other in _RUN_TAGS[tag]:
            found = next_other.get(other, -1)
            if found < start and found != -2:
                found = data.find(other, start, end)
                next_other[other] = found if found >= 0 else -2
            if found >= start:
                stop = min(stop, found + 1)
        if data.count(b"\n", start, stop) != data.count(b"\n" + tag, start, stop) + 1:
            return 0  # an unknown tag inside: line by line
        return stop

    def _begin_file_piece(self, line, output):
        name = parse_file_name(line)
        if name is None and not self._file_named:
            raise RemoteProtocolError("a returned file's piece came before its name")
        self._file_named = True
        self._file_name = name
        if name is not None and not self._raw_left:
            output.append((RETURNED, [FilePiece(name, b"")]))  # an empty file

    def _decode_line(self, line, output):
        if self.status is not None:
            raise RemoteProtocolError("results continue after the status line")
        tag = line[:1]
        if tag == STATUS_TAG:
            self.status, self.status_line = parse_status(line), line
            return
        if tag == SEAL_TAG and line[1:2] == b" ":
            self.seal = line[2:-1]
            return
        known = _STREAM_BY_TAG.get(tag)
        if known is None and tag.islower() and line[1:2] in (b" ", b"\n"):
            return  # a tag from a later version of the protocol
        if known is None or line[1:2] != b" ":
            raise RemoteProtocolError(f"untagged results line {line[:80]!r}")
        stream, ending = known
        self._append(output, stream, line[2:-1] + ending)

    @staticmethod
    def _append(output, stream, data):
        if output and output[-1][0] == stream:
            output[-1][1].append(data)
        else:
            output.append((stream, [data]))
