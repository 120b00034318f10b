"""The linked workers as the master's dispatch sees them: asked for the queue's jobs, or sent them against offers.

Each worker's link is in one of the pool's groups by where its conversation
stands (wire/conversation.py): idle (``idle``, no ask outstanding), asked
(``asked``: an AVAILABLE awaits its READY, sent ahead or not), running one
of our jobs and to be asked ahead (``running``, ``can_ask_ahead``), or
making standing offers (it took ``free``: never asked). The groups are
kept as the links move, not found by a look at every link, so that a job
costs the same with ten workers or a thousand.
"""

import itertools
import time

import gevent

from sieci.master.job import JobState
from sieci.wire.conversation import ASKED
from sieci.wire.protocol import AVAILABLE

FANOUT = 2  # idle workers asked per waiting job: the first READY wins, so two race


class WorkerPool:
    """The workers that take the jobs of ``queue`` (the dispatcher's pending jobs). ``pipelined``: ask
    workers ahead, and have sieci workers make standing offers; ``answer_timeout``: seconds a worker may
    take to answer a code sent against its offer, once the jobs before it ended; ``notify``: the
    dispatcher's, for each job sent."""

    def __init__(self, queue, pipelined, answer_timeout, notify):
        self.queue = queue
        self.pipelined = pipelined
        self.answer_timeout = answer_timeout
        self.notify = notify
        self.idle_links = {}  # insertion-ordered set: the longest idle first
        self.asked_links = set()  # AVAILABLE sent, no answer yet
        self.running_links = {}  # running our job, to be asked ahead (they take no offers)
        self.offering_links = {}  # they make standing offers: never asked

    def ask(self, waiting, everyone=False):
        """Ask FANOUT idle workers per ``waiting`` job (or, ``everyone``, every idle one); then, if jobs
        still outnumber the workers asked, ask workers running our jobs for their next (asking ahead)."""
        wanted = len(self.idle_links) if everyone else waiting * FANOUT - len(self.asked_links)
        for link in list(itertools.islice(self.idle_links, max(0, wanted))):
            del self.idle_links[link]
            self._ask(link, link.state.send(AVAILABLE))
        ahead = [link for link in self.running_links if link.state.can_ask_ahead()]
        for link in ahead[:max(0, waiting - len(self.asked_links))]:
            del self.running_links[link]
            self._ask(link, link.state.ask_ahead())

    def _ask(self, link, available):
        self.asked_links.add(link)
        gevent.spawn(link.send_quietly, available)

    def send_offered(self):
        """Send waiting jobs, from the head of the queue, to workers with standing offers: each to the one
        that holds the fewest of ours (a job that goes alone, only to one that holds none)."""
        while self.queue:
            job = self.queue[0]
            takers = [link for link in self.offering_links if link.state.offers > 0
                      and (not link.jobs or not (job.goes_alone or link.jobs[0].goes_alone))]
            if not takers:
                return
            link = min(takers, key=lambda link: len(link.jobs))
            self.give(self.queue.popleft(), link)
            link.send_offered(job)
            link_job = link.number_code()
            self.notify("dispatched", job, "sent to worker %s as %s against its offer after %.3f s in the queue",
                        link.name, link_job, job.dispatched_at - job.queued_at, link_job=link_job)
            if len(link.jobs) == 1:
                link.expect_answer(job, self.answer_timeout)

    @staticmethod
    def give(job, link):
        """``job`` is the worker's now: it goes after the ones it holds."""
        job.move_to(JobState.SENT)
        job.worker = link
        link.jobs.append(job)
        job.dispatched_at = time.monotonic()

    def offered(self, link):
        """The worker made a standing offer (FREE)."""
        self.offering_links[link] = None
        self.idle_links.pop(link, None)
        self.send_offered()

    def next_code_due(self, link):
        """A worker that takes offers ended a job's exchange: the next code it holds is to be answered
        within ``answer_timeout``; more may go to it."""
        if link.jobs:
            link.expect_answer(link.jobs[0], self.answer_timeout)
        self.send_offered()
        self.ask(len(self.queue))

    def invites_offers(self, link):
        """Whether to tell this worker, with its next RELAY or ROLLBACK, to make standing offers from then on."""
        return self.pipelined and link.makes_offers and not link.takes_offers

    def joined(self, link):
        """A worker linked. A pipelined master asks it at once, jobs waiting or not: a sieci worker learns
        from the answer to its READY that we take standing offers, so that even its first job is sent the
        moment it comes, and a classic one costs a ROLLBACK."""
        if self.pipelined:
            self._ask(link, link.state.send(AVAILABLE))
        else:
            self.make_idle(link)

    def make_idle(self, link):
        """The worker's exchange ended (or it joined): it is asked at once if jobs wait, unless it was asked
        ahead (its READY comes) or takes offers (it is never asked)."""
        if link.takes_offers:
            self.next_code_due(link)
        elif link.state.state != ASKED:
            self.idle_links[link] = None
            if self.queue:
                self.ask(len(self.queue))

    def answered(self, link):
        """The worker said READY."""
        self.asked_links.discard(link)

    def running(self, link, job):
        """The worker accepted ``job``: one that takes no offers may be asked ahead, unless the job's stdin
        streams to it (an AVAILABLE would fall inside the stdin block)."""
        if self.pipelined and not link.takes_offers and (job.stdin is None or not link.extended):
            self.running_links[link] = None
            return True
        return False

    def let_go(self, link):
        """The worker's job ended: it runs none of ours."""
        self.running_links.pop(link, None)

    def forget(self, link):
        """The link is gone."""
        self.idle_links.pop(link, None)
        self.asked_links.discard(link)
        self.running_links.pop(link, None)
        self.offering_links.pop(link, None)
