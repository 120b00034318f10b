"""The master's dispatch, in one place: the queue of jobs, the idle workers asked for them, each job's end.

``enqueue`` puts a job at the back of ``pending_jobs`` and offers it to idle
workers (``AVAILABLE``, FANOUT of them per waiting job, each from a greenlet
of its own; all of them once a job has waited WIDEN_AFTER, in case those
asked are busy for other masters). Any ``READY`` takes the job at the head
of the queue (``job_for``), so the first wins; a ``READY`` that finds the
queue empty gets ``ROLLBACK``.
"""

import collections
import itertools
import logging
import time

import gevent
import gevent.event

from . import protocol, upload_format
from .kept_jobs import new_job_id
from .results import Status
from .stdin_relay import StdinRelay

log = logging.getLogger("sieci.master")

FANOUT = 2  # idle workers asked per waiting job: the first READY wins, so two race
WIDEN_AFTER = 0.05  # seconds; then a job still waiting has every idle worker asked
# Seconds; then a sieci client whose job still waits is told QUEUED: well within its --connect-timeout
# (10 s by default), since a client that waits less may pass over a master with a queue.
QUEUED_AFTER = 0.2

class ClientGone(Exception):
    """The client's connection failed while we wrote to it."""


class Job:
    def __init__(self, job_id, upload, client, client_name, header):
        self.id = job_id  # 16 hex digits: see kept_jobs.new_job_id
        self.upload = upload  # the block to forward: header, code, terminator
        self.extended = header.extended  # a sieci client's: it is told QUEUED while the job waits
        self.files = upload_format.files_wanted(header)  # its files bundle, which the master holds for it
        self.stdin = StdinRelay() if upload_format.STDIN_STREAM in header.fields else None
        self.client = client
        self.client_name = client_name
        self.worker = None
        self.cancelled = False
        self.withdrawn = False  # cancelled by request (CANCEL <id>)
        self.spool = None  # a kept_jobs.Spool: a detached job's results are kept for clients that attach
        self.detaching = upload_format.DETACH_FIELD in header.fields
        self.kept = self.detaching or upload_format.KEEP_FIELD in header.fields
        self.accepted = False  # the worker said RECEIVED: the code may have run
        self.results_header = None
        self.relayed_mid_line = False
        self.bytes_relayed = 0
        self.finished = gevent.event.Event()
        self.queued_at = time.monotonic()
        self.dispatched_at = None
        self.finished_at = None
        self.end_reason = ""  # why it failed or was cancelled, when the master knows
        self._unsent = []

    def detach(self):
        """Its client has left, told the job's id: the job runs on for clients that attach."""
        self.client = None
        self.extended = False

    def relay(self, data, last=False):
        """Bytes of the job's results (``last``: their end), to its client and its spool."""
        if self.spool is not None:
            self.spool.write(data, last)
        if last:
            self.send_to_client(data, completes=protocol.JOB)
        else:
            self.queue_for_client(data)

    def command_with_id(self, word):
        """Command ``word`` to a sieci client, which is told the job's id with it."""
        reason = protocol.job_id_field(self.id) if self.extended else b""
        return self.client.conversation.send(word, reason)

    def send_to_client(self, data, completes=None):
        """Relay to the client; once it has gone, or the job has ended for it (failed while its
        results came), the rest is dropped. ``completes``: as Connection.send's."""
        if self.finished.is_set() or self.client is None:
            return
        if completes is not None:
            self.client.conversation.sending(completes)
        self._unsent.append(data)
        self.flush()

    def queue_for_client(self, data):
        """Relay to the client with the next flush: what arrived together goes in one send."""
        self._unsent.append(data)

    def flush(self):
        data, self._unsent = b"".join(self._unsent), []
        if self.cancelled or self.finished.is_set() or not data or self.client is None:
            return
        try:
            self.client.send(data)
        except OSError as error:
            self.client_failed(error)

    def send_spliced(self, pipe):
        """Relay to the client what ``pipe`` (a relay.SplicePipe) holds; False if the client has gone."""
        try:
            pipe.drain(self.client.sock.fileno())
        except OSError as error:
            self.client_failed(error)
            return False
        return True

    def client_failed(self, error):
        """A send to the client failed: the rest of the results has nowhere to go (but to a kept job's spool)."""
        if self.spool is not None:
            self.detach()
            return
        self.cancelled = True
        if self.worker is not None and self.worker.stoppable:
            raise ClientGone(str(error))

    def tell_failed(self, reason):
        """Tell the client the job failed, in whatever form still fits."""
        if self.results_header is None:
            if self.client is not None:
                self.send_to_client(self.client.conversation.refuse(reason))
        elif self.worker.in_raw_chunk:
            pass  # the client counts the chunk's bytes: a status now would be taken for output
        elif self.results_header.extended:
            lost = Status(b"error", b"lost", reason)
            ending = b"\n" if self.relayed_mid_line else b""
            self.relay(ending + lost.encode() + self.results_header.terminator + b"\n", last=True)


