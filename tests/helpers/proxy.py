"""A TCP proxy that cuts connections: a laptop's Wi-Fi between a client and its master.

tests/conftest.py has patched the standard library with gevent before this is imported.
"""

import socket

import gevent
from gevent.server import StreamServer


class CuttingProxy:
    """Passes connections through to ``target`` (HOST, PORT). The n-th connection is cut, both its
    ends closed at once, once ``cuts[n]`` bytes from the target have passed it (None: never);
    connections past the list pass whole. ``passed`` counts each connection's bytes from the target."""

    def __init__(self, target, cuts=()):
        self.target = target
        self.cuts = list(cuts)
        self.passed = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.address[1]}"

    def _handle(self, client, _):
        upstream = socket.create_connection(self.target)
        cut_at = self.cuts.pop(0) if self.cuts else None
        self.passed.append(0)
        index = len(self.passed) - 1
        sending = gevent.spawn(_pump, client, upstream)
        try:
            _pump(upstream, client, cut_at, lambda size: self._count(index, size))
        finally:
            sending.kill()
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _count(self, index, size):
        self.passed[index] += size

    def close(self):
        self.server.stop()


def _pump(source, sink, cut_at=None, count=lambda size: None):
    """Copy until ``source`` closes, or until ``cut_at`` bytes have passed."""
    passed = 0
    try:
        while data := source.recv(65536):
            if cut_at is not None and passed + len(data) >= cut_at:
                sink.sendall(data[:cut_at - passed])
                count(cut_at - passed)
                return
            sink.sendall(data)
            passed += len(data)
            count(len(data))
    except OSError:
        pass
