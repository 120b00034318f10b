"""Test set-up: gevent first, then fixtures that start real sieci pieces on loopback.

Everything a fixture starts it also stops, whether the test passed or not.
"""

import gevent
from gevent import monkey

monkey.patch_all()
# Tests dial loopback addresses only, which resolve at once. Without gevent's
# resolver threads this process has none, so its subprocesses (which gevent
# forks, running Python in the child) cannot deadlock on a lock a thread held.
gevent.config.resolver = "block"

import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import gevent.event  # noqa: E402
import pytest  # noqa: E402

from sieci.address import format_address  # noqa: E402
from sieci.limits import Limits  # noqa: E402
from sieci.master import Master  # noqa: E402
from sieci.worker import Worker  # noqa: E402

LOOPBACK = ("127.0.0.1", 0)
# Every wait in the tests is bounded by this; none is a sleep.
WAIT = 20.0


def processes_of(uid):
    """The pids of the processes running as ``uid``."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/status") as status:
                if any(line.split()[1:2] == [str(uid)] for line in status if line.startswith("Uid:")):
                    found.append(int(name))
        except OSError:
            pass
    return found


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


_isolation_checks = {}


def unavailable_walls():
    from sieci.isolation import unavailable_walls as probe

    if "missing" not in _isolation_checks:
        _isolation_checks["missing"] = probe()
    return _isolation_checks["missing"]


def isolation(namespaces=True, cgroups=True, **options):
    """An Isolation with these walls, or a skip that says why this host cannot build them
    (``cgroups="if any"``: with cgroups where this host has them, else without)."""
    from sieci.isolation import Isolation, Unavailable

    if cgroups == "if any":
        cgroups = "--job-cgroups" not in unavailable_walls()
    wanted = Isolation(namespaces, cgroups, **options)
    key = (namespaces, cgroups, wanted.network)
    if key not in _isolation_checks:
        try:
            wanted.check()
            _isolation_checks[key] = None
        except Unavailable as why:
            _isolation_checks[key] = str(why)
    if _isolation_checks[key]:
        pytest.skip(_isolation_checks[key])
    return wanted


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


@pytest.fixture(autouse=True)
def no_native_threads():
    """No test leaves a thread behind: see the resolver above. (Python 3.12 warns
    of a fork with threads alive, but swallows that warning when it is an error.)"""
    yield
    assert os.listdir("/proc/self/task") == [str(os.getpid())], "a native thread is alive"


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

    def answer(self):
        """A master's answer to an extended upload: its first line past a QUEUED (sent when
        the job waits, as it may on a loaded machine)."""
        line = self.line()
        return self.line() if line == b"QUEUED\n" else line

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


class LogLines(logging.Handler):
    """Records the messages a logger writes; lets a test wait for some."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []
        self._changed = gevent.event.Event()

    def emit(self, record):
        self.messages.append(record.getMessage())
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def wait_for(self, text, count=1):
        """The first ``count`` messages that contain ``text``."""
        with gevent.Timeout(WAIT, AssertionError(f"fewer than {count} lines with {text!r}: {self.messages}")):
            while True:
                matching = [message for message in self.messages if text in message]
                if len(matching) >= count:
                    return matching[:count]
                self._changed.wait()


def assert_backing_off(lines):
    """The worker's "...; redialling in S s" lines (from reconnect_min 0.01 s to a
    reconnect_max of 0.16 s or more) show each pause up to twice the one before."""
    delays = [float(line.rsplit("redialling in ", 1)[1].split()[0]) for line in lines]
    assert delays == sorted(delays) and delays[4] >= 0.08, delays


@pytest.fixture
def log_lines():
    """``log_lines(name)``: a LogLines on that logger, at every level, removed at the end."""
    attached = []

    def attach(name):
        logger, lines = logging.getLogger(name), LogLines()
        attached.append((logger, lines, logger.level))
        logger.addHandler(lines)
        logger.setLevel(logging.DEBUG)
        return lines

    yield attach
    for logger, lines, level in attached:
        logger.removeHandler(lines)
        logger.setLevel(level)
