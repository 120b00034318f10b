"""Batches: many Python programs through the cluster at once, like GNU parallel.

sieci-client comes here when it is given ``::: VALUE...``, ``-a FILE``,
``--joblog`` or ``--retry-failed``. Each value makes one job: the command
line's PROG and ARGs with ``{}`` replaced by the value, or with the value
added at the end (with no PROG, the value is the PROG). Up to ``--jobs`` jobs
are in flight at once, each in a thread of its own that runs the blocking
client library (no gevent here). Each job's stdout and stderr are collected
whole and written in input order (``--ungroup``: as each job ends); a
joblog, if asked for, gets one line per job; a progress bar shows on stderr
when stderr is a terminal.

The exit status is GNU parallel's: 0 when every job exited 0, else the
number of jobs that did not (101 for more than 100), and 255 when sieci
could not run the batch at all.
"""

import contextlib
import os
import queue
import shlex
import sys
import threading
import time

from . import defaults
from .client import ClientError, FdOutput, load_program

COLUMNS = ("Seq", "Command", "Master", "Worker", "Starttime", "JobRuntime", "Exitval", "Bytes", "Reason", "JobId")
PLACEHOLDER = "{}"
HEADER = "\t".join(COLUMNS)
NO_ID_HEADER = "\t".join(COLUMNS[:-1])  # older sieci's: no job ids (read with "-" for them)
FILE_HEADER = NO_ID_HEADER.replace("Command", "File")  # older yet: one file, no arguments
NOTHING = "-"  # a joblog field with no value
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


class BatchError(Exception):
    """sieci cannot run the batch at all (exit status 255); the message says why."""


class Job:
    """One job of the batch (``command``: PROG and its ARGs), and what became of it.

    ``seq`` is its number in the joblog (its place in the input, kept when
    it is retried); ``previous`` is its line in the joblog being retried.
    """

    def __init__(self, seq, command, previous=None):
        self.seq = seq
        self.command = command
        self.path = command[0]
        self.previous = previous
        self.index = None  # its place in this run's output order
        self.result = None
        self.failure = None  # why sieci could not run it
        self.started = None
        self.runtime = None
        self.bytes = 0

    def run(self, client, env=None, programs=None, returns=(), results="."):
        """Run it; the files it returns go to its own folder in ``results``, named by its number."""
        self.started, clock = time.time(), time.monotonic()
        try:
            program = (programs or Programs()).load(self.path)
            self.result = client.run_program(program, None, self.command[1:], env, returns=returns,
                                             results=os.path.join(results, str(self.seq)))
        except ClientError as error:
            self.failure = str(error) or type(error).__name__
        except Exception as error:  # noqa: BLE001 - a bug must fail this job, not hang the batch
            self.failure = f"unexpected error: {error!r}"
        self.runtime = time.monotonic() - clock
        if self.result is not None:
            self.bytes = len(self.result.stdout) + len(self.result.stderr)

    @property
    def finished(self):
        return self.runtime is not None

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

    def streams(self, prog):
        """What to show: the job's stdout, and its stderr followed by sieci's word on it."""
        stdout = self.result.stdout if self.result is not None else b""
        stderr = self.result.stderr if self.result is not None else b""
        if self.failure is not None:
            stderr += os.fsencode(f"{prog}: error: {self.path}: {self.failure}\n")
        elif self.result.not_returned:
            from .client_command import not_returned_lines

            stderr += os.fsencode("".join(not_returned_lines(self.result, prog, f"{self.path}: ")))
        elif self.reason:
            stderr += os.fsencode(f"{prog}: {self.path}: {self.reason}\n")
        return stdout, stderr

    def release(self):
        """Drop its output once shown: a long batch need not keep it all."""
        if self.result is not None:
            self.result.stdout = self.result.stderr = b""


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


# The joblog.

def escape(text):
    """A command as one joblog field: backslash, tab, CR and newline escaped."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def unescape(field):
    chars, rest = [], iter(field)
    for char in rest:
        if char == "\\":
            after = next(rest, "")
            char = _UNESCAPES.get(after, "\\" + after)
        chars.append(char)
    return "".join(chars)


def _one_line(text):
    return " ".join(str(text).split()) or NOTHING


def joblog_line(job):
    result = job.result
    fields = [str(job.seq), escape(shlex.join(job.command)),
              _one_line(result.master if result else NOTHING), _one_line(result.worker if result else NOTHING),
              f"{job.started:.3f}", f"{job.runtime:.3f}", str(job.exit_status), str(job.bytes),
              _one_line(job.reason or NOTHING), _one_line(result.job_id or NOTHING if result else NOTHING)]
    return "\t".join(fields)


def _open_text(path, mode):
    return open(path, mode, encoding="utf-8", errors="surrogateescape", newline="")


class JobLog:
    """The joblog being written: the header, the lines kept, then a line per job as it ends."""

    def __init__(self, path, kept=()):
        self.path = path
        try:
            self.file = _open_text(path, "w")
        except OSError as error:
            raise BatchError(f"cannot write the joblog {path}: {error.strerror or error}") from None
        self._write([HEADER, *kept])

    def add(self, job):
        self._write([joblog_line(job)])

    def close(self, unfinished=()):
        """Puts back the old lines of retried jobs that did not finish (say, after Ctrl-C)."""
        try:
            self._write([job.previous for job in unfinished if job.previous is not None])
        finally:
            self.file.close()

    def _write(self, lines):
        try:
            self.file.write("".join(line + "\n" for line in lines))
            self.file.flush()
        except OSError as error:
            raise BatchError(f"cannot write the joblog {self.path}: {error.strerror or error}") from None


def read_joblog(path):
    """For --retry-failed: the joblog's lines of jobs that exited 0, and the jobs to run again."""
    try:
        with _open_text(path, "r") as file:
            lines = file.read().split("\n")
    except OSError as error:
        raise BatchError(f"cannot read the joblog {path}: {error.strerror or error}") from None
    if lines[0] not in (HEADER, NO_ID_HEADER, FILE_HEADER):
        raise BatchError(f"{path} is not a sieci joblog (its first line is not the header)")
    kept, again, of_files = [], [], lines[0] == FILE_HEADER
    for number, line in enumerate(lines[1:], 2):
        if line.strip():
            line += "" if lines[0] == HEADER else "\t" + NOTHING
            seq, command, exitval = _parse_line(line, f"{path}:{number}", of_files)
            if of_files:  # rewritten under the new header: the file as a command
                fields = line.split("\t")
                line = "\t".join([fields[0], escape(shlex.join(command)), *fields[2:]])
            if exitval == 0:
                kept.append(line)
            else:
                again.append(Job(seq, command, previous=line))
    return kept, sorted(again, key=lambda job: job.seq)


