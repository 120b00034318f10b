"""A restarted master's kept jobs, found again in its --state-dir: each recorded job is kept for
--attach as it was, queued again, or reported lost (job_record.restart_action decides which). A
--retries job found queued (or run without a byte of results sent) waits for its client to attach
again before it runs: the client may have given up on this master and run it elsewhere."""

import logging
import os
import time

import gevent

from sieci.master import job_record
from sieci.master.job import Job, JobState
from sieci.master.kept_jobs import Spool
from sieci.wire import protocol
from sieci.wire.results import ResultDecoder, Status

log = logging.getLogger("sieci.master")

UNCLAIMED = "no client attached to it again after the master restarted"
HEADER_LIMIT = 1 << 20  # bytes of an upload's file read for its header line
_BARE_HEADER = {True: b"ENDSEQ T detach", False: b"ENDSEQ T keep"}
# A file in kept/ that is no regular file (a named pipe put there) fails its read rather than wait for a writer.
_OPEN_KEPT = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Restoration:
    """Restores the jobs of ``state`` (a state.StateDir) into ``kept`` (a KeptJobs), ``files`` (a
    FilesStore) and ``dispatcher``; ``watch`` (a ClientWatch) gives a restored ``keep`` job's client its
    time to attach again."""

    def __init__(self, state, kept, files, dispatcher, watch):
        self.state = state
        self.kept = kept
        self.files = files
        self.dispatcher = dispatcher
        self.watch = watch
        self.present = state.kept_files()
        self.counts = {action: 0 for action in (job_record.KEEP_ENDED, job_record.REQUEUE, job_record.RERUN,
                                                job_record.LOST)}

    def run(self):
        records = self.state.records()
        recorded = {name for record in records for name in (record["spool_file"], record["upload_file"]) if name}
        records += self._unrecorded(self.present - recorded, {record["id"] for record in records})
        used, unusable = set(), []
        for record in records:
            if record["spool_file"] not in self.present:
                log.error("job %s lost its kept results in %s (removed by hand?)", record["id"], self.kept.folder,
                          extra={"job": record["id"], "event": "unrestorable"})
                unusable.append(record["id"])
                continue
            used.update(name for name in (record["spool_file"], record["upload_file"]) if name)
            try:
                self._restore(record)
            except (OSError, ValueError, TypeError, protocol.ProtocolError) as error:
                log.error("job %s cannot be restored from %s (%s): forgotten", record["id"], self.state.path, error,
                          extra={"job": record["id"], "event": "unrestorable"})
                unusable.append(record["id"])
        if unusable:
            log.warning("%d recorded job(s) could not be restored from %s: forgotten", len(unusable), self.state.path)
            self.state.delete(unusable)
        self.kept.recorder.commit()  # before a file goes that a record may not yet name
        for name in self.present - used:  # a job's results whose upload never was written whole
            try:
                os.unlink(os.path.join(self.kept.folder, name))
            except OSError as error:
                log.warning("cannot remove %s from %s: %s", name, self.kept.folder, error.strerror)
        self.kept.sort_ended()
        self.files.trim()
        log.info("state of %s: %d ended job(s) kept, %d queued again, %d run again (--retries), %d lost",
                 self.state.path, *self.counts.values(), extra={"event": "restored"})

    def _unrecorded(self, names, recorded_ids):
        """The records of the jobs whose upload files are among ``names`` (files no record names): jobs
        taken just before the master died, whose first record was not written yet."""
        found = []
        for name in sorted(names):
            path = os.path.join(self.kept.folder, name)
            try:
                preamble, header_line = _upload_lines(path)
                header = protocol.parse_header(header_line) if header_line is not None else None
                size = os.stat(path, follow_symlinks=False).st_size - len(preamble)
                record = job_record.record_from_upload(preamble, header, name, size)
            except (OSError, ValueError, protocol.ProtocolError):
                continue  # not an upload's file: a results file, or a job never told its id
            if record["id"] not in recorded_ids:
                found.append(record)
        return found

    def _restore(self, record):
        upload_path = os.path.join(self.kept.folder, record["upload_file"]) if record["upload_file"] in self.present \
            else None
        preamble, header_line = _upload_lines(upload_path) if upload_path else (b"", None)
        spool_path = os.path.join(self.kept.folder, record["spool_file"])
        results_size, results_complete = _results_state(spool_path)
        files_present = record["files_digest"] is None or self.files.has(record["files_digest"])
        action, reason = job_record.restart_action(record, header_line is not None, files_present, results_size > 0,
                                                   results_complete)
        self.counts[action] += 1
        runs = action in (job_record.REQUEUE, job_record.RERUN)
        job = self._job(record, upload_path, preamble, header_line, runs)
        if not runs:
            self._keep_ended(job, record, action, reason, spool_path, results_complete)
            return
        os.unlink(spool_path)
        job.spool = Spool(self.kept, os.path.join(self.kept.folder, os.urandom(8).hex()))
        job.upload_kept_until_end = not job.detached_at_upload
        job.started = job.worker_name = None
        job.runs_anew = True
        self.kept.restore(job, job.upload_size)
        self.kept.recorder.note(job)
        if job.files is not None:
            self.files.hold(job.files.digest)
        if job.detached_at_upload:
            self.dispatcher.enqueue(job)
        else:  # its client may have run it elsewhere meanwhile: it runs only for one that attaches again
            job.awaiting_attach = True
            gevent.spawn_later(self.watch.client_timeout, self._unclaimed, job)

    def _keep_ended(self, job, record, action, reason, spool_path, results_complete):
        """Keep ``job``, which ended (its record says so, or its complete results do) or was lost, for --attach."""
        if action == job_record.KEEP_ENDED:
            outcome = record["state"] if record["state"] in job_record.ENDED_STATES else JobState.DONE.value
            ended = record["ended"] or os.stat(spool_path, follow_symlinks=False).st_mtime
        else:
            outcome, ended = JobState.FAILED.value, time.time()
        job.state, job.ended_wall = JobState(outcome), ended
        job.finished.set()
        complete = bool(record["complete"]) or results_complete or (action == job_record.LOST
                                                                      and _end_lost_results(spool_path, reason))
        job.spool = Spool.restored(self.kept, spool_path, complete, outcome, reason or record["reason"] or "",
                                   time.monotonic() - (time.time() - ended))
        self.kept.restore(job, job.spool.size)
        if action == job_record.LOST:
            log.warning("job %s %s", job.id, reason, extra={"job": job.id, "event": "lost"})
        if action == job_record.LOST or record["state"] != outcome:
            self.kept.recorder.note(job)

    def _unclaimed(self, job):
        """A --retries job no client attached to within --client-timeout of the restart ends, cancelled."""
        if job.awaiting_attach:
            job.awaiting_attach = False
            self.dispatcher.finish(job, JobState.CANCELLED, UNCLAIMED)

    def _job(self, record, upload_path, preamble, header_line, runs):
        """The Job of ``record``: with its upload (in its file) if it ``runs``; else its upload's file, if
        any, cut to its preamble, which goes when the job is forgotten."""
        header = protocol.parse_header(header_line if header_line is not None
                                       else _BARE_HEADER[bool(record["detached"])])
        job = Job(record["id"], b"", None, record["submitter"], header)
        job.detach()
        job.program, job.arguments = record["program"], record["arguments"]
        job.submitted, job.started, job.worker_name = record["submitted"], record["started"], record["worker"]
        job.queued_at = time.monotonic() - max(0.0, time.time() - record["submitted"])
        if runs:
            job.adopt_upload_file(upload_path, record["upload_size"], self.kept.release, len(preamble))
        elif upload_path is not None:
            if header_line is not None:
                _cut(upload_path, len(preamble))
            job.adopt_upload_file(upload_path, 0, None, len(preamble))
        return job


