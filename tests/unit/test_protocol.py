"""Unit and property tests of the sans-IO protocol module (no sockets, no gevent)."""

import os
import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sieci.wire import conversation, protocol, upload_format
from sieci.wire.framing import Receiver
from sieci.wire.protocol import (
    AVAILABLE,
    CLASSIC_TERMINATOR,
    CONNECTION_CLOSED,
    DEFAULT_MAX_LINE,
    ENDSEQ,
    ERROR,
    EXTENDED,
    JOB,
    MASTER,
    NEED_DATA,
    READY,
    RECEIVED,
    ROLLBACK,
    STDERR,
    STDOUT,
    WORKER,
    BlockData,
    BlockEnd,
    LocalProtocolError,
    Line,
    ProtocolError,
    RemoteProtocolError,
    encode_block,
    encode_command,
    encode_header,
    first_word,
    parse_header,
    rest_of_line,
)
from sieci.wire.results import ResultDecoder, Status, encode_output, parse_status

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Properties that also draw a chunking cost more per example.
CHUNKED = settings(PROPERTY, max_examples=60)
TOKEN = re.compile(rb"[G-V]{32}")


# --- helpers ------------------------------------------------------------------


class Feeder:
    """Drives a Receiver the way a connection does.

    Every event is recorded; a Line whose first word is ENDSEQ starts a block
    with ``block_options`` (as master, worker and client do after a header).
    """

    def __init__(self, max_line=DEFAULT_MAX_LINE, **block_options):
        self.receiver = Receiver(max_line)
        self.block_options = block_options
        self.events = []
        self.headers = []

    def feed(self, data):
        self.receiver.receive_data(data)
        return self.drain()

    def drain(self):
        while True:
            event = self.receiver.next_event()
            if event is NEED_DATA:
                return event
            self.events.append(event)
            if event is CONNECTION_CLOSED:
                return event
            if isinstance(event, Line) and event.word == ENDSEQ:
                header = parse_header(event.raw)
                self.headers.append(header)
                self.receiver.start_block(header, **self.block_options)

    def feed_all(self, chunks, eof=False):
        for chunk in chunks:
            if chunk:  # an empty read means EOF, so reads are never empty
                self.feed(chunk)
        if eof:
            self.feed(b"")
        return summarize(self.events)


def summarize(events):
    """Events as comparable tuples, with consecutive BlockData merged."""
    out = []
    for event in events:
        if isinstance(event, BlockData):
            assert event.data, "an empty BlockData was emitted"
            if out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + event.data)
            else:
                out.append(("data", event.data))
        elif isinstance(event, BlockEnd):
            out.append(("end", event.raw))
        elif isinstance(event, Line):
            out.append(("line", event.raw))
        elif event is CONNECTION_CLOSED:
            out.append(("closed",))
        else:  # pragma: no cover - a new event type would need new tests
            raise AssertionError(f"unexpected event {event!r}")
    return out


def split_at(data, cuts):
    cuts = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def cut(data, mode, seed):
    """``data`` as consecutive reads: whole, byte by byte, small pieces or a few cuts."""
    if mode == 0:
        return [data]
    if mode == 1:
        return [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    if mode == 2:
        cuts, at = [], 0
        while at < len(data):
            at += rng.randint(1, 8)
            cuts.append(at)
        return split_at(data, cuts)
    return split_at(data, [rng.randint(0, len(data)) for _ in range(rng.randint(0, 25))])


def chunkings(data):
    """A strategy for ways to cut ``data`` into consecutive reads (two draws, so it is cheap)."""
    return st.tuples(st.integers(0, 3), st.integers(0, 2**32)).map(lambda mode_seed: cut(data, *mode_seed))


def merge_output(pieces):
    """(stream, bytes) pieces with empties dropped and same-stream neighbours merged."""
    out = []
    for stream, data in pieces:
        if not data:
            continue
        if out and out[-1][0] == stream:
            out[-1] = (stream, out[-1][1] + data)
        else:
            out.append((stream, data))
    return out


# Payload bytes that stress the framing: whitespace, CR, NUL, non-UTF-8,
# blank lines, words of the protocol and hex-looking text.
ATOMS = [b"", b" ", b"\t", b"\r", b"\x00", b"\xff\xfe", b"\x0b\x0c", b"ENDSEQ", b"ENDSEQ x",
         b"0123456789abcdef", b"T", b"  T  ", b"o ", b"x exit 0", CLASSIC_TERMINATOR[:10]]
payloads = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(st.sampled_from(ATOMS), st.binary(max_size=12)), max_size=25).map(b"\n".join),
    st.lists(st.one_of(st.sampled_from(ATOMS), st.binary(max_size=12)), max_size=25).map(b"".join),
)


# --- messages -------------------------------------------------------------------


def test_encode_command_bare_words():
    assert encode_command(AVAILABLE) == b"AVAILABLE\n"
    assert encode_command(READY) == b"READY\n"
    assert encode_command(ROLLBACK) == b"ROLLBACK\n"
    assert encode_command(RECEIVED) == b"RECEIVED\n"
    assert encode_command(ERROR) == b"ERROR\n"


def test_encode_command_error_with_reason():
    assert encode_command(ERROR, b"no worker") == b"ERROR no worker\n"


def test_encode_command_folds_reason_onto_one_line():
    line = encode_command(ERROR, b"  bad\nthing\r\n\tmore  \n")
    assert line == b"ERROR bad thing more\n"
    assert line.count(b"\n") == 1


def test_encode_command_whitespace_reason_is_dropped():
    assert encode_command(ERROR, b" \n\t ") == b"ERROR\n"


@PROPERTY
@given(reason=st.binary(max_size=200))
def test_encode_command_round_trips_reason(reason):
    line = encode_command(ERROR, reason)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert first_word(line) == ERROR
    assert rest_of_line(line) == b" ".join(reason.split())
    assert Line(line).word == ERROR and Line(line).reason == b" ".join(reason.split())


@pytest.mark.parametrize("line, word, rest", [
    (b"READY\n", b"READY", b""),
    (b"  READY  \n", b"READY", b""),
    (b"RECEIVED extra\n", b"RECEIVED", b"extra"),
    (b"ERROR no worker\n", b"ERROR", b"no worker"),
    (b"ERROR   spaced   out  \r\n", b"ERROR", b"spaced   out"),
    (b"\tROLLBACK\tnow\n", b"ROLLBACK", b"now"),
    (b"", b"", b""),
    (b"\n", b"", b""),
    (b"   \t \n", b"", b""),
])
def test_first_word_and_rest_of_line(line, word, rest):
    assert first_word(line) == word
    assert rest_of_line(line) == rest
    assert Line(line).word == word
    assert Line(line).reason == rest


# --- headers -----------------------------------------------------------------------


def test_parse_header_fields():
    raw = b"ENDSEQ  abc123 v=2   name=job.py flag\r\n"
    header = parse_header(raw)
    assert header.raw == raw
    assert header.terminator == b"abc123"
    assert header.fields == [b"v=2", b"name=job.py", b"flag"]
    assert header.extended
    assert header.field(b"name") == b"job.py"
    assert header.field(b"v") == b"2"
    assert header.field(b"na") is None
    assert header.field(b"flag") is None  # a bare flag has no value
    assert header.field(b"missing", b"default") == b"default"


def test_parse_header_plain_is_not_extended():
    header = parse_header(b"ENDSEQ T\n")
    assert header.terminator == b"T"
    assert header.fields == []
    assert not header.extended
    assert header.field(b"v") is None


def test_parse_header_extended_needs_exact_field():
    assert not parse_header(b"ENDSEQ T v=20\n").extended
    assert not parse_header(b"ENDSEQ T xv=2\n").extended
    # v=2 in the terminator position is the terminator, not a field.
    header = parse_header(b"ENDSEQ v=2\n")
    assert header.terminator == b"v=2" and not header.extended


