"""Batches: many Python programs through the cluster at once, like GNU parallel.

sieci-client comes here when it is given ``::: VALUE...``, ``-a FILE``,
``--joblog``, ``--resume``, ``--resume-failed`` or ``--retry-failed``. Each
value makes one job: the command line's PROG and ARGs with ``{}`` replaced by
the value, or with the value added at the end (with no PROG, the value is the
PROG). Up to ``--jobs`` jobs are in flight at once, each in a thread of its own
that runs the blocking client library (no gevent here). Each job's stdout and
stderr are shown in input order (``--ungroup``: as each job ends): the job
whose turn it is writes straight through, the others' output waits in a spool
file each (batch_output.py), never in memory. A joblog, if asked for, gets one line
per job as it ends; ``--resume`` runs the jobs it does not list. A progress
bar shows on stderr when stderr is a terminal.

The exit status is GNU parallel's: 0 when every job exited 0, else the
number of jobs that did not (101 for more than 100), and 255 when sieci
could not run the batch at all.
"""

import _signal
import contextlib
import os
import queue
import shlex
import shutil
import sys
import tempfile
import threading
import time

from sieci import defaults
from sieci.client.batch_output import JobOutput, SpoolFailed
from sieci.client.errors import ClientError, OutputFailed
from sieci.client.joblog import BatchError, JobLog, JoblogMismatch, read_joblog
from sieci.client.output import FdOutput
from sieci.client.program import load_program
from sieci.client.result import not_returned_lines

PLACEHOLDER = "{}"


class BatchJob:
    """One job of the batch (``command``: PROG and its ARGs), and what became of it.

    ``seq`` is its number in the joblog (its place in the input, kept when
    it is run again); ``previous`` is its line in the joblog being resumed or retried.
    ``output`` (a batch_output.JobOutput) takes its output until it is shown.
    """

    def __init__(self, seq, command, previous=None):
        self.seq = seq
        self.command = command
        self.path = command[0]
        self.previous = previous
        self.index = None  # its place in this run's output order
        self.output = None
        self.result = None
        self.failure = None  # why sieci could not run it
        self.started = None
        self.runtime = None
        self.logged = False  # its joblog line is written: it counts as done
        self.noted = False  # sieci's word on it is shown

    def run(self, client, env=None, programs=None, returns=(), results="."):
        """Run it; the files it returns go to its own folder in ``results``, named by its number."""
        self.started, clock = time.time(), time.monotonic()
        try:
            program = (programs or Programs()).load(self.path)
            self.result = client.run_program(program, self.output, self.command[1:], env, returns=returns,
                                             results=os.path.join(results, str(self.seq)))
        except ClientError as error:
            self.failure = str(error) or type(error).__name__
        except Exception as error:  # noqa: BLE001 - a bug must fail this job, not hang the batch
            self.failure = f"unexpected error: {error!r}"
        self.runtime = time.monotonic() - clock
        if self.output is not None:
            self.output.writes_ended()

    @property
    def bytes(self):
        return self.output.bytes if self.output is not None else 0

    @property
    def exit_status(self):
        if self.result is None or self.result.not_returned:
            return defaults.EXIT_FAILED
        return self.result.exit_status

    @property
    def reason(self):
        """Why sieci could not run it, which limit it hit, or that files it returned were not written;
        None if none of these."""
        if self.failure is not None:
            return self.failure
        if self.result.not_returned:
            return f"{len(self.result.not_returned)} of the files it returned not written"
        return self.result.message if self.result.limit else None

    def note(self, prog):
        """sieci's word on it for stderr, after its own output ("" if none)."""
        if self.failure is not None:
            return f"{prog}: error: {self.path}: {self.failure}\n"
        if self.result.not_returned:
            return "".join(not_returned_lines(self.result, prog, f"{self.path}: "))
        if self.reason:
            return f"{prog}: {self.path}: {self.reason}\n"
        return ""


class Programs:
    """A batch's programs, each with the ``files`` (``--with``) beside it. One with files, or a
    folder, is loaded once, so its bundle is packed once and travels to each worker once;
    a plain file is read afresh for each job, as it always was."""

    def __init__(self, files=()):
        self.files = list(files)
        self.loaded = {}
        self.lock = threading.Lock()

    def load(self, path):
        if not self.files and not os.path.isdir(path):
            return load_program(path)
        with self.lock:
            if path not in self.loaded:
                self.loaded[path] = load_program(path, self.files)
            return self.loaded[path]


