"""Test doubles of the classic Go peers (gswirski/sieci_projekt), on real loopback TCP.

They speak the classic protocol, the one the Go programs spoke and sieci's
protocol extends (docs/protocol.md), with the Go programs' quirks as observed
on loopback, so the compatibility tests can put a classic peer in every
position of a job:

- ``ClassicWorker``: dials its masters; answers any line with ``READY`` once
  it holds its one lock; ``ROLLBACK`` releases the lock, anything else is a
  block header (second word = terminator); answers ``RECEIVED``, waits, sends
  ``ENDSEQ dupa\\nresult\\ndupa\\n``; never closes after a job.
- ``ClassicMaster``: on every client connection sends ``AVAILABLE`` to every
  linked worker; the first ``READY`` gets the upload (copied line by line,
  like util/connection.go CopyData), the others ``ROLLBACK``; relays the
  worker's ``RECEIVED`` and results block line by line; never closes a
  socket after a job.
- ``classic_client``: writes header, file and terminator at once, then reads
  ``RECEIVED`` and one results block, and prints it only once it has ended.

Every peer records what it read and wrote so tests can assert the bytes on
the wire. Where the Go program would crash or spin forever (a blank command
line, a read error in the master's copy loop), these doubles stop that one
conversation instead and leave the other side hanging, which is what a peer
sees either way.
"""

import socket
import time

import gevent
import gevent.event
import gevent.lock
import gevent.pool
from gevent.server import StreamServer

LOOPBACK = ("127.0.0.1", 0)
DEFAULT_TIMEOUT = 20.0

CLASSIC_TERMINATOR = b"OFFILESEQYOULLNEVERUSEITINYOURCODE"
CLASSIC_RESULTS = b"ENDSEQ dupa\nresult\ndupa\n"


class ClassicClientHung(Exception):
    """A read of the classic client timed out (the real one would wait forever)."""


def _parse_address(address):
    if isinstance(address, str):
        host, _, port = address.rpartition(":")
        return (host.strip("[]") or "127.0.0.1", int(port))
    return tuple(address[:2])


class _LineReader:
    """``bufio.Reader.ReadString('\\n')`` over a socket.

    ``readline()`` returns ``(line, eof)``: a whole line with its ``\\n`` and
    False, or at end of stream what was left (maybe ``b""``) and True.
    Socket timeouts propagate; a reset counts as end of stream.
    """

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def readline(self):
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end + 1])
                del self.buffer[:end + 1]
                return line, False
            if self.eof:
                rest = bytes(self.buffer)
                self.buffer.clear()
                return rest, True
            try:
                data = self.sock.recv(65536)
            except ConnectionError:
                data = b""
            if data:
                self.buffer += data
            else:
                self.eof = True


class _Observable:
    """``wait_until(predicate)`` without polling: woken on every recorded change."""

    def __init__(self):
        self._changed = gevent.event.Event()

    def _note_change(self):
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def wait_until(self, predicate, timeout=DEFAULT_TIMEOUT, what="the condition"):
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            if predicate():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not changed.wait(remaining):
                raise AssertionError(f"{type(self).__name__}: timed out after {timeout:g} s waiting for {what}")


# --- the classic worker ----------------------------------------------------------