def test_parse_header_transcript_header():
    header = parse_header(b"ENDSEQ   T  junk\n")
    assert header.terminator == b"T"
    assert header.fields == [b"junk"]
    assert not header.extended


@pytest.mark.parametrize("raw", [
    b"", b"\n", b"   \n", b"ENDSEQ\n", b"ENDSEQ   \n", b"READY\n", b"RECEIVED T\n",
    b"endseq T\n", b"ENDSEQT\n", b"XENDSEQ T\n",
])
def test_parse_header_rejects_bad_headers(raw):
    with pytest.raises(RemoteProtocolError):
        parse_header(raw)


def test_encode_header():
    assert encode_header(b"T") == b"ENDSEQ T\n"
    assert encode_header(b"T", [EXTENDED, b"name=a.py"]) == b"ENDSEQ T v=2 name=a.py\n"
    header = parse_header(encode_header(b"tok", [EXTENDED]))
    assert header.terminator == b"tok" and header.extended


def test_encode_block_shape():
    block = encode_block(b"print(1)", [EXTENDED])
    header_line, rest = block.split(b"\n", 1)
    header = parse_header(header_line + b"\n")
    assert header.extended
    assert TOKEN.fullmatch(header.terminator)
    assert rest == b"print(1)\n" + header.terminator + b"\n"


def test_encode_block_empty_payload():
    block = encode_block(b"")
    header_line, rest = block.split(b"\n", 1)
    terminator = parse_header(header_line).terminator
    assert rest == terminator + b"\n"
    assert Feeder().feed_all([block]) == [("line", header_line + b"\n"), ("end", terminator + b"\n")]


def test_choose_terminator_avoids_content(monkeypatch):
    draws = iter([bytes(16), b"\x11" * 16])
    monkeypatch.setattr(protocol.os, "urandom", lambda n: next(draws))
    content = b"xx" + b"G" * 32 + b"yy"  # the first draw (zero bits) would collide
    assert protocol.choose_terminator(content) == b"H" * 32


@settings(PROPERTY, max_examples=30)
@given(content=st.binary(max_size=200))
def test_choose_terminator_is_32_letters_and_absent(content):
    token = protocol.choose_terminator(content)
    assert TOKEN.fullmatch(token)
    assert token not in content


# --- line framing --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 5, 100])
def test_lines_split_across_chunks(size):
    data = b"AVAILABLE\nREADY  \n\nERROR some reason\r\nlast"
    feeder = Feeder()
    assert feeder.feed_all([data[i:i + size] for i in range(0, len(data), size)]) == [
        ("line", b"AVAILABLE\n"), ("line", b"READY  \n"), ("line", b"\n"),
        ("line", b"ERROR some reason\r\n")]
    assert feeder.receiver.buffered == len(b"last")
    assert feeder.receiver.next_event() is NEED_DATA


def test_need_data_when_incomplete():
    receiver = Receiver()
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(b"REA")
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(b"DY")
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(b"\n")
    event = receiver.next_event()
    assert isinstance(event, Line) and event.raw == b"READY\n" and event.word == READY
    assert receiver.next_event() is NEED_DATA
    assert not receiver.in_block


def test_eof_gives_connection_closed():
    receiver = Receiver()
    receiver.receive_data(b"")
    assert receiver.next_event() is CONNECTION_CLOSED
    assert receiver.next_event() is CONNECTION_CLOSED  # and stays closed


def test_eof_after_lines_delivers_lines_first():
    feeder = Feeder()
    assert feeder.feed_all([b"READY\nRECEI"], eof=True) == [("line", b"READY\n"), ("closed",)]


def test_line_longer_than_max_line_raises():
    receiver = Receiver(max_line=16)
    receiver.receive_data(b"x" * 10)
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(b"x" * 6)  # exactly max_line, still allowed to grow a newline
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(b"x")
    with pytest.raises(RemoteProtocolError):
        receiver.next_event()


def test_default_max_line_guards_command_lines():
    receiver = Receiver()
    for _ in range(2):
        receiver.receive_data(b"A" * (DEFAULT_MAX_LINE // 2 + 1))
    with pytest.raises(RemoteProtocolError) as info:
        receiver.next_event()
    assert isinstance(info.value, ProtocolError)


@CHUNKED
@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       data=st.data())
def test_lines_property(lines, data):
    """Lines come out whole and in order, whatever the reads looked like."""
    lines = [line for line in lines if first_word(line) != ENDSEQ]
    stream = b"".join(line + b"\n" for line in lines)
    chunks = data.draw(chunkings(stream))
    assert Feeder().feed_all(chunks, eof=True) == [("line", line + b"\n") for line in lines] + [("closed",)]


# --- block framing ---------------------------------------------------------------------

TRANSCRIPT = b"RECEIVED extra\nENDSEQ   T  junk\nline1\n  line2  \n\n\tT  \nafter\n"


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, len(TRANSCRIPT)])
def test_protocol_md_transcript(size):
    feeder = Feeder()
    events = feeder.feed_all([TRANSCRIPT[i:i + size] for i in range(0, len(TRANSCRIPT), size)])
    assert events == [
        ("line", b"RECEIVED extra\n"),
        ("line", b"ENDSEQ   T  junk\n"),
        ("data", b"line1\n  line2  \n\n"),
        ("end", b"\tT  \n"),
        ("line", b"after\n"),
    ]
    assert feeder.events[0].word == RECEIVED and feeder.events[0].reason == b"extra"
    assert feeder.headers[0].terminator == b"T" and feeder.headers[0].fields == [b"junk"]
    assert not feeder.receiver.in_block
    assert feeder.receiver.buffered == 0


@pytest.mark.parametrize("terminator_line", [
    b"T\n", b"\tT  \n", b"   T\n", b"T \t \n", b"T\r\n", b"\x0bT\x0c\n",
])
def test_terminator_with_surrounding_whitespace(terminator_line):
    events = Feeder().feed_all([b"ENDSEQ T\n", b"a\n", terminator_line, b"next\n"])
    assert events == [("line", b"ENDSEQ T\n"), ("data", b"a\n"), ("end", terminator_line),
                      ("line", b"next\n")]


def test_lines_that_contain_the_terminator_are_payload():
    payload = (b"TT\n" b"T T\n" b"xT\n" b"Tx\n" b"T x\n" b"  T=1  \n" b"print('T')\n"
               b"T\tT\n" b"-T-\n")
    events = Feeder().feed_all([b"ENDSEQ T\n" + payload + b"T\n"])
    assert events == [("line", b"ENDSEQ T\n"), ("data", payload), ("end", b"T\n")]


def test_blank_and_indented_lines_kept_byte_for_byte():
    payload = b"\n\n    indented\n\t\ttabs\t\n   \n\r\n  trailing  \n\x00\xff\n"
    events = Feeder().feed_all([b"ENDSEQ tok\n" + payload + b"tok\n"])
    assert events == [("line", b"ENDSEQ tok\n"), ("data", payload), ("end", b"tok\n")]


def test_only_the_first_terminator_line_ends_the_block():
    events = Feeder().feed_all([b"ENDSEQ T\na\nT\nT\n"])
    assert events == [("line", b"ENDSEQ T\n"), ("data", b"a\n"), ("end", b"T\n"), ("line", b"T\n")]


def test_eof_inside_block():
    events = Feeder().feed_all([b"ENDSEQ T\nsome\npart"], eof=True)
    assert events == [("line", b"ENDSEQ T\n"), ("data", b"some\npart"), ("closed",)]


