"""The master's kept jobs: detached jobs, whose results it spools to disk for clients that attach.

A kept job's ``Spool`` holds its results block as the master relayed it, byte
for byte (header, items, terminator), in a file of the store's private
folder, named at random: no file is ever named after an id, and none is held
open once its job has ended (a reader opens it for each read), so kept jobs
cost no descriptors. A client that attaches gets those bytes from the start
and the rest as they come. Until a worker has accepted a kept job, its
upload waits in that folder too, not in memory. ``KeptJobs`` bounds uploads
and results all together by ``max_bytes`` (each job also counts
``JOB_OVERHEAD``, so a flood of small jobs is bounded too), refuses a job
whose upload finds no room, and forgets a finished job ``retention`` seconds
after it ended, or sooner, oldest first, when the room is needed. A job
whose results find no room is cut there: its attachers get what was kept,
and the connection closes.
"""

import logging
import os
import shutil
import tempfile
import time

import gevent.event

from sieci.master import job_record
from sieci.master.job_record import exit_status_of

log = logging.getLogger("sieci.master")

JOB_OVERHEAD = 4096  # bytes a kept job counts for, beyond its results (its record in a --state-dir included)
READ_SIZE = 64 << 10
TAIL_SIZE = 4096  # bytes at the end of a job's results that hold its status line


def new_job_id():
    """16 hex digits of 64 random bits: unique across masters without their agreeing on anything
    (a collision is likely only after some 4 billion jobs), and not to be guessed from another."""
    return os.urandom(8).hex()


class NoRoom(Exception):
    """A kept job's upload finds no room in the store."""


