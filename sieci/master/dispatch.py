"""The master's dispatch, in one place: the queue of jobs, the idle workers asked for them, each job's end.

``enqueue`` puts a job at the back of ``pending_jobs``. Workers that make
standing offers (see wire/conversation.py) are sent it at once, if one has an offer
standing. Else it is offered to idle workers (``AVAILABLE``, FANOUT of them
per waiting job, each from a greenlet of its own; all of them once a job
has waited WIDEN_AFTER, in case those asked are busy for other masters),
and then to workers running one of our jobs, which answer after it (asking
ahead). Any ``READY`` takes the job at the head of the queue (``job_for``),
so the first wins; a ``READY`` that finds the queue empty gets ``ROLLBACK``.
"""

import collections
import logging
import time

import gevent

from sieci import defaults
from sieci.master.job import Cancellation, ClientGone, Job, JobState
from sieci.master.kept_jobs import new_job_id
from sieci.master.worker_pool import WorkerPool
from sieci.wire import protocol

log = logging.getLogger("sieci.master")

WIDEN_AFTER = 0.05  # seconds; then a job still waiting has every idle worker asked
# Seconds; then a sieci client whose job still waits is told QUEUED: well within its --connect-timeout
# (10 s by default), since a client that waits less may pass over a master with a queue.
QUEUED_AFTER = 0.2


