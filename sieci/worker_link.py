"""One worker's link, as the master holds it, and the relay of its job's results to the job's client.

Whatever has arrived from the worker is sent on before waiting for more:
streaming, in as few sends as the worker's data allows. The bulk of a big
raw chunk goes from socket to socket past Python (see relay.py).
"""

import time

import gevent

from . import protocol
from .connection import RECV_SIZE

SPLICE_AT_LEAST = 32 << 10  # bytes of a raw chunk still to come; fewer are relayed through Python


class WorkerLost(Exception):
    """The worker's link closed."""


class WorkerLink:
    def __init__(self, conn, name):
        self.conn = conn
        self.name = name
        self.state = conn.conversation
        self.job = None
        self.jobs_done = 0
        # A sieci worker (READY v=2) stops its job when its link closes; a
        # classic one would never come back, so its job is run out instead.
        self.stoppable = False
        self.silence_allowed = None  # seconds it may say nothing while its job runs (see _allow_silence)
        self.greenlet = gevent.getcurrent()

    def roll_back(self):
        """Answer its READY with ROLLBACK: there is no job for it after all."""
        self.conn.send_command(protocol.ROLLBACK)

    def send_quietly(self, data):
        """For the fan-out greenlets: a failed send shows up as a closed link."""
        try:
            self.conn.send(data)
        except OSError:
            self.hang_up()

    def hang_up(self):
        """Close the link from any greenlet: the link's own sees it closed."""
        self.conn.shutdown()

    @property
    def in_raw_chunk(self):
        return self.conn.receiver.in_raw_chunk

    def relay_results(self, job, splice_pipes=None):
        """Relay the results block to the job's client (after its RECEIVED, which the
        caller queued), as it comes; with ``splice_pipes``, big raw chunks past Python."""
        line = self._next_result_event(job)
        if line is protocol.CONNECTION_CLOSED:
            raise WorkerLost("closed before it sent the results")
        job.results_header = self.conn.start_block(line.raw, results=True)
        job.relay(line.raw)
        self._allow_silence(job.results_header)
        while True:
            event = self._next_result_event(job)
            if event is protocol.CONNECTION_CLOSED:
                raise WorkerLost("closed in the middle of the results")
            if isinstance(event, protocol.BlockEnd):
                self.conn.recv_size = RECV_SIZE
                job.relay(event.raw, last=True)
                return
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
        if job.cancelled:
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
