"""Runs one job's code as ``python FILE`` would, in a process of its own.

What one job asks of the worker is one value (JobSettings): made where its
upload is read, passed whole to its run (JobRun), which turns it into the
fork server's request.

Knows nothing of the network: code goes in, ``(stream, bytes)`` output and
a ``results.Status`` come out (see limits.py). Jobs are forked by a fork
server (fork_server.py, zygote.py) that has already started Python, so a job
costs a fork, not an interpreter start. Waiting is done the gevent way, so a
running job never blocks the worker's other links.
"""

import fcntl
import logging
import os
import posix
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence, Tuple, Union

import gevent

from sieci import defaults, splice
from sieci.jobs import sandbox
from sieci.jobs.fork_channel import Request
from sieci.wire import bundle
from sieci.wire.protocol import STDERR, STDOUT
from sieci.wire.upload_format import is_plain_name
from sieci.worker import workdir
from sieci.worker.environment_build import BUILD_FILENAME, BUILD_PROGRAM
from sieci.worker.environment_run import EnvironmentRun, Environments
from sieci.worker.environments import default_environment_options
from sieci.worker.fork_server import ForkServer, ForkServerError, anonymous_file, job_environment
from sieci.worker.isolation import Isolation
from sieci.worker.job_input import JobInput, open_terminal
from sieci.worker.job_output import DRAIN_AFTER_KILL, JobOutput
from sieci.worker.limits import Limits, job_status

log = logging.getLogger("sieci.worker")

# A job's stdin: empty (None), these bytes, or STREAMED by the caller while the job runs (JobRun.write_stdin).
STREAMED = "streamed"


@dataclass(frozen=True)
class JobSettings:
    """One job's settings.

    ``code`` runs as the file ``filename`` (with ``directory``, ``filename``
    is a folder of the files bundle, run as ``python3 FOLDER``, and ``code``
    is not used), with ``args``, and ``env`` over the job's environment.
    ``stdin``: None, bytes, or STREAMED. ``terminal_size``: ``(columns,
    rows)`` of the pseudo-terminal the job runs on, or None. ``line_buffered``:
    its stdout is, as Python has it on a terminal; ``merged``: its stdout and
    stderr are one pipe, so that their writes keep their order; ``fresh``: it
    asked for an interpreter of its own; ``from_stdin``: its code came on the client's stdin, and runs as
    ``python3 -`` runs it (see fresh_command). ``files``: an fd of its files bundle
    (bundle.py), which the run closes, or None. ``returns``: the files it asks
    back, ``(globs, max_bytes)`` as returns.decode_returns has them, or None.
    ``requirements``: the bytes of the requirements file whose environment it runs in, or None;
    ``wheels``: its files bundle holds the wheels to build that from (environment_run.py).
    ``job_name``: how the worker's log names the job (a link_log.JobName), or None.
    """

    code: bytes
    filename: str = defaults.JOB_FILENAME
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: Union[None, bytes, str] = None
    terminal_size: Optional[Tuple[int, int]] = None
    line_buffered: bool = False
    merged: bool = False
    fresh: bool = False
    directory: bool = False
    from_stdin: bool = False
    files: Optional[int] = None
    returns: Optional[tuple] = None
    requirements: Optional[bytes] = None
    wheels: bool = False
    job_name: Optional[object] = None


DISK_CHECK_EVERY = 0.25

# The real close: gevent's (under monkey patching) puts it off until its loop
# next wakes, and a job's pipe must not wait for that to reach end of file.
_close = posix.close


def safe_filename(name):
    """The client's file name if it is a plain, harmless one, else the default."""
    return name if is_plain_name(name) else defaults.JOB_FILENAME


# Variables read by Python as it starts (with every PYTHON* one): the fork server started with
# the job environment's own, so a job that sets one of these gets an interpreter of its own.
LOCALE_VARIABLES = frozenset(["LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE"])


def changes_how_python_starts(env):
    return any(name.startswith("PYTHON") or name in LOCALE_VARIABLES for name in env)


