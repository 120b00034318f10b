"""The socket layer's own moves: gathered sends and spliced relays, over real socket pairs."""

import collections
import os
import socket
import time

import gevent
import gevent.timeout
import pytest

from sieci.splice import SplicePipe
from sieci.wire import conversation, protocol
from sieci.wire.connection import IOV_MAX, Connection

from tests.helpers import WAIT


@pytest.fixture
def pairs():
    """Makes connected socket pairs, and closes them all at the end."""
    made = []

    def make():
        made.extend(socket.socketpair())
        return made[-2:]

    yield make
    for end in made:
        end.close()


@pytest.fixture
def pair(pairs):
    """A connected pair with small buffers, so that sends are partial and wait."""
    ends = pairs()
    for end in ends:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return ends


def read_all(sock):
    parts = []
    while data := sock.recv(65536):
        parts.append(data)
    return b"".join(parts)


def test_pieces_arrive_in_order_and_whole(pair):
    sender, receiver = pair
    pieces = [b"1 3000000\n", os.urandom(3_000_000), b"", b"x exit 0\n"] + [b"%d\n" % i for i in range(IOV_MAX + 5)]
    reader = gevent.spawn(read_all, receiver)
    Connection(sender, conversation.link_conversation(protocol.WORKER)).send_pieces(pieces)
    sender.shutdown(socket.SHUT_WR)
    assert reader.get(timeout=WAIT) == b"".join(pieces)


def test_nothing_to_send_sends_nothing(pair):
    sender, receiver = pair
    Connection(sender, conversation.link_conversation(protocol.WORKER)).send_pieces([b"", b""])
    sender.shutdown(socket.SHUT_WR)
    assert receiver.recv(10) == b""


class CountedCalls:
    """A socket whose method calls are counted, by name."""

    def __init__(self, sock):
        self.sock = sock
        self.calls = collections.Counter()

    def __getattr__(self, name):
        self.calls[name] += 1
        return getattr(self.sock, name)


def test_a_message_that_fits_costs_one_system_call(pairs):
    sender, receiver = pairs()
    counted = CountedCalls(sender)
    conn = Connection(counted, conversation.link_conversation(protocol.WORKER))
    conn.send(b"RECEIVED\n")
    conn.send(b"")
    assert counted.calls == {"send": 1}  # gevent's sendall would have asked the buffer's size first
    assert receiver.recv(100) == b"RECEIVED\n"


def test_a_message_past_the_buffer_still_arrives_whole(pair):
    sender, receiver = pair
    data = os.urandom(1 << 20)
    reader = gevent.spawn(read_all, receiver)
    Connection(sender, conversation.link_conversation(protocol.WORKER)).send(data)
    sender.shutdown(socket.SHUT_WR)
    assert reader.get(timeout=WAIT) == data


@pytest.fixture
def gevent_timeouts(monkeypatch):
    """The gevent Timeouts started from now on (a socket's timeout starts one at every wait)."""
    started = []
    original = gevent.timeout.Timeout._start_new_or_dummy

    def counting(timeout, *args, **kwargs):
        started.append(timeout)
        return original(timeout, *args, **kwargs)

    monkeypatch.setattr(gevent.timeout.Timeout, "_start_new_or_dummy", staticmethod(counting))
    return started


def test_a_read_by_a_deadline_waits_on_the_loop_alone(pairs, gevent_timeouts):
    sender, receiver = pairs()
    conn = Connection(receiver, conversation.link_conversation(protocol.MASTER))
    conn.deadline = time.monotonic() + WAIT
    gevent.spawn(sender.sendall, b"READY\n")  # runs once the read waits
    assert conn.receive_more() and conn.receiver.buffered == 6
    assert [timeout for timeout in gevent_timeouts if timeout is not None] == []
    assert receiver.gettimeout() is None


def test_a_read_past_its_deadline_is_a_timeout(pairs):
    sender, receiver = pairs()
    conn = Connection(receiver, conversation.link_conversation(protocol.MASTER))
    conn.deadline = time.monotonic() + 0.01
    with pytest.raises(TimeoutError):
        conn.receive_more()
    conn.deadline = time.monotonic() - 1
    sender.sendall(b"READY\n")
    with pytest.raises(TimeoutError):
        conn.receive_more()


def relay(pipe, source, dest, size):
    moved = 0
    while moved < size:
        taken = pipe.fill(source.fileno(), size - moved)
        if not taken:
            break
        moved += taken
        pipe.drain(dest.fileno())
    return moved


@pytest.fixture
def splice_pipe():
    pipe = SplicePipe()
    yield pipe
    pipe.close()


def test_a_splice_pipe_relays_socket_to_socket_exactly(pairs, splice_pipe):
    (writer, source), (dest, reader) = pairs(), pairs()
    data = os.urandom(5 << 20)
    gevent.spawn(writer.sendall, data)
    collected = gevent.spawn(read_all, reader)
    assert relay(splice_pipe, source, dest, len(data) - 10) == len(data) - 10
    assert splice_pipe.held == 0
    assert source.recv(100) == data[-10:]  # not a byte more was taken than asked
    dest.shutdown(socket.SHUT_WR)
    assert collected.get(timeout=WAIT) == data[:-10]


def test_a_closed_source_gives_nothing_and_a_closed_destination_raises(pairs, splice_pipe):
    (writer, source), (dest, reader) = pairs(), pairs()
    writer.sendall(b"abc")
    writer.shutdown(socket.SHUT_WR)
    assert splice_pipe.fill(source.fileno(), 100) == 3
    assert splice_pipe.fill(source.fileno(), 100) == 0
    reader.close()
    with pytest.raises(OSError):
        splice_pipe.drain(dest.fileno())
    assert splice_pipe.held == 3
