"""The splice pipes' pool, on pipes alone; a connection's conversation, on a stand-in socket."""

import pytest

from sieci.splice import SplicePipes
from sieci.wire import conversation, protocol
from sieci.wire.connection import Connection

from tests.helpers import RecordingSocket


def test_only_empty_pipes_are_reused():
    pipes = SplicePipes()
    clean, dirty = pipes.take(), pipes.take()
    dirty.held = 1
    pipes.give_back(clean)
    pipes.give_back(dirty)  # closed, not kept
    assert pipes.take() is clean
    fresh = pipes.take()
    assert fresh is not dirty and fresh.held == 0
    pipes.give_back(clean)
    pipes.give_back(fresh)
    pipes.close()


def test_a_send_not_allowed_now_is_refused_before_any_byte_goes_out():
    sock = RecordingSocket()
    conn = Connection(sock, conversation.link_conversation(protocol.MASTER))
    conn.send_command(protocol.AVAILABLE)
    with pytest.raises(protocol.LocalProtocolError):
        conn.send_command(protocol.AVAILABLE)  # one AVAILABLE outstanding at most
    with pytest.raises(protocol.LocalProtocolError):
        conn.send(b"ENDSEQ T\ncode\nT\n", completes=protocol.JOB)  # no READY yet
    with pytest.raises(protocol.LocalProtocolError):
        conn.send_pieces([b"ENDSEQ T\n", b"T\n"], completes=protocol.JOB)
    assert sock.sent == [b"AVAILABLE\n"]
    assert conn.conversation.state == conversation.ASKED


def test_every_event_received_moves_the_conversation_on():
    conn = Connection(RecordingSocket(), conversation.client_conversation(protocol.CLIENT))
    conn.send(b"ENDSEQ T\ncode\nT\n", completes=protocol.JOB)
    conn.receiver.receive_data(b"QUEUED\nRECEIVED\nENDSEQ U\n")
    states = []
    while conn.next_buffered_event() is not protocol.NEED_DATA:
        states.append(conn.conversation.state)
    assert states == [conversation.WAITING, conversation.ACCEPTED, conversation.ACCEPTED]
    conn.start_block(b"ENDSEQ U\n")
    conn.receiver.receive_data(b"result\nU\n")
    assert isinstance(conn.next_buffered_event(), protocol.BlockData)
    assert isinstance(conn.next_buffered_event(), protocol.BlockEnd)
    assert conn.conversation.state == conversation.CLOSED
