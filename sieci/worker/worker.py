"""The worker: one link to each master, one job at a time across all of them."""

import collections
import itertools
import logging
import math
import os
import random
import socket
import time

import gevent
import gevent.event
import gevent.lock
import gevent.socket

from sieci import defaults
from sieci.files_store import FilesStore
from sieci.wire import auth, bundle, conversation, protocol
from sieci.wire.address import format_address
from sieci.wire.connection import Connection, tune_socket
from sieci.wire.tls import describe_failure, describe_os_error
from sieci.worker.executor import JobRunner
from sieci.worker.files import WorkerFiles
from sieci.worker.job_results import worker_field
from sieci.worker.link_log import JobNumbers, RedialLog
from sieci.worker.taken_job import LinkLost, TakenJob, read_code

log = logging.getLogger("sieci.worker")

CONNECT_TIMEOUT = 10.0
# A master nearer than this share of a job's length gets no job held ahead (auto credit): a job ahead would
# save it less than a fifth of the worker's time, and could wait behind a long one while another worker idles.
AHEAD_FROM = 0.25
# Jobs' length the jobs held ahead cover beyond a round trip: room for a job or an answer later than usual.
SLACK = 0.5
SHORTER_JOB_WEIGHT = 0.25  # how far each shorter job moves the jobs' length the auto credit assumes
# Round trips seen before the auto credit trusts the shortest: one answer may come late from a busy master.
ROUND_TRIPS_TRUSTED = 3


_worker_numbers = itertools.count(1)


class Worker:
    def __init__(self, masters, limits=None, python=None, max_upload=defaults.MAX_UPLOAD,
                 reconnect_min=defaults.RECONNECT_MIN, reconnect_max=defaults.RECONNECT_MAX,
                 keepalive=defaults.KEEPALIVE, job_user=None, command_prefix=(), fresh_interpreter=False,
                 isolation=None, secret=None, tls=None, name=None, credit=defaults.CREDIT,
                 files_store=defaults.FILES_STORE, files_store_dir=None, environments=None):
        """``secret`` (bytes): answer masters' challenges, and run only jobs
        their clients signed with it. ``tls``: an ssl.SSLContext for clients.
        ``name`` tells clients which worker ran their job (default: host:pid:n).
        ``credit``: the jobs it may hold for a master that takes standing offers, the running one included;
        None: as many as cover the round trip to that master (see auto_credit).
        Jobs' files bundles are kept, ``files_store`` bytes of them at most, in a
        private folder made in ``files_store_dir`` (default: the system's temp folder). ``environments``:
        how jobs' environments are built and kept (an EnvironmentOptions; see environment_run.py)."""
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{next(_worker_numbers)}"
        self.secret = secret
        self.verifier = auth.Verifier(secret) if secret else None
        self.tls = tls
        self.runner = JobRunner(limits, python, job_user, command_prefix, fresh_interpreter, isolation, environments)
        self.max_upload = max_upload
        self.files = WorkerFiles(FilesStore(files_store, files_store_dir), max_upload,
                                 self.runner.limits.disk or bundle.DEFAULT_MAX_SIZE)
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.keepalive = keepalive
        self.credit = credit
        self.job_seconds = None  # how long its jobs take, as the auto credit assumes (see job_length)
        self.job_slot = JobSlot()
        self.listeners = [self._note_job_length]  # callables taking (status, seconds) when a job has ended
        self.stopping = gevent.event.Event()
        self.broken = None  # why it took no more jobs: its fork server cannot start
        self.links = [MasterLink(self, address) for address in masters]
        self.job_slot.on_free.extend(link.offer_soon for link in self.links)
        self._greenlets = []

    def start(self):
        self._greenlets = [gevent.spawn(link.run) for link in self.links]

    def _note_job_length(self, status, seconds):
        self.job_seconds = job_length(self.job_seconds, seconds)

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
        self.round_trip = RoundTrip()
        self._offers_sent_at = collections.deque()  # when each of our standing offers went, oldest first
        self.redials = RedialLog(self.name)
        self.job_numbers = None  # the names of the jobs of the link of the moment (see link_log.py)

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
            log.log(*self.redials.failed(why, delay, time.monotonic(), link_held=failures == 1))
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
        self.job_numbers = JobNumbers(format_address(sock.getsockname()[:2]))
        self.round_trip = RoundTrip()
        self._offers_sent_at.clear()
        log.log(*self.redials.linked(time.monotonic()))
        try:
            self._serve_jobs()
        except LinkLost as why:
            if self.worker.stopping.is_set():
                log.info("unlinked from master %s", self.name)
            return f"lost master {self.name}: {why}"
        except protocol.RemoteProtocolError as error:
            return f"dropping master {self.name}: {error}"
        except OSError as error:
            return f"lost master {self.name}: {describe_os_error(error)}"
        finally:
            self.conn = None
            self.worker.job_slot.let_go(self)
        return f"lost master {self.name}"

    def _serve_jobs(self):
        while not self.worker.stopping.is_set():
            if not self.conn.receiver.buffered:  # (codes that came while a job ran are counted first)
                self.offer()
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
                self.round_trip.answered(self._offers_sent_at.popleft())
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
            # that it may stop a job by hanging up, that it may have us make standing offers, and our name.
            asked_at = time.monotonic()
            self.conn.send_command(protocol.READY, b" ".join([protocol.EXTENDED, conversation.OFFERS_FIELD,
                                                              worker_field(self.worker.name)]))
            line = self._next_line("holding READY")
            self.round_trip.answered(asked_at)
            if line.word in (protocol.ROLLBACK, protocol.ERROR):
                return
            relay = line if line.word == protocol.RELAY else None
            if relay is not None:
                line = self._next_line("after RELAY")
            TakenJob(self, line.raw, relay).take()
        finally:
            self._let_go_of_slot()

    def _take_offered_job(self, raw_header, relay):
        """Run it if the worker is free or ours; BUSY if it became busy for another master meanwhile."""
        if self.worker.stopping.is_set():
            raise LinkLost("the worker is stopping")
        if not self.worker.job_slot.take(self):
            self.conn.start_block(raw_header, max_size=self.worker.max_upload)
            read_code(self.conn)
            self.conn.send_command(protocol.BUSY)
            job = self.job_numbers.next(relay)
            log.debug("job %s for %s: busy with another master's", job.label, self.name, extra=job.fields)
            return
        try:
            TakenJob(self, raw_header, relay).take()
        finally:
            self._let_go_of_slot()

    def _let_go_of_slot(self):
        """Let the worker go after a job, unless our master's next code is already coming in (credit)."""
        if not (self.conn.conversation.takes_offers and self.conn.receiver.buffered):
            self.worker.job_slot.let_go(self)

    def offer(self, from_elsewhere=False):
        """To a master that takes offers: FREE for each job more we may hold, while no other master holds us.
        ``from_elsewhere``: from another greenlet than the link's, which may send only between jobs."""
        conversation = self.conn.conversation
        if not conversation.takes_offers or self.worker.job_slot.holder not in (None, self):
            return
        with self._sending_offers:
            if from_elsewhere and not self.between_jobs:
                return
            room = self.credit() - conversation.offers - (1 if self.running_job else 0)
            if room > 0:
                self._offers_sent_at.extend([time.monotonic()] * room)
                self.conn.send(b"".join(conversation.send_free() for _ in range(room)))

    def credit(self):
        """The jobs we may hold for our master now, the running one included. The auto credit holds
        none ahead for a worker of several masters: jobs held for one keep the worker from the others
        (JobSlot) for as long as that master's next code comes first, which a far master with short
        jobs would do forever."""
        if self.worker.credit is not None:
            return self.worker.credit
        if self.round_trip.seen < ROUND_TRIPS_TRUSTED or len(self.worker.links) > 1:
            return 1
        return auto_credit(self.round_trip.shortest, self.worker.job_seconds)

    def offer_soon(self):
        """The worker is free again: offer ourselves to our master, from a greenlet of our own (ours
        waits for the master's next line: it sends nothing until that FREE has gone, see _serve_jobs)."""
        if self.conn is not None and self.conn.conversation.takes_offers and not self.worker.stopping.is_set():
            gevent.spawn(self._offer_from_elsewhere)

    def _offer_from_elsewhere(self):
        try:
            if self.conn is not None:  # (the link may have been lost since)
                self.offer(from_elsewhere=True)
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


