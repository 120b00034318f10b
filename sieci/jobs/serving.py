"""The fork server: a Python that has started once, and forks one child per job.

A worker starts it with the job interpreter (``python zygote.py FD WALLS``:
zygote.py is its main file, this module its work), which may be another
Python than the worker's: so it imports of sieci only this wing and
wire/bundle.py, which use the standard library alone, and any Python from
3.9 (socket.send_fds) can run it. Each request on the socket FD (a
SOCK_SEQPACKET socketpair; the messages are fork_channel.py's) comes with
the job's stdin, stdout and stderr. The zygote keeps one child forked ahead
of time (the standby, standby.py), which has rehearsed a job's start and
waits; it hands the request to that child (or, when none is ready, to one
forked then), which becomes the job (see job_process.py) in its own session
and process group: it unwinds to the main file's top level, as it stood
when Python started it, and runs the program there, so that the job ends as
Python ends a main file. The zygote answers with the job's pid at once, and
with how it ended once the job has ended and every process it left behind
has been killed: the zygote is a child subreaper, so orphans of the job
become its children (reaping.py). Its walls are built once, at its start
(walls.py).

Nothing of one job survives into the next: each is forked from the same
pristine zygote. The zygote dies with its worker (PR_SET_PDEATHSIG), and
its jobs with it.
"""

import gc
import os
import select
import signal
import socket
import sys
import time

from sieci.jobs import fork_channel, job_process
from sieci.jobs.libc import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl
from sieci.jobs.reaping import kill_leftovers, send_with_fd, wait_for_job
from sieci.jobs.standby import fork_standby, rehearse
from sieci.jobs.walls import WALLS, build_walls

# After a job, the next job's process is forked once the zygote has been quiet this long
# (seconds): the fork then does not slow the results on their way out. A request that comes
# first is forked for at once, and while requests keep coming that soon (under load, where
# a fork costs throughput, not latency), the next process is forked straight after each job.
STANDBY_AFTER = 0.002


def main(modules_at_start, path_at_start, path_importer_cache_at_start):
    """Build the walls, warm up, then serve; returns None, or in a job's process the MainProgram
    to run at the main file's top level. The three are the interpreter as ``python3 FILE`` has it
    at its start (see job_process.prepare_interpreter)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    del sys.path[0]  # this file's folder is no job's business
    channel = socket.socket(fileno=int(sys.argv[1]))
    channel.set_inheritable(False)  # no program it starts may hold the worker's line
    channel.setblocking(True)  # the worker's end is non-blocking, and the flag is shared
    try:
        os.close(os.pidfd_open(os.getpid()))  # the worker stops its jobs through one (Linux 5.3)
        warm_up()
        walls = fork_channel.decode_walls(sys.argv[2]) if len(sys.argv) > 2 else {}
        enter_environment(walls.get("environment"))
        os.umask(0o022)  # the ways down the walls make (file_view.py) are for every job user, whatever the worker's
        build_walls(walls)
        job_process.prepare_interpreter(modules_at_start, path_at_start, path_importer_cache_at_start)
        # The collector leaves our objects alone, so children copy fewer pages: a job that unfroze them
        # would copy them all when it ends (its last collection visits them); bench/README.md has the cost.
        gc.freeze()
    except Exception as error:
        channel.send(fork_channel.encode_ready(f"{type(error).__name__}: {error}"))
        if WALLS.get("cgroup"):
            WALLS["cgroup"].remove()
        return None
    channel.send(fork_channel.encode_ready())
    zygote = os.getpid()
    try:
        serve(channel)
    except job_process.MainProgram as program:  # only in a job's process: run it at the top level
        program.__traceback__ = None
        return program
    finally:
        if os.getpid() == zygote:
            kill_leftovers()  # the standby, and its namespaces' init: else their cgroup could not go
            if WALLS.get("cgroup"):
                WALLS["cgroup"].remove()
    return None


# An environment's fork server (started with -S, so that nothing of its packages runs here, as the worker's
# user): its site-packages, which each job's process adds as site would, as the job user.
_ENVIRONMENT_SITE = []


def enter_environment(environment):
    """Be the Python of the virtual environment ``environment`` ({"prefix", "site"}; None: none), as its
    ``bin/python`` is once site has run: sys.prefix is the environment's (so that its folder is in the
    jobs' view of the files, see file_view.interpreter_paths), its packages are not yet on sys.path."""
    if environment:
        sys.prefix = sys.exec_prefix = environment["prefix"]
        _ENVIRONMENT_SITE[:] = [environment["site"]]


def add_environment_packages():
    """In a job's process, as the job user and in its walls: its environment's packages on sys.path,
    their .pth files read and sitecustomize imported, as site does at a virtual environment's start."""
    if _ENVIRONMENT_SITE:
        import site

        site.addsitedir(_ENVIRONMENT_SITE[0])
        site.execsitecustomize()


def serve(channel):
    standby, last_ended = fork_standby(channel), None
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, len(fork_channel.JOB), fork_channel.MAX_FDS)
        except OSError:
            return
        if not message:
            return  # the worker has gone
        busy = last_ended is not None and time.monotonic() - last_ended < STANDBY_AFTER
        job, job_line, namespaces = standby or fork_standby(channel, rehearsed=False)
        socket.send_fds(job_line, [message], fds)
        for fd in fds:
            os.close(fd)
        job_pidfd = os.pidfd_open(job)
        send_with_fd(channel, fork_channel.encode_started(job), os.dup(job_pidfd))
        answer, folder = wait_for_job(job, job_pidfd, job_line, namespaces)
        send_with_fd(channel, answer, folder)
        for fd in namespaces[2:] if namespaces else ():
            os.close(fd)  # only now: a mount namespace's end waits for RCU, and the answer need not
        last_ended = time.monotonic()
        standby = fork_standby(channel) if busy or quiet_for(channel, STANDBY_AFTER) else None


def quiet_for(channel, seconds):
    """Whether no request comes within ``seconds`` (poll: the channel's fd may be past select's 1024)."""
    poller = select.poll()
    poller.register(channel, select.POLLIN)
    return not poller.poll(seconds * 1000)


WARM_UP_ROUNDS = 20  # enough for Python to specialise the code it runs (3.11 starts after 8 calls)


def warm_up():
    """Pay once, here, what every job would pay again after its fork.

    Python code run for the first time rewrites itself as it goes
    (specialisation), and each page it writes is then copied into every
    forked child. So the zygote first rehearses, harmlessly, the library
    code a job's start runs: parsing a request, setting the environment,
    compiling and running a file.
    """
    compile(b"pass\n", "<warm-up>", "exec", dont_inherit=True)  # the first compile costs milliseconds
    with open(__file__, "rb") as file:
        file.read(1)
    for _ in range(WARM_UP_ROUNDS):
        rehearse()

