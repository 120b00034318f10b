"""Runs one job's code as ``python FILE`` would, in a process of its own.

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
import struct
import sys
import termios
import time

import gevent
import gevent.os
import gevent.queue
import gevent.socket

from sieci.wire import bundle
from sieci import defaults, pipes
from sieci.jobs import sandbox
from sieci.worker import workdir
from sieci.jobs.fork_channel import Request
from sieci.worker.fork_server import ForkServer, ForkServerError, anonymous_file, job_environment
from sieci.worker.isolation import Isolation
from sieci.worker.limits import FILE_TOO_LARGE, Limits, job_status
from sieci.wire.protocol import STDERR, STDOUT
from sieci.wire.upload_format import is_plain_name

log = logging.getLogger("sieci.worker")

# Reads from a job's pipes start small and double while they come back full,
# up to the pipe's size: little to allocate for a print, few wake-ups for a flood.
FIRST_READ = 64 * 1024
EVENTS_HELD = 4  # output read and not yet sent: at most this many reads (4 MiB)
HAND_OVER_POLL = 0.1  # seconds; how often a reader waiting on a full queue checks for the run's end
# How long the pipes may stay open once the job has ended or been killed.
DRAIN_AFTER_KILL = 2.0
DISK_CHECK_EVERY = 0.25

# The real close: gevent's (under monkey patching) puts it off until its loop
# next wakes, and a job's pipe must not wait for that to reach end of file.
_close = posix.close

# A job's stdin: empty (None), these bytes, or STREAMED by the caller while the job runs (write_stdin).
STREAMED = "streamed"


class StdinClosed(Exception):
    """The job's stdin was closed while a write to it waited."""


def safe_filename(name):
    """The client's file name if it is a plain, harmless one, else the default."""
    return name if is_plain_name(name) else defaults.JOB_FILENAME


# Variables read by Python as it starts (with every PYTHON* one): the fork server started with
# the job environment's own, so a job that sets one of these gets an interpreter of its own.
LOCALE_VARIABLES = frozenset(["LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE"])


def changes_how_python_starts(env):
    return any(name.startswith("PYTHON") or name in LOCALE_VARIABLES for name in env)


