"""A TCP proxy that cuts connections: a laptop's Wi-Fi between a client and its master.

tests/conftest.py has patched the standard library with gevent before this is imported.
"""

import socket
import time

import gevent
import gevent.queue
from gevent.server import StreamServer


class _LoopbackProxy:
    """Serves the connections to a loopback port of its own with ``_handle``."""

    def _serve(self):
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.server.address[1]}"

    def close(self):
        self.server.stop()


class CuttingProxy(_LoopbackProxy):
    """Passes connections through to ``target`` (HOST, PORT). The n-th connection is cut, both its
    ends closed at once, once ``cuts[n]`` bytes from the target have passed it (None: never);
    connections past the list pass whole. ``passed`` counts each connection's bytes from the target."""

    def __init__(self, target, cuts=()):
        self.target = target
        self.cuts = list(cuts)
        self.passed = []
        self._serve()

    def _handle(self, client, _):
        upstream = socket.create_connection(self.target)
        cut_at = self.cuts.pop(0) if self.cuts else None
        self.passed.append(0)
        index = len(self.passed) - 1
        sending = gevent.spawn(_pump, client, upstream)
        try:
            _pump(upstream, client, cut_at, lambda data: self._count(index, len(data)))
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


class TamperingProxy(_LoopbackProxy):
    """A stranger on the path between clients and a master (no TLS), who swaps ``old`` for ``new`` in
    what the master sends back. Its ``address`` is known before the master starts, which a master
    with a secret must count among its names (its clients' signatures name it); set ``target``
    (HOST, PORT) once the master listens."""

    def __init__(self, old, new):
        self.old, self.new = old, new
        self.target = None
        self._serve()

    def _handle(self, client, _):
        upstream = socket.create_connection(self.target)
        sending = gevent.spawn(_pump, client, upstream)
        try:
            _pump(upstream, client, change=lambda data: data.replace(self.old, self.new))
        finally:
            sending.kill()
            upstream.close()
            client.close()


def _pump(source, sink, cut_at=None, passed=lambda data: None, change=lambda data: data):
    """Copy until ``source`` closes, or until ``cut_at`` bytes have passed; ``passed`` is given each piece
    copied; ``change`` makes each piece read into the piece sent."""
    copied = 0
    try:
        while data := change(source.recv(65536)):
            if cut_at is not None and copied + len(data) >= cut_at:
                data = data[:cut_at - copied]
                sink.sendall(data)
                passed(data)
                return
            sink.sendall(data)
            copied += len(data)
            passed(data)
    except OSError:
        pass


class RecordingProxy:
    """Passes connections through to ``target`` (HOST, PORT), recording each one's traffic in order:
    ``transcripts[n]`` is a list of ("to target" or "from target", bytes), one item per read."""

    def __init__(self, target):
        self.target = target
        self.transcripts = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def address(self):
        return self.server.address

    def sent(self, index, direction):
        """All the bytes of connection ``index`` in ``direction``, joined."""
        return b"".join(data for way, data in self.transcripts[index] if way == direction)

    def _handle(self, client, _):
        upstream = socket.create_connection(self.target)
        transcript = []
        self.transcripts.append(transcript)
        sending = gevent.spawn(_pump, client, upstream, passed=lambda data: transcript.append(("to target", data)))
        try:
            _pump(upstream, client, passed=lambda data: transcript.append(("from target", data)))
        finally:
            sending.kill()
            for sock in (client, upstream):
                sock.close()

    def close(self):
        self.server.stop()


class DelayingProxy:
    """Passes connections through to ``target`` (HOST, PORT), each chunk ``one_way`` seconds after it
    came, in order, both ways: a host a round trip of twice that away."""

    def __init__(self, target, one_way):
        self.target = target
        self.one_way = one_way
        self.server = StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def address(self):
        return self.server.address

    def _handle(self, client, _):
        upstream = socket.create_connection(self.target)
        sending = gevent.spawn(self._delay, client, upstream)
        try:
            self._delay(upstream, client)
        finally:
            sending.kill()
            for sock in (client, upstream):
                sock.close()

    def _delay(self, source, sink):
        chunks = gevent.queue.Queue()
        writer = gevent.spawn(_write_when_due, chunks, sink)
        try:
            while data := source.recv(65536):
                chunks.put((time.monotonic() + self.one_way, data))
        except OSError:
            pass
        chunks.put((time.monotonic() + self.one_way, b""))
        writer.join()

    def close(self):
        self.server.stop()


def _write_when_due(chunks, sink):
    """Write each (due, data) of ``chunks`` at its time; b"": the end (the sink is shut for writing)."""
    try:
        while True:
            due, data = chunks.get()
            gevent.sleep(max(0.0, due - time.monotonic()))
            if not data:
                sink.shutdown(socket.SHUT_WR)
                return
            sink.sendall(data)
    except OSError:
        pass
