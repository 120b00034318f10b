"""The master: takes jobs from clients, queues them, hands each to a worker.

Its parts: the client port (intake.py) takes and verifies uploads; the
dispatcher (dispatch.py) queues jobs and offers them to idle workers; each
worker link is served by its own greenlet, here: a job it takes is handed
over, its results relayed (worker_link.py), and the job finished.
"""

import contextlib
import logging
import socket
import time

import gevent
import gevent.event
from gevent.server import StreamServer

from sieci.wire import auth, files_transfer, conversation, protocol, status
from sieci import defaults, splice
from sieci.master import dispatch, ports
from sieci.wire.address import format_address
from sieci.wire.connection import Connection, SpeaksTLS, tune_socket
from sieci.files_store import FilesStore
from sieci.master.intake import Intake
from sieci.master.kept_jobs import KeptJobs
from sieci.master.job import ClientGone
from sieci.master.worker_link import WorkerLink, WorkerLost

log = logging.getLogger("sieci.master")

class Master:
    def __init__(self, workers_address, clients_address, max_upload=defaults.MAX_UPLOAD,
                 client_timeout=defaults.CLIENT_TIMEOUT, max_queue=defaults.MAX_QUEUE, keepalive=defaults.KEEPALIVE,
                 secret=None, tls=None, names=(), max_unverified=defaults.MAX_UNVERIFIED,
                 max_connections_per_address=defaults.MAX_CONNECTIONS_PER_ADDRESS, files_store=defaults.FILES_STORE,
                 files_store_dir=None, keep_output=defaults.KEEP_OUTPUT, max_kept_output=defaults.MAX_KEPT_OUTPUT,
                 pipelined=True, max_new_connections=defaults.MAX_NEW_CONNECTIONS):
        """``secret`` (bytes) makes every worker and client prove they hold it, in
        signatures meant for this master (reached at its own address or host name,
        or at one of ``names``: see auth.Identity); ``tls`` (an ssl.SSLContext for
        servers) encrypts both ports. Uploads not yet verified may hold at most
        ``max_unverified`` bytes together (their first lines too), one address may have at most
        ``max_connections_per_address`` client connections open, and at most
        ``max_new_connections`` (and a quarter of the open-files limit) may wait for their request at
        once, all addresses together (see intake.Newcomers). Jobs' files bundles
        are kept, ``files_store`` bytes of them at most, in a private folder made in
        ``files_store_dir`` (default: the system's temp folder). Detached jobs' results are kept
        ``keep_output`` seconds after they end, ``max_kept_output`` bytes of them at most, in a
        private folder made there too (see kept_jobs.py). ``pipelined``: keep workers from idling a round
        trip between jobs (see link.py); off, jobs are dispatched as the classic master did."""
        self.client_timeout = client_timeout
        self.keepalive = keepalive
        self.verifier = auth.Verifier(secret) if secret else None
        self.names = names
        self.tls = tls
        self.started_at = time.monotonic()
        self.links = set()
        self._links_changed = gevent.event.Event()
        self.dispatcher = dispatch.Dispatcher(max_queue, pipelined, client_timeout)
        self.files = FilesStore(files_store, files_store_dir)
        self.dispatcher.listeners.append(self._release_files)
        self.kept = KeptJobs(max_kept_output, keep_output, files_store_dir)
        self.intake = Intake(self.dispatcher, lambda: status.snapshot(self), max_upload, max_unverified,
                             max_connections_per_address, client_timeout, keepalive, self.verifier,
                             plaintext_only=tls is None, files=self.files, kept=self.kept,
                             max_newcomers=min(max_new_connections, _open_files_limit() // 4))
        self._worker_identity = None  # auth.Identity of the workers' port, once it is bound
        # TLS bytes are not ours to splice
        self.splice_pipes = splice.SplicePipes() if splice.AVAILABLE and not tls else None
        self.worker_server = StreamServer(workers_address, ports.behind_tls(self.handle_worker, "worker", tls,
                                                                            client_timeout))
        self.client_server = StreamServer(clients_address, ports.behind_tls(self.intake.handle_client, "client", tls,
                                                                            client_timeout))

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

    def _note_links_changed(self):
        changed, self._links_changed = self._links_changed, gevent.event.Event()
        changed.set()

    def start(self):
        host_names = [socket.gethostname(), socket.getfqdn()]  # before listening: a lookup may take a while
        self.worker_server.start()
        self.client_server.start()
        self.intake.identity = auth.Identity(self.client_server.address[1], self.names, host_names)
        self._worker_identity = auth.Identity(self.worker_server.address[1], self.names, host_names)
        log.info("master listening for workers on %s and for clients on %s",
                 format_address(self.workers_address), format_address(self.clients_address))

    def stop(self, grace=defaults.GRACE):
        """Stop taking jobs, fail the queued ones, let running ones finish."""
        self.client_server.close()
        self.worker_server.close()
        self.dispatcher.stop(grace)
        for link in list(self.links):
            link.hang_up()
        gevent.joinall([link.greenlet for link in self.links], timeout=grace)
        if self.splice_pipes is not None:
            self.splice_pipes.close()
        self.files.close()
        self.kept.close()

    def _release_files(self, event, job):
        """A job that has ended no longer needs its files bundle kept."""
        if event in ("done", "failed", "cancelled") and job.files is not None:
            self.files.release(job.files.digest)

    # --- one worker's link: offered jobs (see dispatch.py), handed over, results relayed

    def handle_worker(self, sock, address):
        tune_socket(sock, self.keepalive)
        link = WorkerLink(Connection(sock, conversation.link_conversation(protocol.MASTER)), format_address(address),
                          self.dispatcher.workers.offered, self._relay_fields)
        link.conn.plaintext_only = self.tls is None
        try:
            if self.verifier is not None:
                self._challenge(link)  # before it counts, or shows in the status, as a worker
            self.links.add(link)
            self._note_links_changed()
            log.info("worker %s joined (%d linked)", link.name, len(self.links))
            self.dispatcher.workers.make_idle(link)
            self._serve(link)
        except WorkerLost as why:
            log.warning("worker %s lost: %s", link.name, why)
        except ClientGone as why:
            log.info("worker %s: its client left (%s); dropping the link to stop the job", link.name, why)
        except protocol.RemoteProtocolError as error:
            log.warning("worker %s dropped: %s", link.name, error)
        except auth.Unauthorized as why:
            log.warning("worker %s refused: unauthorized (%s)", link.name, why)
            link.send_quietly(link.state.refuse(auth.UNAUTHORIZED))
        except SpeaksTLS:
            ports.tell_speaks_tls(link.conn, "worker", link.name)
        except OSError as error:
            log.warning("worker %s lost: %s", link.name, error)
        except Exception:
            log.exception("worker %s: unexpected error", link.name)
        finally:
            self.links.discard(link)
            self._note_links_changed()
            link.state.close()
            sock.close()
            self.dispatcher.link_gone(link)

    def _challenge(self, link):
        """Make a new link prove it holds the secret before it is given anything."""
        nonce = self.verifier.new_challenge()
        link.conn.send_command(protocol.CHALLENGE, nonce)
        link.conn.settimeout(self.client_timeout)
        try:
            line = link.conn.next_event()  # only AUTH is legal
        except (TimeoutError, protocol.RemoteProtocolError):
            raise auth.Unauthorized("no answer to the challenge") from None
        link.conn.settimeout(None)
        if line is protocol.CONNECTION_CLOSED:
            raise auth.Unauthorized("no answer to the challenge")
        self.verifier.verify_answer(nonce, line.reason, self._worker_identity, link.conn.local_host)

    def _serve(self, link):
        """Each READY takes the job at the head of the queue; a worker that makes standing offers
        answers the codes sent against them. A job it takes is handed over, its results relayed,
        and the job finished; until the worker leaves."""
        while True:
            line = link.next_line()
            if line is protocol.CONNECTION_CLOSED:
                log.info("worker %s left", link.name)
                return
            if line.word == protocol.READY:
                fields = line.raw.split()[1:]
                link.stoppable = protocol.EXTENDED in fields
                link.makes_offers = conversation.OFFERS_FIELD in fields
                job = self.dispatcher.job_for(link)
                if job is None:
                    continue
                line = self._hand_over(job, link)
            else:  # (the conversation let only an answer to a code through)
                job = link.job
            if self._accepted(job, link, line):
                link.relay_results(job, self.splice_pipes)
                if job.stdin is not None and not job.stdin.cut_off(self.client_timeout):
                    raise WorkerLost(f"it took no stdin for {self.client_timeout:g} s after its job ended")
                self.dispatcher.done(job, link)

    def _hand_over(self, job, link):
        """Send the job to the worker whose READY took it; its answer."""
        with self._answer_due(link):
            if link.stoppable:  # a sieci worker: it learns that it may take stdin and files from us
                fields = self._relay_fields(job)
                relay = (link.state.offering(protocol.RELAY, fields) if self.dispatcher.workers.invites_offers(link)
                         else link.state.send(protocol.RELAY, fields))
                link.conn.send_pieces([relay, job.upload], completes=protocol.JOB)
            else:
                link.conn.send(job.upload, completes=protocol.JOB)
            self.dispatcher.notify("dispatched", job, "dispatched to worker %s after %.3f s in the queue",
                                   link.name, job.dispatched_at - job.queued_at)
            return link.next_line()

    @contextlib.contextmanager
    def _answer_due(self, link):
        """A worker must take the code (and the files it asks for) as promptly as a client must send it,
        or be dropped (the job goes back to the queue): READY, then silence, held it for ever."""
        link.conn.settimeout(self.client_timeout)
        try:
            yield
        except TimeoutError:
            raise WorkerLost(f"it did not accept the job within {self.client_timeout:g} s") from None
        finally:
            link.conn.settimeout(None)

    def _accepted(self, job, link, line):
        """The worker's answer to the job's code (after the files it lacked, if it says NEED):
        True once it has accepted it (RECEIVED)."""
        link.answered()
        if line is not protocol.CONNECTION_CLOSED and line.word == protocol.NEED:
            with self._answer_due(link):
                line = self._send_files(job, link, line)
        if line is protocol.CONNECTION_CLOSED:
            raise WorkerLost("closed before it accepted the job")
        if line.word == protocol.ERROR:
            self.dispatcher.refused(job, link, line.reason)
            return False
        if line.word == protocol.BUSY:
            self.dispatcher.busy(job, link)
            return False
        if job.cancellation is not None and link.stoppable:
            raise ClientGone("the job was cancelled while it waited on the worker")
        if job.stdin is not None and link.stoppable:
            job.stdin.open(link.conn)
        elif job.stdin is not None:
            job.stdin.drop()  # a classic worker: it would take the block for its next command
        if job.client is not None:
            job.queue_for_client(job.command_with_id(protocol.RECEIVED))
        self.dispatcher.accepted(job, link)
        return True

    def _relay_fields(self, job):
        """With a secret, RELAY says when the master sent a signed job, so that the worker checks its
        signature's freshness against that: the job may have waited longer than the signature's window."""
        return (auth.stamp_sending(self.verifier.secret, job.fields) or b"") if self.verifier is not None else b""

    def _send_files(self, job, link, need):
        """The worker lacks the job's files bundle: send it from the store; the worker's next word."""
        files_transfer.check_need(need, job.files)
        files_transfer.send(link.conn, self.files, job.files)
        return link.next_line()


def _open_files_limit():
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