class ClassicWorker(_Observable):
    """The classic Go worker, as one process with one lock across its links.

    Records, across all links in order: ``received`` (each command line as
    read; a whole upload block as one item), ``sent`` (each write),
    ``uploads`` (each block it took: header, payload and terminator line,
    byte for byte), ``rollbacks`` (how many ``ROLLBACK`` it got), and
    ``transcript`` ((link index, "in"/"out", bytes) for multi-master tests).
    ``lock`` is the worker's one lock: a test can hold it to play a job the
    worker runs for some other master. ``hold_results``, an Event, keeps each
    job "running" after ``RECEIVED`` until a test sets it.
    """

    def __init__(self, *addresses, delay=0.05, results=CLASSIC_RESULTS, hold_results=None):
        super().__init__()
        self.addresses = [_parse_address(address) for address in addresses]
        self.delay = delay  # the real worker "works" for 1 s
        # An Event a test sets to let the results go: keeps a job "running" at will.
        self.hold_results = hold_results
        self.results = results
        self.lock = gevent.lock.Semaphore(1)
        self.received = []
        self.sent = []
        self.uploads = []
        self.rollbacks = 0
        self.transcript = []
        self.exit_code = None  # set when the "process" exits
        self.crash = None  # why it panicked, if it did
        self.exited = gevent.event.Event()
        self._socks = []
        self._group = gevent.pool.Group()

    def start(self):
        try:
            for address in self.addresses:
                sock = socket.create_connection(address, timeout=DEFAULT_TIMEOUT)
                sock.settimeout(None)
                self._socks.append(sock)
        except OSError:
            self._exit(1)  # log.Fatal: a master it cannot reach at start
            return self
        for index, sock in enumerate(self._socks):
            self._group.spawn(self._serve, index, sock)
        return self

    @property
    def local_addresses(self):
        """Each link's local (host, port), to tell it apart at the master."""
        return [sock.getsockname() for sock in self._socks]

    def stop(self):
        for sock in self._socks:
            _shutdown(sock)
        self._group.kill(timeout=DEFAULT_TIMEOUT)
        for sock in self._socks:
            sock.close()
        if not self.exited.is_set():
            self._exit(0)

    def _exit(self, code):
        if self.exit_code is None:
            self.exit_code = code
        self.exited.set()
        self._note_change()

    def _record_in(self, index, data):
        self.received.append(data)
        self.transcript.append((index, "in", data))
        self._note_change()

    def _send(self, index, sock, data):
        sock.sendall(data)
        self.sent.append(data)
        self.transcript.append((index, "out", data))
        self._note_change()

    def _serve(self, index, sock):
        reader = _LineReader(sock)
        try:
            while True:
                line, eof = reader.readline()
                if eof:
                    return
                self._record_in(index, line)  # any line at all: AVAILABLE or not
                with self.lock:
                    self._send(index, sock, b"READY\n")
                    line, eof = reader.readline()
                    if eof:
                        return
                    words = line.split()
                    if not words:
                        self._record_in(index, line)
                        return self._crash("index out of range: blank line after READY")
                    if words[0] == b"ROLLBACK":
                        self._record_in(index, line)
                        self.rollbacks += 1
                        continue
                    if len(words) < 2:
                        self._record_in(index, line)
                        return self._crash("index out of range: block header without a terminator")
                    terminator = words[1]  # the first word is not checked
                    block = [line]
                    while True:
                        line, eof = reader.readline()
                        if eof:
                            return
                        block.append(line)
                        if line.strip() == terminator:
                            break
                    upload = b"".join(block)
                    self.uploads.append(upload)
                    self._record_in(index, upload)
                    self._send(index, sock, b"RECEIVED\n")
                    gevent.sleep(self.delay)  # the classic worker's pretend work, not a synchronisation
                    if self.hold_results is not None:
                        self.hold_results.wait()
                    self._send(index, sock, self.results)
        except OSError:
            return
        finally:
            current = gevent.getcurrent()
            if all(g.dead or g is current for g in self._group):
                self._exit(0)  # every master link has closed: the process exits

    def _crash(self, why):
        """A Go panic ends the whole process: every link closes."""
        self.crash = why
        for sock in self._socks:
            _shutdown(sock)
        self._exit(2)


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --- the classic master ----------------------------------------------------------


class _Peer:
    """One socket at the classic master, with Go's ReadLine/WriteLine and a record."""

    def __init__(self, sock, address, owner):
        self.sock = sock
        self.address = address
        self.reader = _LineReader(sock)
        self.read_lock = gevent.lock.Semaphore(1)  # gevent forbids two readers at once
        self.received = []  # every line read, in order
        self.sent = []  # every write, in order
        self._owner = owner

    @property
    def sent_bytes(self):
        return b"".join(self.sent)

    @property
    def received_bytes(self):
        return b"".join(self.received)

    def read_line(self):
        """``(line, failed)``: Go's ReadLine logs a read error and returns what it got."""
        with self.read_lock:
            try:
                line, eof = self.reader.readline()
            except OSError:
                line, eof = b"", True
        if line:
            self.received.append(line)
        self._owner._note_change()
        return line, eof

    def write(self, data):
        """``fmt.Fprintf``: a failed write is ignored."""
        try:
            self.sock.sendall(data)
        except OSError:
            return
        self.sent.append(data)
        self._owner._note_change()

    def close(self):
        _shutdown(self.sock)
        self.sock.close()


