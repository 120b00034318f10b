"""The sieci wire protocol, with no I/O in it.

Bytes go in (``Receiver.receive_data``), events come out
(``Receiver.next_event``); the ``encode_*`` functions return the bytes to
send. A ``Conversation`` holds the legal order of messages on a
master-worker link (``LINK_TRANSITIONS``) or a client's connection to a
master (``CLIENT_TRANSITIONS``), moved on by every message sent and
received. What extended results carry (output and exit status) is encoded
and decoded in results.py. Master, worker and client all use this module,
so they cannot disagree about the wire. See docs/protocol.md for the
contract this implements.
"""

import math
import os

AVAILABLE = b"AVAILABLE"
READY = b"READY"
ROLLBACK = b"ROLLBACK"
RECEIVED = b"RECEIVED"
QUEUED = b"QUEUED"  # a sieci master, to a client whose extended job waits for a worker
ERROR = b"ERROR"
ENDSEQ = b"ENDSEQ"
CHALLENGE = b"CHALLENGE"  # a master with a secret, to a new worker link
AUTH = b"AUTH"  # the worker's answer

# The classic client's constant terminator; a sieci master accepts it glued
# to the end of the last code line (a file without a final newline).
CLASSIC_TERMINATOR = b"OFFILESEQYOULLNEVERUSEITINYOURCODE"

# Header field that asks for, and announces, the extended results.
EXTENDED = b"v=2"

DEFAULT_MAX_LINE = 64 * 1024


class ProtocolError(Exception):
    """The conversation broke the protocol; the message says how."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol."""


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol (a bug on our side)."""


# --- messages ---------------------------------------------------------------


def encode_command(word, reason=b""):
    """``AVAILABLE\\n``, ``ERROR reason\\n`` and the like."""
    reason = b" ".join(reason.split())  # one line, whatever the reason held
    return word + (b" " + reason if reason else b"") + b"\n"


def first_word(line):
    """The word a command line stands for: classic peers look only at it."""
    words = line.split(None, 1)
    return words[0] if words else b""


def rest_of_line(line):
    """What follows the first word, such as the reason after ``ERROR``."""
    words = line.split(None, 1)
    return words[1].strip() if len(words) > 1 else b""


# --- blocks -----------------------------------------------------------------


class BlockHeader:
    """``ENDSEQ <terminator> [fields...]``, kept byte for byte in ``raw``."""

    def __init__(self, raw, terminator, fields):
        self.raw = raw
        self.terminator = terminator
        self.fields = fields

    @property
    def extended(self):
        return EXTENDED in self.fields

    def field(self, name, default=None):
        prefix = name + b"="
        for field in self.fields:
            if field.startswith(prefix):
                return field[len(prefix):]
        return default

    @property
    def beat(self):
        """The seconds between heartbeats a worker's results declare (``beat=``), or None."""
        try:
            beat = float(self.field(BEAT_FIELD, b""))
        except ValueError:
            return None
        return beat if 0 < beat < math.inf else None  # (NaN compares false)


def parse_header(line):
    words = line.split()
    if not words or words[0] != ENDSEQ:
        raise RemoteProtocolError("expected a block header 'ENDSEQ <terminator>'")
    if len(words) < 2:
        raise RemoteProtocolError("block header has no terminator")
    return BlockHeader(line, words[1], words[2:])


# 128 random bits as 32 letters of G to V. Hex digits would do as well, but
# searching output for them is slow in bad cases: CPython's substring search
# skips ahead by a filter of the needle's bytes mod 64, and hex digits share
# it with common letters ('8' with 'x', for one).
_TOKEN_LETTERS = bytes.maketrans(b"0123456789abcdef", b"GHIJKLMNOPQRSTUV")


def choose_terminator(content=b""):
    """A random token that occurs nowhere in ``content``."""
    while True:
        token = os.urandom(16).hex().encode().translate(_TOKEN_LETTERS)
        if token not in content:
            return token


def encode_header(terminator, fields=()):
    return b" ".join([ENDSEQ, terminator, *fields]) + b"\n"


def as_payload(data):
    """``data`` as a block's payload arrives: with a final newline."""
    return data + b"\n" if data and not data.endswith(b"\n") else data


def encode_block(payload, fields=()):
    """A whole block carrying ``payload`` (a final newline is added if missing)."""
    payload = as_payload(payload)
    terminator = choose_terminator(payload)
    return encode_header(terminator, fields) + payload + terminator + b"\n"


# --- framing ----------------------------------------------------------------