def test_eof_inside_block_with_held_back_prefix():
    feeder = Feeder()
    events = feeder.feed_all([b"ENDSEQ Tok\nsome\nTo"], eof=True)
    assert events == [("line", b"ENDSEQ Tok\n"), ("data", b"some\n"), ("closed",)]
    assert feeder.receiver.in_block


def test_in_block_flag():
    receiver = Receiver()
    assert not receiver.in_block
    receiver.start_block(parse_header(b"ENDSEQ T\n"))
    assert receiver.in_block
    receiver.receive_data(b"T\n")
    assert isinstance(receiver.next_event(), BlockEnd)
    assert not receiver.in_block


@CHUNKED
@given(payload=payloads, fields=st.sampled_from([(), (EXTENDED,), (b"name=a.py", b"zz")]), data=st.data())
def test_encode_block_round_trip(payload, fields, data):
    """Any payload, any chunking: the payload comes back, then one BlockEnd."""
    block = encode_block(payload, fields)
    chunks = data.draw(chunkings(block))
    feeder = Feeder()
    events = feeder.feed_all(chunks, eof=True)
    expected = payload if not payload or payload.endswith(b"\n") else payload + b"\n"
    header_raw = block.split(b"\n", 1)[0] + b"\n"
    terminator = feeder.headers[0].terminator
    assert feeder.headers[0].fields == list(fields)
    assert events == [("line", header_raw)] + ([("data", expected)] if expected else []) + [
        ("end", terminator + b"\n"), ("closed",)]
    assert sum(isinstance(e, BlockEnd) for e in feeder.events) == 1


no_newline = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))
short_terminators = st.sampled_from([b"T", b"ab", b"END", b"0f"])


@CHUNKED
@given(terminator=short_terminators, data=st.data())
def test_block_framing_with_terminator_inside_lines(terminator, data):
    """A short terminator that appears inside payload lines; only a line that is it ends the block."""
    piece = st.one_of(no_newline, st.just(terminator), st.sampled_from([b" ", b"\t", b"\r", b"x"]))
    lines = data.draw(st.lists(st.lists(piece, max_size=4).map(b"".join), max_size=10))
    lines = [line for line in lines if line.strip() != terminator]
    payload = b"".join(line + b"\n" for line in lines)
    end_line = data.draw(st.sampled_from([b"", b" ", b"\t", b"  \r"])) + terminator + data.draw(
        st.sampled_from([b"", b" ", b"\r", b" \t"])) + b"\n"
    stream = b"ENDSEQ " + terminator + b"\n" + payload + end_line + b"after\n"
    events = Feeder(max_line=64).feed_all(data.draw(chunkings(stream)))
    assert events == [("line", b"ENDSEQ " + terminator + b"\n")] + (
        [("data", payload)] if payload else []) + [("end", end_line), ("line", b"after\n")]


# --- classic glued terminator ---------------------------------------------------------------

CLASSIC_HEADER = b"ENDSEQ " + CLASSIC_TERMINATOR + b"\n"


@pytest.mark.parametrize("size", [1, 5, 33, 1000])
def test_glued_terminator_accepted(size):
    stream = CLASSIC_HEADER + b"x = 1\n    print(1)" + CLASSIC_TERMINATOR + b"\n"
    events = Feeder(accept_glued=True).feed_all([stream[i:i + size] for i in range(0, len(stream), size)])
    assert events == [("line", CLASSIC_HEADER), ("data", b"x = 1\n    print(1)\n"),
                      ("end", CLASSIC_TERMINATOR + b"\n")]


def test_glued_terminator_single_line():
    events = Feeder(accept_glued=True).feed_all([CLASSIC_HEADER, b"print(1)" + CLASSIC_TERMINATOR + b"\n"])
    assert events[1:] == [("data", b"print(1)\n"), ("end", CLASSIC_TERMINATOR + b"\n")]


def test_glued_terminator_keeps_trailing_code_whitespace():
    events = Feeder(accept_glued=True).feed_all(
        [CLASSIC_HEADER + b"\tprint(1)  " + CLASSIC_TERMINATOR + b" \n"])
    assert events[1:] == [("data", b"\tprint(1)  \n"), ("end", CLASSIC_TERMINATOR + b"\n")]


def test_glued_mode_still_accepts_a_plain_terminator_line():
    events = Feeder(accept_glued=True).feed_all(
        [CLASSIC_HEADER + b"print(1)\n" + CLASSIC_TERMINATOR + b"\nafter\n"])
    assert events[1:] == [("data", b"print(1)\n"), ("end", CLASSIC_TERMINATOR + b"\n"),
                          ("line", b"after\n")]


def test_glued_terminator_not_accepted_without_option():
    stream = CLASSIC_HEADER + b"print(1)" + CLASSIC_TERMINATOR + b"\n"
    feeder = Feeder()
    events = feeder.feed_all([stream], eof=True)
    assert events == [("line", CLASSIC_HEADER), ("data", b"print(1)" + CLASSIC_TERMINATOR + b"\n"),
                      ("closed",)]
    assert feeder.receiver.in_block


def test_glued_option_ignored_for_other_terminators():
    stream = b"ENDSEQ T\nprint(1)T\n"
    feeder = Feeder(accept_glued=True)
    events = feeder.feed_all([stream], eof=True)
    assert events == [("line", b"ENDSEQ T\n"), ("data", b"print(1)T\n"), ("closed",)]


@CHUNKED
@given(lines=st.lists(no_newline, max_size=10), last=no_newline, data=st.data())
def test_glued_round_trip(lines, last, data):
    """The classic client's upload of any file ends the block with the file's lines."""
    lines = [line for line in lines if not line.strip().endswith(CLASSIC_TERMINATOR)]
    if not last.strip():
        last = b"pass" + last  # a whitespace-only glued line is the terminator line itself
    code = b"".join(line + b"\n" for line in lines) + last
    stream = CLASSIC_HEADER + code + CLASSIC_TERMINATOR + b"\n"
    events = Feeder(accept_glued=True).feed_all(data.draw(chunkings(stream)))
    assert events == [("line", CLASSIC_HEADER), ("data", code + b"\n"), ("end", CLASSIC_TERMINATOR + b"\n")]


def test_glued_mode_ends_at_any_code_line_ending_in_the_token():
    """Documented: with the classic token, a code line that ends in it ends the upload."""
    stream = CLASSIC_HEADER + b"# " + CLASSIC_TERMINATOR + b"\nprint(1)\n" + CLASSIC_TERMINATOR + b"\n"
    events = Feeder(accept_glued=True).feed_all([stream])
    assert events[1:] == [("data", b"# \n"), ("end", CLASSIC_TERMINATOR + b"\n"), ("line", b"print(1)\n"),
                          ("line", CLASSIC_TERMINATOR + b"\n")]


@pytest.mark.parametrize("last", [
    CLASSIC_TERMINATOR,                       # a file whose last line is the bare token
    b"  " + CLASSIC_TERMINATOR,
    b"# see " + CLASSIC_TERMINATOR,           # a comment that ends in the token
])
def test_glued_split_keeps_a_code_line_that_ends_in_the_token(last):
    code = b"x = 1\n" + last  # no final newline: the classic client glues the token on
    events = Feeder(accept_glued=True).feed_all([CLASSIC_HEADER + code + CLASSIC_TERMINATOR + b"\n"], eof=True)
    assert events == [("line", CLASSIC_HEADER), ("data", code + b"\n"), ("end", CLASSIC_TERMINATOR + b"\n"),
                      ("closed",)]


# --- size limits and streaming ----------------------------------------------------------------


def test_max_size_allows_exact_payload():
    events = Feeder(max_size=10).feed_all([b"ENDSEQ T\n012345678\nT\n"])
    assert events[1:] == [("data", b"012345678\n"), ("end", b"T\n")]