def job_length(assumed, seconds):
    """The jobs' length to assume once one took ``seconds``: a longer job counts at once, shorter ones a
    quarter of the way each, so that jobs that turn long stop the auto credit from holding jobs behind them
    sooner than jobs that turn short start it."""
    if assumed is None or seconds > assumed:
        return seconds
    return assumed + (seconds - assumed) * SHORTER_JOB_WEIGHT


def auto_credit(round_trip, job_seconds):
    """The jobs to hold for a master ``round_trip`` seconds away when jobs take ``job_seconds``: the running
    one and, once the round trip is worth it (AHEAD_FROM), as many behind it as run in a round trip and
    SLACK more, so that the code of the next crosses the network while they run. A job held behind waits
    for about a round trip's work: what it would have lost travelling to a worker that frees up."""
    if round_trip is None or not job_seconds or round_trip < AHEAD_FROM * job_seconds:
        return 1
    return min(defaults.MAX_CREDIT, 1 + math.ceil(round_trip / job_seconds + SLACK))


class RoundTrip:
    """A link's round trip to its master, in seconds: the shortest wait yet from our READY or FREE to the
    master's answer. It answers a READY at once, and a FREE as soon as it has a job: an answer read late
    only makes a wait longer."""

    def __init__(self):
        self.shortest = None
        self.seen = 0

    def answered(self, since):
        """The master answered what we sent at ``since`` (time.monotonic())."""
        waited = time.monotonic() - since
        self.seen += 1
        if self.shortest is None or waited < self.shortest:
            self.shortest = waited


class JobSlot:
    """One job at a time, whichever master it is for: the link that holds the worker now.

    A link holds it from READY (or from taking a code sent against a standing
    offer) until its job's results have gone, or until ROLLBACK. When it is
    let go, ``on_free`` callables run: links to masters that take offers
    then offer themselves again.
    """

    def __init__(self):
        self.holder = None
        self.on_free = []
        self._freed = gevent.event.Event()
        self._freed.set()

    def take(self, link):
        """Hold it for ``link`` if no other link does; whether it now does."""
        if self.holder not in (None, link):
            return False
        self.holder = link
        self._freed.clear()
        return True

    def wait_and_take(self, link):
        while not self.take(link):
            self._freed.wait()

    def let_go(self, link):
        if self.holder is link:
            self.holder = None
            self._freed.set()
            for callback in self.on_free:
                callback()