class Spool:
    """One kept job's results, as far as they have come, in the file at ``path``."""

    def __init__(self, store, path):
        self.store = store
        self.path = path
        self._writer = _create(path)
        self.size = 0
        self.complete = False  # the block's terminator line is in
        self.cut = False  # the store had no room for more
        self.ended = False  # the job has ended
        self.outcome = None
        self.reason = None  # why it failed, for a job whose results never began
        self.ended_at = None
        self.attached = 0  # clients attached now
        self._grew = gevent.event.Event()
        self._exit_status = None
        self.job_id = None  # set by the store

    @classmethod
    def restored(cls, store, path, complete, outcome, reason, ended_at):
        """The spool a restarted master finds in the file at ``path``: its job has ended (``outcome``, at
        ``ended_at`` on the monotonic clock), ``complete`` if its block's terminator line is in."""
        spool = cls.__new__(cls)
        spool.store, spool.path, spool._writer = store, path, None
        spool.size = os.stat(path, follow_symlinks=False).st_size
        spool.complete, spool.cut = complete, not complete
        spool.ended, spool.outcome, spool.reason, spool.ended_at = True, outcome, reason, ended_at
        spool.attached, spool._grew, spool._exit_status, spool.job_id = 0, gevent.event.Event(), None, None
        return spool

    @property
    def file_name(self):
        return os.path.basename(self.path)

    def exit_status(self):
        """The job's exit status, as its complete results end with it; None before, or without one."""
        if self._exit_status is None and self.complete and self.ended:
            header = self.read(0).partition(b"\n")[0].split()
            tail = self.read(max(0, self.size - TAIL_SIZE))
            self._exit_status = exit_status_of(tail, header[1]) if len(header) > 1 else None
        return self._exit_status

    def write(self, data, last=False):
        if self.cut or not data:
            return
        if not self.store.make_room(len(data), self):
            self._cut_at("--max-kept-output is full")
        else:
            try:
                _write_all(self._writer, data)
            except OSError as error:  # a full disk: the job runs on all the same
                self.store.total -= len(data)
                self._cut_at(error.strerror or str(error))
            else:
                self.size += len(data)
                self.complete = last
        self._note_growth()

    def _cut_at(self, why):
        self.cut = True
        log.warning("kept results of job %s cut at %d bytes: %s", self.job_id, self.size, why,
                    extra={"job": self.job_id})

    def end(self, outcome, reason):
        self.ended, self.outcome, self.reason = True, outcome, reason
        self.ended_at = time.monotonic()
        self.store.ended[self] = None
        self.close_writer()
        self._note_growth()

    def read(self, offset):
        """Up to READ_SIZE bytes from ``offset`` (fewer at the end)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return os.pread(fd, min(READ_SIZE, self.size - offset), offset)
        finally:
            os.close(fd)

    def wait_beyond(self, offset):
        """Wait until more than ``offset`` bytes have come, or the job has ended."""
        while self.size <= offset and not self.ended:
            grew = self._grew
            grew.wait()

    def _note_growth(self):
        grew, self._grew = self._grew, gevent.event.Event()
        grew.set()

    def close(self):
        self.close_writer()
        _remove(self.path)

    def close_writer(self):
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None


def _create(path):
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:  # a folder gone read-only: the job is forgotten all the same, its file left
        log.warning("cannot remove %s: %s", path, error.strerror or error)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class KeptJobs:
    """The kept jobs by id, at most ``max_bytes`` of them, each kept ``retention`` seconds
    after it ended, spooled in a private folder made in ``parent`` (default: the temp folder); or, with
    a ``recorder`` (a state.Recorder), in the state folder's ``folder``, where they outlive the master."""

    def __init__(self, max_bytes, retention, parent=None, folder=None, recorder=None):
        self.max_bytes = max_bytes
        self.retention = retention
        self.folder = folder or tempfile.mkdtemp(prefix="sieci-kept-", dir=parent)
        self.lasting = folder is not None
        self.recorder = recorder
        self.jobs = {}  # id: job.Job, oldest first
        self.ended = {}  # the Spools of jobs that have ended, in the order they ended
        self.total = 0

    def keep(self, job):
        """Spool ``job``'s results from now on, and its upload until a worker accepts it; NoRoom if
        the upload finds no room."""
        self._expire()
        if not self.make_room(job.upload_size):
            raise NoRoom(f"no room for the job's upload in this master's --max-kept-output of {self.max_bytes} "
                            "bytes (kept jobs' uploads and results); try again later")
        if not self.make_room(JOB_OVERHEAD):
            self.total += JOB_OVERHEAD  # counted all the same: its results find no room until some is freed
        spool_path = self._new_path()
        preamble = job_record.preamble(job, os.path.basename(spool_path)) if self.lasting else b""
        try:
            job.spool = Spool(self, spool_path)  # first: a restarted master finds the upload's spool
            job.spool.job_id = job.id
            job.move_upload_to(self._new_path(), self.release, preamble)
        except OSError:
            if job.spool is not None:
                job.spool.close()
                job.spool = None
            job.discard_upload()
            self.total -= JOB_OVERHEAD
            raise
        self.jobs[job.id] = job
        if self.recorder is not None:
            job.upload_kept_until_end = not job.detached_at_upload  # it may run again after a restart
            job.on_move = self.recorder.note
            self.recorder.note(job)

    def restore(self, job, room):
        """Keep ``job``, which a restarted master found in its records, taking ``room`` bytes."""
        self.total += room + JOB_OVERHEAD
        self.jobs[job.id] = job
        job.spool.job_id = job.id
        if job.spool.ended:
            self.ended[job.spool] = None
        job.on_move = self.recorder.note

    def sort_ended(self):
        """Put the ended jobs back in the order they ended (a restarted master finds them in another)."""
        self.ended = dict.fromkeys(sorted(self.ended, key=lambda spool: spool.ended_at))

    def release(self, size):
        """``size`` bytes of the store are free again (a kept job's upload, once accepted)."""
        self.total -= size

    def _new_path(self):
        return os.path.join(self.folder, os.urandom(8).hex())

    def find(self, job_id):
        self._expire()
        return self.jobs.get(job_id)

    def listed(self):
        self._expire()
        return list(self.jobs.values())

    def make_room(self, size, growing=None):
        """Whether ``size`` more bytes fit, once expired jobs and, as needed, the oldest
        finished ones (not ``growing``'s) are forgotten."""
        if self.total + size > self.max_bytes:
            self._expire()
        while self.total + size > self.max_bytes and (oldest := self._oldest_finished(growing)) is not None:
            self._forget(oldest)
        if self.total + size > self.max_bytes:
            return False
        self.total += size
        return True

    def _expire(self):
        deadline = time.monotonic() - self.retention
        while self.ended and (oldest := next(iter(self.ended))).ended_at < deadline:
            self._forget(self.jobs[oldest.job_id])

    def _oldest_finished(self, growing):
        oldest = next((spool for spool in self.ended if spool is not growing), None)
        return self.jobs[oldest.job_id] if oldest is not None else None

    def _forget(self, job):
        del self.jobs[job.id]
        self.ended.pop(job.spool, None)
        self.total -= job.spool.size + JOB_OVERHEAD
        job.spool.close()
        job.discard_upload()
        if self.recorder is not None:
            self.recorder.forget(job.id)

    def close(self):
        """Forget every job; a lasting store only closes its files, which a restarted master finds."""
        if self.lasting:
            for job in self.jobs.values():
                job.spool.close_writer()
            return
        for job in list(self.jobs.values()):
            self._forget(job)
        shutil.rmtree(self.folder, ignore_errors=True)
