"""The master's worker links, each served by a greenlet of its own: a job it takes is handed over, its
results relayed (worker_link.py), and the job finished; the dispatcher (dispatch.py) says which."""

import contextlib
import logging
import time

import gevent
import gevent.event

from sieci.master import ports
from sieci.master.job import ClientGone
from sieci.master.worker_link import WorkerLink, WorkerLost
from sieci.wire import auth, conversation, files_transfer, protocol
from sieci.wire.address import format_address
from sieci.wire.connection import Connection, SpeaksTLS, tune_socket

log = logging.getLogger("sieci.master")

MAX_WORKER_NAME = 200  # characters of the name a worker gives, shown to people


class WorkerLinks:
    """The workers linked to the master (``links``), served for ``dispatcher``. ``verifier`` (an
    auth.Verifier, or None) makes a new link prove itself, at the workers' port's ``identity`` (set
    once the port is bound); ``files``: the store of jobs' bundles; ``splice_pipes``: for big raw
    chunks, or None; a worker has ``client_timeout`` seconds to take a job's code."""

    def __init__(self, dispatcher, verifier, files, splice_pipes, client_timeout, keepalive, plaintext_only=True):
        self.dispatcher = dispatcher
        self.verifier = verifier
        self.identity = None
        self.files = files
        self.splice_pipes = splice_pipes
        self.client_timeout = client_timeout
        self.keepalive = keepalive
        self.plaintext_only = plaintext_only
        self.links = set()
        self.departures = []  # called with each link that was linked and went away
        self._links_changed = gevent.event.Event()

    def wait_for(self, count, timeout, exactly=False):
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

    def handle_worker(self, sock, address):
        tune_socket(sock, self.keepalive)
        link = WorkerLink(Connection(sock, conversation.link_conversation(protocol.MASTER)), format_address(address),
                          self.dispatcher.workers.offered, self._relay_fields)
        link.conn.plaintext_only = self.plaintext_only
        try:
            if self.verifier is not None:
                self._challenge(link)  # before it counts, or shows in the status, as a worker
            self.links.add(link)
            self._note_links_changed()
            log.info("worker %s joined (%d linked)", link.name, len(self.links))
            self.dispatcher.workers.joined(link)
            self._serve(link)
        except WorkerLost as why:
            log.warning("worker %s lost: %s", link.name, why)
        except ClientGone as why:
            log.info("worker %s: its client left (%s); dropping the link to stop the job", link.name, why)
            link.hang_up()
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
            if link in self.links:
                self.links.discard(link)
                for departed in self.departures:
                    departed(link)
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
        self.verifier.verify_answer(nonce, line.reason, self.identity, link.conn.local_host)

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
                fields = line.arguments
                link.extended = protocol.EXTENDED in fields
                link.makes_offers = conversation.OFFERS_FIELD in fields
                link.worker_name = worker_name(fields) or link.worker_name
                job = self.dispatcher.job_for(link)
                if job is None:
                    continue
                line = self._hand_over(job, link)
            else:  # (the conversation let only an answer to a code through)
                job = link.job
            if self._accepted(job, link, line):
                job.status = link.relay_results(job, self.splice_pipes)
                if job.stdin is not None and not job.stdin.cut_off(self.client_timeout):
                    raise WorkerLost(f"it took no stdin for {self.client_timeout:g} s after its job ended")
                self.dispatcher.done(job, link)

    def _hand_over(self, job, link):
        """Send the job to the worker whose READY took it; its answer."""
        with self._answer_due(link):
            if link.extended:  # a sieci worker: it learns that it may take stdin and files from us
                fields = self._relay_fields(job)
                relay = (link.state.offering(protocol.RELAY, fields) if self.dispatcher.workers.invites_offers(link)
                         else link.state.send(protocol.RELAY, fields))
                link.conn.send_pieces([relay, job.upload], completes=protocol.JOB)
            else:
                link.conn.send(job.upload, completes=protocol.JOB)
            link_job = link.number_code()
            self.dispatcher.notify("dispatched", job, "dispatched to worker %s as %s after %.3f s in the queue",
                                   link.name, link_job, job.dispatched_at - job.queued_at, link_job=link_job)
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
        if job.cancellation is not None and link.extended:
            raise ClientGone("the job was cancelled while it waited on the worker")
        if job.stdin is not None and link.extended:
            job.stdin.open(link.conn)
        elif job.stdin is not None:
            job.stdin.drop()  # a classic worker: it would take the block for its next command
        if job.client is not None:
            job.queue_for_client(job.command_with_id(protocol.RECEIVED))
        self.dispatcher.accepted(job, link)
        return True

    def _relay_fields(self, job):
        """RELAY names the job (``job=<id>``), for the worker's log lines about it. With a secret, it also
        says when the master sent a signed job, so that the worker checks its signature's freshness
        against that: the job may have waited longer than the signature's window."""
        sent = auth.stamp_sending(self.verifier.secret, job.fields) if self.verifier is not None else None
        return b" ".join(field for field in (protocol.job_id_field(job.id), sent) if field)

    def _send_files(self, job, link, need):
        """The worker lacks the job's files bundle: send it from the store; the worker's next word."""
        files_transfer.check_need(need, job.files)
        files_transfer.send(link.conn, self.files, job.files)
        return link.next_line()


def worker_name(ready_fields):
    """The name a sieci worker gives on READY (``worker=<name>``), for people; None if it gives none."""
    name = protocol.field_value(ready_fields, protocol.WORKER_FIELD)
    return name.decode("utf-8", "replace")[:MAX_WORKER_NAME] if name else None