def exit_status(failures):
    """GNU parallel's: the number of failed jobs, at most 101."""
    return min(failures, defaults.MOST_FAILURES_COUNTED + 1)


# Resuming and retrying.

def retried(runs):
    """--retry-failed without the batch's values: the joblog's lines of jobs that exited 0, kept, and its
    other jobs to run again, in Seq order."""
    again = [BatchJob(run.seq, run.command, previous=run.line) for run in runs if run.exitval != 0]
    return [run.line for run in runs if run.exitval == 0], sorted(again, key=lambda job: job.seq)


def resumed(jobs, runs, path, rerun_failed):
    """--resume: the joblog's lines of the batch's ``jobs`` it lists, kept, and the jobs it does not
    list, to run; ``rerun_failed`` (--resume-failed): those it lists as not exiting 0 run again too.
    A line whose Seq or command is not the batch's is refused: the joblog is another batch's."""
    by_seq = {job.seq: job for job in jobs}
    kept, listed = [], set()
    for run in runs:
        job = by_seq.get(run.seq)
        if job is None:
            raise JoblogMismatch(f"{path} is not this batch's joblog: its Seq {run.seq} is past this batch's "
                                 f"{len(jobs)} jobs")
        if job.command != run.command:
            raise JoblogMismatch(f"{path} is not this batch's joblog: its Seq {run.seq} ran "
                                 f"{shlex.join(run.command)!r}, where this batch's job {run.seq} is "
                                 f"{shlex.join(job.command)!r}")
        listed.add(run.seq)
        if rerun_failed and run.exitval != 0:
            job.previous = run.line
        else:
            kept.append(run.line)
    return kept, [job for job in jobs if job.seq not in listed or job.previous is not None]


# What to run.

def read_values(path):
    """-a: one value a line (``-``: stdin); blank lines ignored."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as file:
                data = file.read()
    except OSError as error:
        raise BatchError(f"cannot read the -a file {path}: {error.strerror or error}") from None
    return [os.fsdecode(line) for line in data.split(b"\n") if line.strip()]


def plan(args, prog="sieci-client"):
    """The joblog lines to keep and the jobs to run, as the command line asks."""
    has_values = args.batch_values is not None or bool(args.arg_file)
    resuming = args.resume or args.resume_failed or (args.retry_failed and has_values)
    if args.retry_failed and not has_values:
        return retried(_past_runs(args.joblog, prog))
    if not has_values:  # --joblog alone: the one job of the command line
        return [], [BatchJob(1, args.command)]
    values = list(args.batch_values or []) + (read_values(args.arg_file) if args.arg_file else [])
    commands = [command_for(args.command, value) for value in values]
    if any(command[0] == "-" for command in commands):
        raise BatchError("- (stdin) cannot be the PROG of a batch's job")
    jobs = [BatchJob(seq, command) for seq, command in enumerate(commands, 1)]
    if not resuming:
        return [], jobs
    runs = _past_runs(args.joblog, prog, missing_ok=True)
    return resumed(jobs, runs, args.joblog, rerun_failed=args.resume_failed or args.retry_failed)


def _resumed_by(args):
    """The option that runs what this batch leaves if it is interrupted: a retry from the joblog alone keeps
    the old lines of the jobs it did not finish, so another retry runs them."""
    if args.retry_failed and args.batch_values is None and not args.arg_file:
        return "--retry-failed"
    return "--resume"


def _past_runs(path, prog, missing_ok=False):
    runs, cut = read_joblog(path, missing_ok)
    if cut is not None:
        sys.stderr.write(f"{prog}: {path}:{cut}: the last line is cut short; its job counts as not run\n")
    return runs


def command_for(template, value):
    """GNU parallel's rule: ``{}`` in PROG or its ARGs is the value; with none, the value comes last."""
    if any(PLACEHOLDER in word for word in template):
        return [word.replace(PLACEHOLDER, value) for word in template]
    return [*template, value]


# Running.

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


def _work(client, settings, todo, finished):
    while True:
        try:
            job = todo.get_nowait()
        except queue.Empty:
            return
        job.run(client, **settings)
        finished.put(job)