def test_max_size_exceeded_raises():
    feeder = Feeder(max_size=10)
    feeder.feed(b"ENDSEQ T\n")
    with pytest.raises(RemoteProtocolError):
        feeder.feed(b"0123456789\nT\n")


def test_max_size_exceeded_across_reads_raises():
    feeder = Feeder(max_size=1000)
    feeder.feed(b"ENDSEQ T\n")
    with pytest.raises(RemoteProtocolError):
        for _ in range(100):
            feeder.feed(b"0123456789abcdef\n")
    total = sum(len(e.data) for e in feeder.events if isinstance(e, BlockData))
    assert total <= 1000


def test_max_size_zero_allows_empty_block():
    events = Feeder(max_size=0).feed_all([b"ENDSEQ T\nT\n"])
    assert events == [("line", b"ENDSEQ T\n"), ("end", b"T\n")]


def test_very_long_line_streams_in_bounded_memory():
    receiver = Receiver()
    header = parse_header(b"ENDSEQ " + b"f" * 32 + b"\n")
    receiver.start_block(header)
    chunk = b"a" * (64 * 1024)
    total = 10 * 1024 * 1024
    released = 0
    peak = 0
    for _ in range(total // len(chunk)):
        receiver.receive_data(chunk)
        while (event := receiver.next_event()) is not NEED_DATA:
            assert isinstance(event, BlockData)
            assert event.data.count(b"a") == len(event.data)
            released += len(event.data)
        peak = max(peak, receiver.buffered)
        assert receiver.buffered <= DEFAULT_MAX_LINE
    assert released == total  # nothing of the line was held back
    assert peak <= DEFAULT_MAX_LINE
    receiver.receive_data(b"\n" + header.terminator + b"\n")
    event = receiver.next_event()
    assert isinstance(event, BlockData) and event.data == b"\n"
    end = receiver.next_event()
    assert isinstance(end, BlockEnd) and end.raw == header.terminator + b"\n"
    assert receiver.buffered == 0


def test_many_lines_stream_without_buffering():
    receiver = Receiver(max_line=128)
    receiver.start_block(parse_header(b"ENDSEQ T\n"))
    released = 0
    for _ in range(200):
        receiver.receive_data(b"line of payload\n" * 100)
        while (event := receiver.next_event()) is not NEED_DATA:
            released += len(event.data)
        assert receiver.buffered == 0
    assert released == 200 * 100 * 16


@pytest.mark.parametrize("partial", [b"ab", b"abc", b"  abc", b"\tab", b"abc ", b"abc \t", b"", b"   "])
def test_partial_that_may_become_terminator_is_held_back(partial):
    receiver = Receiver()
    receiver.start_block(parse_header(b"ENDSEQ abc\n"))
    receiver.receive_data(b"payload\n" + partial)
    event = receiver.next_event()
    assert isinstance(event, BlockData) and event.data == b"payload\n"
    assert receiver.next_event() is NEED_DATA
    assert receiver.buffered == len(partial)


@pytest.mark.parametrize("partial", [b"x", b"abd", b"  ab x", b"abcd", b"abc x", b"ab c"])
def test_partial_that_cannot_become_terminator_is_released(partial):
    receiver = Receiver()
    receiver.start_block(parse_header(b"ENDSEQ abc\n"))
    receiver.receive_data(b"payload\n" + partial)
    data = b""
    while (event := receiver.next_event()) is not NEED_DATA:
        data += event.data
    assert data == b"payload\n" + partial
    assert receiver.buffered == 0
    # The rest of the line can no longer make it the terminator.
    receiver.receive_data(b"abc\nabc\n")
    event = receiver.next_event()
    assert isinstance(event, BlockData) and event.data == b"abc\n"
    assert isinstance(receiver.next_event(), BlockEnd)


def test_held_back_prefix_released_once_it_diverges():
    receiver = Receiver()
    receiver.start_block(parse_header(b"ENDSEQ abc\n"))
    receiver.receive_data(b"ab")
    assert receiver.next_event() is NEED_DATA
    receiver.receive_data(b"x")
    event = receiver.next_event()
    assert isinstance(event, BlockData) and event.data == b"abx"
    receiver.receive_data(b"\nabc\n")
    assert receiver.next_event().data == b"\n"
    assert isinstance(receiver.next_event(), BlockEnd)


def test_a_partial_longer_than_max_line_is_released_as_payload():
    receiver = Receiver(max_line=16)
    receiver.start_block(parse_header(b"ENDSEQ T\n"))
    receiver.receive_data(b" " * 17)  # whitespace could still precede the terminator, but not this much
    assert receiver.next_event().data == b" " * 17
    receiver.receive_data(b" T\nT\n")
    assert receiver.next_event().data == b" T\n"
    assert receiver.next_event().raw == b"T\n"


# --- extended results -------------------------------------------------------------------------


def test_encode_output_examples():
    assert encode_output(STDOUT, b"") == b""
    assert encode_output(STDOUT, b"hi\n") == b"o hi\n"
    assert encode_output(STDOUT, b"hi") == b"O hi\n"
    assert encode_output(STDERR, b"a\nb") == b"e a\nE b\n"
    assert encode_output(STDERR, b"\n\n") == b"e \ne \n"
    assert encode_output(STDOUT, b"a\r\n\x00\xff") == b"o a\r\nO \x00\xff\n"


def test_decoder_examples():
    decoder = ResultDecoder()
    assert decoder.feed(b"o hel") == []
    assert decoder.feed(b"lo\nO wor") == [(STDOUT, b"hello\n")]
    assert decoder.feed(b"ld\ne oops\nE !\no \n") == [(STDOUT, b"world"), (STDERR, b"oops\n!"),
                                                      (STDOUT, b"\n")]
    assert decoder.status is None
    assert decoder.feed(b"x exit 3\n") == []
    assert decoder.status == Status(b"exit", b"3")


def test_decoder_ignores_unknown_lower_case_tags():
    decoder = ResultDecoder()
    assert decoder.feed(b"q later stuff\nz\no a\nx signal 9\n") == [(STDOUT, b"a\n")]
    assert decoder.status == Status(b"signal", b"9")


@pytest.mark.parametrize("line", [b"hello\n", b"Q upper\n", b"oops\n", b" o x\n", b"\n", b"1 x\n",
                                  b"O\n", b"x\n", b"x exit\n", b"x exit zero\n"])
def test_decoder_rejects_bad_lines(line):
    with pytest.raises(RemoteProtocolError):
        ResultDecoder().feed(line)


def test_decoder_rejects_output_after_status():
    decoder = ResultDecoder()
    decoder.feed(b"x exit 0\n")
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"o more\n")


def test_decoder_bounds_partial_line():
    decoder = ResultDecoder(max_line=10)
    assert decoder.feed(b"o 12345678") == []
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"9")


def test_decoder_accepts_a_full_executor_read():
    """The executor reads at most 64 KiB at a time; such a chunk must decode, in any pieces."""
    data = bytes(range(256)).replace(b"\n", b"") * 300
    data = data[:64 * 1024]
    decoder = ResultDecoder()
    encoded = encode_output(STDERR, data)
    out = []
    for i in range(0, len(encoded), 4096):
        out.extend(decoder.feed(encoded[i:i + 4096]))
    assert merge_output(out) == [(STDERR, data)]


def test_encode_output_of_a_large_chunk_decodes():
    data = b"a" * (200 * 1024)
    decoder = ResultDecoder()
    encoded = encode_output(STDOUT, data)
    out = []
    for i in range(0, len(encoded), 64 * 1024):
        out.extend(decoder.feed(encoded[i:i + 64 * 1024]))
    assert merge_output(out) == [(STDOUT, data)]