def _end_lost_results(path, reason):
    """End the results a lost job left in the file at ``path`` with the status ``x error lost <reason>``,
    as the master ends a lost worker's (see Job.tell_failed); whether they could be: only extended
    results, not cut in the middle of a raw chunk (whose length a client counts), can."""
    fd = os.open(path, _OPEN_KEPT | os.O_RDWR)
    try:
        first = os.pread(fd, HEADER_LIMIT, 0)
        if not first:
            return False
        header = protocol.parse_header(first.partition(b"\n")[0])
        if not header.extended:
            return False
        decoder, offset = ResultDecoder(), len(first.partition(b"\n")[0]) + 1
        while data := os.pread(fd, 1 << 16, offset):
            decoder.feed(data)
            offset += len(data)
        if not decoder.complete or decoder.status is not None:
            return False
        ending = b"\n" if decoder._partial else b""  # a line cut short: ended, as Job.tell_failed does
        lost = Status(b"error", b"lost", reason.encode())
        os.pwrite(fd, ending + lost.encode() + header.terminator + b"\n", offset)
        return True
    except protocol.ProtocolError:
        return False
    finally:
        os.close(fd)


def _cut(path, size):
    fd = os.open(path, _OPEN_KEPT | os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def _upload_lines(path):
    """The preamble line of an upload's file in the state folder (its newline kept), and the upload's header
    line, or None if the upload has gone from it (a worker took it)."""
    fd = os.open(path, _OPEN_KEPT | os.O_RDONLY)
    try:
        start = os.pread(fd, HEADER_LIMIT, 0)
    finally:
        os.close(fd)
    preamble, newline, rest = start.partition(b"\n")
    if not newline:
        raise ValueError("not an upload's file")
    return preamble + newline, (rest.partition(b"\n")[0] if b"\n" in rest else None)


def _results_state(path):
    """How many bytes of results the file at ``path`` holds, and whether they are complete (their block's
    terminator line ends them)."""
    fd = os.open(path, _OPEN_KEPT | os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        header = os.pread(fd, HEADER_LIMIT, 0).partition(b"\n")[0].split()
        tail = os.pread(fd, 4096, max(0, size - 4096))
    finally:
        os.close(fd)
    return size, len(header) > 1 and tail.endswith(b"\n" + header[1] + b"\n")