def _parse_line(line, where, of_files=False):
    fields = line.split("\t")
    try:
        if len(fields) != len(COLUMNS):
            raise ValueError
        command = [unescape(fields[1])] if of_files else shlex.split(unescape(fields[1]))
        if not command:
            raise ValueError
        return int(fields[0]), command, int(fields[6])
    except ValueError:
        raise BatchError(f"{where}: not a joblog line ({len(COLUMNS)} tab-separated columns)") from None


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


def plan(args):
    """The joblog lines to keep and the jobs to run, as the command line asks."""
    if args.retry_failed:
        return read_joblog(args.joblog)
    if args.batch_values is None and not args.arg_file:  # --joblog alone: the one job of the command line
        return [], [Job(1, args.command)]
    values = list(args.batch_values or []) + (read_values(args.arg_file) if args.arg_file else [])
    commands = [command_for(args.command, value) for value in values]
    if any(command[0] == "-" for command in commands):
        raise BatchError("- (stdin) cannot be the PROG of a batch's job")
    return [], [Job(seq, command) for seq, command in enumerate(commands, 1)]


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


def _work(client, settings, todo, finished):
    while True:
        try:
            job = todo.get_nowait()
        except queue.Empty:
            return
        job.run(client, **settings)
        finished.put(job)


class Batch:
    """Runs jobs ``parallel`` at a time; shows each one's output whole, and logs it."""

    def __init__(self, client, jobs, parallel=8, ungroup=False, log=None, prog="sieci-client", env=None, files=(),
                 returns=(), results="."):
        self.client = client
        self.job_settings = {"env": env, "programs": Programs(files), "returns": returns, "results": results}
        self.jobs = jobs
        self.parallel = parallel
        self.ungroup = ungroup
        self.log = log
        self.prog = prog
        self.output = FdOutput()
        self.ready = {}  # finished jobs waiting for their turn to show, by index
        self.shown = 0
        self.bar = None

    def run(self):
        """Runs every job; returns the exit status."""
        self.bar = progress_bar(len(self.jobs))
        finished = self._start()
        try:
            for _ in self.jobs:
                self._finish(finished.get())
        finally:
            self._close()
        return exit_status(sum(job.exit_status != 0 for job in self.jobs))

    def _start(self):
        todo, finished = queue.SimpleQueue(), queue.SimpleQueue()
        for index, job in enumerate(self.jobs):
            job.index = index
            todo.put(job)
        for _ in range(min(self.parallel, len(self.jobs))):
            threading.Thread(target=_work, args=(self.client, self.job_settings, todo, finished), daemon=True).start()
        return finished

    def _finish(self, job):
        if self.log is not None:
            self.log.add(job)
        if self.ungroup:
            self._show(job)
        else:
            self._show_in_order(job)
        if self.bar is not None:
            self.bar.update(1)

    def _show(self, job):
        stdout, stderr = job.streams(self.prog)
        with self._bar_cleared():
            self.output.write("stdout", stdout)
            self.output.write("stderr", stderr)
        job.release()

    def _show_in_order(self, job):
        self.ready[job.index] = job
        while self.shown in self.ready:
            self._show(self.ready.pop(self.shown))
            self.shown += 1

    def _bar_cleared(self):
        if self.bar is None:
            return contextlib.nullcontext()
        return self.bar.external_write_mode(file=sys.stderr)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
        if self.log is not None:
            self.log.close([job for job in self.jobs if not job.finished])


def run(client, args, prog="sieci-client"):
    """Runs the batch that the command line ``args`` asks for; returns the exit status."""
    try:
        kept, jobs = plan(args)
        log = JobLog(args.joblog, kept) if args.joblog else None
        return Batch(client, jobs, args.jobs, args.ungroup, log, prog, args.env, args.files or (),
                     args.returns or (), args.results).run()
    except BatchError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return defaults.EXIT_FAILED
