"""Framing: incoming bytes into the protocol's events, with no I/O in it.

A ``Receiver`` keeps what has been read in one ``ReceiveBuffer`` and reads
it with one reader per framing: ``LineReader`` outside blocks,
``TerminatedBlockReader`` for a block's payload up to its terminator line,
``ItemsBlockReader`` for a block of items, extended results or a stdin block
(raw chunks by their length, tagged lines, the terminator line).
"""

from sieci.wire.protocol import (
    CLASSIC_TERMINATOR, CONNECTION_CLOSED, DEFAULT_MAX_LINE, LINE_TAGS, NEED_DATA, RAW_TAGS, BlockData, BlockEnd,
    Line, LocalProtocolError, RemoteProtocolError, parse_raw_header,
)

SPACE = ord(" ")
# The letters that start items (before a space), as ints: indexing bytes is the quickest test.
TAGGED_LINE_LETTERS = frozenset(tag[0] for tag in LINE_TAGS)
RAW_HEADER_LETTERS = frozenset(tag[0] for tag in RAW_TAGS.values())


class ReceiveBuffer:
    """What has been read and not yet framed.

    A read that arrives, in a block, while nothing is buffered is kept apart
    as it came (``take_whole_read``), so that a reader can pass it on
    without a copy. The front ``scanned`` bytes of ``data`` hold no newline:
    each read is searched once, not the whole buffer again.
    """

    def __init__(self):
        self.data = bytearray()
        self.closed = False
        self.scanned = 0
        self._whole_read = None

    def receive_data(self, data, keep_whole):
        if not data:
            self.closed = True
            return
        if self._whole_read is not None:
            self.data += self.take_whole_read()
        if keep_whole and not self.data:
            self._whole_read = data
        else:
            self.data += data

    def __len__(self):
        return len(self.data) + len(self._whole_read or b"")

    def take_whole_read(self):
        """The read kept apart, or None; what a reader does not pass on, it gives back with ``append``."""
        read, self._whole_read = self._whole_read, None
        return read

    def append(self, data):
        self.data += data

    def find_newline(self):
        """The first newline's position in ``data``, or -1."""
        end = self.data.find(b"\n", self.scanned)
        if end < 0:
            self.scanned = len(self.data)
        return end

    def take(self, size):
        taken = bytes(self.data[:size])
        del self.data[:size]
        self.scanned = 0
        return taken


class LineReader:
    """Complete lines, outside any block; one longer than ``max_line`` breaks the protocol."""

    def __init__(self, buffer, max_line):
        self.buffer = buffer
        self.max_line = max_line

    def next_event(self):
        end = self.buffer.find_newline()
        if end < 0:
            if len(self.buffer.data) > self.max_line:
                raise RemoteProtocolError(f"line longer than {self.max_line} bytes")
            return NEED_DATA
        return Line(self.buffer.take(end + 1))


class BlockReader:
    """What the readers of a block's payload share: its terminator, its size limit."""

    raw_left = 0  # bytes of the current raw chunk not yet passed on

    def __init__(self, buffer, header, max_line, max_size):
        self.buffer = buffer
        self.terminator = header.terminator
        self.max_line = max_line
        self.max_size = self.payload_left = max_size
        self.mid_line = False  # part of the current payload line went out

    def count(self, size):
        if self.payload_left is not None:
            self.payload_left -= size
            if self.payload_left < 0:
                raise RemoteProtocolError(f"block larger than the limit of {self.max_size} bytes")

    def release(self, size):
        """The front ``size`` bytes of the buffer, as payload."""
        if size == 0:
            return NEED_DATA
        self.count(size)
        return BlockData(self.buffer.take(size))

    def end(self, line_end):
        """The terminator line, which ends at ``line_end``, from the front of the buffer."""
        return BlockEnd(self.buffer.take(line_end + 1))


