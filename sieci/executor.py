"""Runs one job's code as ``python FILE`` would, in a process of its own.

Knows nothing of the network: code goes in, ``(stream, bytes)`` output and
a ``protocol.Status`` come out. Waiting is done the gevent way, so a running
job never blocks the worker's other links.
"""

import os
import shutil
import signal
import string
import sys
import tempfile
import time

import gevent
import gevent.os
import gevent.queue
import gevent.subprocess

from .protocol import STDERR, STDOUT, Status

DEFAULT_TIMEOUT = 3600.0
DEFAULT_MAX_OUTPUT = 1 << 30
DEFAULT_FILENAME = "job.py"
READ_SIZE = 64 * 1024
# How long the pipes may stay open once the job has ended or been killed (a
# process that left the job's process group can hold them).
DRAIN_AFTER_KILL = 2.0
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"

_FILENAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._-")


class Limits:
    def __init__(self, timeout=DEFAULT_TIMEOUT, max_output=DEFAULT_MAX_OUTPUT):
        self.timeout = timeout
        self.max_output = max_output


def safe_filename(name):
    """The client's file name if it is a plain, harmless one, else the default."""
    if name and set(name) <= _FILENAME_CHARACTERS and not name.startswith("."):
        return name
    return DEFAULT_FILENAME


def job_environment(workdir):
    """A minimal environment: nothing of the worker's own leaks into a job."""
    return {
        "PATH": JOB_PATH,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


class JobRun:
    """One run of a job's code.

    Use as a context manager, which always kills what is left of the job and
    removes its directory; iterate ``output()`` for what the job writes, then
    read ``status``::

        with JobRun(code, limits) as run:
            for stream, data in run.output():
                ...
            run.status
    """

    def __init__(self, code, limits=None, python=None, filename=DEFAULT_FILENAME):
        self.code = code
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.filename = safe_filename(filename)
        self.status = None
        self._events = gevent.queue.Queue(maxsize=16)
        self._greenlets = []
        self._limit_hit = None
        self._workdir = None
        self._process = None

    def __enter__(self):
        self._workdir = tempfile.mkdtemp(prefix="sieci-job-")
        try:
            self._start()
        except BaseException:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        return self

    def _start(self):
        path = os.path.join(self._workdir, self.filename)
        with open(path, "wb") as file:
            file.write(self.code)
        self.started_at = time.monotonic()
        self._process = gevent.subprocess.Popen(
            [self.python, self.filename],
            cwd=self._workdir,
            env=job_environment(self._workdir),
            stdin=gevent.subprocess.DEVNULL,
            stdout=gevent.subprocess.PIPE,
            stderr=gevent.subprocess.PIPE,
            start_new_session=True,
        )
        self._greenlets = [
            gevent.spawn(self._read_pipe, STDOUT, self._process.stdout),
            gevent.spawn(self._read_pipe, STDERR, self._process.stderr),
            gevent.spawn(self._wait_for_exit),
        ]

    def __exit__(self, *exc_info):
        self.kill()
        gevent.killall(self._greenlets)
        for pipe in (self._process.stdout, self._process.stderr):
            pipe.close()
        self._process.wait()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def kill(self):
        """Kill the job's whole process group, if anything of it is left."""
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _read_pipe(self, stream, pipe):
        fd = pipe.fileno()
        gevent.os.make_nonblocking(fd)
        try:
            while True:
                data = gevent.os.nb_read(fd, READ_SIZE)
                if not data:
                    break
                self._events.put((stream, data))
        except OSError:
            pass
        finally:
            self._events.put((stream, None))

    def _wait_for_exit(self):
        returncode = self._process.wait()
        self.kill()  # what the job left running in its group ends with it
        self._events.put(("exit", returncode))

    def output(self):
        """Yield ``(stream, bytes)`` as the job writes; sets ``status`` at the end."""
        self._deadline = self.started_at + self.limits.timeout
        open_pipes, returncode, written = 2, None, 0
        while open_pipes or returncode is None:
            if not self._limit_hit and returncode is None and time.monotonic() >= self._deadline:
                self._stop("time")
            try:
                kind, data = self._events.get(timeout=max(0.0, self._deadline - time.monotonic()))
            except gevent.queue.Empty:
                if self._limit_hit or returncode is not None:
                    break  # the job is over, yet a process that left its group holds a pipe
                continue
            if kind == "exit":
                returncode = data
                self._allow_draining()
            elif data is None:
                open_pipes -= 1
            elif self._limit_hit != "output":
                allowed = self.limits.max_output - written
                if len(data) > allowed:
                    data = data[:allowed]
                    self._stop("output")
                written += len(data)
                if data:
                    yield kind, data
        self.status = self._status(returncode)

    def _stop(self, limit):
        self._limit_hit = limit
        self.kill()
        self._allow_draining()

    def _allow_draining(self):
        self._deadline = min(self._deadline, time.monotonic() + DRAIN_AFTER_KILL)

    def _status(self, returncode):
        if self._limit_hit == "time":
            return Status(b"limit", b"time", f"the job ran past its time limit of {self.limits.timeout:g} s".encode())
        if self._limit_hit == "output":
            return Status(b"limit", b"output",
                          f"the job's output passed the limit of {self.limits.max_output} bytes and was cut".encode())
        if returncode is None:
            return Status(b"error", b"lost", b"the job's process could not be waited for")
        if returncode < 0:
            return Status(b"signal", str(-returncode).encode())
        return Status(b"exit", str(returncode).encode())
