"""The worker: one link to each master, one job at a time across all of them."""

import itertools
import logging
import os
import random
import socket
import time

import gevent
import gevent.event
import gevent.lock
import gevent.socket

from sieci.wire import auth, bundle, conversation, protocol, returns, stdin_stream, upload_format
from sieci import defaults
from sieci.wire.address import format_address
from sieci.wire.connection import Connection, tune_socket
from sieci.worker.executor import STREAMED, JobRunner
from sieci.worker.fork_server import ForkServerError
from sieci.files_store import FilesStore
from sieci.worker.job_results import send_classic, send_extended
from sieci.worker.job_slot import JobSlot
from sieci.worker.job_stdin import StdinFeeder
from sieci.wire.tls import describe_failure
from sieci.worker.files import JobRefused, WorkerFiles

log = logging.getLogger("sieci.worker")

HEARTBEAT = 5.0  # seconds: the longest a running job's results stay silent (a quiet job: see protocol.HEARTBEAT_ITEM)
CONNECT_TIMEOUT = 10.0


_worker_numbers = itertools.count(1)


class LinkLost(Exception):
    """The master went away, or broke the protocol; the link is redialled."""


class Worker:
    def __init__(self, masters, limits=None, python=None, max_upload=defaults.MAX_UPLOAD,
                 reconnect_min=defaults.RECONNECT_MIN, reconnect_max=defaults.RECONNECT_MAX,
                 keepalive=defaults.KEEPALIVE, job_user=None, command_prefix=(), fresh_interpreter=False,
                 isolation=None, secret=None, tls=None, name=None, credit=defaults.CREDIT,
                 files_store=defaults.FILES_STORE, files_store_dir=None):
        """``secret`` (bytes): answer masters' challenges, and run only jobs
        their clients signed with it. ``tls``: an ssl.SSLContext for clients.
        ``name`` tells clients which worker ran their job (default: host:pid:n).
        ``credit``: the jobs it may hold for a master that takes standing offers, the running one included.
        Jobs' files bundles are kept, ``files_store`` bytes of them at most, in a
        private folder made in ``files_store_dir`` (default: the system's temp folder)."""
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{next(_worker_numbers)}"
        self.secret = secret
        self.verifier = auth.Verifier(secret) if secret else None
        self.tls = tls
        self.runner = JobRunner(limits, python, job_user, command_prefix, fresh_interpreter, isolation)
        self.max_upload = max_upload
        self.files = WorkerFiles(FilesStore(files_store, files_store_dir), max_upload,
                                 self.runner.limits.disk or bundle.DEFAULT_MAX_SIZE)
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.keepalive = keepalive
        self.credit = credit
        self.job_slot = JobSlot()
        self.listeners = []  # callables taking (status, seconds) when a job has ended
        self.stopping = gevent.event.Event()
        self.broken = None  # why it took no more jobs: its fork server cannot start
        self.links = [MasterLink(self, address) for address in masters]
        self.job_slot.on_free.extend(link.offer_soon for link in self.links)
        self._greenlets = []

    def start(self):
        self._greenlets = [gevent.spawn(link.run) for link in self.links]

    def serve_forever(self):
        self.start()
        gevent.joinall(self._greenlets)

    def break_down(self, why):
        """Take no more jobs: each would fail the same way (a job that came goes elsewhere)."""
        if self.broken is None:
            self.broken = why
            log.error("%s: this worker takes no more jobs", why)
        self.stopping.set()
        for link in self.links:
            link.hang_up()

    def stop(self, grace=defaults.GRACE):
        """Take no new job; let a running one finish within ``grace`` seconds."""
        self.stopping.set()
        for link in self.links:
            if not link.running_job:
                link.hang_up()
        gevent.joinall(self._greenlets, timeout=grace)
        gevent.killall(self._greenlets)
        self.runner.close()
        self.files.store.close()