class Dispatcher:
    """The jobs waiting (``pending_jobs``) and not yet ended (``active_jobs``), the
    workers that take them (``workers``, a WorkerPool), and the tally of how jobs ended. ``listeners``
    are callables taking (event, job); events: queued, dispatched, requeued, stopping,
    abandoned, and at the end one of done, failed, cancelled."""

    def __init__(self, max_queue, pipelined=True, answer_timeout=defaults.CLIENT_TIMEOUT):
        """``pipelined``: ask workers ahead, and have sieci workers make standing offers; ``answer_timeout``:
        seconds a worker may take to answer a code sent against its offer, once the jobs before it ended."""
        self.max_queue = max_queue
        self.pending_jobs = collections.deque()
        self.active_jobs = set()
        self.jobs_by_id = {}  # the active jobs
        self.workers = WorkerPool(self.pending_jobs, pipelined, answer_timeout, self.notify)
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
                    job.client_name, job.upload_size, len(self.pending_jobs))
        self._dispatch()
        gevent.spawn_later(WIDEN_AFTER, self._ask_widely, job)
        if job.extended and job.client is not None:
            gevent.spawn_later(QUEUED_AFTER, self._tell_queued, job)

    def _dispatch(self):
        """Send waiting jobs to workers with standing offers, then ask workers for the rest."""
        self.workers.send_offered()
        self.workers.ask(len(self.pending_jobs))

    def _ask_widely(self, job):
        """The job still waits: the workers asked may be busy for other masters, so ask all."""
        if job.state is JobState.QUEUED:
            self.workers.ask(len(self.pending_jobs), everyone=True)

    @staticmethod
    def _tell_queued(job):
        """The job still waits: tell its sieci client, which then stops counting its
        --connect-timeout (the master is there, and the job waits for a worker)."""
        if job.state is JobState.QUEUED and job.client is not None:
            job.send_to_client(job.command_with_id(protocol.QUEUED))

    def job_for(self, link):
        """The worker said READY: the job at the head of the queue is now its own;
        with none, it is rolled back and idle again (None)."""
        self.workers.answered(link)
        if not self.pending_jobs:
            link.roll_back(offering=self.workers.invites_offers(link))
            self.workers.make_idle(link)
            return None
        job = self.pending_jobs.popleft()
        self.workers.give(job, link)
        return job

    def accepted(self, job, link):
        """The worker said RECEIVED: the job runs. A worker that takes no offers may be asked ahead."""
        job.move_to(JobState.RUNNING)
        job.drop_upload()
        if self.workers.running(link, job):
            self.workers.ask(len(self.pending_jobs))

    def refused(self, job, link, reason):
        """The worker said ERROR to the job: it fails, and the worker is idle again."""
        self._let_go(job, link)
        self.fail(job, b"the worker refused the job: " + reason)
        self.workers.make_idle(link)

    def busy(self, job, link):
        """The worker, which made a standing offer, became busy for another master: the job waits again."""
        self._let_go(job, link)
        self._lost(job, link, "busy for another master")
        self.workers.make_idle(link)

    def done(self, job, link):
        """The job's results have all been relayed: the worker is idle again."""
        self._let_go(job, link)
        link.jobs_done += 1
        if not job.ended:  # else it was failed (the master stopping) while its results came
            cancelled = job.cancellation is Cancellation.CLIENT_LEFT
            self.finish(job, JobState.CANCELLED if cancelled else JobState.DONE)
        self.workers.make_idle(link)

    def _let_go(self, job, link):
        link.jobs.remove(job)
        self.workers.let_go(link)

    def cancel(self, job, why):
        """Cancel ``job`` (``why``: a Cancellation): a queued one ends now (its client, if any, told so,
        when cancelled by request); one a worker holds is stopped, at once by hanging up on a sieci worker,
        or when its turn comes if it waits there behind another. A classic worker cannot be stopped: it
        runs the job out, its results dropped, if its client left. Why it cannot be cancelled, or None."""
        if job.state is JobState.QUEUED:
            self.pending_jobs.remove(job)
            if why is Cancellation.CLIENT_LEFT:
                self.finish(job, JobState.CANCELLED, "the client left while it was queued")
            else:
                self.fail(job, why.value.encode(), JobState.CANCELLED)
        elif job.waits_behind_another:
            job.cancel_for(why)
        elif job.worker.extended:
            job.cancel_for(why)
            self.notify("stopping", job, "stopping on worker %s: %s", job.worker.name, why.value)
            job.worker.hang_up()
        elif why is Cancellation.CLIENT_LEFT:
            job.cancel_for(why)
            self.notify("abandoned", job, "left to classic worker %s to run out: its client left", job.worker.name)
        else:
            return "it runs on a classic worker, which cannot be stopped"
        return None

    def link_gone(self, link):
        """The link is gone: requeue the jobs it held that never started, fail the one that did."""
        self.workers.forget(link)
        link.stop_sending()
        jobs = list(link.jobs)
        link.jobs.clear()
        for job in reversed(jobs):  # (each requeued at the head: they keep their order)
            self._lost(job, link, "lost before accepting it")
        self._dispatch()

    def _lost(self, job, link, why):
        """The job's worker will not run it (``why``, if it never started it)."""
        if job.ended:
            return
        if job.cancellation is Cancellation.CLIENT_LEFT:
            self.finish(job, JobState.CANCELLED)
        elif job.cancellation is Cancellation.REQUESTED:
            self.fail(job, job.cancellation.value.encode(), JobState.CANCELLED)
        elif job.state is JobState.SENT and not self.stopping:
            self._requeue(job, "worker %s was %s", link.name, why)
        else:
            self.fail(job, b"worker lost")

    def _requeue(self, job, why, *args):
        job.move_to(JobState.QUEUED)
        job.worker = None
        job.dispatched_at = None
        self.pending_jobs.appendleft(job)
        self.notify("requeued", job, "back at the head of the queue: " + why, *args)

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
        """End the job (``outcome``: an ended JobState)."""
        now = time.monotonic()
        ran = now - job.dispatched_at if job.dispatched_at else 0.0
        job.finished_at = now
        job.end_reason = detail
        self.totals[outcome.value] += 1
        if outcome is JobState.DONE:
            self.totals["wait_seconds"] += job.dispatched_at - job.queued_at
            self.totals["run_seconds"] += ran
        self.active_jobs.discard(job)
        self.jobs_by_id.pop(job.id, None)
        if job.spool is not None:
            job.spool.end(outcome.value, detail)
        job.move_to(outcome)
        self.notify(outcome.value, job, "%s%s after %.3f s (%.3f s on a worker, %d bytes of results)",
                    outcome.value, detail and f" ({detail})", now - job.queued_at, ran, job.bytes_relayed)

    def fail(self, job, reason, outcome=JobState.FAILED):
        """End the job for its client with ``reason``, in whatever form still fits."""
        try:
            job.tell_failed(reason)
        except ClientGone:
            pass
        self.finish(job, outcome, reason.decode("utf-8", "replace"))

    def notify(self, event, job, message, *args, **fields):
        """Log one event in a job's life, as one line with the job's id (and ``fields``), and tell the listeners."""
        log.info("job %s " + message, job.id, *args, extra={"job": job.id, "event": event, **fields})
        for listener in self.listeners:
            listener(event, job)
