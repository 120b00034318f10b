"""Batches: many Python programs through the cluster at once, like GNU parallel.

sieci-client comes here when it is given input sources (``::: VALUE...``, ``:::: FILE``, ``-a FILE``;
batch_syntax.py), ``--joblog``, ``--resume``, ``--resume-failed``, ``--retry-failed`` or ``--dry-run``.
The jobs (batch_plan.py) are made as they are taken, up to ``--jobs`` in flight at once, each job slot a
thread of its own that runs the blocking client library (no gevent here). Each job's stdout and
stderr are shown in input order (``--ungroup``: as each job ends): the job
whose turn it is writes straight through, the others' output waits in a spool
file each (batch_output.py), never in memory. A joblog, if asked for, gets one line
per job as it ends; ``--resume`` runs the jobs it does not list; ``--halt`` stops the batch early
(halt.py). A progress bar shows on stderr when stderr is a terminal.

The exit status is GNU parallel's: 0 when every job exited 0, else the
number of jobs that did not (101 for more than 100), and 255 when sieci
could not run the batch at all; with ``--halt``, as halt.py says.
"""

import _signal
import contextlib
import os
import queue
import shutil
import sys
import tempfile
import threading
import types

from sieci import defaults
from sieci.client.batch_output import JobOutput, SpoolFailed, TaggedOutput
from sieci.client.batch_plan import plan, resumed_by
from sieci.client.errors import OutputFailed
from sieci.client.halt import HaltWatch
from sieci.client.joblog import BatchError, JobLog
from sieci.client.output import FdOutput
from sieci.client.batch_job import Programs


def exit_status(failures):
    """GNU parallel's: the number of failed jobs, at most 101."""
    return min(failures, defaults.MOST_FAILURES_COUNTED + 1)


def progress_bar(total):
    """A tqdm bar on stderr, only when stderr is a terminal."""
    if not total or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=sys.stderr, unit="job", dynamic_ncols=True, smoothing=0)


class Terminated(SystemExit):
    """SIGTERM: the batch ends as after Ctrl-C (what ended shown, the spool removed), exit status 143."""


def _terminate(signum, frame):
    raise Terminated(128 + signum)


def _spool_folder():
    try:
        return tempfile.mkdtemp(prefix="sieci-batch-")
    except OSError as error:
        raise BatchError(f"cannot make a folder for the jobs' output in the temp folder (TMPDIR): "
                         f"{error.strerror or error}") from None


class _HaltNow(Exception):
    """--halt now: the batch stops at once, as after Ctrl-C, with --halt's exit status."""