def without_file(settings, command):
    """Whether the job's folder gets no file of its code: a folder program's comes in its bundle, and code
    from the client's stdin that a fresh ``python -`` (``command``) reads comes on its own stdin."""
    return settings.directory or bool(settings.from_stdin and command)


def fresh_command(settings, python, filename, command_prefix=(), fresh_interpreter=False):
    """The command that starts the job afresh, or None when the fork server forks it: ``python FILE ARGS``,
    or ``python - ARGS`` for code that came on the client's stdin (``from_stdin``), which is then given
    the code on its stdin, as ``python3 -`` reads it."""
    if not (command_prefix or fresh_interpreter or settings.fresh or changes_how_python_starts(settings.env)):
        return None
    return [*command_prefix, python, "-" if settings.from_stdin else filename, *settings.args]


class JobRun:
    """One run of a job, whose ``settings`` (a JobSettings) say what it is.

    Use as a context manager, which always kills what is left of the job and
    removes its directory; iterate ``output()`` for what the job writes, then
    read ``status``::

        with JobRun(JobSettings(code), limits) as run:
            for stream, data in run.output():
                ...
            run.status

    ``fork_server`` is the worker's (one job at a time each); without one,
    the run starts a fork server of its own. ``job_user`` is ``(uid, gid)``
    to run the job as. With ``command_prefix`` (a sandbox such as bwrap) or
    ``fresh_interpreter`` (or the job's own ``fresh``), the job is
    ``[*command_prefix, python, FILE]``, started afresh rather than forked.
    ``isolation`` (an Isolation) puts the job in namespaces and a cgroup of
    its own (see sandbox.py, cgroups.py). The job's files bundle is unpacked
    into its folder before the job starts.

    A STREAMED stdin is written through ``write_stdin`` and ``end_stdin``.
    With a ``terminal_size``, the job runs on a pseudo-terminal of that size,
    its controlling terminal: its stdin, stdout and stderr; what it writes
    comes as stdout, and what is written to its stdin is typed on it.
    """

    def __init__(self, settings, limits=None, *, python=None, fork_server=None, job_user=None,
                 command_prefix=(), fresh_interpreter=False, isolation=None):
        self.settings = settings
        self.limits = limits or Limits()
        self.filename = safe_filename(settings.filename)
        self._stdin = JobInput(terminal=bool(settings.terminal_size))
        self.job_user = job_user
        self.python = python or sys.executable
        self.command = fresh_command(settings, self.python, self.filename, command_prefix, fresh_interpreter)
        if self.command and settings.from_stdin:
            self.settings = settings = replace(settings, stdin=settings.code)
        self.isolation = isolation or Isolation(namespaces=False, cgroups=False)
        self.status = None
        self._own_fork_server = fork_server is None
        self._fork_server = fork_server or ForkServer(self.python, self.isolation.walls(self.limits, job_user))
        self._output = JobOutput(self.limits, self.kill)
        self._greenlets = []
        self._time_limit = None  # the event loop's timer that stops the job at its time limit
        self._ended = None  # the fork server's word on how the job ended
        self._workdir = None
        self.pid = None  # the job's first process's, for logs: never signalled (the kernel may give it to another)
        self._pidfd = None  # the job's first process, to kill it without a pid that may have been reused

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._clean_up()
            raise
        return self

    def _start(self):
        settings = self.settings
        if settings.terminal_size:
            stdout_read, slave = open_terminal(*settings.terminal_size)
            stderr_read, fds = None, [slave, os.dup(slave), os.dup(slave)]
            self._stdin.on_terminal(stdout_read)
        else:
            stdout_read, stdout_write = _pipe()
            stderr_read, stderr_write = _pipe() if not settings.merged else (None, os.dup(stdout_write))
            fds = [self._stdin.job_end(settings.stdin is not None), stdout_write, stderr_write]
        fds += [settings.files] if settings.files is not None else []  # before the code, which a sandbox takes last
        try:
            if self.isolation.namespaces:
                # The job's code, for its first process to copy into its own folder.
                fds += [] if without_file(settings, self.command) else [anonymous_file("sieci-job", settings.code)]
            else:
                self._workdir = workdir.make(None if without_file(settings, self.command) else settings.code,
                                             self.filename, self.job_user)
            self.started_at = time.monotonic()
            self.pid, self._pidfd = self._fork_server.start_job(self._request(), fds)
        except BaseException:
            _close(stdout_read)
            if stderr_read is not None:
                _close(stderr_read)
            self._stdin.close()
            raise
        finally:
            for fd in fds:
                _close(fd)
        self._start_greenlets(stdout_read, stderr_read)

    def _request(self):
        """The fork server's request for this job."""
        settings = self.settings
        env = {**job_environment(self._workdir or sandbox.WORKDIR, self.python), **settings.env}
        if settings.line_buffered and self.command:
            env["PYTHONUNBUFFERED"] = "1"  # a command's Python can only be told to buffer nothing
        files_limit = self.limits.disk or bundle.DEFAULT_MAX_SIZE  # the most the bundle may unpack to
        return Request(self.filename, env, self.limits.rlimits(self.isolation.cgroups), self.job_user,
                       self.command, self._workdir, settings.args, settings.line_buffered,
                       files_limit if settings.files is not None else None, settings.directory,
                       tty=bool(settings.terminal_size), from_stdin=settings.from_stdin)

    def _start_greenlets(self, stdout_read, stderr_read):
        self._waiter = gevent.spawn(self._wait_for_exit)
        self._readers = [gevent.spawn(self._output.read_pipe, STDOUT, stdout_read)]
        if stderr_read is not None:
            self._readers.append(gevent.spawn(self._output.read_pipe, STDERR, stderr_read))
        self._greenlets = [self._waiter, *self._readers]
        if isinstance(self.settings.stdin, bytes):
            self._greenlets.append(gevent.spawn(self._stdin.write_all, self.settings.stdin))
        if self.limits.disk and self._workdir:
            self._greenlets.append(gevent.spawn_later(DISK_CHECK_EVERY, self._watch_disk))  # most jobs end first
        if self.limits.timeout:  # here, not only in output(): whoever reads that may be stuck sending it on
            self._time_limit = gevent.get_hub().loop.timer(self.limits.timeout)  # a greenlet would cost more
            self._time_limit.start(self._time_is_up)

    def __exit__(self, *exc_info):
        self._output.torn_down = True
        self.kill()
        self._stdin.close()  # a job the kill missed (it had not yet made its process group) ends at end of file
        self._waiter.join(DRAIN_AFTER_KILL * 5)
        if not self._waiter.ready():
            self._fork_server.close(grace=0)  # wedged: it is started afresh for the next job
        gevent.killall(self._greenlets)
        if self._time_limit is not None:
            self._time_limit.close()
        self._clean_up()

    def write_stdin(self, data):
        """See JobInput.write: False once the job takes no more."""
        return self._stdin.write(data)

    def end_stdin(self):
        self._stdin.end()

    def resize(self, columns, rows):
        self._stdin.resize(columns, rows)

    def _clean_up(self):
        if self._pidfd is not None:
            _close(self._pidfd)
            self._pidfd = None
        if self._own_fork_server:
            self._fork_server.close()
        if self._ended is not None and self._ended.folder_fd is not None:
            _close(self._ended.folder_fd)
        if self._workdir:
            workdir.remove(self._workdir)

    def open_folder(self):
        """A directory fd of the job's folder, for the files it returns; the caller closes it.
        Only once the job and all it left are gone (output() has ended), and before the run
        is left; OSError, saying why, if there is none."""
        if self._ended is None:
            raise OSError("the job's end was not seen: its processes may still run")
        if self._workdir:
            return workdir.open_folder(self._workdir)
        if self._ended.folder_fd is None:
            raise OSError("the job's folder is gone")
        return os.dup(self._ended.folder_fd)

    def kill(self):
        """Kill the job's first process; the fork server then kills all it left (see reaping.wait_for_job)."""
        if self._pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _wait_for_exit(self):
        try:
            self._ended = self._fork_server.wait_job()
            returncode = os.waitstatus_to_exitcode(self._ended.status) if self._ended.status is not None else None
        except ForkServerError as error:
            about, extra = _named(self.settings)
            log.error("%s while %s ran; it starts afresh for the next job", error, about, extra=extra)
            returncode = None
        self._output.hand_over(("exit", returncode))

    def _time_is_up(self):
        if not self._output.limit_hit and self._ended is None:
            self._output.stop("time")

    def _watch_disk(self):
        while workdir.size(self._workdir) <= self.limits.disk:
            gevent.sleep(DISK_CHECK_EVERY)
        self._output.stop("disk")

    def output(self, quiet_every=None):
        """Yield ``(stream, bytes)`` as the job writes; sets ``status`` at the end. With
        ``quiet_every``, also ``(None, b"")`` each time the job has been quiet that many seconds."""
        # A terminal nobody holds takes writes until it is full: its stdin closes with the job.
        on_exit = self._stdin.close if self.settings.terminal_size else None
        returncode = yield from self._output.events(self.started_at, len(self._readers), quiet_every, on_exit)
        self.status = job_status(self.limits, self._output.limit_hit, returncode, self._ended,
                                 self._output.file_too_large)

    def more_output_ready(self):
        """Whether output() has more of the job's output to give at once, without waiting."""
        return self._output.more_ready()