class JobRun:
    """One run of a job's code.

    Use as a context manager, which always kills what is left of the job and
    removes its directory; iterate ``output()`` for what the job writes, then
    read ``status``::

        with JobRun(code, limits) as run:
            for stream, data in run.output():
                ...
            run.status

    ``fork_server`` is the worker's (one job at a time each); without one,
    the run starts a fork server of its own. ``job_user`` is ``(uid, gid)``
    to run the job as. With ``command_prefix`` (a sandbox such as bwrap) or
    ``fresh_interpreter``, the job is ``[*command_prefix, python, FILE]``,
    started afresh rather than forked. ``isolation`` (an Isolation) puts the
    job in namespaces and a cgroup of its own (see sandbox.py, cgroups.py).
    ``files``, an fd of the job's files bundle (see bundle.py; the run closes it),
    is unpacked into the job's folder before the job starts; with ``directory``,
    ``filename`` is a folder of the bundle's, run as ``python3 FOLDER``, and
    ``code`` is not used.

    ``stdin`` is the job's: empty (None), bytes, or STREAMED through
    ``write_stdin`` and ``end_stdin``. With ``tty`` (columns, rows) the job
    runs on a pseudo-terminal of that size, its controlling terminal: its
    stdin, stdout and stderr; what it writes comes as stdout, and what is
    written to its stdin is typed on it.
    """

    def __init__(self, code, limits=None, python=None, filename=defaults.JOB_FILENAME, fork_server=None,
                 job_user=None, command_prefix=(), fresh_interpreter=False, isolation=None, args=(), env=None,
                 line_buffered=False, merged=False, files=None, directory=False, stdin=None, tty=None):
        self.code = code
        self.limits = limits or Limits()
        self.filename = safe_filename(filename)
        self.args = list(args)
        self.env = env or {}
        self.line_buffered = line_buffered  # its stdout, as Python has it on a terminal
        self.merged = merged  # its stdout and stderr one pipe, so that their writes keep their order
        self.files = files
        self.directory = directory
        self.stdin = stdin
        self.tty = tty
        self._stdin_fd = None  # where the job's stdin is written: a pipe's end, or the terminal's (a dup)
        self._stdin_wait = None  # the watcher a write to it waits on, while it waits
        self.job_user = job_user
        self.python = python or sys.executable
        self.command = ([*command_prefix, self.python, self.filename, *self.args]
                        if command_prefix or fresh_interpreter or changes_how_python_starts(self.env) else None)
        self.isolation = isolation or Isolation(namespaces=False, cgroups=False)
        self.status = None
        self._own_fork_server = fork_server is None
        self._fork_server = fork_server or ForkServer(self.python, self.isolation.walls(self.limits, job_user))
        self._events = gevent.queue.Queue(maxsize=EVENTS_HELD)
        self._torn_down = False
        self._greenlets = []
        self._limit_hit = None
        self._file_too_large = False  # it reported a write past its file-size limit
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
        if self.tty:
            stdout_read, slave = _terminal(*self.tty)
            stderr_read, fds = None, [slave, os.dup(slave), os.dup(slave)]
            self._stdin_fd = os.dup(stdout_read)  # its own fd: the reader closes the other at the end
        else:
            stdout_read, stdout_write = _pipe()
            stderr_read, stderr_write = _pipe() if not self.merged else (None, os.dup(stdout_write))
            fds = [self._stdin_for_job(), stdout_write, stderr_write]
        fds += [self.files] if self.files is not None else []  # before the code, which a sandbox takes last
        try:
            if self.isolation.namespaces:
                # The job's code, for its first process to copy into its own folder.
                fds += [] if self.directory else [anonymous_file("sieci-job", self.code)]
            else:
                self._workdir = workdir.make(None if self.directory else self.code, self.filename, self.job_user)
            env = {**job_environment(self._workdir or sandbox.WORKDIR, self.python), **self.env}
            if self.line_buffered and self.command:
                env["PYTHONUNBUFFERED"] = "1"  # a command's Python can only be told to buffer nothing
            request = Request(self.filename, env, self.limits.rlimits(self.isolation.cgroups), self.job_user,
                              self.command, self._workdir, self.args, self.line_buffered,
                              self._files_limit() if self.files is not None else None, self.directory,
                              tty=bool(self.tty))
            self.started_at = time.monotonic()
            self.pid, self._pidfd = self._fork_server.start_job(request, fds)
        except BaseException:
            _close(stdout_read)
            if stderr_read is not None:
                _close(stderr_read)
            self._close_stdin()
            raise
        finally:
            for fd in fds:
                _close(fd)
        self._waiter = gevent.spawn(self._wait_for_exit)
        self._readers = [gevent.spawn(self._read_pipe, STDOUT, stdout_read)]
        if stderr_read is not None:
            self._readers.append(gevent.spawn(self._read_pipe, STDERR, stderr_read))
        self._greenlets = [self._waiter, *self._readers]
        if isinstance(self.stdin, bytes):
            self._greenlets.append(gevent.spawn(self._write_all_stdin, self.stdin))
        if self.limits.disk and self._workdir:
            self._greenlets.append(gevent.spawn_later(DISK_CHECK_EVERY, self._watch_disk))  # most jobs end first
        if self.limits.timeout:  # here, not only in output(): whoever reads that may be stuck sending it on
            self._greenlets.append(gevent.spawn_later(self.limits.timeout, self._time_is_up))

    def _files_limit(self):
        """The most bytes the job's bundle may unpack to: its folder's limit."""
        return self.limits.disk or bundle.DEFAULT_MAX_SIZE

    def __exit__(self, *exc_info):
        self._torn_down = True
        self.kill()
        self._close_stdin()  # a job the kill missed (it had not yet made its process group) ends at end of file
        self._waiter.join(DRAIN_AFTER_KILL * 5)
        if not self._waiter.ready():
            self._fork_server.close(grace=0)  # wedged: it is started afresh for the next job
        gevent.killall(self._greenlets)
        self._clean_up()

    def _stdin_for_job(self):
        """The job's end of its stdin; ours, when there is one, is kept non-blocking in ``_stdin_fd``."""
        if self.stdin is None:
            return os.open(os.devnull, os.O_RDONLY)
        read_end, self._stdin_fd = os.pipe()
        pipes.widen(read_end)
        os.set_blocking(self._stdin_fd, False)
        return read_end

    def write_stdin(self, data):
        """Write ``data`` to the job's stdin, waiting while it is full; False once the job takes no more
        (it closed its stdin, or ended: the rest is to be dropped)."""
        view = memoryview(data)
        while view and self._stdin_fd is not None:
            try:
                view = view[os.write(self._stdin_fd, view):]
            except BlockingIOError:
                self._wait_for_room()
            except OSError:  # EPIPE: nothing of the job holds its stdin open; EIO: its terminal is gone
                self._close_stdin()
        return self._stdin_fd is not None

    def _wait_for_room(self):
        self._stdin_wait = gevent.get_hub().loop.io(self._stdin_fd, 2)
        try:
            gevent.get_hub().wait(self._stdin_wait)
        except StdinClosed:
            pass
        finally:
            self._stdin_wait.close()
            self._stdin_wait = None

    def end_stdin(self):
        """The job's stdin has ended: it reads end of file (on a terminal, a hang-up would end
        the job, so its stdin is left open, as a terminal's is)."""
        if not self.tty:
            self._close_stdin()

    def resize(self, columns, rows):
        """Its terminal has this size now (the job gets SIGWINCH); nothing without one."""
        if self.tty and self._stdin_fd is not None:
            _set_size(self._stdin_fd, columns, rows)

    def _write_all_stdin(self, data):
        self.write_stdin(data)
        self.end_stdin()

    def _close_stdin(self):
        """No more is written to the job's stdin; a write that waits for room gives up."""
        fd, self._stdin_fd = self._stdin_fd, None
        if fd is not None:
            gevent.get_hub().cancel_waits_close_and_then([self._stdin_wait], StdinClosed(), _close, fd)

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
        """Kill the job's first process; the fork server then kills all it left (see zygote.wait_for_job)."""
        if self._pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _read_pipe(self, stream, fd):
        """Reads go into one buffer, and what they bring is copied out at its size: a read of a
        pipe's size that brings less (a filter's output, paced by its input) would otherwise
        leave the rest of its allocation as a hole in the heap, under bytes that live on."""
        gevent.os.make_nonblocking(fd)
        try:
            buffer = memoryview(bytearray(FIRST_READ))
            while True:
                try:
                    size = os.readv(fd, [buffer])
                except BlockingIOError:
                    gevent.socket.wait_read(fd)
                    continue
                if not size:
                    break
                self._hand_over((stream, bytes(buffer[:size])))
                if size == len(buffer) < pipes.PIPE_SIZE:
                    buffer = memoryview(bytearray(min(2 * size, pipes.PIPE_SIZE)))
        except OSError:
            pass
        finally:
            _close(fd)
            self._hand_over((stream, None))

    def _wait_for_exit(self):
        try:
            self._ended = self._fork_server.wait_job()
            returncode = os.waitstatus_to_exitcode(self._ended.status) if self._ended.status is not None else None
        except ForkServerError as error:
            log.error("%s while a job ran; it starts afresh for the next job", error)
            returncode = None
        self._hand_over(("exit", returncode))

    def _hand_over(self, event):
        """Queue an event for output(), waiting while the queue is full.

        Once the run is being torn down nobody reads the queue any more, so
        the event is dropped: a reader never waits on it for ever.
        """
        while not self._torn_down:
            try:
                self._events.put(event, timeout=HAND_OVER_POLL)
                return
            except gevent.queue.Full:
                pass

    def _time_is_up(self):
        if not self._limit_hit and self._ended is None:
            self._stop("time")

    def _watch_disk(self):
        while workdir.size(self._workdir) <= self.limits.disk:
            gevent.sleep(DISK_CHECK_EVERY)
        self._stop("disk")

    def output(self, quiet_every=None):
        """Yield ``(stream, bytes)`` as the job writes; sets ``status`` at the end. With
        ``quiet_every``, also ``(None, b"")`` each time the job has been quiet that many seconds."""
        self._deadline = self.started_at + self.limits.timeout
        open_pipes, ended, returncode, written = len(self._readers), False, None, 0
        while open_pipes or not ended:
            if not self._limit_hit and not ended and time.monotonic() >= self._deadline:
                self._stop("time")
            wait = max(0.0, self._deadline - time.monotonic())
            try:
                kind, data = self._events.get(timeout=min(wait, quiet_every) if quiet_every else wait)
            except gevent.queue.Empty:
                if quiet_every and time.monotonic() < self._deadline:
                    yield None, b""
                    continue
                if self._limit_hit or ended:
                    break  # the job is over, yet something holds a pipe
                continue
            if kind == "exit":
                ended, returncode = True, data
                self._allow_draining()
                if self.tty:
                    self._close_stdin()  # a terminal nobody holds takes writes until it is full
            elif data is None:
                open_pipes -= 1
            elif self._limit_hit != "output":
                allowed = self.limits.max_output - written
                if len(data) > allowed:
                    data = data[:allowed]
                    self._stop("output")
                written += len(data)
                self._file_too_large = self._file_too_large or FILE_TOO_LARGE in data
                if data:
                    yield kind, data
        self.status = job_status(self.limits, self._limit_hit, returncode, self._ended, self._file_too_large)

    def more_output_ready(self):
        """Whether output() has more of the job's output to give at once, without waiting."""
        try:
            kind, data = self._events.peek(block=False)
        except gevent.queue.Empty:
            return False
        return kind in (STDOUT, STDERR) and data is not None

    def _stop(self, limit):
        self._limit_hit = limit
        self.kill()
        # Not min(): at the time limit, the deadline has passed, and the result must still
        # wait until the job is known to be dead (every process of it gone) or this runs out.
        self._deadline = time.monotonic() + DRAIN_AFTER_KILL

    def _allow_draining(self):
        self._deadline = min(self._deadline, time.monotonic() + DRAIN_AFTER_KILL)