class TerminatedBlockReader(BlockReader):
    """A block's payload, up to the first line that is its terminator.

    Payload is released as soon as it cannot be part of the terminator line,
    so a block of any size streams through in bounded memory; only a line
    that could still turn out to be the terminator is held back, up to
    ``max_line`` bytes (a longer one is payload). ``accept_glued`` also ends
    the block at a line that ends in the classic client's constant
    terminator (see CLASSIC_TERMINATOR).
    """

    def __init__(self, buffer, header, max_line, max_size, accept_glued):
        super().__init__(buffer, header, max_line, max_size)
        self.accept_glued = accept_glued and header.terminator == CLASSIC_TERMINATOR
        # The buffer is one line that may still become the terminator, whose first
        # non-space byte is at ``content_from`` (None: none yet); a read that grows it is looked at alone.
        self.holding = False
        self.content_from = None

    def next_event(self):
        read = self.buffer.take_whole_read()
        if read is not None:
            if self._payload_whole(read):
                self.count(len(read))
                self.mid_line = not read.endswith(b"\n")
                return BlockData(read)
            self.buffer.append(read)
        elif not self.buffer.data:
            return NEED_DATA
        return self._next_from_buffer()

    def _payload_whole(self, read):
        """Whether a read is payload whole: the common case of a big block, passed on without a copy."""
        if self.accept_glued or self.terminator in read:
            return False
        start = self._lines_start(read)
        return start is None or self._releasable(read, start)[0] == len(read)

    def _lines_start(self, data):
        """Where the first line that may be the terminator starts (None: all of ``data`` ends a line begun)."""
        if not self.mid_line:
            return 0
        end = data.find(b"\n")
        return None if end < 0 else end + 1

    def _releasable(self, data, safe):
        """``(size, mid_line)``: the front of ``data`` that is payload for sure, given that
        its first ``safe`` bytes are and that no terminator line ends in it after them:
        up to its last newline, and a partial line after it if that is harmless."""
        complete = max(safe, data.rfind(b"\n", safe) + 1)
        partial = data[complete:]
        if partial and (len(partial) > self.max_line or not self._may_become_terminator(partial)):
            # A line this long is payload even if it might have ended as the
            # terminator (only whitespace can make it that long).
            return len(data), True
        return complete, False

    def _next_from_buffer(self):
        buffer = self.buffer.data
        if self.holding:
            newest = self.buffer.scanned
            if self.buffer.find_newline() < 0 and len(buffer) <= self.max_line and (
                    self.accept_glued or self._held_line_may_still_become_terminator(newest)):
                return NEED_DATA
            self.holding = False
        safe = self._lines_start(buffer)  # bytes at the front that are payload for sure
        if safe is None:
            return self._release(len(buffer), mid_line=True)
        terminator = self.terminator
        while True:
            hit = buffer.find(terminator, safe)
            if hit < 0:
                break
            start = buffer.rfind(b"\n", safe, hit) + 1 or safe
            end = buffer.find(b"\n", hit)
            if end < 0:
                break
            stripped = buffer[start:end].strip()
            if stripped == terminator:
                if start > 0:
                    return self._release(start, mid_line=False)
                return self.end(end)
            if self.accept_glued and stripped.endswith(terminator):
                # The last code line with the terminator glued on: split it,
                # and go on scanning after the code, whatever the code holds.
                code = buffer[start:end].rstrip()[: -len(terminator)]
                buffer[start:end + 1] = code + b"\n" + terminator + b"\n"
                safe = start + len(code) + 1
                continue
            safe = end + 1
        size, mid_line = self._releasable(buffer, safe)
        if size == 0:  # the buffer is one line, and it may become the terminator
            self._hold()
            return NEED_DATA
        return self._release(size, mid_line)

    def _release(self, size, mid_line):
        self.holding = False
        event = self.release(size)
        if size:
            self.mid_line = mid_line
        return event

    def _hold(self):
        buffer = self.buffer.data
        self.holding, self.buffer.scanned = True, len(buffer)
        spaces = len(buffer) - len(buffer.lstrip())
        self.content_from = spaces if spaces < len(buffer) else None

    def _held_line_may_still_become_terminator(self, new):
        """_may_become_terminator for the held line, in time for its newest bytes (from ``new``) only."""
        buffer, terminator = self.buffer.data, self.terminator
        if self.content_from is None:
            rest = buffer[new:].lstrip()
            if not rest:
                return True  # spaces so far
            self.content_from = new = len(buffer) - len(rest)
        start = self.content_from
        if len(buffer) - start <= len(terminator):
            return terminator.startswith(buffer[start:])
        # Past the terminator's length: the terminator, then only spaces.
        end = start + len(terminator)
        return buffer[start:end] == terminator and not buffer[max(new, end):].strip()

    def _may_become_terminator(self, partial):
        if self.accept_glued:
            return True  # a code line may end in the glued terminator
        stripped = partial.lstrip()
        if len(stripped) <= len(self.terminator):
            return self.terminator.startswith(stripped)
        return stripped.startswith(self.terminator) and not stripped[len(self.terminator):].strip()


