"""The sieci wire protocol, with no I/O in it.

Bytes go in (``framing.Receiver.receive_data``), events come out
(``Receiver.next_event``); the ``encode_*`` functions return the bytes to
send. The legal order of these messages is conversation.py's; what an
upload carries besides its code (its header's fields, its inline parts),
upload_format.py's; what extended results carry (output and exit status),
results.py's. Master, worker and client all use this module,
so they cannot disagree about the wire. See docs/protocol.md for the
contract this implements.
"""

import os

AVAILABLE = b"AVAILABLE"
READY = b"READY"
ROLLBACK = b"ROLLBACK"
RECEIVED = b"RECEIVED"
QUEUED = b"QUEUED"  # a sieci master, to a client whose extended job waits for a worker
ERROR = b"ERROR"
ENDSEQ = b"ENDSEQ"
CHALLENGE = b"CHALLENGE"  # a master with a secret, to a new worker link; a client with one, to a master
AUTH = b"AUTH"  # the answer
RELAY = b"RELAY"  # a sieci master, to a sieci worker, before code that needs it: it streams stdin and sends files
FREE = b"FREE"  # a sieci worker, to a master that takes offers: it may be sent one more job at once (conversation.py)
BUSY = b"BUSY"  # its answer to a code sent against an offer that it can no longer take: queue the job again
NEED = b"NEED"  # a sieci master or worker that lacks an upload's files bundle: NEED <sha256>, and the bundle follows
# Job control, on a sieci master's client port (see job_control.py): a detached upload is answered
# DETACHED job=<id>; ATTACH <id> with ATTACHED job=<id> and the job's results; CANCEL <id> with
# CANCELLED job=<id>; JOBS with one line of JSON (the jobs queued, running and kept).
DETACHED = b"DETACHED"
ATTACH = b"ATTACH"
ATTACHED = b"ATTACHED"
CANCEL = b"CANCEL"
CANCELLED = b"CANCELLED"
JOBS = b"JOBS"

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


# job=<id>, on the master's QUEUED, RECEIVED, DETACHED, ATTACHED and CANCELLED to a sieci client: the job's id,
# 16 lower-case hex digits (64 random bits: unique across masters, and not to be guessed).
JOB_ID_FIELD = b"job"
AT_FIELD = b"at"  # ATTACH <id> at=<offset>: the byte of the job's results to resume from
DIGEST_DIGITS = frozenset(b"0123456789abcdef")  # of a bundle's SHA-256 and of a job's id, as they travel


def job_id_field(job_id):
    return JOB_ID_FIELD + b"=" + job_id.encode("ascii")


def parse_job_id(text):
    """``text`` (str or bytes) as a job's id, or None unless it is exactly 16 lower-case hex digits:
    an id names a spool and is printed, so nothing else may pass."""
    if isinstance(text, str):
        text = text.encode("ascii", "replace")
    if len(text) != 16 or not set(text) <= DIGEST_DIGITS:
        return None
    return text.decode("ascii")


def job_id_of(line):
    """The job's id a master's line (``RECEIVED job=<id>`` and the like) names, or None."""
    job_id = field_value(line.split()[1:], JOB_ID_FIELD)
    return None if job_id is None else parse_job_id(job_id)


def field_value(words, name, default=None):
    """The value of the first ``name=`` among a message's ``words``, or ``default``."""
    prefix = name + b"="
    for word in words:
        if word.startswith(prefix):
            return word[len(prefix):]
    return default


def need_digest(line):
    """The digest a ``NEED <sha256>`` line asks for (as text); RemoteProtocolError if it is no digest."""
    digest = rest_of_line(line)
    if len(digest) != 64 or not set(digest) <= DIGEST_DIGITS:
        raise RemoteProtocolError(f"a malformed NEED: {line[:80]!r}")
    return digest.decode("ascii")


