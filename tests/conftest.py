"""Test set-up: gevent first, then fixtures that start real sieci pieces on loopback.

Everything a fixture starts it also stops, whether the test passed or not.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
import pytest  # noqa: E402

from sieci.address import format_address  # noqa: E402
from sieci.executor import Limits  # noqa: E402
from sieci.master import Master  # noqa: E402
from sieci.worker import Worker  # noqa: E402

LOOPBACK = ("127.0.0.1", 0)
# Every wait in the tests is bounded by this; none is a sleep.
WAIT = 20.0


class Captured:
    """A client output that keeps what the job wrote, stream by stream."""

    def __init__(self):
        self.stdout = b""
        self.stderr = b""
        self.events = []

    def write(self, stream, data):
        self.events.append((stream, data))
        setattr(self, stream, getattr(self, stream) + data)


class Stdout:
    """Equal to any output (Captured, Result) whose stdout is ``expected``: for comparing whole tuples."""

    def __init__(self, expected):
        self.expected = expected

    def __eq__(self, output):
        return output.stdout == self.expected

    def __repr__(self):
        return f"stdout {self.expected!r}"


class Cluster:
    """Masters and workers in this process, on loopback ephemeral ports."""

    def __init__(self):
        self.masters = []
        self.workers = []

    def master(self, **options):
        master = Master(LOOPBACK, LOOPBACK, **options)
        master.start()
        self.masters.append(master)
        return master

    def worker(self, *masters, limits=None, **options):
        options.setdefault("reconnect_min", 0.01)
        options.setdefault("reconnect_max", 0.05)
        worker = Worker([m.workers_address if isinstance(m, Master) else m for m in masters],
                        limits or Limits(timeout=30), **options)
        worker.start()
        self.workers.append(worker)
        return worker

    def stop(self):
        for worker in self.workers:
            worker.stop(grace=1)
        for master in self.masters:
            master.stop(grace=1)


@pytest.fixture
def classic():
    """Classic (Go-like) masters and workers; see classic.py."""
    from classic import ClassicPeers

    peers = ClassicPeers()
    try:
        yield peers
    finally:
        peers.stop()


@pytest.fixture
def cluster():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


def client_address(master):
    return format_address(master.clients_address)


PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RawPeer:
    """A bare TCP peer for tests that play one side of the protocol by hand."""

    def __init__(self, address, timeout=WAIT):
        import socket

        self.sock = socket.create_connection(address[:2], timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        """The next line (b"" at EOF); fails the test after the timeout."""
        return self.file.readline()

    def rest(self):
        """Everything until the peer closes."""
        return self.file.read()

    def close(self):
        self.file.close()
        self.sock.close()


@pytest.fixture
def peers():
    """Opens RawPeers and closes them all at the end of the test."""
    opened = []

    def connect(address, timeout=WAIT):
        peer = RawPeer(address, timeout)
        opened.append(peer)
        return peer

    yield connect
    for peer in opened:
        peer.close()


class JobEvents:
    """Records a master's job events; lets a test wait for one."""

    def __init__(self, master):
        self.seen = []
        self._changed = gevent.event.Event()
        master.listeners.append(self)

    def __call__(self, event, job):
        self.seen.append(event)
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def wait_for(self, event, count=1):
        with gevent.Timeout(WAIT, AssertionError(f"no {event!r} event; saw {self.seen}")):
            while self.seen.count(event) < count:
                self._changed.wait()
