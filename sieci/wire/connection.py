"""A socket with the protocol's framing on top; blocking or gevent alike.

The client hands it a standard library socket, the daemons a gevent one;
either way a read that would block waits (and, under gevent, yields).
"""

import _socket as socket  # the C module: the client need not load the socket package (bench/latency.py)
import sys
import time

from sieci import defaults
from sieci.wire import protocol
from sieci.wire.framing import Receiver

RECV_SIZE = 256 * 1024
IOV_MAX = 1024  # pieces per sendmsg
TLS_HANDSHAKE = b"\x16\x03"  # how every TLS connection's first record starts
_DROPPED = bytearray(64 << 10)  # what finish_sending reads goes here, for every connection: no memory per read
HEADER_READ = 4096  # bytes per read while the bulk of raw chunks is spliced past Python
_RESET_AT_CLOSE = (1).to_bytes(4, sys.byteorder) + bytes(4)  # SO_LINGER's struct linger: on, 0 s


def tune_socket(sock, seconds=defaults.KEEPALIVE, user_timeout=True):
    """No Nagle delay for our small messages; keepalive, so that a silent, vanished peer is noticed.

    ``user_timeout``: also give up on the connection when what we sent stays
    unacknowledged for ``seconds``. Not for a socket whose peer may rightly
    stop reading for longer (the kernel counts a zero window too, however
    promptly the peer answers its probes): see stopped_acknowledging.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    idle = max(1, round(seconds / 3))
    interval = max(1, round((seconds - idle) / 4))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = [("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 4)]
    if user_timeout:
        options.append(("TCP_USER_TIMEOUT", int(seconds * 1000)))
    for option, value in options:
        if hasattr(socket, option):  # Linux has them all; others, some
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def stopped_acknowledging(sock, seconds):
    """Whether the peer has acknowledged nothing for ``seconds`` while we wait for it to:
    data we sent, or a probe of its zero window. (A live peer that has stopped reading
    answers every probe at once, which sets the kernel's count of unanswered ones back
    to 0, though the probes come ever further apart.) False where the kernel cannot say."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (AttributeError, OSError):
        return False
    retransmits, probes = info[2], info[3]  # struct tcp_info's tcpi_retransmits, tcpi_probes
    unacked = int.from_bytes(info[24:28], sys.byteorder)  # (not struct: the client would pay to import it)
    last_ack_received = int.from_bytes(info[56:60], sys.byteorder)  # milliseconds ago
    return (probes > 0 or (unacked > 0 and retransmits > 0)) and last_ack_received > seconds * 1000


class SpeaksTLS(OSError):
    """The peer opened with a TLS handshake on a connection without TLS."""