class MasterLink:
    """The worker's link to one master, redialled whenever it is lost."""

    def __init__(self, worker, address):
        self.worker = worker
        self.address = address
        self.name = format_address(address)
        self.running_job = False
        self.conn = None
        self._sending_offers = gevent.lock.Semaphore(1)
        self.between_jobs = False  # our greenlet waits for the master's next line, and sends nothing

    def run(self):
        """Dial, serve, redial. A link lost sooner than the longest pause
        counts as a failed dial, like one refused or one whose handshake
        failed, so a master that drops every link at once is not hammered."""
        failures = 0
        while not self.worker.stopping.is_set():
            why, linked_for = self._dial_and_serve()
            if self.worker.stopping.is_set():
                break
            failures = 1 if linked_for >= self.worker.reconnect_max else failures + 1
            delay = self._backoff(failures)
            log.warning("%s; redialling in %.2f s", why, delay)
            self.worker.stopping.wait(delay)

    def _backoff(self, failures):
        ceiling = min(self.worker.reconnect_max, self.worker.reconnect_min * 2 ** (failures - 1))
        return random.uniform(ceiling / 2, ceiling)

    def hang_up(self):
        if self.conn is not None:
            self.conn.shutdown()

    def _dial_and_serve(self):
        """Serve one link to the master until it is lost: why it was lost, and
        for how many seconds it had been linked."""
        try:
            sock = gevent.socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
        except OSError as error:
            return f"cannot reach master {self.name} ({error})", 0
        try:
            if self.worker.tls is not None:
                sock = self.worker.tls.wrap_socket(sock, server_hostname=self.address[0])
        except OSError as error:
            sock.close()
            return f"TLS with master {self.name} failed: {describe_failure(error)}", 0
        linked_at = time.monotonic()
        try:
            return self._serve(sock), time.monotonic() - linked_at
        finally:
            sock.close()

    def _serve(self, sock):
        sock.settimeout(None)
        tune_socket(sock, self.worker.keepalive, user_timeout=False)  # a master held up by a slow client is alive
        self.conn = Connection(sock, conversation.link_conversation(protocol.WORKER))
        log.info("linked to master %s", self.name)
        try:
            self._serve_jobs()
        except LinkLost as why:
            if self.worker.stopping.is_set():
                log.info("unlinked from master %s", self.name)
            return f"lost master {self.name}: {why}"
        except protocol.RemoteProtocolError as error:
            return f"dropping master {self.name}: {error}"
        except OSError as error:
            return f"lost master {self.name}: {error}"
        finally:
            self.conn = None
            self.worker.job_slot.let_go(self)
        return f"lost master {self.name}"

    def _serve_jobs(self):
        while not self.worker.stopping.is_set():
            if not self.conn.receiver.buffered:  # (codes that came while a job ran are counted first)
                self._offer()
            self.between_jobs = True
            try:
                line = self._next_line("waiting for AVAILABLE")
            finally:
                self.between_jobs = False
            with self._sending_offers:  # a FREE that offer_soon's greenlet is sending goes whole first
                pass
            if line.word == protocol.ERROR:
                raise LinkLost(self._refusal(line.reason))
            if line.word == protocol.CHALLENGE:
                self._answer_challenge(line.reason)
            elif line.word == protocol.RELAY:  # a code sent against one of our standing offers
                self._take_offered_job(self._next_line("after RELAY").raw, line)
            else:
                self._answer_available()

    def _answer_available(self):
        """AVAILABLE (or any line, as a classic worker reads it): READY once this link holds the worker."""
        self.worker.job_slot.wait_and_take(self)
        try:
            if self.worker.stopping.is_set():
                raise LinkLost("the worker is stopping")
            # With the extension flags: a classic master reads only the first word; a sieci master learns
            # that it may stop a job by hanging up, and that it may have us make standing offers.
            self.conn.send_command(protocol.READY, protocol.EXTENDED + b" " + conversation.OFFERS_FIELD)
            line = self._next_line("holding READY")
            if line.word in (protocol.ROLLBACK, protocol.ERROR):
                return
            relay = line if line.word == protocol.RELAY else None
            if relay is not None:
                line = self._next_line("after RELAY")
            self._take_job(line.raw, relay)
        finally:
            self._let_go_of_slot()

    def _take_offered_job(self, raw_header, relay):
        """Run it if the worker is free or ours; BUSY if it became busy for another master meanwhile."""
        if self.worker.stopping.is_set():
            raise LinkLost("the worker is stopping")
        if not self.worker.job_slot.take(self):
            self.conn.start_block(raw_header, max_size=self.worker.max_upload)
            self._read_code()
            self.conn.send_command(protocol.BUSY)
            return
        try:
            self._take_job(raw_header, relay)
        finally:
            self._let_go_of_slot()

    def _let_go_of_slot(self):
        """Let the worker go after a job, unless our master's next code is already coming in (credit)."""
        if not (self.conn.conversation.takes_offers and self.conn.receiver.buffered):
            self.worker.job_slot.let_go(self)

    def _offer(self, from_elsewhere=False):
        """To a master that takes offers: FREE for each job more we may hold, while no other master holds us.
        ``from_elsewhere``: from another greenlet than the link's, which may send only between jobs."""
        conversation = self.conn.conversation
        if not conversation.takes_offers or self.worker.job_slot.holder not in (None, self):
            return
        with self._sending_offers:
            if from_elsewhere and not self.between_jobs:
                return
            room = self.worker.credit - conversation.offers - (1 if self.running_job else 0)
            if room > 0:
                self.conn.send(b"".join(conversation.send_free() for _ in range(room)))

    def offer_soon(self):
        """The worker is free again: offer ourselves to our master, from a greenlet of our own (ours
        waits for the master's next line: it sends nothing until that FREE has gone, see _serve_jobs)."""
        if self.conn is not None and self.conn.conversation.takes_offers and not self.worker.stopping.is_set():
            gevent.spawn(self._offer_from_elsewhere)

    def _offer_from_elsewhere(self):
        try:
            if self.conn is not None:  # (the link may have been lost since)
                self._offer(from_elsewhere=True)
        except (OSError, protocol.ProtocolError):
            self.hang_up()

    @staticmethod
    def _refusal(reason):
        why = f"the master refused this worker: {reason.decode('utf-8', 'replace') or 'no reason given'}"
        if reason == auth.UNAUTHORIZED:
            why += " (check --secret-file: it must hold the masters' secret)"
        return why

    def _answer_challenge(self, nonce):
        if self.worker.secret is None:
            raise LinkLost("the master asks for a secret; give this worker --secret-file")
        answer = auth.answer_challenge(self.worker.secret, nonce, self.address)
        self.conn.send_command(protocol.AUTH, answer)

    def _next_line(self, doing):
        event = self.conn.next_event()
        if event is protocol.CONNECTION_CLOSED:
            raise LinkLost(f"the master closed the link while {doing}")
        return event

    def _take_job(self, raw_header, relay):
        """``relay``: the RELAY line a sieci master said before the code (it can stream stdin, send
        files), or None."""
        relayed = relay is not None
        try:
            header = self.conn.start_block(raw_header, max_size=self.worker.max_upload)
            payload = self._read_code()
        except protocol.RemoteProtocolError as error:
            self.conn.refuse(str(error).encode())
            raise
        try:
            job = self._job_of(header, payload, relay)
        except JobRefused as why:
            log.warning("refused a job from master %s: %s", self.name, why)
            if relayed:
                self.conn.send_command(protocol.ERROR, why.reason)
            else:  # a classic master: it relays one block after our answer, whatever it was
                self.conn.send(protocol.encode_command(protocol.ERROR, why.reason),
                               completes=protocol.REFUSAL_TO_CLASSIC)
                self.conn.send(protocol.encode_block(b""), completes=protocol.JOB)
            return
        try:
            self.worker.runner.start()
        except ForkServerError as error:
            self.worker.break_down(str(error))
            raise LinkLost(str(error)) from None
        self.conn.send_command(protocol.RECEIVED)
        self.running_job = True
        try:
            self._offer()  # with credit: the next job comes while this one runs
            self._run_job(header, *job)
        except ForkServerError as error:
            raise LinkLost(f"{error}; it starts afresh for the next job") from None
        finally:
            self.running_job = False

    def _job_of(self, header, payload, relay):
        """What _run_job needs of an upload; JobRefused, with the reason to answer, if it cannot run."""
        relayed = relay is not None
        if self.worker.verifier is not None:
            try:
                self.worker.verifier.verify_upload(header.fields, payload, sent=auth.sent_on(relay))
            except auth.Unauthorized as why:
                raise JobRefused(auth.UNAUTHORIZED, f"unauthorized ({why})") from None
        try:
            upload = upload_format.decode_upload_payload(header, payload)
            tty = stdin_stream.terminal_size(header)
        except protocol.RemoteProtocolError as why:
            raise JobRefused(str(why).encode()) from None
        try:
            args, env = upload_format.decode_arguments(header)
        except protocol.RemoteProtocolError as why:
            raise JobRefused(b"bad arguments or environment", str(why)) from None
        try:
            wanted = returns.decode_returns(header)
        except protocol.RemoteProtocolError as why:
            raise JobRefused(b"bad --return", str(why)) from None
        streamed = upload_format.STDIN_STREAM in header.fields and upload.stdin is None
        if streamed and not relayed:
            raise JobRefused(upload_format.STDIN_NEEDS_RELAY)
        files = self.worker.files.open_for(self.conn, header, upload, relayed)
        return upload.code, args, env, files, wanted, STREAMED if streamed else upload.stdin, tty

    def _read_code(self):
        parts = []
        while True:
            event = self.conn.next_event()
            if isinstance(event, protocol.BlockData):
                parts.append(event.data)
            elif isinstance(event, protocol.BlockEnd):
                return b"".join(parts)
            else:
                raise LinkLost("the master closed the link in the middle of the code")

    def _run_job(self, header, code, args, env, files=None, wanted=None, stdin=None, tty=None):
        """``files``: an fd of the job's files bundle, or None; ``wanted``: the globs of --return;
        ``stdin``: None, bytes, or STREAMED (by the master, in a block after RECEIVED)."""
        filename = header.field(b"name", b"").decode("ascii", "replace")
        started = time.monotonic()
        feeder = StdinFeeder(self.conn) if stdin is STREAMED else None
        if feeder is not None:
            feeder.open(self.worker.keepalive)
        line_buffered = upload_format.STDOUT_ON_TERMINAL in header.fields
        merged = upload_format.STDERR_WITH_STDOUT in header.fields
        fresh = upload_format.FRESH_INTERPRETER in header.fields
        directory = upload_format.RUN_DIRECTORY in header.fields
        with self.worker.runner.run(code, filename, args, env, line_buffered, merged, files, directory,
                                    fresh, stdin, tty) as run:
            watcher = gevent.spawn(self._watch_master) if feeder is None else gevent.spawn(self._feed, feeder, run)
            watcher.link(lambda _: run.kill())
            try:
                if header.extended:
                    send_extended(self.conn, run, self.worker.name, min(HEARTBEAT, self.worker.keepalive / 3),
                                  wanted, self._seal_for(header))
                else:
                    send_classic(self.conn, run, self.worker.name)
                if feeder is not None:
                    self._await_end_of_stdin(feeder, watcher)
            finally:
                watcher.unlink_all()
                master_gone = watcher.ready()
                watcher.kill()
        seconds = time.monotonic() - started
        for listener in self.worker.listeners:
            listener(run.status, seconds)
        if master_gone:
            raise LinkLost("the master hung up while its job ran; the job was stopped")
        log.info("job for %s %s after %.3f s", self.name, run.status.describe(), seconds)

    def _seal_for(self, header):
        """The seal of a signed job's results (see auth.ResultsSeal), or None."""
        nonce = auth.nonce_of(header.fields)
        return auth.ResultsSeal(self.worker.secret, nonce) if self.worker.secret and nonce else None

    def _feed(self, feeder, run):
        """Feed the job its stdin, then watch the master as for any job; returns when the master has gone."""
        try:
            if feeder.feed(run):
                self._watch_master()
        except protocol.RemoteProtocolError as error:
            log.warning("dropping master %s: the job's stdin is malformed: %s", self.name, error)
        except OSError:
            pass

    def _await_end_of_stdin(self, feeder, watcher):
        """The master ends the stdin block once the results have ended, if its client has not ended it
        before: the next line of the link comes after it."""
        gevent.wait([feeder.ended, watcher], count=1, timeout=self.worker.keepalive)
        if not feeder.ended.is_set() and not watcher.ready():
            raise LinkLost(f"the master did not end the job's stdin within {self.worker.keepalive:g} s")

    def _watch_master(self):
        """Returns when the master hangs up, or vanishes, while a job runs.

        What the master says meanwhile (a classic master may send the next
        AVAILABLE) is kept for after the job, as a classic worker would.
        """
        try:
            while self.conn.readable_while_acknowledged(self.worker.keepalive) and self.conn.receive_more():
                if self.conn.receiver.buffered > self._most_buffered():
                    return  # a flood, not a protocol
        except OSError:
            pass

    def _most_buffered(self):
        """What a master may have sent us while a job ran: a line, and the codes of our standing offers."""
        offers = self.conn.conversation.offers if self.conn.conversation.takes_offers else 0
        return protocol.DEFAULT_MAX_LINE + offers * (defaults.MAX_UPLOAD_AHEAD + protocol.DEFAULT_MAX_LINE)
