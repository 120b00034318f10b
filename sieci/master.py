"""The master: takes jobs from clients, queues them, hands each to a worker.

Dispatch lives here, in one place: ``_enqueue`` puts a job at the back of
``pending_jobs`` and asks idle workers (``AVAILABLE``, FANOUT of them per
waiting job, each from a greenlet of its own; all of them once a job has
waited WIDEN_AFTER, in case those asked are busy for other masters). Any
``READY`` takes the job at the head of the queue, so the first wins; a
``READY`` that finds the queue empty gets ``ROLLBACK``. Each worker link is
served by its own greenlet, which also relays its job's results.
"""

import collections
import itertools
import logging
import socket
import time

import gevent
import gevent.event
from gevent.server import StreamServer

from . import auth, defaults, protocol, relay, status
from .address import format_address
from .connection import RECV_SIZE, TLS_HANDSHAKE, Connection, SpeaksTLS, tune_socket
from .results import Status
from .tls import describe_failure

log = logging.getLogger("sieci.master")

# Bytes: a longer first line is refused, and a longer line of code is passed on, not held
# back while it might still end in the terminator (a classic client's glued one included).
# Each client connection may buffer this much beyond what UnverifiedUploads counts.
UPLOAD_LINE_LIMIT = 64 << 10
PLAINTEXT_AFTER = 2.0  # seconds without a TLS handshake from a new peer of a TLS master: it speaks plain text
FANOUT = 2  # idle workers asked per waiting job: the first READY wins, so two race
WIDEN_AFTER = 0.05  # seconds; then a job still waiting has every idle worker asked
# Seconds; then a sieci client whose job still waits is told QUEUED: well within its --connect-timeout
# (10 s by default), since a client that waits less may pass over a master with a queue.
QUEUED_AFTER = 0.2
SPLICE_AT_LEAST = 32 << 10  # bytes of a raw chunk still to come; fewer are relayed through Python

AVAILABLE_LINE = protocol.encode_command(protocol.AVAILABLE)
ROLLBACK_LINE = protocol.encode_command(protocol.ROLLBACK)
RECEIVED_LINE = protocol.encode_command(protocol.RECEIVED)
QUEUED_LINE = protocol.encode_command(protocol.QUEUED)


class TooMuchUnverified(Exception):
    """Taking more bytes of an upload would pass the share of unverified uploads."""


class UnverifiedUploads:
    """Bytes of uploads read but not yet verified, in all and per peer address. An
    upload that would take more than ``limit`` in all, or a quarter of it from one
    address, is refused: strangers cannot fill the master's memory, and one address
    alone cannot keep out the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.total = 0
        self.by_address = collections.Counter()

    def resize(self, address, before, after):
        """One upload from ``address`` now holds ``after`` bytes, not ``before``."""
        grow = after - before
        if grow > 0 and (self.total + grow > self.limit or self.by_address[address] + grow > self.limit // 4):
            raise TooMuchUnverified(f"too many unverified uploads at once (over {self.limit >> 20} MiB); "
                                    "try again later")
        self.total += grow
        self.by_address[address] += grow
        if not self.by_address[address]:
            del self.by_address[address]
        return after


class WorkerLost(Exception):
    """The worker's link closed."""


class ClientGone(Exception):
    """The client's connection failed while we wrote to it."""


class Job:
    def __init__(self, job_id, upload, client, client_name, extended=False):
        self.id = job_id
        self.upload = upload  # the block to forward: header, code, terminator
        self.extended = extended  # a sieci client's: it is told QUEUED while the job waits
        self.client = client
        self.client_name = client_name
        self.worker = None
        self.cancelled = False
        self.accepted = False  # the worker said RECEIVED: the code may have run
        self.results_header = None
        self.relayed_mid_line = False
        self.bytes_relayed = 0
        self.finished = gevent.event.Event()
        self.queued_at = time.monotonic()
        self.dispatched_at = None
        self.finished_at = None
        self._unsent = []

    def send_to_client(self, data):
        """Relay to the client; once it has gone, the rest is dropped."""
        self._unsent.append(data)
        self.flush()

    def queue_for_client(self, data):
        """Relay to the client with the next flush: what arrived together goes in one send."""
        self._unsent.append(data)

    def flush(self):
        data, self._unsent = b"".join(self._unsent), []
        if self.cancelled or not data:
            return
        try:
            self.client.send(data)
        except OSError as error:
            self.client_failed(error)

    def client_failed(self, error):
        """A send to the client failed: the rest of the results has nowhere to go."""
        self.cancelled = True
        if self.worker is not None and self.worker.stoppable:
            raise ClientGone(str(error))