class Line:
    """A complete line outside any block, ``raw`` including its newline."""

    def __init__(self, raw):
        self.raw = raw

    @property
    def word(self):
        return first_word(self.raw)

    @property
    def reason(self):
        return rest_of_line(self.raw)

    def __repr__(self):
        return f"Line({self.raw!r})"


class BlockData:
    """Payload bytes of the current block, exactly as they came."""

    def __init__(self, data):
        self.data = data

    def __repr__(self):
        return f"BlockData({self.data!r})"


class BlockEnd:
    """The block's terminator line; ``raw`` as it came (or as it should have)."""

    def __init__(self, raw):
        self.raw = raw

    def __repr__(self):
        return f"BlockEnd({self.raw!r})"


class ConnectionClosed:
    """The peer closed its side (a read returned no bytes)."""

    def __repr__(self):
        return "ConnectionClosed()"


NEED_DATA = object()
CONNECTION_CLOSED = ConnectionClosed()


class Receiver:
    """Frames incoming bytes into lines, and into block payload on request.

    Outside a block every event is a ``Line``. After ``start_block`` the
    events are ``BlockData`` then one ``BlockEnd``, and lines again after.
    Payload is released as soon as it cannot be part of the terminator line,
    so a block of any size streams through in bounded memory; only a line
    that could still turn out to be the terminator is held back, up to
    ``max_line`` bytes (a longer one is payload).
    """

    def __init__(self, max_line=DEFAULT_MAX_LINE):
        self.max_line = max_line
        self._buffer = bytearray()
        self._fresh = None  # a read that arrived in a block with nothing buffered: maybe relayed as it is
        self._closed = False
        self._terminator = None
        self._mid_line = False  # part of the current payload line went out
        self._payload_left = None
        self._accept_glued = False
        self._items = False
        self._raw_left = 0
        # Each read is searched once, not the whole buffer again: the front ``_scanned``
        # bytes of the buffer hold no newline. ``_holding``: the buffer is one line that
        # may still become the terminator, whose first non-space byte is at ``_content_from``
        # (None: none yet); a read that grows it is looked at alone.
        self._scanned = 0
        self._holding = False
        self._content_from = None

    def receive_data(self, data):
        """Feed what a read returned; ``b""`` means the peer closed."""
        if not data:
            self._closed = True
            return
        if self._fresh is not None:
            self._buffer += self._fresh
            self._fresh = None
        if self._terminator is not None and not self._buffer:
            self._fresh = data
        else:
            self._buffer += data

    @property
    def in_block(self):
        return self._terminator is not None

    @property
    def buffered(self):
        return len(self._buffer) + len(self._fresh or b"")

    @property
    def in_raw_chunk(self):
        """Whether the bytes that passed so far end inside a raw chunk of extended results."""
        return self._items and self._raw_left > 0

    @property
    def raw_pending(self):
        """Bytes of the current raw chunk still on the connection, when none of it is buffered.

        The caller may move them past the receiver (with ``splice``, say)
        and then report them with ``took_raw``.
        """
        return 0 if self.buffered or not self._items else self._raw_left

    def took_raw(self, size):
        """``size`` bytes of the current raw chunk were read past the receiver."""
        if not 0 <= size <= self.raw_pending:
            raise LocalProtocolError(f"took {size} raw bytes, {self.raw_pending} were pending")
        self._raw_left -= size
        self._payload_accounting(size)

    def start_block(self, header, max_size=None, accept_glued=False, results=False):
        """Read ``header``'s payload next; ``max_size`` bounds it in bytes.

        ``accept_glued`` also ends the block at a line that ends in the
        classic client's constant terminator (see CLASSIC_TERMINATOR).
        ``results`` says the block holds results: if they are extended, raw
        chunks are passed on by their length, without being searched for
        the terminator (its sender made sure it is not in them).
        """
        self._terminator = header.terminator
        self._mid_line = False
        self._payload_left = self._max_size = max_size
        self._accept_glued = accept_glued and header.terminator == CLASSIC_TERMINATOR
        self._items = results and header.extended
        self._raw_left = 0

    def next_event(self):
        if self._terminator is not None:
            event = self._next_block_event()
        else:
            event = self._next_line()
        if event is NEED_DATA and self._closed:
            return CONNECTION_CLOSED
        return event

    def _next_line(self):
        end = self._buffer.find(b"\n", self._scanned)
        if end < 0:
            if len(self._buffer) > self.max_line:
                raise RemoteProtocolError(f"line longer than {self.max_line} bytes")
            self._scanned = len(self._buffer)
            return NEED_DATA
        return Line(self._take(end + 1))

    def _take(self, size):
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._scanned, self._holding = 0, False
        return taken

    def _next_block_event(self):
        if self._items:
            return self._next_item_event()
        if self._fresh is not None:
            event = self._relay_fresh()
            if event is not None:
                return event
        buffer = self._buffer
        if self._holding:
            if buffer.find(b"\n", self._scanned) < 0 and len(buffer) <= self.max_line and (
                    self._accept_glued or self._held_line_may_still_become_terminator()):
                self._scanned = len(buffer)
                return NEED_DATA
            self._holding = False
        safe = 0  # bytes at the front that are payload for sure
        if self._mid_line:
            end = buffer.find(b"\n")
            if end < 0:
                return self._payload(len(buffer), mid_line=True)
            safe = end + 1
        terminator = self._terminator
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
                    return self._payload(start, mid_line=False)
                self._terminator = None
                return BlockEnd(self._take(end + 1))
            if self._accept_glued and stripped.endswith(terminator):
                # The last code line with the terminator glued on: split it,
                # and go on scanning after the code, whatever the code holds.
                code = buffer[start:end].rstrip()[: -len(terminator)]
                buffer[start:end + 1] = code + b"\n" + terminator + b"\n"
                safe = start + len(code) + 1
                continue
            safe = end + 1
        return self._release_up_to_partial(safe)

    def _next_item_event(self):
        """Extended results: raw chunks by their length, every other item a line."""
        if self._fresh is not None:
            event = self._relay_fresh_items()
            if event is not None:
                return event
        if self._raw_left:
            size = min(self._raw_left, len(self._buffer))
            self._raw_left -= size
            return self._payload(size, mid_line=False)
        end = self._buffer.find(b"\n", self._scanned)
        if self._mid_line:  # the rest of a tagged line already begun
            return self._payload(end + 1 if end >= 0 else len(self._buffer), mid_line=end < 0)
        if end < 0:
            if self._buffer[:2] in LINE_TAGS:  # a tagged line can never be the terminator: on with it
                return self._payload(len(self._buffer), mid_line=True)
            if len(self._buffer) > self.max_line:
                raise RemoteProtocolError(f"results line longer than {self.max_line} bytes")
            self._scanned = len(self._buffer)
            return NEED_DATA
        if self._buffer[:end].strip() == self._terminator:
            self._terminator = None
            return BlockEnd(self._take(end + 1))
        event = self._payload(end + 1, mid_line=False)
        raw = parse_raw_header(event.data)
        if raw is not None:
            self._raw_left = raw[1]
        return event

    def _relay_fresh_items(self):
        """A read of extended results, walked item by item and passed on whole where it can be.

        Only a read that ends inside a raw chunk's header, or holds the
        terminator line, is split; the rest goes to the buffer (None).
        """
        data, self._fresh = self._fresh, None
        position, size, mid_line = self._raw_left, len(data), False
        if self._mid_line:
            position = data.find(b"\n") + 1 or size
            mid_line = position == size and not data.endswith(b"\n")
        while position < size:
            end = data.find(b"\n", position)
            if end < 0:
                if data[position:position + 2] not in LINE_TAGS:
                    return self._split_fresh(data, position)
                mid_line = True  # a tagged line, to be continued
                break
            raw = parse_raw_header(data[position:end + 1])
            if raw is not None:
                position = end + 1 + raw[1]
            elif data[position:end].strip() == self._terminator:
                return self._split_fresh(data, position)
            else:
                position = end + 1
        self._raw_left = max(0, position - size)
        self._mid_line = mid_line
        self._payload_accounting(size)
        return BlockData(data)

    def _split_fresh(self, data, position):
        """Pass on what precedes ``position``, if anything; keep the rest for the general path."""
        self._raw_left = 0
        self._mid_line = False
        self._buffer += data[position:]
        if position == 0:
            return None
        self._payload_accounting(position)
        return BlockData(data[:position])

    def _relay_fresh(self):
        """The common case of a big block, without copying: a read that is payload whole.

        It is, when the terminator occurs nowhere in it and its last,
        unfinished line cannot grow into the terminator line. Else it joins
        the buffer and the general path (None).
        """
        data, self._fresh = self._fresh, None
        if self._terminator not in data and not self._accept_glued:
            cut = data.rfind(b"\n") + 1
            tail_is_harmless = (cut == 0 and self._mid_line) or not self._may_become_terminator(data[cut:])
            if cut == len(data) or tail_is_harmless:
                self._payload_accounting(len(data))
                self._mid_line = not data.endswith(b"\n")
                return BlockData(data)
        self._buffer += data
        return None

    def _release_up_to_partial(self, safe):
        """Payload up to the last newline, and a partial line if it is harmless."""
        last_newline = self._buffer.rfind(b"\n", safe) + 1
        complete = max(safe, last_newline)
        partial = bytes(self._buffer[complete:])
        if partial and (len(partial) > self.max_line or not self._may_become_terminator(partial)):
            # A line this long is payload even if it might have ended as the
            # terminator (only whitespace can make it that long).
            return self._payload(len(self._buffer), mid_line=True)
        if complete == 0:  # the buffer is one line, and it may become the terminator
            self._scanned, self._holding = len(self._buffer), True
            spaces = len(partial) - len(partial.lstrip())
            self._content_from = spaces if spaces < len(partial) else None
            return NEED_DATA
        return self._payload(complete, mid_line=False)

    def _held_line_may_still_become_terminator(self):
        """_may_become_terminator for the held line, in time for its newest bytes only."""
        buffer, terminator, new = self._buffer, self._terminator, self._scanned
        if self._content_from is None:
            rest = buffer[new:].lstrip()
            if not rest:
                return True  # spaces so far
            self._content_from = new = len(buffer) - len(rest)
        start = self._content_from
        if len(buffer) - start <= len(terminator):
            return terminator.startswith(buffer[start:])
        # Past the terminator's length: the terminator, then only spaces.
        return buffer[start:start + len(terminator)] == terminator and not buffer[max(new, start + len(terminator)):].strip()

    def _may_become_terminator(self, partial):
        stripped = partial.lstrip()
        if self._accept_glued:
            return True  # a code line may end in the glued terminator
        if len(stripped) <= len(self._terminator):
            return self._terminator.startswith(stripped)
        return stripped.startswith(self._terminator) and not stripped[len(self._terminator):].strip()

    def _payload(self, size, mid_line):
        if size == 0:
            return NEED_DATA
        self._payload_accounting(size)
        self._mid_line = mid_line
        return BlockData(self._take(size))

    def _payload_accounting(self, size):
        if self._payload_left is not None:
            self._payload_left -= size
            if self._payload_left < 0:
                raise RemoteProtocolError(f"block larger than the limit of {self._max_size} bytes")