stream_chunks = st.lists(st.tuples(st.sampled_from([STDOUT, STDERR]), payloads), max_size=8)
statuses = st.one_of(
    st.builds(Status, st.just(b"exit"), st.integers(0, 255).map(lambda n: str(n).encode())),
    st.builds(Status, st.just(b"signal"), st.integers(1, 64).map(lambda n: str(n).encode())),
    st.builds(Status, st.just(b"limit"), st.sampled_from([b"time", b"output"]), st.sampled_from([b"", b"too long"])),
    st.builds(Status, st.just(b"error"), st.sampled_from([b"lost", b"spawn"]), st.sampled_from([b"", b"worker lost"])),
)


@CHUNKED
@given(pieces=stream_chunks, status=statuses, data=st.data())
def test_output_round_trip(pieces, status, data):
    encoded = b"".join(encode_output(stream, chunk) for stream, chunk in pieces) + status.encode()
    decoder = ResultDecoder()
    out = []
    for chunk in data.draw(chunkings(encoded)):
        out.extend(decoder.feed(chunk))
    assert all(piece for _, piece in out)
    assert merge_output(out) == merge_output(pieces)
    assert decoder.status == status


@CHUNKED
@given(pieces=stream_chunks, status=statuses, data=st.data())
def test_extended_results_block_round_trip(pieces, status, data):
    """Worker-side bytes through Receiver and ResultDecoder, as the client reads them."""
    terminator = protocol.choose_terminator()
    if data.draw(st.booleans(), label="a piece holds the terminator"):
        pieces = pieces + [(STDOUT, b"before\n  " + terminator + b"  \nafter")]
    raw = data.draw(st.booleans(), label="raw chunks where they are safe")
    body = b"".join(encode_output(stream, chunk, terminator if raw else None)
                    for stream, chunk in pieces) + status.encode()
    assert all(line.strip() != terminator for line in body.split(b"\n"))
    stream = encode_header(terminator, [EXTENDED]) + body + terminator + b"\n"
    feeder = Feeder(results=data.draw(st.booleans(), label="the receiver reads raw chunks by length"))
    feeder.feed_all(data.draw(chunkings(stream)))
    assert feeder.headers[0].extended
    decoder = ResultDecoder()
    out = []
    ends = 0
    for event in feeder.events[1:]:
        if isinstance(event, BlockData):
            assert ends == 0
            out.extend(decoder.feed(event.data))
        else:
            assert isinstance(event, BlockEnd)
            ends += 1
    assert ends == 1
    assert merge_output(out) == merge_output(pieces)
    assert decoder.status == status


@CHUNKED
@given(pieces=stream_chunks, status=statuses, data=st.data())
def test_raw_bytes_taken_past_the_receiver_and_decoder_round_trip(pieces, status, data):
    """As a splicing reader does: after any event, part of a pending raw chunk skips both."""
    terminator = protocol.choose_terminator()
    body = b"".join(encode_output(stream, chunk, terminator) for stream, chunk in pieces) + status.encode()
    wire = encode_header(terminator, [EXTENDED]) + body + terminator + b"\nafter\n"
    receiver, decoder, out, position = Receiver(), ResultDecoder(), [], 0
    while not isinstance(event := receiver.next_event(), BlockEnd):
        if event is NEED_DATA:
            size = data.draw(st.integers(1, 64), label="read size")
            receiver.receive_data(wire[position:position + size])
            position += size
        elif isinstance(event, Line):
            receiver.start_block(parse_header(event.raw), results=True)
        else:
            out.extend(decoder.feed(event.data))
            pending = receiver.raw_pending
            if pending and data.draw(st.booleans(), label="take raw bytes past them"):
                size = data.draw(st.integers(1, pending), label="bytes taken")
                out.append((decoder.raw_stream, wire[position:position + size]))
                position += size
                receiver.took_raw(size)
                decoder.took_raw(size)
    assert merge_output(out) == merge_output(pieces)
    assert decoder.status == status and decoder.complete
    if wire[position:]:
        receiver.receive_data(wire[position:])
    assert receiver.next_event().raw == b"after\n"


def test_raw_bytes_are_pending_only_inside_a_raw_chunk_with_nothing_buffered():
    receiver = Receiver()
    receiver.start_block(parse_header(b"ENDSEQ T v=2\n"), results=True)
    receiver.receive_data(b"o line\n1 10\nabc")
    assert receiver.raw_pending == 0  # bytes are buffered: they come first
    assert receiver.next_event().data == b"o line\n1 10\nabc"
    assert receiver.raw_pending == 7
    with pytest.raises(LocalProtocolError):
        receiver.took_raw(8)
    receiver.took_raw(7)
    receiver.receive_data(b"x exit 0\nT\n")
    assert receiver.raw_pending == 0
    assert receiver.next_event().data == b"x exit 0\n"
    assert isinstance(receiver.next_event(), BlockEnd)


def test_nothing_is_pending_outside_results_mode():
    receiver = Receiver()
    receiver.start_block(parse_header(b"ENDSEQ T v=2\n"))
    receiver.receive_data(b"1 10\nabc")
    assert receiver.next_event().data == b"1 10\nabc"
    assert receiver.raw_pending == 0


@PROPERTY
@given(stream=st.sampled_from([STDOUT, STDERR]), data=payloads,
       token=st.text("0123456789abcdef", min_size=32, max_size=32).map(str.encode))
def test_output_lines_never_equal_a_terminator(stream, data, token):  # the tagged form
    encoded = encode_output(stream, data)
    for line in encoded.split(b"\n")[:-1] if encoded else []:
        stripped = line.strip()
        assert stripped != token
        assert not TOKEN.fullmatch(stripped)
        # Stronger: a tag alone, or a tag, a space and more: never one whitespace-free token
        # other than a single tag letter.
        assert len(stripped) == 1 or stripped[1:2] == b" "
    if encoded:
        assert encoded.endswith(b"\n")


# --- status ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status, code", [
    (Status(b"exit", b"0"), 0),
    (Status(b"exit", b"1"), 1),
    (Status(b"exit", b"42"), 42),
    (Status(b"exit", b"255"), 255),
    (Status(b"signal", b"9"), 137),
    (Status(b"signal", b"15"), 143),
    (Status(b"signal", b"2"), 130),
    (Status(b"limit", b"time", b"ran too long"), 124),
    (Status(b"limit", b"output"), 137),
    (Status(b"error", b"lost", b"worker lost"), 255),
    (Status(b"error", b"spawn"), 255),
])
def test_status_exit_code(status, code):
    assert status.exit_code == code


def test_exit_code_of_exit_n_is_n():
    for n in range(256):
        assert parse_status(b"x exit %d\n" % n).exit_code == n


def test_exit_code_of_signal_n():
    for n in range(1, 65):
        assert parse_status(b"x signal %d\n" % n).exit_code == 128 + n


def test_status_encode_examples():
    assert Status(b"exit", b"0").encode() == b"x exit 0\n"
    assert Status(b"error", b"lost", b"worker lost").encode() == b"x error lost worker lost\n"
    assert Status(b"limit", b"time", b" ran\npast  10 s\n").encode() == b"x limit time ran past 10 s\n"


def test_parse_status_examples():
    assert parse_status(b"x exit 0\n") == Status(b"exit", b"0")
    assert parse_status(b"x error lost worker lost\n") == Status(b"error", b"lost", b"worker lost")
    assert parse_status(b"x limit time ran past 10 s\n") == Status(b"limit", b"time", b"ran past 10 s")
    assert parse_status(b"x signal 9") == Status(b"signal", b"9")
    assert Status(b"exit", b"0") != Status(b"exit", b"1")
    assert Status(b"exit", b"0") != (b"exit", b"0")


word = st.binary(min_size=1, max_size=10).filter(lambda b: not any(c in b" \t\n\r\x0b\x0c" for c in b))


@PROPERTY
@given(kind=st.sampled_from([b"exit", b"signal", b"limit", b"error"]),
       number=st.integers(0, 10**6), value=word, message=st.binary(max_size=60))