class JobRunner:
    """How a worker runs its jobs (limits, interpreter, user, sandbox), with its fork server."""

    def __init__(self, limits=None, python=None, job_user=None, command_prefix=(), fresh_interpreter=False,
                 isolation=None):
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.job_user = job_user
        self.command_prefix = list(command_prefix)
        self.fresh_interpreter = fresh_interpreter
        self.isolation = isolation or Isolation(namespaces=False, cgroups=False)
        self.fork_server = ForkServer(self.python, self.isolation.walls(self.limits, job_user))

    def run(self, code, filename=defaults.JOB_FILENAME, args=(), env=None, line_buffered=False, merged=False,
            files=None, directory=False, fresh=False, stdin=None, tty=None):
        """``fresh``: this job asked for an interpreter of its own."""
        return JobRun(code, self.limits, self.python, filename, self.fork_server, self.job_user, self.command_prefix,
                      self.fresh_interpreter or fresh, self.isolation, args, env, line_buffered, merged, files,
                      directory, stdin, tty)

    def start(self):
        """Have the fork server ready; ForkServerError if it cannot start."""
        self.fork_server.start()

    def close(self):
        self.fork_server.close()


def _pipe():
    read_end, write_end = os.pipe()
    pipes.widen(read_end)
    return read_end, write_end


def _terminal(columns, rows):
    """A new pseudo-terminal of that size: ``(master, slave)``, the master non-blocking."""
    master, slave = os.openpty()
    _set_size(master, columns, rows)
    os.set_blocking(master, False)
    return master, slave


def _set_size(fd, columns, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