# --- the items of extended results (framing; encoding and decoding: results.py) ---

STDOUT = "stdout"
STDERR = "stderr"
# Tagged lines start with one of these; raw data with ``1 <length>`` (stdout)
# or ``2 <length>`` (stderr), then that many bytes.
LINE_TAGS = (b"o ", b"O ", b"e ", b"E ", b"x ")
RAW_TAGS = {STDOUT: b"1 ", STDERR: b"2 "}
STREAM_BY_RAW_TAG = {tag: stream for stream, tag in RAW_TAGS.items()}
# An empty raw chunk: what a worker sends while its job is quiet, every ``beat=`` seconds
# (a field of its results header), so that a master can tell a stopped worker from a quiet job.
HEARTBEAT_ITEM = b"1 0\n"
BEAT_FIELD = b"beat"


def beat_field(seconds):
    return BEAT_FIELD + b"=%g" % seconds


def parse_raw_header(line):
    """``(stream, length)`` for a raw chunk's header line, or None for any other line."""
    stream = STREAM_BY_RAW_TAG.get(line[:2])
    if stream is None:
        return None
    length = line[2:].rstrip(b"\n")
    if not length.isdigit():
        raise RemoteProtocolError(f"malformed raw chunk header {line[:80]!r}")
    return stream, int(length)