def test_status_round_trip(kind, number, value, message):
    if kind in (b"exit", b"signal"):
        value = str(number).encode()
    status = Status(kind, value, message)
    line = status.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.startswith(b"x ")
    assert parse_status(line) == Status(kind, value, b" ".join(message.split()))


@pytest.mark.parametrize("line", [
    b"", b"\n", b"x\n", b"x exit\n", b"x exit \n", b"x exit abc\n", b"x exit -1\n", b"x exit 1.5\n",
    b"x signal\n", b"x signal nine\n", b"x bogus 1\n", b"x EXIT 0\n", b"y exit 0\n", b"o exit 0\n",
    b"xexit 0\n", b"exit 0\n", b"x  exit 0\n",
])
def test_parse_status_rejects_malformed(line):
    with pytest.raises(RemoteProtocolError):
        parse_status(line)


# --- conversations: the master-worker link and the client's connection ----------------------

CLIENT = protocol.CLIENT
LINK_STATES = [conversation.IDLE, conversation.CHALLENGED, conversation.ASKED, conversation.READY_HELD, conversation.SENT,
               conversation.NEEDING, conversation.RUNNING, conversation.CLOSED]
CLIENT_STATES = [conversation.IDLE, conversation.UPLOADED, conversation.NEEDING, conversation.WAITING, conversation.ACCEPTED,
                 conversation.STATUS_ASKED, conversation.ATTACH_ASKED, conversation.CANCEL_ASKED, conversation.JOBS_ASKED, conversation.CLOSED]
MESSAGES = [AVAILABLE, READY, ROLLBACK, RECEIVED, ERROR, JOB, protocol.CHALLENGE, protocol.AUTH, protocol.QUEUED,
            protocol.STATUS, protocol.STATUS_REPLY, protocol.NEED, protocol.DETACHED, protocol.ATTACH, protocol.ATTACHED,
            protocol.CANCEL, protocol.CANCELLED, protocol.JOBS, b"BOGUS"]
TABLES = {  # table: (its conversation's maker, its two ends, its states)
    "link": (conversation.LINK_TRANSITIONS, conversation.link_conversation, (MASTER, WORKER), LINK_STATES),
    "client": (conversation.CLIENT_TRANSITIONS, conversation.client_conversation, (MASTER, CLIENT), CLIENT_STATES),
}
LEGAL = [(name, role, transition) for name, (table, _, roles, _) in TABLES.items()
         for role in roles for transition in sorted(table, key=repr)]


def conversation_in(name, role, state):
    conversation = TABLES[name][1](role)
    conversation.state = state
    return conversation


@pytest.mark.parametrize("name, role, transition", LEGAL, ids=repr)
def test_every_transition(name, role, transition):
    state, sender, message = transition
    end = conversation_in(name, role, state)
    if message in (protocol.FREE, protocol.RELAY, conversation.CODE_AHEAD):
        end.takes_offers, end.offers = True, 1  # an offer stands (see test_pipelining.py)
    following = TABLES[name][0][transition]
    assert end.advance(sender, message) == following
    assert end.state == following


def test_the_link_table_matches_the_contract():
    assert conversation.LINK_TRANSITIONS == {
        (conversation.IDLE, MASTER, protocol.CHALLENGE): conversation.CHALLENGED,
        (conversation.CHALLENGED, WORKER, protocol.AUTH): conversation.IDLE,
        (conversation.IDLE, MASTER, AVAILABLE): conversation.ASKED,
        (conversation.ASKED, WORKER, READY): conversation.READY_HELD,
        (conversation.READY_HELD, MASTER, ROLLBACK): conversation.IDLE,
        (conversation.READY_HELD, MASTER, ERROR): conversation.IDLE,
        (conversation.READY_HELD, MASTER, JOB): conversation.SENT,
        (conversation.READY_HELD, MASTER, protocol.RELAY): conversation.RELAYED,
        (conversation.RELAYED, MASTER, JOB): conversation.SENT,
        (conversation.SENT, WORKER, protocol.NEED): conversation.NEEDING,
        (conversation.NEEDING, MASTER, JOB): conversation.SENT,
        (conversation.SENT, WORKER, RECEIVED): conversation.RUNNING,
        (conversation.SENT, WORKER, ERROR): conversation.IDLE,
        (conversation.SENT, WORKER, protocol.BUSY): conversation.IDLE,
        (conversation.RUNNING, WORKER, JOB): conversation.IDLE,
        (conversation.RUNNING, MASTER, protocol.ENDSEQ): conversation.FEEDING,
        (conversation.FEEDING, MASTER, JOB): conversation.FED,
        (conversation.FED, WORKER, JOB): conversation.IDLE,
        (conversation.FEEDING, WORKER, JOB): conversation.CUTTING_OFF,
        (conversation.CUTTING_OFF, MASTER, JOB): conversation.IDLE,
        (conversation.SENT, WORKER, protocol.REFUSAL_TO_CLASSIC): conversation.DECLINED,
        (conversation.DECLINED, WORKER, JOB): conversation.IDLE,
        (conversation.IDLE, MASTER, protocol.RELAY): conversation.RELAYED,
        **{(state, WORKER, protocol.FREE): state for state in conversation.OFFER_STATES},
        **{(state, MASTER, conversation.CODE_AHEAD): state for state in conversation.EXCHANGE_STATES},
        **{(state, MASTER, conversation.AVAILABLE_AHEAD): state for state in (conversation.RUNNING, conversation.FED)},
    }


def test_the_client_table_matches_the_contract():
    assert conversation.CLIENT_TRANSITIONS == {
        (conversation.IDLE, CLIENT, protocol.CHALLENGE): conversation.PROVING,
        (conversation.PROVING, MASTER, protocol.AUTH): conversation.IDLE,
        (conversation.IDLE, CLIENT, JOB): conversation.UPLOADED,
        (conversation.UPLOADED, MASTER, protocol.NEED): conversation.NEEDING,
        (conversation.NEEDING, CLIENT, JOB): conversation.UPLOADED,
        (conversation.UPLOADED, MASTER, protocol.QUEUED): conversation.WAITING,
        (conversation.UPLOADED, MASTER, RECEIVED): conversation.ACCEPTED,
        (conversation.WAITING, MASTER, RECEIVED): conversation.ACCEPTED,
        (conversation.ACCEPTED, MASTER, JOB): conversation.CLOSED,
        (conversation.ACCEPTED, CLIENT, protocol.ENDSEQ): conversation.FEEDING,
        (conversation.FEEDING, CLIENT, JOB): conversation.FED,
        (conversation.FED, MASTER, JOB): conversation.CLOSED,
        (conversation.FEEDING, MASTER, JOB): conversation.CLOSED,
        (conversation.IDLE, CLIENT, protocol.STATUS): conversation.STATUS_ASKED,
        (conversation.STATUS_ASKED, MASTER, protocol.STATUS_REPLY): conversation.CLOSED,
        (conversation.UPLOADED, MASTER, protocol.DETACHED): conversation.CLOSED,
        (conversation.IDLE, CLIENT, protocol.ATTACH): conversation.ATTACH_ASKED,
        (conversation.ATTACH_ASKED, MASTER, protocol.ATTACHED): conversation.ACCEPTED,
        (conversation.IDLE, CLIENT, protocol.CANCEL): conversation.CANCEL_ASKED,
        (conversation.CANCEL_ASKED, MASTER, protocol.CANCELLED): conversation.CLOSED,
        (conversation.IDLE, CLIENT, protocol.JOBS): conversation.JOBS_ASKED,
        (conversation.JOBS_ASKED, MASTER, protocol.STATUS_REPLY): conversation.CLOSED,
    }


