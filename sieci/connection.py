"""A socket with the protocol's framing on top; blocking or gevent alike.

The client hands it a standard library socket, the daemons a gevent one;
either way a read that would block waits (and, under gevent, yields).
"""

from . import protocol

RECV_SIZE = 256 * 1024


class Connection:
    def __init__(self, sock, max_line=protocol.DEFAULT_MAX_LINE):
        self.sock = sock
        self.receiver = protocol.Receiver(max_line)

    def next_event(self):
        """The next protocol event; a reset by the peer counts as closed."""
        while True:
            event = self.receiver.next_event()
            if event is not protocol.NEED_DATA:
                return event
            try:
                data = self.sock.recv(RECV_SIZE)
            except ConnectionResetError:
                data = b""
            self.receiver.receive_data(data)

    def start_block(self, raw_header, **limits):
        """Parse ``raw_header`` and read that block's payload next."""
        header = protocol.parse_header(raw_header)
        self.receiver.start_block(header, **limits)
        return header

    def send(self, data):
        self.sock.sendall(data)

    def settimeout(self, seconds):
        self.sock.settimeout(seconds)

    def shutdown(self):
        """Make blocked reads on this socket return, from any greenlet."""
        try:
            self.sock.shutdown(2)
        except OSError:
            pass

    def close(self):
        self.sock.close()
