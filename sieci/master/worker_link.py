"""One worker's link, as the master holds it, and the relay of its job's results to the job's client.

Whatever has arrived from the worker is sent on before waiting for more:
streaming, in as few sends as the worker's data allows. The bulk of a big
raw chunk goes from socket to socket past Python (see splice.py).
"""

import collections
import logging
import time

import gevent
import gevent.queue

from sieci.master.endings import status_of_results
from sieci.master.job import Cancellation, JobState
from sieci.wire import protocol
from sieci.wire.connection import RECV_SIZE

log = logging.getLogger("sieci.master")

SPLICE_AT_LEAST = 32 << 10  # bytes of a raw chunk still to come; fewer are relayed through Python


class WorkerLost(Exception):
    """The worker's link closed."""


class WorkerLink:
    """``jobs``: ours that it holds, in the order their codes went; the first is the one
    running, or the next to. ``on_offer``: called when the worker makes a standing offer;
    ``relay_fields(job)``: the fields of the RELAY line before a job's code (its id, ``job=<id>``, first)."""

    def __init__(self, conn, name, on_offer, relay_fields):
        self.conn = conn
        self.name = name
        self.state = conn.conversation
        self.jobs = collections.deque()
        self.jobs_done = 0
        self.codes_sent = 0
        self.on_offer = on_offer
        self.relay_fields = relay_fields  # a job's: the fields of the RELAY line before its code
        self._codes = None  # a queue of codes to send against standing offers, in order, by _send_codes
        self._sender = None
        self._answer_timer = None
        # A sieci worker (READY v=2), as Job.extended is a sieci client: it stops its job when its link
        # closes, where a classic one would never come back, so its job is run out instead.
        self.extended = False
        self.makes_offers = False  # a sieci worker that can make standing offers (READY v=2 free)
        self.worker_name = None  # the name a sieci worker gives (READY ... worker=<name>), for people
        self.silence_allowed = None  # seconds it may say nothing while its job runs (see _allow_silence)
        self.greenlet = gevent.getcurrent()

    @property
    def job(self):
        """Our job it runs, or will run next; None if it holds none."""
        return self.jobs[0] if self.jobs else None

    @property
    def takes_offers(self):
        return self.state.takes_offers

    def number_code(self):
        """``<worker>#<n>`` for the n-th code sent on this link: a sieci worker counts the codes it reads
        on its link alike, and its log lines about a job carry that name beside the job's id (which RELAY
        gives it: see relay_fields), or alone where it has no usable id."""
        self.codes_sent += 1
        return f"{self.name}#{self.codes_sent}"

    def roll_back(self, offering):
        """Answer its READY with ROLLBACK: there is no job for it after all. ``offering``: tell a
        sieci worker to make standing offers from now on."""
        if offering:
            self.conn.send(self.state.offering(protocol.ROLLBACK))
        else:
            self.conn.send_command(protocol.ROLLBACK)

    def next_line(self):
        """The next line outside a block; the worker's standing offers (FREE) are counted on the way."""
        while True:
            event = self.conn.next_event()
            if event is protocol.CONNECTION_CLOSED or event.word != protocol.FREE:
                return event
            self.on_offer(self)

    def send_offered(self, job):
        """Send ``job`` against one of the worker's standing offers, behind the codes already going."""
        relay = self.state.take_offer(self.relay_fields(job))
        if self._codes is None:
            self._codes = gevent.queue.Queue()
            self._sender = gevent.spawn(self._send_codes)
        self._codes.put([relay, job.upload])

    def stop_sending(self):
        if self._codes is not None:
            self._sender.kill(block=False)
        self.answered()

    def expect_answer(self, job, seconds):
        """``job``, sent against an offer, is now the first in line: the worker answers it within ``seconds``
        or is taken for lost (its jobs go back to the queue)."""
        self.answered()
        self._answer_timer = gevent.get_hub().loop.timer(seconds)
        self._answer_timer.start(self._unanswered, job, seconds)

    def answered(self):
        if self._answer_timer is not None:
            self._answer_timer.close()
            self._answer_timer = None

    def _unanswered(self, job, seconds):
        if self.job is job and job.state is JobState.SENT:
            log.warning("worker %s did not answer job %s within %g s; dropping it", self.name, job.id, seconds,
                        extra={"job": job.id})
            self.hang_up()

    def _send_codes(self):
        while True:
            pieces = self._codes.get()
            try:
                self.conn.send_pieces(pieces)
            except OSError:
                self.hang_up()
                return

    def send_quietly(self, data):
        """For the fan-out greenlets: a failed send shows up as a closed link."""
        try:
            self.conn.send(data)
        except OSError:
            self.hang_up()

    def hang_up(self):
        """Close the link from any greenlet: the link's own sees it closed. One that streams a job's stdin
        is reset: its worker may be reading nothing (the job takes no more), and would see the end of the
        link only after the stdin before it, but a reset at once."""
        self.conn.shutdown(reset=self.job is not None and self.job.stdin is not None)

    @property
    def in_raw_chunk(self):
        return self.conn.receiver.in_raw_chunk

    def relay_results(self, job, splice_pipes=None):
        """Relay the results block to the job's client (after its RECEIVED, which the
        caller queued), as it comes; with ``splice_pipes``, big raw chunks past Python.
        The Status its last line gives (see endings.py), or None."""
        line = self._next_result_event(job)
        while line is not protocol.CONNECTION_CLOSED and line.word == protocol.FREE:
            self.on_offer(self)
            line = self._next_result_event(job)
        if line is protocol.CONNECTION_CLOSED:
            raise WorkerLost("closed before it sent the results")
        job.results_header = self.conn.start_block(line.raw, results=True)
        job.relay(line.raw)
        self._allow_silence(job.results_header)
        last_pieces = collections.deque(maxlen=3)  # the status line may come split
        while True:
            event = self._next_result_event(job)
            if event is protocol.CONNECTION_CLOSED:
                raise WorkerLost("closed in the middle of the results")
            if isinstance(event, protocol.BlockEnd):
                self.conn.recv_size = RECV_SIZE
                job.relay(event.raw, last=True)
                return status_of_results(job.results_header, last_pieces)
            last_pieces.append(event.data)
            job.relay(event.data)
            job.bytes_relayed += len(event.data)
            job.relayed_mid_line = not event.data.endswith(b"\n")
            # a kept job's results are spooled: they pass through Python
            if self.conn.receiver.raw_pending >= SPLICE_AT_LEAST and splice_pipes is not None and job.spool is None:
                self._splice_raw(job, splice_pipes)

    def _allow_silence(self, results_header):
        """It may say nothing for three of the heartbeats its results header declares;
        for ever if it declares none."""
        beat = results_header.beat
        self.silence_allowed = None if beat is None else 3 * max(beat, 0.1)

    def _next_result_event(self, job):
        """The next event of the results; a worker that declared a heartbeat and has been
        silent for three of them (stopped, say: its kernel still answers) is lost."""
        event = self.conn.next_buffered_event()
        if event is protocol.NEED_DATA:
            job.flush()  # nothing more yet: what has come goes to the client before we wait
            if self.silence_allowed is None:
                return self.conn.next_event()
            self.conn.deadline = time.monotonic() + self.silence_allowed
            try:
                event = self.conn.next_event()
            except TimeoutError:
                raise self._silent() from None
            finally:
                self.conn.deadline = None
                self.conn.settimeout(None)
        return event

    def _splice_raw(self, job, splice_pipes):
        """The rest of a big raw chunk, from the worker's socket to the client's."""
        job.flush()
        if job.cancellation is Cancellation.CLIENT_LEFT:
            return  # the bytes are read and dropped as usual
        pipe = splice_pipes.take()
        try:
            for taken in self.conn.splice_raw(pipe, self.silence_allowed):
                job.bytes_relayed += taken
                if not job.send_spliced(pipe):
                    return
        except TimeoutError:
            raise self._silent() from None
        finally:
            splice_pipes.give_back(pipe)

    def _silent(self):
        return WorkerLost(f"it said nothing for {self.silence_allowed:g} s while its job ran (stopped?)")
