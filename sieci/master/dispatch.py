"""The master's dispatch, in one place: the queue of jobs, the idle workers asked for them, each job's end.

``enqueue`` puts a job at the back of ``pending_jobs``. Workers that make
standing offers (see pipelining.py) are sent it at once, if one has an offer
standing. Else it is offered to idle workers (``AVAILABLE``, FANOUT of them
per waiting job, each from a greenlet of its own; all of them once a job
has waited WIDEN_AFTER, in case those asked are busy for other masters),
and then to workers running one of our jobs, which answer after it (asking
ahead). Any ``READY`` takes the job at the head of the queue (``job_for``),
so the first wins; a ``READY`` that finds the queue empty gets ``ROLLBACK``.
"""

import collections
import itertools
import logging
import time

import gevent

from sieci import defaults
from sieci.wire import conversation, protocol
from sieci.master.kept_jobs import new_job_id
from sieci.master.job import ClientGone, Job

log = logging.getLogger("sieci.master")

FANOUT = 2  # idle workers asked per waiting job: the first READY wins, so two race
WIDEN_AFTER = 0.05  # seconds; then a job still waiting has every idle worker asked
# Seconds; then a sieci client whose job still waits is told QUEUED: well within its --connect-timeout
# (10 s by default), since a client that waits less may pass over a master with a queue.
QUEUED_AFTER = 0.2


