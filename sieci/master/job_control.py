"""Job control on the master's client port: ATTACH, CANCEL and JOBS, each a line, answered here.

``ATTACH <id>`` is answered ``ATTACHED job=<id>`` and the kept job's results
block from its first byte (or from ``at=<offset>``), as it comes, until the
block ends; a job that failed before its results began, with ``ERROR
<reason>``. ``CANCEL <id>`` stops a queued or running job (``CANCELLED
job=<id>``). ``JOBS`` lists the jobs queued, running and kept, as one line
of JSON. Each request's line is signed, when the master has a secret, over
the fixed payload of its words (``ATTACH <id>``); intake.py checks that
before it calls here. An id is 16 lower-case hex digits or no id at all.
"""

import json
import logging
import time

import gevent

from sieci.master import job_record, state
from sieci.master.job import Cancellation, JobState
from sieci.wire import protocol

log = logging.getLogger("sieci.master")

REQUESTS = (protocol.ATTACH, protocol.CANCEL, protocol.JOBS)
class UnanswerableRequest(Exception):
    """The request cannot be answered: the message says why, to the client."""


def signed_payload(line):
    """What a request's (a protocol.Line's) signature covers: its words before the fields (``ATTACH <id>``)."""
    return b" ".join(word for word in line.raw.split() if b"=" not in word)


def requested_id(line):
    """The job's id a request (a protocol.Line) names; UnanswerableRequest unless it is one."""
    words = line.arguments
    job_id = protocol.parse_job_id(words[0]) if words else None
    if job_id is None:
        raise UnanswerableRequest("expected a job id (16 hex digits)")
    return job_id


def offset_of(line):
    value = line.field(protocol.AT_FIELD)
    if value is None:
        return 0
    if value.isdigit() and len(value) < 19:
        return int(value)
    raise UnanswerableRequest("a malformed at= field")


class JobControl:
    """Answers job control for the master's ``dispatcher`` and its ``kept`` jobs (a kept_jobs.KeptJobs);
    ``last_left(job)`` is called when the last client attached to a job that still runs has left."""

    def __init__(self, dispatcher, kept, master_name, last_left):
        self.dispatcher = dispatcher
        self.kept = kept
        self.master_name = master_name
        self.last_left = last_left

    def answer(self, conn, name, line):
        """Answer the request ``line`` (a protocol.Line) on ``conn``; UnanswerableRequest if it cannot be."""
        word = line.word
        if word == protocol.JOBS:
            conn.send(_encode(self.listed()), completes=protocol.STATUS_REPLY)
        elif word == protocol.CANCEL:
            self.cancel(conn, name, requested_id(line))
        else:
            self.attach(conn, name, requested_id(line), offset_of(line))

    def listed(self):
        now = time.monotonic()
        jobs = {job.id: job for job in self.kept.listed()}
        jobs.update((job.id, job) for job in self.dispatcher.active_jobs)
        return {"master": self.master_name(),
                "jobs": [_described(job, now) for job in sorted(jobs.values(), key=lambda job: job.queued_at)]}

    def cancel(self, conn, name, job_id):
        job = self.dispatcher.jobs_by_id.get(job_id)
        if job is None:
            raise UnanswerableRequest(f"no queued or running job {job_id} (it has ended, or this master never had it)")
        why_not = self.dispatcher.cancel(job, Cancellation.REQUESTED)
        if why_not is not None:
            raise UnanswerableRequest(f"job {job_id} cannot be cancelled: {why_not}")
        log.info("client %s cancelled job %s", name, job_id, extra={"job": job_id})
        conn.send_command(protocol.CANCELLED, protocol.job_id_field(job_id))

    def attach(self, conn, name, job_id, offset):
        job = self.kept.find(job_id)
        if job is None:
            raise UnanswerableRequest(f"no job {job_id} is kept here (unknown, not detached, or its output expired)")
        if offset and job.runs_anew:
            raise UnanswerableRequest(f"job {job_id} runs again from its start since the master restarted: its "
                                      "output so far is not kept")
        if job.awaiting_attach:
            job.awaiting_attach = False
            self.dispatcher.enqueue(job)
        conn.send_command(protocol.ATTACHED, protocol.job_id_field(job_id))
        log.info("client %s attached to job %s at byte %d", name, job_id, offset, extra={"job": job_id})
        job.spool.attached += 1
        watcher = gevent.spawn(_stop_when_gone, conn, gevent.getcurrent())
        try:
            self._relay_spool(conn, job.spool, offset)
        finally:
            watcher.kill()
            job.spool.attached -= 1
            if not job.spool.attached and not job.spool.ended:
                self.last_left(job)

    @staticmethod
    def _relay_spool(conn, spool, offset):
        """The spool's bytes from ``offset``, as they come, until the results end or were cut short."""
        while True:
            spool.wait_beyond(offset)
            if offset < spool.size:
                data = spool.read(offset)
                offset += len(data)
                last = spool.complete and offset == spool.size
                conn.send(data, completes=protocol.JOB if last else None)
                if last:
                    return
            elif spool.size == 0 and spool.reason:
                conn.refuse(spool.reason.encode())
                return
            else:
                return  # the results were cut short: the client says so


def _stop_when_gone(conn, attacher):
    """Stop the ``attacher`` greenlet once its client has left (it may wait long for a queued job)."""
    try:
        while conn.next_event() is not protocol.CONNECTION_CLOSED:
            pass  # whatever it says is ignored
    except (OSError, protocol.ProtocolError):
        pass
    attacher.kill(block=False)


def _described(job, now):
    """A job as JOBS lists it: see job_record.described."""
    spool = job.spool
    record = job_record.record_of(job, state.exit_status_of(job))
    if spool is None or not spool.ended:
        record["state"] = "running" if job.state is JobState.RUNNING else "queued"
    return job_record.described(record, now - job.queued_at, job.client is not None)


def _encode(listing):
    return json.dumps(listing, separators=(",", ":")).encode() + b"\n"