class Batch:
    """Runs the jobs of ``todo`` (a batch_plan.JobQueue) ``parallel`` at a time; shows each one's output, in
    input order (``ungroup``: as each ends), and logs it. A job's output waits in a spool file of its own
    until its turn; the job whose turn it is writes straight through."""

    def __init__(self, client, todo, parallel=8, ungroup=False, log=None, prog="sieci-client", env=None, files=(),
                 returns=(), results=".", resume_with="--resume", tag=False, halt=None):
        self.client = client
        self.job_settings = {"env": env, "programs": Programs(files), "returns": returns, "results": results}
        self.todo = todo
        self.parallel = min(parallel, todo.total)
        self.ungroup = ungroup
        self.log = log
        self.prog = prog
        self.resume_with = resume_with  # the option that runs what an interrupted batch left
        self.tag = tag
        self.halt = HaltWatch(halt, todo.total) if halt is not None else None
        self.output = FdOutput()
        self.taking = threading.Lock()  # the job slots' threads take jobs; the main thread moves the turn
        self.stopped = False  # no more jobs are to start (--halt)
        self.taken = 0
        self.live = {}  # the jobs taken and not yet shown, by index (their place in the output order)
        self.turn = 0  # the index of the job whose output is shown now
        self.ended = 0
        self.failures = 0
        self.spool_failed = False
        self.spools = None  # the private folder of the spool files
        self.bar = None

    def run(self):
        """Runs every job; returns the exit status."""
        self.spools = _spool_folder()
        self.bar = progress_bar(self.todo.total)
        before = _signal.signal(_signal.SIGTERM, _terminate)
        try:
            finished = self._start()
            try:
                self._wait(finished)
            except _HaltNow:
                self._show_what_finished(finished)
            except (KeyboardInterrupt, Terminated):
                self._show_what_finished(finished)
                self._say(f"interrupted: {self.todo.total - self.ended} of {self.todo.total} jobs did not finish"
                          + (f" (the same command with {self.resume_with} runs them)" if self.log is not None else ""))
                raise
        finally:
            self._close()
            _signal.signal(_signal.SIGTERM, before)
        if self.spool_failed:
            return defaults.EXIT_FAILED
        if self.halt is not None:
            self.halt.started = self.taken
            return self.halt.exit_status()
        return exit_status(self.failures)

    def write(self, stream, data):
        """Output of a job, or sieci's word on it, with the progress bar out of the way."""
        with self._bar_cleared():
            self.output.write(stream, data)

    def _say(self, line):
        self.write("stderr", f"{self.prog}: {line}\n".encode())

    def _start(self):
        finished = queue.SimpleQueue()
        started = _start_slots(self.parallel, lambda slot: threading.Thread(target=self._work,
                                                                           args=(slot, finished), daemon=True))
        if started < self.parallel:
            self._say(f"warning: only {started} of --jobs {self.parallel} job slots could start (this process "
                      "may start no more threads)")
            self.parallel = started
        return finished

    def _work(self, slot, finished):
        """A job slot's thread: runs jobs one after another while there are any to start."""
        try:
            while (job := self._take(slot)) is not None:
                job.run(self.client, **self.job_settings)
                finished.put(job)
                if self.halt is not None:  # as GNU parallel: the slot's next job starts once --halt has said
                    job.judged.wait()
        finally:
            finished.put(slot)  # no more jobs from this slot

    def _take(self, slot):
        """The next job to run, made now, in job slot ``slot``; None when none is left to start."""
        with self.taking:
            job = None if self.stopped else next(self.todo, None)
            if job is None:
                return None
            job.index, self.taken = self.taken, self.taken + 1
            job.take_slot(slot)
            job.judged = threading.Event()
            shown = TaggedOutput(self, job.tag) if self.tag else self
            job.output = JobOutput(shown, os.path.join(self.spools, str(job.index)))
            self.live[job.index] = job
            its_turn = not self.ungroup and job.index == self.turn
        if its_turn:
            job.output.show()
        return job

    def _wait(self, finished):
        slots_done = 0
        while slots_done < self.parallel:
            job = finished.get()
            if isinstance(job, int):
                slots_done += 1
            else:
                self._finish(job)

    def _finish(self, job):
        try:
            self._log(job)
            self.failures += job.exit_status != 0
            self.spool_failed |= isinstance(job.output.failure, SpoolFailed)
            if self.ungroup:
                self._show(job)
            else:
                self._show_in_order()
            when = self.halt.ended(job.exit_status) if self.halt is not None else None
            if when:
                self._halting(when, job)
        finally:
            job.judged.set()

    def _halting(self, when, job):
        with self.taking:
            self.stopped = True
            running = self.taken - self.ended
        what = "failed" if job.exit_status else "succeeded"
        self._say(f"halting (--halt {self.halt.halt.text}) after job {job.seq} {what}: no more jobs start, and "
                  + (f"{running} running stopped" if when == "now" else f"{running} running may finish"))
        if when == "now":
            raise _HaltNow()

    def _log(self, job):
        if self.log is not None:
            self.log.add(job)
        job.logged = True
        self.ended += 1
        if self.bar is not None:
            self.bar.update(1)

    def _show_in_order(self):
        """Shows the jobs whose turn it is, as far as they have ended; lets the next one write through."""
        while (job := self.live.get(self.turn)) is not None and job.logged:
            self._show(job)
            with self.taking:
                self.turn += 1
                following = self.live.get(self.turn)
            if following is not None:
                following.output.show()

    def _show(self, job):
        """Shows a finished job's output, then sieci's word on it; again after an interruption, the rest."""
        job.output.show()
        if not job.noted:
            job.noted = True
            self.write("stderr", os.fsencode(job.note(self.prog)))
        job.output.close()
        del self.live[job.index]
        if isinstance(job.output.failure, OutputFailed) and not isinstance(job.output.failure, SpoolFailed):
            raise job.output.failure  # this batch's own stdout or stderr: no later job's output can go there

    def _show_what_finished(self, finished):
        """Ctrl-C, or --halt now: every job the joblog counts as done is shown whole; the others are left."""
        with self.taking:
            self.stopped = True
        while True:
            try:
                job = finished.get_nowait()
            except queue.Empty:
                break
            if not isinstance(job, int):
                self._log(job)
        for job in list(self.live.values()):
            if not job.logged:
                job.output.abandon()
        for job in sorted(self.live.values(), key=lambda job: job.index):
            if job.logged:
                self._show(job)

    def _bar_cleared(self):
        if self.bar is None:
            return contextlib.nullcontext()
        return self.bar.external_write_mode(file=sys.stderr)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
        with self.taking:
            self.stopped = True
            unfinished = [job for job in self.live.values() if not job.logged]
        for job in self.live.values():
            job.output.abandon()
        shutil.rmtree(self.spools, ignore_errors=True)
        if self.log is not None:
            left = [types.SimpleNamespace(previous=line) for line in self.todo.lines_left()]
            self.log.close(unfinished + left)


def dry_run(todo, parallel, tag, output):
    """--dry-run: each job's command, a line each, in order; nothing runs. ``{%}`` is the slot the job
    would take if every job took as long."""
    lines = []
    for job in todo:
        slot = (job.seq - 1) % parallel + 1
        job.take_slot(slot)
        lines.append((job.tag if tag else b"") + os.fsencode(job.shell_line(slot)) + b"\n")
        if len(lines) >= 1024:
            output.write("stdout", b"".join(lines))
            lines.clear()
    output.write("stdout", b"".join(lines))
    return 0


def run(client, args, prog="sieci-client"):
    """Runs the batch that the command line ``args`` asks for; returns the exit status."""
    try:
        kept, todo = plan(args, prog)
        if args.dry_run:
            return dry_run(todo, args.jobs, args.tag, FdOutput())
        log = JobLog(args.joblog, kept) if args.joblog else None
        return Batch(client, todo, args.jobs, args.ungroup, log, prog, args.env, args.files or (),
                     args.returns or (), args.results, resumed_by(args), args.tag, args.halt).run()
    except BatchError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return error.exit_code


def _start_slots(count, thread_of):
    """How many of ``count`` job slots' threads started (``thread_of(slot)`` makes each), as many as
    this process may start (ulimit -u, memory); BatchError if not one could."""
    for slot in range(1, count + 1):
        try:
            thread_of(slot).start()
        except RuntimeError:
            if slot == 1:
                raise BatchError("cannot start a job slot's thread: this process may start no more") from None
            return slot - 1
    return count