class ItemsBlockReader(BlockReader):
    """A block of items (extended results, a stdin block): raw chunks passed on by their length, without
    being searched for the terminator (its sender made sure it is not in them); every other item a line."""

    def next_event(self):
        read = self.buffer.take_whole_read()
        if read is not None:
            size, _ = self._walk(read, 0)
            if size < len(read):
                self.buffer.append(read[size:])
            if size:
                self.count(size)
                return BlockData(read if size == len(read) else read[:size])
        elif not self.buffer.data:
            return NEED_DATA
        size, stop = self._walk(self.buffer.data, self.buffer.scanned)
        if size:
            return self.release(size)
        if stop >= 0:
            return self.end(stop)
        if len(self.buffer.data) > self.max_line:
            raise RemoteProtocolError(f"results line longer than {self.max_line} bytes")
        self.buffer.scanned = len(self.buffer.data)
        return NEED_DATA

    def took_raw(self, size):
        self.raw_left -= size
        self.count(size)

    def _walk(self, data, newline_from):
        """``(size, stop)``: the front ``size`` bytes of ``data`` are payload (whole items, and
        what has come of the last one, if it is a raw chunk or a tagged line); ``stop`` is
        where the terminator line that follows them ends, or -1. Moves ``raw_left`` and
        ``mid_line`` past those bytes. ``newline_from``: the front bytes hold no newline."""
        size, find, terminator = len(data), data.find, self.terminator
        position = min(self.raw_left, size)
        self.raw_left -= position
        if self.raw_left:
            return size, -1
        if self.mid_line:  # the rest of a tagged line already begun
            end = find(b"\n", position)
            if end < 0:
                return size, -1
            position, self.mid_line = end + 1, False
        while position < size:
            end = find(b"\n", position if position >= newline_from else newline_from)
            tag = data[position] if position + 1 < size and data[position + 1] == SPACE else None
            if tag in TAGGED_LINE_LETTERS and (end < 0 or len(terminator) > 1):
                # A tagged line is never a terminator of more than one letter.
                if end < 0:
                    self.mid_line = True  # on with it
                    return size, -1
                position = end + 1
            elif end < 0:
                return position, -1  # a raw chunk's header, or the terminator, may still come
            elif tag in RAW_HEADER_LETTERS:
                _, length = parse_raw_header(bytes(data[position:end + 1]))
                position = end + 1 + length
            elif data[position:end].strip() == terminator:
                return position, (end if position == 0 else -1)
            else:
                position = end + 1
        self.raw_left = position - size
        return size, -1


class Receiver:
    """Frames incoming bytes into lines, and into block payload on request.

    Outside a block every event is a ``Line``. After ``start_block`` the
    events are ``BlockData`` then one ``BlockEnd``, and lines again after.
    """

    def __init__(self, max_line=DEFAULT_MAX_LINE):
        self.max_line = max_line
        self.buffer = ReceiveBuffer()
        self._lines = LineReader(self.buffer, max_line)
        self._block = None

    def receive_data(self, data):
        """Feed what a read returned; ``b""`` means the peer closed."""
        self.buffer.receive_data(data, keep_whole=self._block is not None)

    @property
    def in_block(self):
        return self._block is not None

    @property
    def buffered(self):
        return len(self.buffer)

    @property
    def in_raw_chunk(self):
        """Whether the bytes that passed so far end inside a raw chunk of extended results."""
        return self._block is not None and self._block.raw_left > 0

    @property
    def raw_pending(self):
        """Bytes of the current raw chunk still on the connection, when none of it is buffered.

        The caller may move them past the receiver (with ``splice``, say)
        and then report them with ``took_raw``.
        """
        return 0 if self.buffered or self._block is None else self._block.raw_left

    def resume_from(self, other):
        """Go on, after this receiver's peer closed, with what ``other`` holds: a receiver that read a
        line on a new connection (a master's ATTACHED), whose next bytes continue this one's block."""
        self.buffer.closed = False
        rest = bytes(other.buffer.data) + (other.buffer.take_whole_read() or b"")
        if rest:
            self.buffer.receive_data(rest, keep_whole=False)

    def took_raw(self, size):
        """``size`` bytes of the current raw chunk were read past the receiver."""
        if not 0 <= size <= self.raw_pending:
            raise LocalProtocolError(f"took {size} raw bytes, {self.raw_pending} were pending")
        if size:
            self._block.took_raw(size)

    def start_block(self, header, max_size=None, accept_glued=False, results=False, items=False):
        """Read ``header``'s payload next; ``max_size`` bounds it in bytes.

        ``accept_glued``: see TerminatedBlockReader. ``results`` says the
        block holds results: if they are extended, ItemsBlockReader reads them.
        ``items``: the block holds items as extended results do (a job's stdin).
        """
        if (results and header.extended) or items:
            self._block = ItemsBlockReader(self.buffer, header, self.max_line, max_size)
        else:
            self._block = TerminatedBlockReader(self.buffer, header, self.max_line, max_size, accept_glued)

    def next_event(self):
        if self._block is None:
            event = self._lines.next_event()
        else:
            event = self._block.next_event()
            if type(event) is BlockEnd:
                self._block = None
        if event is NEED_DATA and self.buffer.closed:
            return CONNECTION_CLOSED
        return event
