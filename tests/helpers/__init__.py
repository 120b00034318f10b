"""What the tests of every tier share: bounded waits, recorders of output and events,
in-process clusters on loopback, and ports that nothing listens on.

tests/conftest.py has patched the standard library with gevent before this is imported.
"""

import contextlib
import logging
import os
import re
import socket
import sys

import gevent
import gevent.event
import pytest

from sieci.master.master import Master
from sieci.wire.address import format_address
from sieci.worker.limits import Limits
from sieci.worker.worker import Worker

LOOPBACK = ("127.0.0.1", 0)
# Every wait in the tests is bounded by this; none is a sleep.
WAIT = 20.0
PYTHON = sys.executable
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOBLOG_HEADER = "Seq\tCommand\tMaster\tWorker\tStarttime\tJobRuntime\tExitval\tBytes\tReason\tJobId"


def children_of(pid):
    """The pids of process ``pid``'s children ([] once it has gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


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


class Awaited(Captured):
    """A Captured that lets a test wait for some stdout (any, with ``b""``)."""

    def __init__(self):
        super().__init__()
        self.changed = gevent.event.Event()

    def write(self, stream, data):
        super().write(stream, data)
        self.changed.set()

    def wait_for(self, data):
        with gevent.Timeout(WAIT, AssertionError(f"no {data!r} in the job's output")):
            while data not in self.stdout or not self.events:
                self.changed.clear()
                self.changed.wait()


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
    from sieci.worker.isolation import unavailable_walls as probe

    if "missing" not in _isolation_checks:
        _isolation_checks["missing"] = probe()
    return _isolation_checks["missing"]


def isolation(namespaces=True, cgroups=True, **options):
    """An Isolation with these walls, or a skip that says why this host cannot build them
    (``cgroups="if any"``: with cgroups where this host has them, else without)."""
    from sieci.worker.isolation import Isolation, Unavailable

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


def client_address(master):
    return format_address(master.clients_address)


class ReservedPort:
    """A loopback port held bound but not listening: a connection there is refused, and no
    other program can take the port, except a daemon given it on purpose (sieci's servers
    set SO_REUSEADDR, which lets them listen on a port that a socket only holds)."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(LOOPBACK)
        self.number = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.number}"

    def close(self):
        self._sock.close()


def _without_job_id(line):
    return re.sub(rb" job=[0-9a-f]{16}\n\Z", b"\n", line)


class RawPeer:
    """A bare TCP peer for tests that play one side of the protocol by hand."""

    def __init__(self, address, timeout=WAIT):
        self.sock = socket.create_connection(address[:2], timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        """The next line (b"" at EOF); fails the test after the timeout."""
        return self.file.readline()

    def answer(self):
        """A master's answer to an extended upload: its first line past a QUEUED (sent when
        the job waits, as it may on a loaded machine), without the job's id (``job=``)."""
        line = _without_job_id(self.line())
        return _without_job_id(self.line()) if line == b"QUEUED\n" else line

    def rest(self):
        """Everything until the peer closes."""
        return self.file.read()

    def close(self):
        self.file.close()
        self.sock.close()


@contextlib.contextmanager
def forged_master_link(cluster, name="w1"):
    """A socket posing as a master, dialled by a new worker of ``cluster`` named ``name``: yields the
    link it accepted and its address as HOST:PORT; both are closed after."""
    server = socket.socket()
    server.bind(LOOPBACK)
    server.listen(1)
    server.settimeout(WAIT)
    with server:
        cluster.worker(server.getsockname(), name=name)
        link, _ = server.accept()
        with link:
            link.settimeout(WAIT)
            yield link, "%s:%d" % server.getsockname()


def greeted(fake, ready=b"READY\n"):
    """A fake worker just linked to a pipelined master, past the AVAILABLE that the master sends a new
    link at once and the ROLLBACK that answers its ``ready`` (no job waits yet): the next AVAILABLE it
    gets asks it for a job; after ``READY v=2 free``, it takes the master's jobs against its FREE."""
    assert fake.line() == b"AVAILABLE\n"
    fake.send(ready)
    assert fake.line() == (b"ROLLBACK free\n" if b" free" in ready else b"ROLLBACK\n")
    return fake


def read_block(peer):
    """A block a RawPeer receives (after a RELAY line, if one comes first): (header, payload)."""
    header = peer.line()
    if header.split()[:1] == [b"RELAY"]:  # what a sieci master says to a sieci worker before its code
        header = peer.line()
    terminator = header.split()[1]
    payload = b""
    while (line := peer.line()).strip() != terminator:
        assert line, "EOF inside a block"
        payload += line
    return header, payload


class JobEvents:
    """Records a master's job events, and its jobs' ids in the order they came (``job_ids``);
    lets a test wait for one."""

    def __init__(self, master):
        self.seen = []
        self.job_ids = []
        self._changed = gevent.event.Event()
        master.dispatcher.listeners.append(self)

    def __call__(self, event, job):
        self.seen.append(event)
        if job.id not in self.job_ids:
            self.job_ids.append(job.id)
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def wait_for(self, event, count=1):
        with gevent.Timeout(WAIT, AssertionError(f"no {event!r} event; saw {self.seen}")):
            while self.seen.count(event) < count:
                self._changed.wait()


class Offers:
    """Counts the standing offers (FREE) that a master's workers make, made before they link; lets a
    test wait for them (a worker's first comes once the master has answered the READY of its greeting)."""

    def __init__(self, master):
        self.count = 0
        self._changed = gevent.event.Event()
        pool = master.dispatcher.workers
        offered = pool.offered

        def counting(link):
            self.count += 1
            changed, self._changed = self._changed, gevent.event.Event()
            changed.set()
            offered(link)

        pool.offered = counting

    def wait_for(self, count):
        with gevent.Timeout(WAIT, AssertionError(f"{self.count} offers, not {count}")):
            while self.count < count:
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


def files_under(folder):
    """{relative path: bytes} of every file under ``folder``, and of each symlink ("->", its target)."""
    found = {}
    for root, folders, files in os.walk(folder):
        for name in files + [name for name in folders if os.path.islink(os.path.join(root, name))]:
            path = os.path.join(root, name)
            if os.path.islink(path):
                found[os.path.relpath(path, folder)] = ("->", os.readlink(path))
            else:
                with open(path, "rb") as file:
                    found[os.path.relpath(path, folder)] = file.read()
    return found


def read_joblog(path):
    """A batch's joblog: its rows, each a list of fields, below the header."""
    lines = path.read_text().split("\n")
    assert lines[0] == JOBLOG_HEADER and lines[-1] == ""
    return [line.split("\t") for line in lines[1:-1]]


def assert_backing_off(lines):
    """The worker's "...; redialling in S s" lines (from reconnect_min 0.01 s to a
    reconnect_max of 0.16 s or more) show each pause up to twice the one before."""
    delays = [float(line.rsplit("redialling in ", 1)[1].split()[0]) for line in lines]
    assert delays == sorted(delays) and delays[4] >= 0.08, delays


class RecordingSocket:
    """Stands in for a socket: keeps what is sent."""

    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(bytes(data))
        return len(data)

    def sendall(self, data):
        self.sent.append(bytes(data))

    sendmsg = None
