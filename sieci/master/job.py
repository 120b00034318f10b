"""A job as the master holds it: its upload, its client, the worker it went to, and the relay of its results."""

import enum
import functools
import time
from time import time as wall_clock

import gevent.event

from sieci import defaults
from sieci.master import job_record
from sieci.master.job_upload import KeptUpload
from sieci.master.stdin_relay import StdinRelay
from sieci.wire import protocol, upload_format
from sieci.wire.results import Status


class ClientGone(Exception):
    """The client's connection failed while we wrote to it."""


class JobState(enum.Enum):
    """Where a job is in its life at the master; its value names it in the log and to JOBS."""

    __hash__ = object.__hash__  # each member is equal only to itself: no hash of its name on every look-up

    QUEUED = "queued"  # in the master's queue: no worker holds it
    SENT = "sent"  # its code went to a worker, which has yet to accept it (it may wait there behind others)
    RUNNING = "running"  # its worker accepted it (RECEIVED): it may have run, so it is never queued again
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


# state -> the states a job may move to from there; an ended job moves no more.
JOB_TRANSITIONS = {
    JobState.QUEUED: {JobState.SENT, JobState.FAILED, JobState.CANCELLED},
    # back to QUEUED: its worker was lost, or busy for another master, before it accepted the job
    JobState.SENT: {JobState.RUNNING, JobState.QUEUED, JobState.FAILED, JobState.CANCELLED},
    JobState.RUNNING: {JobState.DONE, JobState.FAILED, JobState.CANCELLED},
}
ENDED = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})


class IllegalJobMove(Exception):
    """A job was about to move where its table does not lead (a bug on the master's side)."""


class Cancellation(enum.Enum):
    """Why a job that its worker holds is to be stopped: a fact beside its state, until it ends."""

    CLIENT_LEFT = "its client left"  # its results go nowhere, and it ends "cancelled"
    REQUESTED = "cancelled by request"  # CANCEL <id>, or a kept job no client attached to: its client is told


class Job(KeptUpload):
    def __init__(self, job_id, upload, client, client_name, header):
        self.id = job_id  # 16 hex digits: see kept_jobs.new_job_id
        self._upload = upload  # the block to forward: header, code, terminator (see the upload property)
        self.upload_size = len(upload)
        self._upload_file = None  # a kept job's: (its path, the store's release) while it waits there
        self._upload_offset = 0  # where the upload begins in that file
        self._preamble_file = None  # that file once the upload is gone from it, its preamble left
        self.fields = header.fields  # its header's, after the terminator
        self.extended = header.extended  # a sieci client's: it is told QUEUED while the job waits
        self.files = upload_format.files_wanted(header)  # its files bundle, which the master holds for it
        self.stdin = StdinRelay() if upload_format.STDIN_STREAM in header.fields else None
        self.client = client
        self.client_name = client_name
        self.worker = None
        self.state = JobState.QUEUED  # moved only by move_to, through JOB_TRANSITIONS
        self.cancellation = None  # once it is to be stopped, why (a Cancellation)
        self.spool = None  # a kept_jobs.Spool: a detached job's results are kept for clients that attach
        self.detached_at_upload = upload_format.DETACH_FIELD in header.fields  # the client leaves at once
        self.results_kept = self.detached_at_upload or upload_format.KEEP_FIELD in header.fields
        self.results_header = None
        self.status = None  # a results.Status: how it ended, as its results' last line says (see endings.py)
        self.relayed_mid_line = False
        self.bytes_relayed = 0
        self.finished = gevent.event.Event()  # set once it has ended: what its client's greenlet waits on
        self.queued_at = time.monotonic()
        self.dispatched_at = None
        self.finished_at = None
        self.end_reason = ""  # why it failed or was cancelled, when the master knows
        self._unsent = []
        self.submitted = wall_clock()  # seconds since the epoch, as the job's record and JOBS give them
        self.started = self.ended_wall = None
        self.worker_name = None  # a restored job's worker, which its record names
        self.on_move = None  # a kept job's: called with the job after each move (state.Recorder.note)
        self.upload_kept_until_end = False  # a kept job that may run again after a restart keeps its upload
        self.runs_anew = False  # queued again by a restarted master: its results begin anew
        self.awaiting_attach = False  # a --retries job a restarted master runs once its client attaches

    @functools.cached_property
    def program(self):
        return job_record.program_of(self.fields)

    @functools.cached_property
    def arguments(self):  # (a restored job's are set)
        return job_record.arguments_of(self.fields)

    def move_to(self, state):
        """The job's next state, where its table leads; IllegalJobMove elsewhere."""
        if state not in JOB_TRANSITIONS.get(self.state, ()):
            raise IllegalJobMove(f"job {self.id} cannot move from {self.state.value} to {state.value}")
        self.state = state
        if state is JobState.RUNNING:
            self.started = wall_clock()
        elif state in ENDED:
            self.ended_wall = wall_clock()
            self.finished.set()
            if self.upload_kept_until_end:
                self.discard_upload()
        if self.on_move is not None:
            self.on_move(self)

    def cancel_for(self, why):
        """Note why it is to be stopped (a Cancellation); a client that left outweighs a request: its
        results go nowhere."""
        if self.cancellation is None or why is Cancellation.CLIENT_LEFT:
            self.cancellation = why

    @property
    def ended(self):
        return self.state in ENDED

    @property
    def waits_behind_another(self):
        """Sent to a worker that has yet to answer an earlier job of ours: it cannot be stopped alone yet."""
        return self.state is JobState.SENT and self.worker.job is not self

    @property
    def goes_alone(self):
        """Sent only to a worker that holds no other job of ours, and nothing after it until it ends: its stdin
        block and files (NEED) come after the code, and a big code would be held by the worker meanwhile."""
        return self.stdin is not None or self.files is not None or self.upload_size > defaults.MAX_UPLOAD_AHEAD

    def detach(self):
        """Its client has left, told the job's id: the job runs on for clients that attach."""
        self.client = None

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
        if self.ended or self.client is None:
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
        if self.cancellation is Cancellation.CLIENT_LEFT or self.ended or not data or self.client is None:
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
        self.cancel_for(Cancellation.CLIENT_LEFT)
        if self.worker is not None and self.worker.extended:
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