@pytest.mark.parametrize("text, job_id", [(b"0123456789abcdef", "0123456789abcdef"), ("0123456789abcdef", "0123456789abcdef"),
                                          (b"0123456789ABCDEF", None), (b"../../../etc/pas", None),
                                          (b"0123456789abcde", None), (b"0123456789abcdef0", None), (b"", None),
                                          ("0123456789abcde\u00e9", None)])
def test_a_job_id_is_16_lower_case_hex_digits_and_nothing_else(text, job_id):
    assert protocol.parse_job_id(text) == job_id


def test_a_masters_line_names_the_job_by_its_id():
    assert protocol.job_id_of(b"RECEIVED job=0123456789abcdef\n") == "0123456789abcdef"
    assert protocol.job_id_of(b"RECEIVED\n") is None
    assert protocol.job_id_of(b"RECEIVED job=../x\n") is None


def _is_refusal(state, sender, message):
    """The master's ERROR, legal in any state but CLOSED (then it closes)."""
    return (sender, message) == (MASTER, ERROR) and state != conversation.CLOSED


ILLEGAL = [(name, role, (state, sender, message))
           for name, (table, _, roles, states) in TABLES.items() for role in roles
           for state in states for sender in roles for message in MESSAGES
           if (state, sender, message) not in table and not _is_refusal(state, sender, message)]


@pytest.mark.parametrize("name, role, transition", ILLEGAL, ids=repr)
def test_illegal_messages(name, role, transition):
    state, sender, message = transition
    conversation = conversation_in(name, role, state)
    expected = LocalProtocolError if sender == role else RemoteProtocolError
    with pytest.raises(expected) as info:
        conversation.advance(sender, message)
    assert type(info.value) is expected
    assert conversation.state == state  # an illegal message moves nothing


@pytest.mark.parametrize("name, state", [(name, state) for name, (_, _, _, states) in TABLES.items()
                                         for state in states if state != conversation.CLOSED])
def test_the_masters_error_ends_any_conversation(name, state):
    master = conversation_in(name, MASTER, state)
    assert master.send(ERROR, b"no") == b"ERROR no\n"
    peer = conversation_in(name, TABLES[name][2][1], state)
    peer.receive_line(b"ERROR no\n")
    following = TABLES[name][0].get((state, MASTER, ERROR), conversation.CLOSED)
    assert master.state == peer.state == following


def test_a_refusal_is_our_last_word_whatever_the_state():
    worker = conversation_in("link", WORKER, conversation.READY_HELD)  # in the middle of a bad upload, say
    assert worker.refuse(b"bad header") == b"ERROR bad header\n"
    assert worker.state == conversation.CLOSED
    with pytest.raises(LocalProtocolError):
        worker.send(RECEIVED)


def _drive(sender_end, receiver_end, message):
    """``message`` from one end to the other, as the connections do it: bytes for a command,
    a header line and then the block's end for a block."""
    if message == JOB:
        receiver_end.receive_line(b"ENDSEQ T\n")
        sender_end.sending(JOB)
        receiver_end.receive_block_end()
    elif message == protocol.STATUS_REPLY:
        sender_end.sending(message)
        receiver_end.receive_line(b'{"master": "m"}\n')
    else:
        receiver_end.receive_line(sender_end.send(message))


def test_both_ends_of_a_link_move_together():
    ends = {MASTER: conversation.link_conversation(MASTER), WORKER: conversation.link_conversation(WORKER)}
    script = [(MASTER, protocol.CHALLENGE), (WORKER, protocol.AUTH),
              (MASTER, AVAILABLE), (WORKER, READY), (MASTER, ROLLBACK),
              (MASTER, AVAILABLE), (WORKER, READY), (MASTER, JOB), (WORKER, RECEIVED), (WORKER, JOB),
              (MASTER, AVAILABLE), (WORKER, READY), (MASTER, JOB), (WORKER, ERROR),
              (MASTER, AVAILABLE), (WORKER, READY), (MASTER, ERROR)]
    for sender, message in script:
        _drive(ends[sender], ends[WORKER if sender == MASTER else MASTER], message)
        assert ends[MASTER].state == ends[WORKER].state
    assert ends[MASTER].state == conversation.IDLE


@pytest.mark.parametrize("script, last", [
    ([(CLIENT, JOB), (MASTER, protocol.QUEUED), (MASTER, RECEIVED), (MASTER, JOB)], conversation.CLOSED),
    ([(CLIENT, JOB), (MASTER, RECEIVED), (MASTER, JOB)], conversation.CLOSED),
    ([(CLIENT, JOB), (MASTER, ERROR)], conversation.CLOSED),
    ([(CLIENT, protocol.STATUS), (MASTER, protocol.STATUS_REPLY)], conversation.CLOSED),
])
def test_both_ends_of_a_client_connection_move_together(script, last):
    ends = {MASTER: conversation.client_conversation(MASTER), CLIENT: conversation.client_conversation(CLIENT)}
    for sender, message in script:
        _drive(ends[sender], ends[CLIENT if sender == MASTER else MASTER], message)
        assert ends[MASTER].state == ends[CLIENT].state
    assert ends[CLIENT].state == last


def test_examples_of_blame():
    master = conversation.link_conversation(MASTER)
    with pytest.raises(RemoteProtocolError, match="READY from the worker while idle"):
        master.receive_line(b"READY v=2\n")  # READY without AVAILABLE: the worker's fault
    worker = conversation.link_conversation(WORKER)
    with pytest.raises(LocalProtocolError):
        worker.send(READY)  # the same from the worker's side: our bug
    master.send(AVAILABLE)
    with pytest.raises(LocalProtocolError):
        master.send(AVAILABLE)  # a second AVAILABLE outstanding


def test_a_line_that_is_no_legal_message_is_a_block_header_where_one_may_come():
    worker = conversation_in("link", WORKER, conversation.READY_HELD)
    worker.receive_line(b"AVAILABLE\n")  # to be read as a header (and refused as one: parse_header)
    assert worker.state == conversation.READY_HELD  # the block counts at its end
    worker.receive_block_end()
    assert worker.state == conversation.SENT
    master = conversation_in("link", MASTER, conversation.SENT)
    with pytest.raises(RemoteProtocolError, match="ENDSEQ from the worker while sent"):
        master.receive_line(b"ENDSEQ T\n")
    client = conversation_in("client", CLIENT, conversation.UPLOADED)
    with pytest.raises(RemoteProtocolError, match="garbage from the master while uploaded"):
        client.receive_line(b"garbage\n")


def test_what_a_client_says_after_its_request_is_ignored():
    master = conversation.client_conversation(MASTER)
    master.receive_line(b"ENDSEQ T\n")
    master.receive_block_end()
    for line in (b"STATUS\n", b"ENDSEQ U\n", b"garbage\n"):
        master.receive_line(line)
    assert master.state == conversation.UPLOADED
    master.send(RECEIVED)
    master.sending(JOB)
    master.receive_line(b"more\n")
    assert master.state == conversation.CLOSED


def test_closed_conversation_accepts_nothing():
    link = conversation.link_conversation(MASTER)
    link.send(AVAILABLE)
    link.close()
    assert link.state == conversation.CLOSED
    with pytest.raises(RemoteProtocolError):
        link.receive_line(b"READY\n")
    with pytest.raises(LocalProtocolError):
        link.send(AVAILABLE)
    with pytest.raises(LocalProtocolError):
        link.send(ERROR)


def test_raw_chunks_go_as_they_are_when_the_terminator_is_not_in_them():
    terminator = b"0123456789abcdef0123456789abcdef"
    assert encode_output(STDOUT, b"line\n\nno newline", terminator) == b"1 16\nline\n\nno newline"
    assert encode_output(STDERR, b"x", terminator) == b"2 1\nx"
    assert encode_output(STDOUT, b"a " + terminator + b"\n", terminator) == b"o a " + terminator + b"\n"