class ClassicMaster(_Observable):
    """The classic Go master: a worker port and a client port on loopback.

    ``links`` are the workers in the order they connected (never removed:
    the classic master never notices a worker leave), ``clients`` the client
    connections; each is a ``_Peer`` with ``sent``/``received`` records.
    ``jobs_done`` counts results blocks relayed to a client.
    """

    def __init__(self):
        super().__init__()
        self.links = []
        self.clients = []
        self.jobs_done = 0
        self._stopped = gevent.event.Event()
        self._group = gevent.pool.Group()
        self.worker_server = StreamServer(LOOPBACK, self._handle_worker)
        self.client_server = StreamServer(LOOPBACK, self._handle_client)

    @property
    def workers_address(self):
        return self.worker_server.address

    @property
    def clients_address(self):
        return self.client_server.address

    def start(self):
        self.worker_server.start()
        self.client_server.start()
        return self

    def stop(self):
        self._stopped.set()
        self.client_server.stop(timeout=1)
        self.worker_server.stop(timeout=1)
        self._group.kill(timeout=DEFAULT_TIMEOUT)
        for peer in self.links + self.clients:
            peer.close()

    def wait_for_workers(self, count, timeout=DEFAULT_TIMEOUT):
        self.wait_until(lambda: len(self.links) >= count, timeout, f"{count} linked worker(s)")

    def _handle_worker(self, sock, address):
        self.links.append(_Peer(sock, address, self))
        self._note_change()
        # Nobody reads an idle worker's link; the socket stays open until the end.
        self._stopped.wait()

    def _handle_client(self, sock, address):
        client = _Peer(sock, address, self)
        self.clients.append(client)
        self._note_change()
        request = {"handled": False}
        for link in list(self.links):
            link.write(b"AVAILABLE\n")
            self._group.spawn(self._await_ready, link, client, request)
        # The classic master never closes a client's socket; the client does.
        self._stopped.wait()

    def _await_ready(self, link, client, request):
        line, failed = link.read_line()
        words = line.split()
        if failed or not words:
            return  # the Go master would panic on cmd[0] here
        if words[0] == b"READY":
            if not request["handled"]:
                request["handled"] = True
                self._handle_upload(client, link)
            else:
                link.write(b"ROLLBACK\n")

    def _handle_upload(self, client, link):
        if not self._copy_data(client, link):
            return
        line, failed = link.read_line()  # the worker's RECEIVED (or whatever it said)
        if failed:
            return
        client.write(line)
        if self._copy_data(link, client):
            self.jobs_done += 1
            self._note_change()

    @staticmethod
    def _copy_data(src, dst):
        """util/connection.go CopyData: one block, line by line, byte for byte."""
        line, failed = src.read_line()
        words = line.split()
        if failed or not words:
            return False
        if words[0] != b"ENDSEQ":
            dst.write(b"ERROR\n")  # a bad upload's ERROR goes to the worker
            return False
        if len(words) < 2:
            return False  # the Go master would panic on cmd[1] here
        endseq = words[1].strip()
        dst.write(line)
        while True:
            line, failed = src.read_line()
            if failed:
                if line:
                    dst.write(line)
                return False  # the Go master would spin here forever
            if line.strip() == endseq:
                break
            dst.write(line)
        dst.write(line)
        return True


# --- the classic client ----------------------------------------------------------


def classic_client(address, file_bytes, timeout=DEFAULT_TIMEOUT):
    """Run the classic client; ``(exit_code, stdout_bytes, stderr_text)``.

    Every read is bounded by ``timeout`` in all: a classic client that would
    wait forever returns ``(None, b"", "hung: ...")`` instead.
    """
    address = _parse_address(address)
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as error:
        return 1, b"", f"dial tcp: {error}"
    try:
        return _classic_client_session(sock, file_bytes, deadline)
    except ClassicClientHung as error:
        return None, b"", f"hung: {error}"
    finally:
        sock.close()


def _classic_client_session(sock, file_bytes, deadline):
    def remaining():
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClassicClientHung("out of time")
        return left

    def readline(doing):
        try:
            sock.settimeout(remaining())
            return reader.readline()
        except socket.timeout:
            raise ClassicClientHung(f"no answer while {doing}") from None

    reader = _LineReader(sock)
    try:
        sock.settimeout(remaining())
        sock.sendall(b"ENDSEQ " + CLASSIC_TERMINATOR + b"\n" + file_bytes + CLASSIC_TERMINATOR + b"\n")
    except socket.timeout:
        raise ClassicClientHung("the master did not take the upload") from None
    except OSError as error:
        return 1, b"", str(error)

    line, eof = readline("waiting for RECEIVED")
    if eof:
        return 1, b"", "EOF"
    words = line.split()
    if not words:
        return 2, b"", "panic: runtime error: index out of range"
    if words[0] != b"RECEIVED":
        return 1, b"", "FAIL"

    line, eof = readline("waiting for the results header")
    if eof:
        return 1, b"", "EOF"
    words = line.split()
    if not words:
        return 2, b"", "panic: runtime error: index out of range"
    if words[0] != b"ENDSEQ":
        return 1, b"", "FAIL"
    if len(words) < 2:
        return 2, b"", "panic: runtime error: index out of range"
    endseq = words[1].strip()

    result = []
    while True:
        line, eof = readline("reading the results")
        if eof:
            return 1, b"", "EOF"  # log.Fatal: nothing printed
        if line.strip() == endseq:
            break
        result.append(line)
    return 0, b"".join(result), ""


# --- a fixture helper ------------------------------------------------------------


class ClassicPeers:
    """Starts classic masters and workers for one test and stops them all."""

    def __init__(self):
        self.masters = []
        self.workers = []

    def master(self):
        master = ClassicMaster()
        self.masters.append(master)
        return master.start()

    def worker(self, *masters, **options):
        addresses = [m.workers_address if hasattr(m, "workers_address") else m for m in masters]
        worker = ClassicWorker(*addresses, **options)
        self.workers.append(worker)
        return worker.start()

    def stop(self):
        for worker in self.workers:
            worker.stop()
        for master in self.masters:
            master.stop()