class Batch:
    """Runs jobs ``parallel`` at a time; shows each one's output, in input order (``ungroup``: as each
    ends), and logs it. A job's output waits in a spool file of its own until its turn; the job
    whose turn it is writes straight through."""

    def __init__(self, client, jobs, parallel=8, ungroup=False, log=None, prog="sieci-client", env=None, files=(),
                 returns=(), results=".", resume_with="--resume"):
        self.client = client
        self.job_settings = {"env": env, "programs": Programs(files), "returns": returns, "results": results}
        self.jobs = jobs
        self.parallel = parallel
        self.ungroup = ungroup
        self.log = log
        self.prog = prog
        self.resume_with = resume_with  # the option that runs what an interrupted batch left
        self.output = FdOutput()
        self.waiting = {}  # finished jobs whose output waits for its turn, by index
        self.turn = 0  # the index of the job whose output is shown now (in input order)
        self.spools = None  # the private folder of the spool files
        self.bar = None

    def run(self):
        """Runs every job; returns the exit status."""
        self.spools = _spool_folder()
        self.bar = progress_bar(len(self.jobs))
        before = _signal.signal(_signal.SIGTERM, _terminate)
        try:
            finished = self._start()
            try:
                for _ in self.jobs:
                    self._finish(finished.get())
            except (KeyboardInterrupt, Terminated):
                self._show_what_finished(finished)
                raise
        finally:
            self._close()
            _signal.signal(_signal.SIGTERM, before)
        if any(isinstance(job.output.failure, SpoolFailed) for job in self.jobs):
            return defaults.EXIT_FAILED
        return exit_status(sum(job.exit_status != 0 for job in self.jobs))

    def write(self, stream, data):
        """Output of a job, or sieci's word on it, with the progress bar out of the way."""
        with self._bar_cleared():
            self.output.write(stream, data)

    def _start(self):
        todo, finished = queue.SimpleQueue(), queue.SimpleQueue()
        for index, job in enumerate(self.jobs):
            job.index = index
            job.output = JobOutput(self, os.path.join(self.spools, str(index)))
            todo.put(job)
        if self.jobs and not self.ungroup:
            self.jobs[0].output.show()
        for _ in range(min(self.parallel, len(self.jobs))):
            threading.Thread(target=_work, args=(self.client, self.job_settings, todo, finished), daemon=True).start()
        return finished

    def _finish(self, job):
        self._log(job)
        self.waiting[job.index] = job
        if self.ungroup:
            self._show(job)
        else:
            self._show_in_order()

    def _log(self, job):
        if self.log is not None:
            self.log.add(job)
        job.logged = True
        if self.bar is not None:
            self.bar.update(1)

    def _show_in_order(self):
        while self.turn in self.waiting:
            self._show(self.waiting[self.turn])
            self.turn += 1
            if self.turn < len(self.jobs):
                self.jobs[self.turn].output.show()

    def _show(self, job):
        """Shows a finished job's output, then sieci's word on it; again after an interruption, the rest."""
        job.output.show()
        if not job.noted:
            job.noted = True
            self.write("stderr", os.fsencode(job.note(self.prog)))
        job.output.close()
        del self.waiting[job.index]
        if isinstance(job.output.failure, OutputFailed) and not isinstance(job.output.failure, SpoolFailed):
            raise job.output.failure  # this batch's own stdout or stderr: no later job's output can go there

    def _show_what_finished(self, finished):
        """Ctrl-C: every job the joblog counts as done is shown whole; the others are left."""
        while True:
            try:
                self._log(finished.get_nowait())
            except queue.Empty:
                break
        for job in self.jobs:
            if not job.logged:
                job.output.abandon()
        for job in sorted(self.waiting.values(), key=lambda job: job.index):
            self._show(job)
        left = sum(not job.logged for job in self.jobs)
        again = f" (the same command with {self.resume_with} runs them)" if self.log is not None else ""
        self.write("stderr", f"{self.prog}: interrupted: {left} of {len(self.jobs)} jobs did not finish{again}\n"
                   .encode())

    def _bar_cleared(self):
        if self.bar is None:
            return contextlib.nullcontext()
        return self.bar.external_write_mode(file=sys.stderr)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
        for job in self.jobs:
            if job.output is not None:
                job.output.abandon()
        shutil.rmtree(self.spools, ignore_errors=True)
        if self.log is not None:
            self.log.close([job for job in self.jobs if not job.logged])


def run(client, args, prog="sieci-client"):
    """Runs the batch that the command line ``args`` asks for; returns the exit status."""
    try:
        kept, jobs = plan(args, prog)
        log = JobLog(args.joblog, kept) if args.joblog else None
        return Batch(client, jobs, args.jobs, args.ungroup, log, prog, args.env, args.files or (),
                     args.returns or (), args.results, _resumed_by(args)).run()
    except BatchError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return error.exit_code