class Connection:
    """``conversation`` (a protocol.Conversation) is moved on by every message sent and received."""

    def __init__(self, sock, conversation, max_line=protocol.DEFAULT_MAX_LINE):
        self.sock = sock
        self.conversation = conversation
        self.plaintext_only = False  # a peer that opens with a TLS handshake raises SpeaksTLS
        self._nothing_yet = True
        self.receiver = Receiver(max_line)
        self.hung_up = False
        self.deadline = None  # time.monotonic() by which every read must be done
        self._waits_on_loop = type(sock).__module__ == "gevent._socket3"  # gevent's, and not TLS
        self._loop_waits = None  # a daemon's, once a wait has needed them (loop_waits.py)
        self.recv_size = RECV_SIZE
        self.received = 0  # bytes read from the peer, spliced ones included

    def next_event(self):
        """The next protocol event; a reset by the peer counts as closed."""
        while True:
            event = self.next_buffered_event()
            if event is not protocol.NEED_DATA:
                return event
            self.receive_more()

    def next_buffered_event(self):
        """The next event from what has been read already, or NEED_DATA."""
        event = self.receiver.next_event()
        if isinstance(event, protocol.Line):
            self.conversation.receive_line(event.raw)
        elif isinstance(event, protocol.BlockEnd):
            self.conversation.receive_block_end()
        return event

    def receive_more(self):
        """One read into the receiver; False once the peer has closed."""
        try:
            data = self._read()
        except ConnectionResetError:
            data = b""
        except OSError:
            if not self.hung_up:
                raise
            data = b""  # gevent wakes a blocked read with EBADF on shutdown
        if self._nothing_yet and data:
            self._nothing_yet = False
            if self.plaintext_only and data.startswith(TLS_HANDSHAKE):
                raise SpeaksTLS("it opened with a TLS handshake")
        self.received += len(data)
        self.receiver.receive_data(data)
        return bool(data)

    def _read(self):
        if self.deadline is None:
            return self.sock.recv(self.recv_size)
        if not self._waits_on_loop:
            self._apply_deadline()
            return self.sock.recv(self.recv_size)
        return self.loop_waits().recv_by(self.deadline, self.recv_size)

    def _apply_deadline(self):
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            self.sock.settimeout(remaining)
            return remaining
        return None

    def splice_raw(self, pipe, patience=None):
        """Move the rest of the raw chunk being read from the socket into ``pipe`` (a
        relay.OutputPipe or SplicePipe), never through Python; yields each count moved,
        already reported to the receiver. Each wait for the peer lasts until the deadline,
        or without one ``patience`` seconds (for ever if None): then TimeoutError.

        Reads stay small from then on, so that they take little more than each next
        chunk's header and leave its bytes to ``splice``.
        """
        self.recv_size = HEADER_READ
        while self.receiver.raw_pending:
            timeout = patience if self.deadline is None else self._apply_deadline()
            moved = pipe.fill(self.sock.fileno(), self.receiver.raw_pending, timeout)
            if not moved:
                self.receiver.receive_data(b"")  # the peer closed: the next event says so
                return
            self.receiver.took_raw(moved)
            self.received += moved
            yield moved

    def start_block(self, raw_header, **limits):
        """Parse ``raw_header`` and read that block's payload next."""
        header = protocol.parse_header(raw_header)
        self.receiver.start_block(header, **limits)
        return header

    def send_command(self, word, reason=b""):
        self._send_all(self.conversation.send(word, reason))

    def refuse(self, reason):
        """Send ``ERROR reason``, our last words on this connection."""
        self._send_all(self.conversation.refuse(reason))

    def send(self, data, completes=None):
        """Send ``data``; ``completes``: the message it ends (a block's last bytes end JOB)."""
        if completes is not None:
            self.conversation.sending(completes)
        self._send_all(data)

    def _send_all(self, data):
        """sendall, but a message that fits the socket's buffer, as ours mostly do, costs one system
        call: gevent's sendall first asks the socket its buffer's size, on every call."""
        sent = self.sock.send(data) if data else 0
        if sent < len(data):
            self.sock.sendall(memoryview(data)[sent:])

    def send_pieces(self, pieces, completes=None):
        """Send byte strings in order, gathered by the system (``sendmsg``) rather than joined: no copy of big ones."""
        if completes is not None:
            self.conversation.sending(completes)
        views = [memoryview(piece) for piece in pieces if piece]
        while views:
            try:
                sent = self.sock.sendmsg(views[:IOV_MAX])
            except NotImplementedError:  # TLS
                self.sock.sendall(b"".join(views))
                return
            while views and sent >= len(views[0]):
                sent -= len(views.pop(0))
            if sent:
                views[0] = views[0][sent:]

    def readable_while_acknowledged(self, seconds, unless=None):
        """Wait until there is something to read (True), or until the peer has acknowledged
        nothing for ``seconds`` at two looks in a row (False: it has vanished), or until
        ``unless`` (a gevent Event) is set (None). A peer that only reads slowly, and so
        holds up what we send it, is waited for."""
        vanished_before = False
        while True:
            readable = self.loop_waits().readable_within(seconds / 3, unless)
            if readable is not False:
                return readable
            vanished = stopped_acknowledging(self.sock, seconds)
            if vanished and vanished_before:
                return False
            vanished_before = vanished

    def loop_waits(self):
        if self._loop_waits is None:
            from sieci.wire.loop_waits import LoopWaits  # only the daemons watch their peers so

            self._loop_waits = LoopWaits(self.sock)
        return self._loop_waits

    def wait_for_hang_up(self):
        """Return once the peer has closed or reset the connection, though what it sent before is
        still unread: a read would wait behind that, a wait for something to read return at once."""
        self.loop_waits().hang_up()

    def settimeout(self, seconds):
        self.sock.settimeout(seconds)

    @property
    def local_host(self):
        """The address of this end, as the peer dialed it: a signature names it."""
        return self.sock.getsockname()[0]

    def shutdown(self, reset=False):
        """Make blocked reads on this socket return, from any greenlet. ``reset``: its close then
        resets the connection, which the peer learns at once, where the end of it would reach the
        peer only after all that was sent before (which a peer that has stopped reading never takes)."""
        self.hung_up = True
        try:
            if reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_AT_CLOSE)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish_sending(self, timeout=1.0, limit=4 << 20):
        """Half-close, then read and drop what the peer still sends, briefly.

        Closing with unread input makes the kernel send a reset, which can
        destroy our last words (an ``ERROR``) before the peer reads them.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(timeout)
            while limit > 0:
                size = self.sock.recv_into(_DROPPED)
                if not size:
                    break
                limit -= size
        except OSError:
            pass

    def close(self):
        if self._loop_waits is not None:
            self._loop_waits.close()
        self.sock.close()
