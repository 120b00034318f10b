"""The worker's end of its fork server (zygote.py), which forks its jobs one at a time."""

import os
import socket
import sys

import gevent
import gevent.lock
import gevent.socket

from sieci.jobs import fork_channel
from sieci.worker.spawn import SpawnedProcess

CLOSE_GRACE = 1.0  # seconds a fork server gets to end on its own
START_TIMEOUT = 60.0  # seconds a fork server gets to build its walls and say it is ready
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"
ZYGOTE = os.path.join(os.path.dirname(fork_channel.__file__), "zygote.py")  # a script: it runs as __main__


def job_environment(workdir, python):
    """A minimal environment: nothing of the worker's own leaks into a job. The fork
    server runs in it too, so that setting a job's changes little. ``python``'s folder
    comes first in PATH, so that a job's ``python3`` is the interpreter running it."""
    return {
        "PATH": f"{os.path.dirname(python)}:{JOB_PATH}" if os.path.isabs(python) else JOB_PATH,
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


class ForkServerError(Exception):
    """The fork server died or answered nonsense; it is started afresh next time."""


class ForkServer:
    """A worker's zygote process: one job at a time, started when first needed."""

    def __init__(self, python=None, walls=None, interpreter_flags=()):
        """``walls``: the namespaces and cgroup to run jobs in (Isolation.walls), and, for an environment's
        fork server, its "environment"; ``interpreter_flags``: the interpreter's own (an environment's: -S)."""
        self.python = python or sys.executable
        self.walls = walls or {}
        self.interpreter_flags = list(interpreter_flags)
        self._process = None
        self._channel = None
        self._lock = gevent.lock.Semaphore()

    def start(self):
        """Start the fork server unless it runs; ForkServerError, saying why, if it cannot start."""
        with self._lock:
            if self._channel is None:
                self._start()

    def _start(self):
        ours, theirs = gevent.socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = [self.python, *self.interpreter_flags, ZYGOTE, str(theirs.fileno()),
                    fork_channel.encode_walls(self.walls)]
            self._process = SpawnedProcess(argv, job_environment("/", self.python), pass_fds=(theirs.fileno(),))
        except OSError as error:
            ours.close()
            raise ForkServerError(f"the fork server cannot start ({self.python}: {error.strerror or error})") from None
        finally:
            theirs.close()
        self._channel = ours
        why = "it did not answer"
        try:
            with gevent.Timeout(START_TIMEOUT, False):
                message = self._channel.recv(fork_channel.MAX_ANSWER)
                why = fork_channel.decode_ready(message) if message else "it exited at once"
        except (OSError, ValueError) as error:
            why = str(error)
        if why is not None:
            self.close(grace=0)
            raise ForkServerError(f"the fork server cannot start ({why})")

    def start_job(self, request, fds):
        """Fork a job for a ``fork_channel.Request``, with its stdin, stdout and stderr (and,
        sandboxed, its code) in ``fds``; returns its pid and a pidfd of it, which the caller
        closes (a pid may be another process's once the fork server has reaped the job; a
        pidfd never is). Pair every call with ``wait_job``."""
        self._lock.acquire()
        try:
            if self._channel is None:
                self._start()
            request_file = anonymous_file("sieci-request", fork_channel.encode_request(request))
            try:
                socket.send_fds(self._channel, [fork_channel.JOB], [request_file, *fds])
            finally:
                os.close(request_file)
            pid, pidfd = self._receive(fork_channel.decode_started)
            if pidfd is None:
                raise ForkServerError("the fork server sent no pidfd of its job")
            return pid, pidfd
        except BaseException:
            self._lock.release()
            raise

    def wait_job(self):
        """How the job ended, once all it left is gone: a ``fork_channel.Ended``, whose
        ``folder_fd`` (if any) the caller closes."""
        try:
            answer, answer.folder_fd = self._receive(fork_channel.decode_ended)
            return answer
        finally:
            self._lock.release()

    def _receive(self, decode):
        """The next answer, decoded, and the fd that came with it (or None)."""
        fds = []
        try:
            message, fds, _, _ = socket.recv_fds(self._channel, fork_channel.MAX_ANSWER, 1)
            if message:
                return decode(message), fds.pop() if fds else None
        except (OSError, ValueError):
            pass
        finally:
            for fd in fds:
                os.close(fd)
        self.close(grace=0)
        raise ForkServerError("the fork server died")

    def close(self, grace=CLOSE_GRACE):
        """Stop the fork server: it ends on its own once its channel closes (and removes
        its jobs' cgroup), or is killed after ``grace`` seconds."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._process is not None:
            self._process.kill(grace)
            self._process = None


def anonymous_file(name, data):
    """An fd of a new file in memory holding ``data``, read from its start."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