class Dispatcher:
    """The jobs waiting (``pending_jobs``) and running (``active_jobs``), the workers
    idle and asked, and the tally of how jobs ended. ``listeners`` are callables
    taking (event, job); events: queued, dispatched, requeued, stopping, abandoned,
    and at the end one of done, failed, cancelled."""

    def __init__(self, max_queue, pipelined=True, answer_timeout=defaults.CLIENT_TIMEOUT):
        """``pipelined``: ask workers ahead, and have sieci workers make standing offers; ``answer_timeout``:
        seconds a worker may take to answer a code sent against its offer, once the jobs before it ended."""
        self.max_queue = max_queue
        self.pipelined = pipelined
        self.answer_timeout = answer_timeout
        self.pending_jobs = collections.deque()
        self.active_jobs = set()
        self.jobs_by_id = {}  # the active jobs
        self.idle_links = {}  # insertion-ordered set: the longest idle first
        self.asked_links = set()  # AVAILABLE sent, no answer yet
        self.running_links = {}  # running our job, to be asked ahead (they take no offers)
        self.offering_links = {}  # they make standing offers: never asked
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
        self._send_offered()
        self._offer()
        gevent.spawn_later(WIDEN_AFTER, self._offer_widely, job)
        if job.extended:
            gevent.spawn_later(QUEUED_AFTER, self._tell_queued, job)

    def _offer(self, everyone=False):
        """Ask FANOUT idle workers per waiting job (or, for a job that waited, every one); then, if jobs
        still outnumber the workers asked, ask workers running our jobs for their next (asking ahead)."""
        wanted = len(self.idle_links) if everyone else len(self.pending_jobs) * FANOUT - len(self.asked_links)
        for link in list(itertools.islice(self.idle_links, max(0, wanted))):
            del self.idle_links[link]
            self._ask(link, link.state.send(protocol.AVAILABLE))
        ahead = [link for link in self.running_links if link.state.can_ask_ahead()]
        for link in ahead[:max(0, len(self.pending_jobs) - len(self.asked_links))]:
            del self.running_links[link]
            self._ask(link, link.state.ask_ahead())

    def _ask(self, link, available):
        self.asked_links.add(link)
        gevent.spawn(link.send_quietly, available)

    def _send_offered(self):
        """Send waiting jobs, from the head of the queue, to workers with standing offers: each to the one
        that holds the fewest of ours (a job that goes alone, only to one that holds none)."""
        while self.pending_jobs:
            job = self.pending_jobs[0]
            takers = [link for link in self.offering_links if link.state.offers > 0
                      and (not link.jobs or not (job.goes_alone or link.jobs[0].goes_alone))]
            if not takers:
                return
            link = min(takers, key=lambda link: len(link.jobs))
            self.pending_jobs.popleft()
            self._give(job, link)
            link.send_offered(job)
            self.notify("dispatched", job, "sent to worker %s against its offer after %.3f s in the queue",
                        link.name, job.dispatched_at - job.queued_at)
            if len(link.jobs) == 1:
                link.expect_answer(job, self.answer_timeout)

    @staticmethod
    def _give(job, link):
        job.worker = link
        link.jobs.append(job)
        job.dispatched_at = time.monotonic()

    def offered(self, link):
        """The worker made a standing offer (FREE)."""
        self.offering_links[link] = None
        self.idle_links.pop(link, None)
        self._send_offered()

    def invites_offers(self, link):
        """Whether to tell this worker, with its next RELAY or ROLLBACK, to make standing offers from then on."""
        return self.pipelined and link.makes_offers and not link.takes_offers

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
        if link.takes_offers:
            self._next_in_line(link)
            return
        if link.state.state == conversation.ASKED:  # asked ahead: its READY comes
            return
        self.idle_links[link] = None
        if self.pending_jobs:
            self._offer()

    def _next_in_line(self, link):
        if link.jobs:
            link.expect_answer(link.jobs[0], self.answer_timeout)
        self._send_offered()
        self._offer()

    def job_for(self, link):
        """The worker said READY: the job at the head of the queue is now its own;
        with none, it is rolled back and idle again (None)."""
        self.asked_links.discard(link)
        if not self.pending_jobs:
            link.roll_back(offering=self.invites_offers(link))
            self.make_idle(link)
            return None
        job = self.pending_jobs.popleft()
        self._give(job, link)
        return job

    def accepted(self, job, link):
        """The worker said RECEIVED: the job runs. A worker that takes no offers may be asked ahead."""
        job.accepted = True
        job.drop_upload()
        if self.pipelined and not link.takes_offers and (job.stdin is None or not link.stoppable):
            self.running_links[link] = None
            self._offer()

    def refused(self, job, link, reason):
        """The worker said ERROR to the job: it fails, and the worker is idle again."""
        self._let_go(job, link)
        self.fail(job, b"the worker refused the job: " + reason)
        self.make_idle(link)

    def busy(self, job, link):
        """The worker, which made a standing offer, became busy for another master: the job waits again."""
        self._let_go(job, link)
        self._lost(job, link, "busy for another master")
        self.make_idle(link)

    def done(self, job, link):
        """The job's results have all been relayed: the worker is idle again."""
        self._let_go(job, link)
        link.jobs_done += 1
        if not job.finished.is_set():  # else it was failed (the master stopping) while its results came
            self.finish(job, "cancelled" if job.cancelled else "done")
        self.make_idle(link)

    def _let_go(self, job, link):
        link.jobs.remove(job)
        self.running_links.pop(link, None)

    def _requeue(self, job, why, *args):
        job.worker = None
        job.dispatched_at = None
        self.pending_jobs.appendleft(job)
        self.notify("requeued", job, "back at the head of the queue: " + why, *args)

    def cancel(self, job):
        """Its client has left: a queued job is dropped, a running one stopped if its worker can
        (one that waits behind another on its worker, once it starts)."""
        job.cancelled = True
        if job.worker is None:
            self.pending_jobs.remove(job)
            self.finish(job, "cancelled", "the client left while it was queued")
        elif job.waits_behind_another:
            pass
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
        elif job.waits_behind_another:
            job.withdrawn = True
        elif job.worker.stoppable:
            job.withdrawn = True
            self.notify("stopping", job, "stopping on worker %s: cancelled by request", job.worker.name)
            job.worker.hang_up()
        else:
            return "it runs on a classic worker, which cannot be stopped"
        return None

    def link_gone(self, link):
        """The link is gone: requeue the jobs it held that never started, fail the one that did."""
        self.idle_links.pop(link, None)
        self.asked_links.discard(link)
        self.running_links.pop(link, None)
        self.offering_links.pop(link, None)
        link.stop_sending()
        jobs = list(link.jobs)
        link.jobs.clear()
        for job in reversed(jobs):  # (each requeued at the head: they keep their order)
            self._lost(job, link, "lost before accepting it")
        self._send_offered()
        self._offer()

    def _lost(self, job, link, why):
        """The job's worker will not run it (``why``, if it never started it)."""
        if job.finished.is_set():
            return
        if job.cancelled:
            self.finish(job, "cancelled")
        elif job.withdrawn:
            self.fail(job, b"cancelled by request", "cancelled")
        elif not job.accepted and not self.stopping:
            self._requeue(job, "worker %s was %s", link.name, why)
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