# --- conversations: the legal order of messages -------------------------------

MASTER = "master"
WORKER = "worker"
CLIENT = "client"

STATUS = b"STATUS"  # a client's status request (see status.py for what it shows)

IDLE = "idle"  # nothing outstanding
CHALLENGED = "challenged"  # a master with a secret asked the new link to prove itself
ASKED = "asked"  # AVAILABLE sent, no answer yet
READY_HELD = "ready"  # the worker said READY and is locked to this master
SENT = "sent"  # the code went to the worker
RUNNING = "running"  # the worker said RECEIVED; results follow
UPLOADED = "uploaded"  # the client's code reached the master
WAITING = "waiting"  # the master said QUEUED: no worker has the job yet
ACCEPTED = "accepted"  # the master said RECEIVED: a worker took the job; results follow
STATUS_ASKED = "status asked"  # the client sent STATUS
CLOSED = "closed"

JOB = "block"  # a block: the code, or the results; it counts once its terminator has passed
STATUS_REPLY = "status reply"  # the master's answer to STATUS: one JSON line, or a table ended by "."

# (state, who sends, what) -> next state. Anything else breaks the protocol,
# but for the master's ERROR: its refusal, legal in any state, after which it closes.
LINK_TRANSITIONS = {
    (IDLE, MASTER, CHALLENGE): CHALLENGED,
    (CHALLENGED, WORKER, AUTH): IDLE,
    (IDLE, MASTER, AVAILABLE): ASKED,
    (ASKED, WORKER, READY): READY_HELD,
    (READY_HELD, MASTER, ROLLBACK): IDLE,
    # The classic master writes its ERROR for a bad upload to the worker.
    (READY_HELD, MASTER, ERROR): IDLE,
    (READY_HELD, MASTER, JOB): SENT,
    (SENT, WORKER, RECEIVED): RUNNING,
    (SENT, WORKER, ERROR): IDLE,
    (RUNNING, WORKER, JOB): IDLE,
}