class JobRunner:
    """How a worker runs its jobs (limits, interpreter, user, sandbox), with its fork server, and the
    environments of jobs with requirements (``environments``, an EnvironmentOptions; default: the
    see environments.default_environment_options)."""

    def __init__(self, limits=None, python=None, job_user=None, command_prefix=(), fresh_interpreter=False,
                 isolation=None, environments=None):
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.job_user = job_user
        self.command_prefix = list(command_prefix)
        self.fresh_interpreter = fresh_interpreter
        self.isolation = isolation or Isolation(namespaces=False, cgroups=False)
        self.fork_server = ForkServer(self.python, self.isolation.walls(self.limits, job_user))
        self.environments = Environments(environments or default_environment_options(), self)

    def run(self, settings):
        """A JobRun of the job of ``settings`` (a JobSettings), with this worker's ways (an EnvironmentRun,
        which has a JobRun's ways, for a job with requirements)."""
        if settings.requirements is not None:
            return EnvironmentRun(settings, self.environments,
                                  lambda python, server: self._run(settings, python, server), self._build)
        return self._run(settings, self.python, self.fork_server)

    def _run(self, settings, python, fork_server):
        return JobRun(settings, self.limits, python=python, fork_server=fork_server,
                      job_user=self.job_user, command_prefix=self.command_prefix,
                      fresh_interpreter=self.fresh_interpreter, isolation=self.isolation)

    def _build(self, requirements, network, wheels, files, limits, isolation):
        """The JobRun of an environment's build (environment_build.py)."""
        settings = JobSettings(BUILD_PROGRAM, BUILD_FILENAME, [network, "wheels" if wheels else "no-wheels"],
                               stdin=requirements, merged=True, files=files)
        return JobRun(settings, limits, python=self.python, job_user=self.job_user, isolation=isolation)

    def start(self):
        """Have the fork server ready; ForkServerError if it cannot start."""
        self.fork_server.start()

    def close(self):
        self.fork_server.close()
        self.environments.close()


def _named(settings):
    """``(words, extra)`` that name the job of ``settings`` in a log line (see link_log.JobName)."""
    name = settings.job_name
    return (f"job {name.label}", name.fields) if name is not None else ("a job", {})


def _pipe():
    """A pipe for the job's output: roomy, and our read end non-blocking (a new pipe's only status flag)."""
    read_end, write_end = os.pipe()
    splice.widen(read_end)
    fcntl.fcntl(read_end, fcntl.F_SETFL, os.O_NONBLOCK)
    return read_end, write_end
