"""The messages between a worker and its fork server (zygote.py), made and read here only.

The worker starts the fork server with its walls (``encode_walls``) and a
SOCK_SEQPACKET socketpair; each message is one packet holding one JSON object:

- a request (worker to fork server, and on to the job's process): the word JOB,
  with file descriptors beside it: first an anonymous file holding what the job
  is (``encode_request``), then its stdin, stdout and stderr (and its files and,
  sandboxed, its code). The fork server only passes the fds on: it never reads a
  job's request, so nothing of one (its arguments, its environment's secrets) is
  left in its memory for the jobs it forks later;
- ready (fork server to worker, once, first): it has built its walls and takes requests,
  or why it cannot;
- started (fork server to worker): the job's pid, at once;
- ended (fork server to worker): how the job ended, once all it left is gone,
  or why it could not start; for a sandboxed job, with its folder's fd beside it;
- a report (a sandboxed job's init or process to the fork server): how the job
  ended (and, from the init, its folder's fd), or why it could not start.

No I/O, and the standard library only: the fork server (zygote.py) imports
it, and any Python from 3.9 runs that.
"""

import json

JOB = b"job"
# A request's: the request's file, stdin, stdout, stderr, the files bundle if any and, sandboxed, the code.
MAX_FDS = 6
MAX_REQUEST = 16 << 20  # bytes of a request's file read (its environment and arguments are the client's)
MAX_ANSWER = 1 << 16


class MalformedMessage(ValueError):
    """A message that is not one of this channel's."""


class Request:
    """What the job's process needs to become the job: its file's name, environment, the
    rlimits it takes, the user ``[uid, gid]`` it runs as, a command to exec instead of the
    file, its working directory (none when the sandbox makes it), its arguments, whether
    its stdout is line-buffered (as on a terminal), the most bytes its files bundle may unpack
    to (None: it has none), whether the program is a folder (in the bundle) rather than a file,
    whether its stdin is a terminal to make its controlling one, and whether its code came on the
    client's stdin (run as ``python3 -`` runs it)."""

    def __init__(self, filename, env, limits=None, user=None, command=None, workdir=None, args=(),
                 line_buffered=False, files=None, directory=False, tty=False, from_stdin=False):
        self.filename = filename
        self.env = env
        self.limits = limits or {}
        self.user = user
        self.command = command
        self.workdir = workdir
        self.args = list(args)
        self.line_buffered = line_buffered
        self.files = files
        self.directory = directory
        self.tty = tty
        self.from_stdin = from_stdin


class Ended:
    """How a job ended: its raw wait ``status``, the ``cpu`` seconds it used and the
    limits it ``hit``; or, for a job that could not start, the ``error``. ``folder_fd``:
    a sandboxed job's folder, which no path outside its namespaces reaches, as a
    directory fd passed beside the answer (None: there is none)."""

    def __init__(self, status=None, cpu=None, hit=(), error=None, folder_fd=None):
        self.status = status
        self.cpu = cpu
        self.hit = hit
        self.error = error
        self.folder_fd = folder_fd


def encode_walls(walls):
    """The fork server's argument: the namespaces and cgroup its jobs run in (Isolation.walls)."""
    return json.dumps(walls)


def decode_walls(argument):
    return json.loads(argument)


def encode_request(request):
    return json.dumps(vars(request)).encode()


def decode_request(message):
    try:
        return Request(**json.loads(message))
    except TypeError as error:
        raise MalformedMessage(f"not a request: {error}") from None


def encode_ready(error=None):
    return json.dumps({"ready": error is None, "error": error}).encode()


def decode_ready(message):
    """None once the fork server is ready, else why it cannot start."""
    answer = json.loads(message)
    if not isinstance(answer, dict) or "ready" not in answer:
        raise MalformedMessage(f"not a fork server's start: {message!r}")
    return None if answer["ready"] else str(answer.get("error"))


# The fork server's answers are formatted by hand: its JSON encoder would touch more
# memory, and every page the fork server writes is copied again into each job it forks.
def encode_started(pid):
    return b'{"pid": %d}' % pid


def decode_started(message):
    answer = json.loads(message)
    if not isinstance(answer, dict) or "pid" not in answer:
        raise MalformedMessage(f"not a job's start: {message!r}")
    return answer["pid"]


def encode_ended(pid, status, cpu, hit):
    return b'{"pid": %d, "status": %d, "cpu": %r, "hit": %s}' % (pid, status, cpu, json.dumps(hit).encode())


def encode_failed(pid, error):
    return json.dumps({"pid": pid, "error": error}).encode()


def decode_ended(message):
    answer = json.loads(message)
    if not isinstance(answer, dict):
        raise MalformedMessage(f"not a job's end: {message!r}")
    return Ended(answer.get("status"), answer.get("cpu"), answer.get("hit", ()), answer.get("error"))


def encode_report_ended(status, disk_full):
    """From a sandboxed job's init: the job's raw wait status, and whether its /tmp filled up."""
    return json.dumps({"status": status, "disk_full": disk_full}).encode()


def encode_report_failed(error):
    """From a sandboxed job's process that could not become the job."""
    return json.dumps({"error": error}).encode()


def decode_report(message):
    """A report as a dict with any of ``status``, ``disk_full`` and ``error``."""
    report = json.loads(message)
    if not isinstance(report, dict):
        raise MalformedMessage(f"not a job's report: {message!r}")
    return report