CLIENT_TRANSITIONS = {
    (IDLE, CLIENT, JOB): UPLOADED,
    (UPLOADED, MASTER, QUEUED): WAITING,
    (UPLOADED, MASTER, RECEIVED): ACCEPTED,
    (WAITING, MASTER, RECEIVED): ACCEPTED,
    (ACCEPTED, MASTER, JOB): CLOSED,
    (IDLE, CLIENT, STATUS): STATUS_ASKED,
    (STATUS_ASKED, MASTER, STATUS_REPLY): CLOSED,
}
# What a client says once it has sent its request is ignored: the master only watches for it leaving.
CLIENT_IGNORED = {(state, CLIENT) for state in (UPLOADED, WAITING, ACCEPTED, STATUS_ASKED, CLOSED)}


class Conversation:
    """Where one connection's conversation stands, as one end (``role``) sees it.

    Every message we send (``send``, ``sending``, ``refuse``) and every one
    we receive (``receive_line``, ``receive_block_end``) moves it on through
    its table, or raises the error that says whose fault the illegal
    message is. A received line whose first word is no message legal here
    is the status reply where one is due, else the header of a block: legal
    where the peer may send a block (which counts at its end).
    """

    def __init__(self, transitions, role, peer, ignored=()):
        self.transitions = transitions
        self.role = role
        self.peer = peer
        self.ignored = ignored
        self.state = IDLE

    def send(self, word, reason=b""):
        """The bytes of command ``word``, once it is legal to send it."""
        self.sending(word)
        return encode_command(word, reason)

    def sending(self, message):
        """We are about to send ``message`` (the end of a block, say)."""
        self.advance(self.role, message)

    def refuse(self, reason):
        """The bytes of an ``ERROR`` that ends the conversation, whatever its state: our last words."""
        self.state = CLOSED
        return encode_command(ERROR, reason)

    def receive_line(self, line):
        if (self.state, self.peer) in self.ignored:
            return
        word = first_word(line)
        if self._following(self.peer, word) is not None:
            self.advance(self.peer, word)
        elif self._following(self.peer, STATUS_REPLY) is not None:
            self.advance(self.peer, STATUS_REPLY)
        elif self._following(self.peer, JOB) is None:
            self._illegal(self.peer, word)

    def receive_block_end(self):
        if (self.state, self.peer) not in self.ignored:
            self.advance(self.peer, JOB)

    def close(self):
        self.state = CLOSED

    def advance(self, sender, message):
        following = self._following(sender, message)
        if following is None:
            self._illegal(sender, message)
        self.state = following
        return following

    def _following(self, sender, message):
        following = self.transitions.get((self.state, sender, message))
        if following is None and (sender, message) == (MASTER, ERROR) and self.state != CLOSED:
            return CLOSED  # the master's refusal
        return following

    def _illegal(self, sender, message):
        if isinstance(message, bytes):
            message = message[:80].decode("ascii", "replace")
        error = LocalProtocolError if sender == self.role else RemoteProtocolError
        raise error(f"{message} from the {sender} while {self.state}")


def link_conversation(role):
    """A master-worker link, at the ``role`` end."""
    return Conversation(LINK_TRANSITIONS, role, WORKER if role == MASTER else MASTER)


def client_conversation(role):
    """A client's connection to a master's client port, at the ``role`` end."""
    return Conversation(CLIENT_TRANSITIONS, role, MASTER if role == CLIENT else CLIENT, CLIENT_IGNORED)