def encode_files_header(wanted, bundle_terminator):
    """The header of the block that carries a bundle: ``ENDSEQ <t> files=<sha256>.<size>``; its
    payload is the bundle's bytes and one newline more (``bundle_terminator`` occurs in neither)."""
    return encode_header(bundle_terminator, [wanted.field])


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
        return field_value(self.fields, name, default)

    def fields_named(self, name):
        """Every ``name=`` field's value, in order (``arg=`` and ``env=`` come many times)."""
        prefix = name + b"="
        return [field[len(prefix):] for field in self.fields if field.startswith(prefix)]

    @property
    def beat(self):
        """The seconds between heartbeats a worker's results declare (``beat=``), or None."""
        try:
            beat = float(self.field(BEAT_FIELD, b""))
        except ValueError:
            return None
        return beat if 0 < beat < float("inf") else None  # (NaN compares false)


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

    @property
    def arguments(self):
        """Its words after the command: positional ones (ATTACH's id) and fields (``name=value``, flags)."""
        return self.raw.split()[1:]

    def field(self, name, default=None):
        return field_value(self.arguments, name, default)

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


# --- the items of extended results (framing; encoding and decoding: results.py) ---

STDOUT = "stdout"
STDERR = "stderr"
RETURNED = "returned"  # a file the job wrote, brought back (see results.py)
# Every item's tag. Output goes in tagged lines, lower case for a chunk that ended in a newline,
# upper case for one that did not (the newline that ends every tagged line is framing); or raw:
# ``1 <length>`` (stdout) or ``2 <length>`` (stderr), or a returned file's piece with
# ``r <length>[ <quoted path>]``, then that many bytes. Then the seal (``s <mac>``, under a secret:
# see auth.ResultsSeal) and the status (``x <kind> <value>``: results.Status).
OUTPUT_LINE_TAGS = {STDOUT: (b"o ", b"O "), STDERR: (b"e ", b"E ")}
SEAL_TAG = b"s"
STATUS_TAG = b"x"
LINE_TAGS = (*OUTPUT_LINE_TAGS[STDOUT], *OUTPUT_LINE_TAGS[STDERR], STATUS_TAG + b" ")
RAW_TAGS = {STDOUT: b"1 ", STDERR: b"2 ", RETURNED: b"r "}
STREAM_BY_RAW_TAG = {tag: stream for stream, tag in RAW_TAGS.items()}
# An empty raw chunk: what a worker sends while its job is quiet, every ``beat=`` seconds
# (a field of its results header), so that a master can tell a stopped worker from a quiet job.
HEARTBEAT_ITEM = b"1 0\n"
BEAT_FIELD = b"beat"
WORKER_FIELD = b"worker"  # which worker ran the job, on its results' header


def beat_field(seconds):
    return BEAT_FIELD + b"=%g" % seconds


def parse_raw_header(line):
    """``(stream, length)`` for a raw chunk's header line, or None for any other line."""
    stream = STREAM_BY_RAW_TAG.get(line[:2])
    if stream is None:
        return None
    length = line[2:].rstrip(b"\n")
    if stream == RETURNED:
        length = length.partition(b" ")[0]  # the file's name follows on a file's first piece
    if not length.isdigit():
        raise RemoteProtocolError(f"malformed raw chunk header {line[:80]!r}")
    return stream, int(length)


# --- who says what: the roles, and the messages that are no command word ---------

MASTER = "master"
WORKER = "worker"
CLIENT = "client"

STATUS = b"STATUS"  # a client's status request (see status.py for what it shows)

JOB = "block"  # a block: the code, or the results; it counts once its terminator has passed
# A worker's ERROR to code that came without RELAY, which only a classic master sends: that master
# relays one block after the worker's answer, whatever it was, so an empty one follows.
REFUSAL_TO_CLASSIC = "refusal to a classic master"
STATUS_REPLY = "status reply"  # the master's answer to STATUS: one JSON line, or a table ended by "."