class WorkerLink:
    def __init__(self, conn, name):
        self.conn = conn
        self.name = name
        self.state = protocol.LinkState(protocol.MASTER)
        self.job = None
        self.jobs_done = 0
        # A sieci worker (READY v=2) stops its job when its link closes; a
        # classic one would never come back, so its job is run out instead.
        self.stoppable = False
        self.silence_allowed = None  # seconds it may say nothing while its job runs (see _silence_allowed)
        self.greenlet = gevent.getcurrent()

    def send(self, data):
        self.conn.send(data)

    def send_quietly(self, data):
        """For the fan-out greenlets: a failed send shows up as a closed link."""
        try:
            self.conn.send(data)
        except OSError:
            self.conn.shutdown()


def _silence_allowed(results_header):
    """How long a worker may say nothing in its results: three of the heartbeats its
    header declares; None (for ever) for a worker that declares none."""
    return None if results_header.beat is None else 3 * max(results_header.beat, 0.1)


def _silent(link):
    return f"it said nothing for {link.silence_allowed:g} s while its job ran (stopped?)"


class Master:
    def __init__(self, workers_address, clients_address, max_upload=defaults.MAX_UPLOAD,
                 client_timeout=defaults.CLIENT_TIMEOUT, max_queue=defaults.MAX_QUEUE, keepalive=defaults.KEEPALIVE,
                 secret=None, tls=None, names=(), max_unverified=defaults.MAX_UNVERIFIED,
                 max_connections_per_address=defaults.MAX_CONNECTIONS_PER_ADDRESS):
        """``secret`` (bytes) makes every worker and client prove they hold it, in
        signatures meant for this master (reached at its own address or host name,
        or at one of ``names``: see auth.Identity); ``tls`` (an ssl.SSLContext for
        servers) encrypts both ports. Uploads not yet verified may hold at most
        ``max_unverified`` bytes together, and one address may have at most
        ``max_connections_per_address`` client connections open."""
        self.max_upload = max_upload
        self.unverified = UnverifiedUploads(max_unverified)
        self.max_connections_per_address = max_connections_per_address
        self.client_connections = collections.Counter()
        self.client_timeout = client_timeout
        self.max_queue = max_queue
        self.keepalive = keepalive
        self.pending_jobs = collections.deque()
        self.active_jobs = set()
        self.links = set()
        self.idle_links = {}  # insertion-ordered set: the longest idle first
        self.asked_links = set()  # AVAILABLE sent, no answer yet
        self.stopping = False
        self.started_at = time.monotonic()
        self.totals = {"done": 0, "failed": 0, "cancelled": 0, "wait_seconds": 0.0, "run_seconds": 0.0}
        # Callables taking (event, job); events: queued, dispatched, requeued, stopping,
        # abandoned, and at the end one of done, failed, cancelled.
        self.listeners = []
        self._links_changed = gevent.event.Event()
        self._job_ids = itertools.count(1)
        self.verifier = auth.Verifier(secret) if secret else None
        self.names = names
        self.identities = {}  # "client" and "worker": that port's auth.Identity, once it is bound
        # TLS bytes are not ours to splice
        self.splice_pipes = relay.SplicePipes() if relay.AVAILABLE and not tls else None
        self.tls = tls
        self.worker_server = StreamServer(workers_address, self._after_handshake(self.handle_worker, "worker"))
        self.client_server = StreamServer(clients_address, self._after_handshake(self.handle_client, "client"))

    def _after_handshake(self, handle, peer):
        """``handle`` behind the TLS handshake, if any: one that fails is a line in
        the log (gevent's own handshake would print a traceback), and one that
        stalls is dropped after ``client_timeout``."""
        if self.tls is None:
            return handle

        def handshake_then_handle(sock, address):
            try:
                if not self._opens_with_tls(sock, peer, address):
                    return
                sock.settimeout(self.client_timeout)
                sock = self.tls.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
            except OSError as error:
                log.info("%s %s: TLS handshake failed: %s", peer, format_address(address), describe_failure(error))
                sock.close()
                return
            handle(sock, address)

        return handshake_then_handle

    @staticmethod
    def _opens_with_tls(sock, peer, address):
        """Whether a new peer of a TLS master starts a handshake; one that speaks plain text
        (or, as a plain worker does, waits for the master to speak first) is told so, in
        plain text, and the connection closed."""
        sock.settimeout(PLAINTEXT_AFTER)
        try:
            first = sock.recv(len(TLS_HANDSHAKE), socket.MSG_PEEK)
        except TimeoutError:
            first = None
        if first and TLS_HANDSHAKE.startswith(first):
            return True
        if first != b"":
            log.info("%s %s speaks plain text, not TLS: told so", peer, format_address(address))
            conn = Connection(sock)
            conn.send(protocol.encode_command(protocol.ERROR, b"this port speaks TLS (--tls)"))
            conn.finish_sending()
        sock.close()
        return False

    @staticmethod
    def _speaks_tls(conn, peer, name):
        log.info("%s %s speaks TLS, and this master does not (give it --tls-cert, or the %s no --tls)",
                 peer, name, peer)
        conn.send(protocol.encode_command(protocol.ERROR, b"this master does not speak TLS"))

    @property
    def workers_address(self):
        return self.worker_server.address

    @property
    def clients_address(self):
        return self.client_server.address

    @property
    def name(self):
        return format_address(self.clients_address)

    def wait_for_workers(self, count, timeout, exactly=False):
        """True once ``count`` workers (at least, or ``exactly``) are linked; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._links_changed
            if len(self.links) == count or (len(self.links) > count and not exactly):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not changed.wait(remaining):
                return False

    def _notify(self, event, job, message, *args):
        """Log one event in a job's life, as one line with the job's id, and tell the listeners."""
        log.info("job %d " + message, job.id, *args, extra={"job": job.id, "event": event})
        for listener in self.listeners:
            listener(event, job)

    def _note_links_changed(self):
        changed, self._links_changed = self._links_changed, gevent.event.Event()
        changed.set()

    def start(self):
        host_names = [socket.gethostname(), socket.getfqdn()]  # before listening: a lookup may take a while
        self.worker_server.start()
        self.client_server.start()
        for peer, server in (("client", self.client_server), ("worker", self.worker_server)):
            self.identities[peer] = auth.Identity(server.address[1], self.names, host_names)
        log.info("master listening for workers on %s and for clients on %s",
                 format_address(self.workers_address), format_address(self.clients_address))

    def stop(self, grace=defaults.GRACE):
        """Stop taking jobs, fail the queued ones, let running ones finish."""
        self.stopping = True
        self.client_server.close()
        self.worker_server.close()
        while self.pending_jobs:
            job = self.pending_jobs.popleft()
            self._fail(job, b"the master is shutting down")
        running = [job.finished for job in self.active_jobs]
        if running:
            log.info("waiting up to %g s for %d running job(s)", grace, len(running))
            gevent.wait(running, timeout=grace)
        for job in list(self.active_jobs):
            self._fail(job, b"the master stopped before the job ended")
        for link in list(self.links):
            link.conn.shutdown()
        gevent.joinall([link.greenlet for link in self.links], timeout=grace)
        if self.splice_pipes is not None:
            self.splice_pipes.close()

    # --- clients ---------------------------------------------------------------

    def handle_client(self, sock, address):
        name = format_address(address)
        tune_socket(sock, self.keepalive, user_timeout=False)  # a slow reader is no dead one: see _watch_client
        conn = Connection(sock, max_line=min(self.max_upload, UPLOAD_LINE_LIMIT))
        conn.recv_size = UPLOAD_LINE_LIMIT  # smaller reads while the upload is not yet verified: less held per client
        conn.plaintext_only = self.tls is None
        self.client_connections[address[0]] += 1
        try:
            if self.client_connections[address[0]] > self.max_connections_per_address:
                return self._refuse(conn, name, f"too many connections from {address[0]} "
                                                f"(at most {self.max_connections_per_address} at once)")
            job = self._receive_job(conn, name, address[0])
            if job is not None:
                self._enqueue(job)
                self._wait_while_watching(job)
        except SpeaksTLS:
            self._speaks_tls(conn, "client", name)
        except OSError as error:
            log.debug("client %s: %s", name, error)
        except Exception:
            log.exception("client %s: unexpected error", name)
        finally:
            self.client_connections[address[0]] -= 1
            if not self.client_connections[address[0]]:
                del self.client_connections[address[0]]
            sock.close()

    def _receive_job(self, conn, name, peer):
        conn.settimeout(self.client_timeout)
        try:
            line = conn.next_event()
            if line is protocol.CONNECTION_CLOSED:
                log.debug("client %s left without sending a job", name)
                return None
            if line.word == status.STATUS:
                return self._answer_status(conn, name, line)
            header = conn.start_block(line.raw, max_size=self.max_upload, accept_glued=True)
            if self.verifier is not None:  # before the payload: nothing unsigned is read whole
                self._check_signed_header(conn, header.fields)
            code, size, held = [], 0, 0
            try:
                while not isinstance(event := conn.next_event(), protocol.BlockEnd):
                    if event is protocol.CONNECTION_CLOSED:
                        raise protocol.RemoteProtocolError("the upload ended before its terminator line")
                    code.append(event.data)
                    size += len(event.data)
                    held = self.unverified.resize(peer, held, size + conn.receiver.buffered)
            except BaseException:
                code.clear()  # before the refusal, which may take a second to send: its bytes no longer count
                raise
            finally:
                self.unverified.resize(peer, held, 0)
        except (protocol.RemoteProtocolError, TooMuchUnverified) as error:
            return self._refuse(conn, name, str(error))
        except TimeoutError:
            return self._refuse(conn, name, f"nothing received for {self.client_timeout:g} s")
        except auth.Unauthorized as why:
            return self._refuse(conn, name, "unauthorized", why)
        if self.verifier is not None:
            try:
                self.verifier.verify_upload(header.fields, b"".join(code))
            except auth.Unauthorized as why:
                return self._refuse(conn, name, "unauthorized", why)
        if self.stopping:
            return self._refuse(conn, name, "the master is shutting down")
        if len(self.pending_jobs) >= self.max_queue:
            return self._refuse(conn, name, f"queue full ({self.max_queue} jobs waiting)")
        upload = line.raw + b"".join(code) + event.raw
        return Job(next(self._job_ids), upload, conn, name, header.extended)

    def _answer_status(self, conn, name, line):
        fields = line.raw.split()[1:]
        if self.verifier is not None:
            try:
                self._check_signed_header(conn, fields)
                self.verifier.verify_upload(fields, status.SIGNED_PAYLOAD)
            except auth.Unauthorized as why:
                return self._refuse(conn, name, "unauthorized", why)
        state = status.snapshot(self)
        if status.JSON in fields:
            conn.send(status.encode_json(state))
        else:
            conn.send(status.format_text(state).encode() + b".\n")
        log.debug("client %s: answered a status request", name)
        return None

    def _check_signed_header(self, conn, fields):
        self.identities["client"].check(fields, conn.sock.getsockname()[0])
        self.verifier.check_header(fields)

    def _refuse(self, conn, name, reason, detail=None):
        log.warning("client %s: refused: %s%s", name, reason, f" ({detail})" if detail else "")
        conn.send(protocol.encode_command(protocol.ERROR, reason.encode()))
        conn.finish_sending()
        return None

    def _wait_while_watching(self, job):
        """Wait for the job to end; cancel it if its client hangs up first."""
        job.client.settimeout(None)
        watcher = gevent.spawn(self._watch_client, job)
        try:
            job.finished.wait()
        finally:
            watcher.kill()

    def _watch_client(self, job):
        try:
            while self._readable_while_alive(job):
                if job.client.next_event() is protocol.CONNECTION_CLOSED:
                    break  # nothing more is expected; what comes anyway is ignored
        except (OSError, protocol.ProtocolError):
            pass
        if not job.finished.is_set():
            self._cancel(job)

    def _readable_while_alive(self, job):
        """Whether the client's socket became readable, not its client vanished."""
        if job.client.readable_while_acknowledged(self.keepalive):
            return True
        log.info("client %s has acknowledged nothing for %g s: taken for gone", job.client_name, self.keepalive)
        return False

    def _cancel(self, job):
        job.cancelled = True
        if job.worker is None:
            self.pending_jobs.remove(job)
            self._finish(job, "cancelled", "the client left while it was queued")
        elif job.worker.stoppable:
            self._notify("stopping", job, "stopping on worker %s: its client left", job.worker.name)
            job.worker.conn.shutdown()
        else:
            self._notify("abandoned", job, "left to classic worker %s to run out: its client left", job.worker.name)

    # --- dispatch --------------------------------------------------------------

    def _enqueue(self, job):
        self.pending_jobs.append(job)
        self.active_jobs.add(job)
        self._notify("queued", job, "queued from client %s (%d bytes, %d in queue)",
                     job.client_name, len(job.upload), len(self.pending_jobs))
        self._ask_idle_workers()
        gevent.spawn_later(WIDEN_AFTER, self._widen, job)
        if job.extended:
            gevent.spawn_later(QUEUED_AFTER, self._tell_queued, job)

    def _ask_idle_workers(self, everyone=False):
        """Ask FANOUT idle workers per waiting job (or, for a job that waited, every one)."""
        wanted = len(self.idle_links) if everyone else len(self.pending_jobs) * FANOUT - len(self.asked_links)
        for link in list(itertools.islice(self.idle_links, max(0, wanted))):
            self._ask(link)

    def _ask(self, link):
        del self.idle_links[link]
        self.asked_links.add(link)
        link.state.advance(protocol.MASTER, protocol.AVAILABLE)
        gevent.spawn(link.send_quietly, AVAILABLE_LINE)

    def _widen(self, job):
        """The job still waits: the workers asked may be busy for other masters, so ask all."""
        if job.worker is None and not job.finished.is_set():
            self._ask_idle_workers(everyone=True)

    @staticmethod
    def _tell_queued(job):
        """The job still waits: tell its sieci client, which then stops counting its
        --connect-timeout (the master is there, and the job waits for a worker)."""
        if job.worker is None and not job.finished.is_set():
            job.send_to_client(QUEUED_LINE)

    def _make_idle(self, link):
        self.idle_links[link] = None
        if self.pending_jobs:
            self._ask_idle_workers()

    def _on_ready(self, link):
        if not self.pending_jobs:
            link.state.advance(protocol.MASTER, protocol.ROLLBACK)
            link.send(ROLLBACK_LINE)
            self._make_idle(link)
            return
        job = self.pending_jobs.popleft()
        job.worker = link
        link.job = job
        job.dispatched_at = time.monotonic()
        link.state.advance(protocol.MASTER, protocol.JOB)
        # A worker must take the code as promptly as a client must send it, or be
        # dropped (the job goes back to the queue): READY, then silence, held it for ever.
        link.conn.settimeout(self.client_timeout)
        try:
            link.send(job.upload)
            self._notify("dispatched", job, "dispatched to worker %s after %.3f s in the queue",
                         link.name, job.dispatched_at - job.queued_at)
            line = link.conn.next_event()
        except TimeoutError:
            raise WorkerLost(f"it did not accept the job within {self.client_timeout:g} s") from None
        link.conn.settimeout(None)
        self._await_acceptance(job, link, line)

    def _await_acceptance(self, job, link, line):
        if line is protocol.CONNECTION_CLOSED:
            raise WorkerLost("closed before it accepted the job")
        link.state.advance(protocol.WORKER, line.word)
        if line.word == protocol.ERROR:
            link.job = None
            self._fail(job, b"the worker refused the job: " + line.reason)
            self._make_idle(link)
            return
        job.accepted = True
        job.queue_for_client(RECEIVED_LINE)
        self._relay_results(job, link)
        link.state.advance(protocol.WORKER, protocol.JOB)
        link.job = None
        link.jobs_done += 1
        self._finish(job, "cancelled" if job.cancelled else "done")
        self._make_idle(link)

    def _relay_results(self, job, link):
        """Relay RECEIVED (queued by the caller) and the results, as they come.

        Whatever has arrived is sent before waiting for more: streaming, in
        as few sends as the worker's data allows.
        """
        line = self._next_from_worker(job, link)
        if line is protocol.CONNECTION_CLOSED:
            raise WorkerLost("closed before it sent the results")
        job.results_header = link.conn.start_block(line.raw, results=True)
        job.queue_for_client(line.raw)
        link.silence_allowed = _silence_allowed(job.results_header)
        while True:
            event = self._next_from_worker(job, link)
            if event is protocol.CONNECTION_CLOSED:
                raise WorkerLost("closed in the middle of the results")
            if isinstance(event, protocol.BlockEnd):
                link.conn.recv_size = RECV_SIZE
                job.send_to_client(event.raw)
                return
            job.queue_for_client(event.data)
            job.bytes_relayed += len(event.data)
            job.relayed_mid_line = not event.data.endswith(b"\n")
            if link.conn.receiver.raw_pending >= SPLICE_AT_LEAST and self.splice_pipes is not None:
                self._splice_raw(job, link)

    def _splice_raw(self, job, link):
        """The rest of a big raw chunk, from the worker's socket to the client's (see relay.py).

        Reads from the worker stay small for the rest of the results, so
        that they take little more than each chunk's header.
        """
        job.flush()
        if job.cancelled:
            return  # the bytes are read and dropped as usual
        pipe = self.splice_pipes.take()
        try:
            for taken in link.conn.splice_raw(pipe, link.silence_allowed):
                job.bytes_relayed += taken
                try:
                    pipe.drain(job.client.sock.fileno())
                except OSError as error:
                    job.client_failed(error)
                    return
        except TimeoutError:
            raise WorkerLost(_silent(link)) from None
        finally:
            self.splice_pipes.give_back(pipe)

    @staticmethod
    def _next_from_worker(job, link):
        """The next event of the results; a worker that declared a heartbeat and has been
        silent for three of them (stopped, say: its kernel still answers) is lost."""
        event = link.conn.receiver.next_event()
        if event is protocol.NEED_DATA:
            job.flush()  # nothing more yet: what has come goes to the client before we wait
            if link.silence_allowed is None:
                return link.conn.next_event()
            link.conn.deadline = time.monotonic() + link.silence_allowed
            try:
                event = link.conn.next_event()
            except TimeoutError:
                raise WorkerLost(_silent(link)) from None
            finally:
                link.conn.deadline = None
                link.conn.settimeout(None)
        return event

    def _finish(self, job, outcome, detail=""):
        now = time.monotonic()
        ran = now - job.dispatched_at if job.dispatched_at else 0.0
        job.finished_at = now
        self.totals[outcome] += 1
        if outcome == "done":
            self.totals["wait_seconds"] += job.dispatched_at - job.queued_at
            self.totals["run_seconds"] += ran
        self.active_jobs.discard(job)
        job.finished.set()
        self._notify(outcome, job, "%s%s after %.3f s (%.3f s on a worker, %d bytes of results)",
                     outcome, detail and f" ({detail})", now - job.queued_at, ran, job.bytes_relayed)

    def _fail(self, job, reason):
        """End the job for its client with ``reason``, in whatever form still fits."""
        try:
            if job.results_header is None:
                job.send_to_client(protocol.encode_command(protocol.ERROR, reason))
            elif job.worker.conn.receiver.in_raw_chunk:
                pass  # the client counts the chunk's bytes: a status now would be taken for output
            elif job.results_header.extended:
                lost = Status(b"error", b"lost", reason)
                ending = b"\n" if job.relayed_mid_line else b""
                job.send_to_client(ending + lost.encode() + job.results_header.terminator + b"\n")
        except ClientGone:
            pass
        self._finish(job, "failed", reason.decode("utf-8", "replace"))

    # --- workers ---------------------------------------------------------------

    def handle_worker(self, sock, address):
        tune_socket(sock, self.keepalive)
        link = WorkerLink(Connection(sock), format_address(address))
        link.conn.plaintext_only = self.tls is None
        try:
            if self.verifier is not None:
                self._challenge(link)  # before it counts, or shows in the status, as a worker
            self.links.add(link)
            self._note_links_changed()
            log.info("worker %s joined (%d linked)", link.name, len(self.links))
            self._make_idle(link)
            self._serve_worker(link)
        except WorkerLost as why:
            log.warning("worker %s lost: %s", link.name, why)
        except ClientGone as why:
            log.info("worker %s: its client left (%s); dropping the link to stop the job", link.name, why)
        except protocol.RemoteProtocolError as error:
            log.warning("worker %s dropped: %s", link.name, error)
        except auth.Unauthorized as why:
            log.warning("worker %s refused: unauthorized (%s)", link.name, why)
            link.send_quietly(protocol.encode_command(protocol.ERROR, auth.UNAUTHORIZED))
        except SpeaksTLS:
            self._speaks_tls(link.conn, "worker", link.name)
        except OSError as error:
            log.warning("worker %s lost: %s", link.name, error)
        except Exception:
            log.exception("worker %s: unexpected error", link.name)
        finally:
            self.links.discard(link)
            self._note_links_changed()
            self.idle_links.pop(link, None)
            self.asked_links.discard(link)
            link.state.close()
            sock.close()
            self._reclaim_job(link)

    def _challenge(self, link):
        """Make a new link prove it holds the secret before it is given anything."""
        nonce = self.verifier.new_challenge()
        link.state.advance(protocol.MASTER, protocol.CHALLENGE)
        link.send(protocol.encode_command(protocol.CHALLENGE, nonce))
        link.conn.settimeout(self.client_timeout)
        try:
            line = link.conn.next_event()
        except TimeoutError:
            raise auth.Unauthorized("no answer to the challenge") from None
        link.conn.settimeout(None)
        if line is protocol.CONNECTION_CLOSED or line.word != protocol.AUTH:
            raise auth.Unauthorized("no answer to the challenge")
        self.verifier.verify_answer(nonce, line.reason, self.identities["worker"], link.conn.sock.getsockname()[0])
        link.state.advance(protocol.WORKER, protocol.AUTH)

    def _serve_worker(self, link):
        while True:
            line = link.conn.next_event()
            if line is protocol.CONNECTION_CLOSED:
                log.info("worker %s left", link.name)
                return
            link.state.advance(protocol.WORKER, line.word)  # only READY is legal here
            self.asked_links.discard(link)
            link.stoppable = protocol.EXTENDED in line.raw.split()[1:]
            self._on_ready(link)

    def _reclaim_job(self, link):
        """The link is gone: requeue its job if it never started, else fail it."""
        job, link.job = link.job, None
        if job is None or job.finished.is_set():
            return
        if job.cancelled:
            self._finish(job, "cancelled")
        elif not job.accepted and not self.stopping:
            job.worker = None
            job.dispatched_at = None
            self.pending_jobs.appendleft(job)
            self._notify("requeued", job, "back at the head of the queue: worker %s was lost before accepting it",
                         link.name)
            self._ask_idle_workers()
        else:
            self._fail(job, b"worker lost")
