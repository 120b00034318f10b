"""The job's stdin on the wire (stdin_stream.py): items, resizes, the terminal's size; forged input."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci.wire import protocol
from sieci.wire.stdin_stream import (Resize, StdinDecoder, encode_resize, stdin_items, terminal_size, tty_field)

TERMINATOR = b"GHIJKLMNOPQRSTUVGHIJKLMNOPQRSTUV"


def decoded(payload, cuts=()):
    decoder, events, start = StdinDecoder(), [], 0
    for cut in sorted(cuts) + [len(payload)]:
        events += decoder.feed(payload[start:cut])
        start = cut
    assert decoder.between_items
    return events


def stdin_of(events):
    return b"".join(event for event in events if isinstance(event, bytes))


@given(st.lists(st.binary(max_size=300), max_size=8), st.lists(st.integers(0, 3000), max_size=10))
def test_items_read_back_as_sent_in_any_chunking(chunks, cuts):
    payload = b"".join(piece for chunk in chunks for piece in stdin_items(chunk, TERMINATOR)) + encode_resize(80, 24)
    events = decoded(payload, [cut for cut in cuts if cut <= len(payload)])
    assert stdin_of(events) == b"".join(chunks)
    assert events[-1] == Resize(80, 24)


@pytest.mark.parametrize("data", [TERMINATOR, b"a" + TERMINATOR + b"\n" + TERMINATOR + b"b",
                                  TERMINATOR[:16] + TERMINATOR + TERMINATOR[16:]])
def test_no_piece_holds_the_terminator_whole(data):
    pieces = stdin_items(data, TERMINATOR)
    assert all(TERMINATOR not in piece for piece in pieces)
    assert stdin_of(decoded(b"".join(pieces))) == data


def test_data_without_the_terminator_goes_uncopied():
    data = b"x" * 1000
    assert stdin_items(data, TERMINATOR)[1] is data


def test_a_forged_huge_length_streams_what_comes_and_holds_nothing():
    decoder = StdinDecoder()
    assert decoder.feed(b"1 99999999999999\nabc") == [b"abc"]
    assert decoder.feed(b"def") == [b"def"]
    assert not decoder.between_items


@pytest.mark.parametrize("line", [b"2 5\nhello", b"garbage\n", b"1 -3\n", b"1 x\n", b"w 80\n", b"w 0 24\n",
                                  b"w 80 99999999\n", b"O text\n"])
def test_malformed_items_break_the_protocol(line):
    with pytest.raises(protocol.RemoteProtocolError):
        StdinDecoder().feed(line)


def test_an_overlong_line_breaks_the_protocol():
    decoder = StdinDecoder(max_line=100)
    with pytest.raises(protocol.RemoteProtocolError, match="longer than 100"):
        decoder.feed(b"w " + b"1" * 200)


def test_unknown_lower_case_items_are_ignored():
    assert StdinDecoder().feed(b"z later\n1 2\nok") == [b"ok"]


def test_the_terminal_size_field():
    header = protocol.parse_header(protocol.encode_header(TERMINATOR, [b"v=2", tty_field(132, 43)]))
    assert terminal_size(header) == (132, 43)
    assert terminal_size(protocol.parse_header(b"ENDSEQ T v=2\n")) is None
    with pytest.raises(protocol.RemoteProtocolError):
        terminal_size(protocol.parse_header(b"ENDSEQ T tty=80x\n"))