class Dispatcher:
    """The jobs waiting (``pending_jobs``) and running (``active_jobs``), the workers
    idle and asked, and the tally of how jobs ended. ``listeners`` are callables
    taking (event, job); events: queued, dispatched, requeued, stopping, abandoned,
    and at the end one of done, failed, cancelled."""

    def __init__(self, max_queue):
        self.max_queue = max_queue
        self.pending_jobs = collections.deque()
        self.active_jobs = set()
        self.jobs_by_id = {}  # the active jobs
        self.idle_links = {}  # insertion-ordered set: the longest idle first
        self.asked_links = set()  # AVAILABLE sent, no answer yet
        self.stopping = False
        self.totals = {"done": 0, "failed": 0, "cancelled": 0, "wait_seconds": 0.0, "run_seconds": 0.0}
        self.listeners = []

    def refusal(self):
        """Why a new job cannot be taken now, or None."""
        if self.stopping:
            return "the master is shutting down"
        if len(self.pending_jobs) >= self.max_queue:
            return f"queue full ({self.max_queue} jobs waiting)"
        return None

    def new_job(self, upload, client, client_name, header):
        return Job(new_job_id(), upload, client, client_name, header)

    def enqueue(self, job):
        self.pending_jobs.append(job)
        self.active_jobs.add(job)
        self.jobs_by_id[job.id] = job
        self.notify("queued", job, "queued from client %s (%d bytes, %d in queue)",
                    job.client_name, len(job.upload), len(self.pending_jobs))
        self._offer()
        gevent.spawn_later(WIDEN_AFTER, self._offer_widely, job)
        if job.extended:
            gevent.spawn_later(QUEUED_AFTER, self._tell_queued, job)

    def _offer(self, everyone=False):
        """Ask FANOUT idle workers per waiting job (or, for a job that waited, every one)."""
        wanted = len(self.idle_links) if everyone else len(self.pending_jobs) * FANOUT - len(self.asked_links)
        for link in list(itertools.islice(self.idle_links, max(0, wanted))):
            del self.idle_links[link]
            self.asked_links.add(link)
            gevent.spawn(link.send_quietly, link.state.send(protocol.AVAILABLE))

    def _offer_widely(self, job):
        """The job still waits: the workers asked may be busy for other masters, so ask all."""
        if job.worker is None and not job.finished.is_set():
            self._offer(everyone=True)

    @staticmethod
    def _tell_queued(job):
        """The job still waits: tell its sieci client, which then stops counting its
        --connect-timeout (the master is there, and the job waits for a worker)."""
        if job.worker is None and not job.finished.is_set():
            job.send_to_client(job.command_with_id(protocol.QUEUED))

    def make_idle(self, link):
        self.idle_links[link] = None
        if self.pending_jobs:
            self._offer()

    def job_for(self, link):
        """The worker said READY: the job at the head of the queue is now its own;
        with none, it is rolled back and idle again (None)."""
        self.asked_links.discard(link)
        if not self.pending_jobs:
            link.roll_back()
            self.make_idle(link)
            return None
        job = self.pending_jobs.popleft()
        job.worker = link
        link.job = job
        job.dispatched_at = time.monotonic()
        return job

    def refused(self, job, link, reason):
        """The worker said ERROR to the job: it fails, and the worker is idle again."""
        link.job = None
        self.fail(job, b"the worker refused the job: " + reason)
        self.make_idle(link)

    def done(self, job, link):
        """The job's results have all been relayed: the worker is idle again."""
        link.job = None
        link.jobs_done += 1
        if not job.finished.is_set():  # else it was failed (the master stopping) while its results came
            self.finish(job, "cancelled" if job.cancelled else "done")
        self.make_idle(link)

    def cancel(self, job):
        """Its client has left: a queued job is dropped, a running one stopped if its worker can."""
        job.cancelled = True
        if job.worker is None:
            self.pending_jobs.remove(job)
            self.finish(job, "cancelled", "the client left while it was queued")
        elif job.worker.stoppable:
            self.notify("stopping", job, "stopping on worker %s: its client left", job.worker.name)
            job.worker.hang_up()
        else:
            self.notify("abandoned", job, "left to classic worker %s to run out: its client left", job.worker.name)

    def withdraw(self, job):
        """Cancelled by request: a queued job is dropped, a running one stopped; its client, if any,
        is told. Why it cannot be (a classic worker runs it, which cannot be stopped), or None."""
        if job.worker is None:
            self.pending_jobs.remove(job)
            self.fail(job, b"cancelled by request", "cancelled")
        elif job.worker.stoppable:
            job.withdrawn = True
            self.notify("stopping", job, "stopping on worker %s: cancelled by request", job.worker.name)
            job.worker.hang_up()
        else:
            return "it runs on a classic worker, which cannot be stopped"
        return None

    def link_gone(self, link):
        """The link is gone: requeue its job if it never started, else fail it."""
        self.idle_links.pop(link, None)
        self.asked_links.discard(link)
        job, link.job = link.job, None
        if job is None or job.finished.is_set():
            return
        if job.cancelled:
            self.finish(job, "cancelled")
        elif not job.accepted and not self.stopping:
            job.worker = None
            job.dispatched_at = None
            self.pending_jobs.appendleft(job)
            self.notify("requeued", job, "back at the head of the queue: worker %s was lost before accepting it",
                        link.name)
            self._offer()
        elif job.withdrawn:
            self.fail(job, b"cancelled by request", "cancelled")
        else:
            self.fail(job, b"worker lost")

    def stop(self, grace):
        """Fail the queued jobs, give the running ones ``grace`` seconds to finish, then fail them too."""
        self.stopping = True
        while self.pending_jobs:
            self.fail(self.pending_jobs.popleft(), b"the master is shutting down")
        running = [job.finished for job in self.active_jobs]
        if running:
            log.info("waiting up to %g s for %d running job(s)", grace, len(running))
            gevent.wait(running, timeout=grace)
        for job in list(self.active_jobs):
            self.fail(job, b"the master stopped before the job ended")

    def finish(self, job, outcome, detail=""):
        now = time.monotonic()
        ran = now - job.dispatched_at if job.dispatched_at else 0.0
        job.finished_at = now
        job.end_reason = detail
        self.totals[outcome] += 1
        if outcome == "done":
            self.totals["wait_seconds"] += job.dispatched_at - job.queued_at
            self.totals["run_seconds"] += ran
        self.active_jobs.discard(job)
        self.jobs_by_id.pop(job.id, None)
        if job.spool is not None:
            job.spool.end(outcome, detail)
        job.finished.set()
        self.notify(outcome, job, "%s%s after %.3f s (%.3f s on a worker, %d bytes of results)",
                    outcome, detail and f" ({detail})", now - job.queued_at, ran, job.bytes_relayed)

    def fail(self, job, reason, outcome="failed"):
        """End the job for its client with ``reason``, in whatever form still fits."""
        try:
            job.tell_failed(reason)
        except ClientGone:
            pass
        self.finish(job, outcome, reason.decode("utf-8", "replace"))

    def notify(self, event, job, message, *args):
        """Log one event in a job's life, as one line with the job's id, and tell the listeners."""
        log.info("job %s " + message, job.id, *args, extra={"job": job.id, "event": event})
        for listener in self.listeners:
            listener(event, job)