def test_a_raw_chunk_cut_short_leaves_the_decoder_incomplete():
    decoder = ResultDecoder()
    assert decoder.feed(b"1 10\nabc") == [(STDOUT, b"abc")]
    assert not decoder.complete
    assert decoder.feed(b"defghij2 2\nok") == [(STDOUT, b"defghij"), (STDERR, b"ok")]
    assert decoder.complete


@pytest.mark.parametrize("header", [b"1 ten\n", b"2 -1\n", b"1 \n"])
def test_a_malformed_raw_chunk_header_is_a_protocol_error(header):
    with pytest.raises(RemoteProtocolError, match="malformed raw chunk header"):
        ResultDecoder().feed(header)


def test_results_mode_passes_raw_chunks_on_by_length_and_finds_the_end():
    terminator = b"0123456789abcdef0123456789abcdef"
    body = b"1 5\n" + terminator[:5] + b"o tagged\nO partial" + b"\nx exit 0\n"
    feeder = Feeder(results=True)
    feeder.feed_all([encode_header(terminator, [EXTENDED]) + body[:9], body[9:20], body[20:] + terminator + b"\nafter\n"])
    data = [event.data for event in feeder.events if isinstance(event, BlockData)]
    assert b"".join(data) == body
    assert [type(event).__name__ for event in feeder.events[-2:]] == ["BlockEnd", "Line"]


@pytest.mark.parametrize("cut", range(1, 60))
def test_results_mode_keeps_a_tagged_line_whole_across_reads(cut):
    """A tagged line cut after its tag must not be read as a raw header or as the terminator."""
    terminator = b"0123456789abcdef0123456789abcdef"
    body = b"o 1 5\no " + terminator + b"\n1 3\nabcx exit 0\n"
    stream = encode_header(terminator, [EXTENDED]) + body + terminator + b"\n"
    feeder = Feeder(results=True)
    feeder.feed_all([stream[:cut + 40], stream[cut + 40:]])
    assert b"".join(event.data for event in feeder.events if isinstance(event, BlockData)) == body
    assert isinstance(feeder.events[-1], BlockEnd)


class CountingBuffer(bytearray):
    """A receive buffer that counts the bytes its searches look at."""

    looked_at = 0

    def find(self, sub, start=0, end=None):
        CountingBuffer.looked_at += (len(self) if end is None else end) - start
        return super().find(sub, start, end)

    def rfind(self, sub, start=0, end=None):
        CountingBuffer.looked_at += (len(self) if end is None else end) - start
        return super().rfind(sub, start, end)


SIXTEEN_MIB = 16 << 20


@pytest.mark.parametrize("where, piece", [
    ("line", b"x"),
    ("upload of a classic client", b"x"),  # every line may end in the glued terminator
    ("block", b" "),  # spaces may still precede the terminator
    ("block", b" " * 100 + b"T"),  # and the terminator may still come
    ("extended results", b"x"),
])
def test_a_16_mib_line_in_1_kib_reads_is_searched_in_linear_time(where, piece):
    receiver = Receiver(max_line=SIXTEEN_MIB)
    receiver.buffer.data = CountingBuffer()
    if where != "line":
        header = b"ENDSEQ %s v=2\n" % (b"T" if where != "upload of a classic client" else CLASSIC_TERMINATOR)
        receiver.start_block(parse_header(header), accept_glued=where.startswith("upload"),
                             results=where == "extended results")
    CountingBuffer.looked_at = 0
    head, rest = (piece, b"") if len(piece) > 1 else (b"", piece)
    fed = head + (rest or b" ") * (SIXTEEN_MIB - len(head) - 1)
    events = []
    for offset in range(0, len(fed), 1024):
        receiver.receive_data(fed[offset:offset + 1024])
        event = receiver.next_event()
        while event is not NEED_DATA:
            events.append(event)
            event = receiver.next_event()
    assert CountingBuffer.looked_at <= 2 * len(fed)  # was about 1,000 times that when each read searched it all
    if where in ("line", "upload of a classic client", "extended results"):
        assert events == []  # held: the line has not ended yet


@pytest.mark.parametrize("field, beat", [(b"beat=5", 5.0), (b"beat=0.667", 0.667), (b"beat=0", None), (b"beat=-1", None),
                                         (b"beat=nan", None), (b"beat=inf", None), (b"beat=x", None), (b"", None)])
def test_a_results_header_declares_its_heartbeat(field, beat):
    assert parse_header(b"ENDSEQ T v=2 worker=w " + field + b"\n").beat == beat


ARGUMENT = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))) | st.builds(
    os.fsdecode, st.binary().filter(lambda data: b"\0" not in data))


@given(st.lists(ARGUMENT), st.dictionaries(ARGUMENT.filter(lambda name: name and "=" not in name), ARGUMENT))
def test_a_jobs_arguments_and_environment_read_back_as_sent(args, env):
    fields = upload_format.encode_arguments(args, env)
    assert all(field.isascii() and b" " not in field and b"\n" not in field for field in fields)
    header = protocol.parse_header(b"ENDSEQ T " + b" ".join(fields) + b"\n")
    assert upload_format.decode_arguments(header) == (args, env)


@pytest.mark.parametrize("fields", [b"arg=%4", b"arg=%zz", b"arg=%00", b"env=NOEQUALS", b"env=%3Dvalue",
                                    b"env=A%00%3D1"])
def test_malformed_arguments_and_environment_are_the_peers_fault(fields):
    with pytest.raises(protocol.RemoteProtocolError):
        upload_format.decode_arguments(protocol.parse_header(b"ENDSEQ T " + fields + b"\n"))


@pytest.mark.parametrize("args, env", [(["a\0b"], {}), ([], {"": "x"}), ([], {"A=B": "x"}), ([], {"A": "\0"})])
def test_arguments_no_process_could_be_given_are_refused_before_sending(args, env):
    with pytest.raises(protocol.LocalProtocolError):
        upload_format.encode_arguments(args, env)


def _data_until_stuck(receiver):
    data = b""
    while isinstance(event := receiver.next_event(), protocol.BlockData):
        data += event.data
    return data, event


def test_a_receiver_goes_on_with_what_a_new_connection_brings_after_its_reply_line():
    from sieci.wire.framing import Receiver

    old = Receiver()
    old.start_block(protocol.parse_header(b"ENDSEQ T v=2\n"), results=True)
    old.receive_data(b"1 4\nab")
    old.receive_data(b"")  # the connection broke inside a raw chunk
    before, event = _data_until_stuck(old)
    assert event is protocol.CONNECTION_CLOSED
    new = Receiver()
    new.receive_data(b"ATTACHED job=0123456789abcdef\ncdx exit 0\nT\n")
    assert new.next_event().raw == b"ATTACHED job=0123456789abcdef\n"
    old.resume_from(new)
    after, event = _data_until_stuck(old)
    assert (before + after, type(event)) == (b"1 4\nabcdx exit 0\n", protocol.BlockEnd)


def test_a_line_names_its_arguments_and_fields_as_a_block_header_does():
    line = protocol.Line(b"ATTACH 0123456789abcdef at=5 at=6\n")
    assert line.arguments == [b"0123456789abcdef", b"at=5", b"at=6"]
    assert (line.field(protocol.AT_FIELD), line.field(b"missing", b"-")) == (b"5", b"-")
    assert protocol.parse_header(b"ENDSEQ T worker=w1 beat=5\n").field(protocol.WORKER_FIELD) == b"w1"
    assert protocol.job_id_of(b"RECEIVED job=0123456789abcdef\n") == "0123456789abcdef"
    assert protocol.job_id_of(b"RECEIVED job=nothex\n") is None
