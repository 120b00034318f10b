"""The fork server: a Python that has started once, and forks one child per job.

A worker starts this file as a script with the job interpreter
(``python zygote.py FD WALLS``), which may be another Python than the
worker's: so it imports of sieci only this wing and wire/bundle.py, which
use the standard library alone, and any Python from 3.9 (socket.send_fds)
can run it. Each request on the socket FD (a SOCK_SEQPACKET
socketpair; the messages are fork_channel.py's) comes with the job's
stdin, stdout and stderr. The zygote keeps one child forked ahead of time
(the standby), which has rehearsed a job's start and waits; it hands the
request to that child (or, when none is ready, to one forked then), which
becomes the job (see job_process.py) in its own session and process group:
it unwinds to this file's top level, as it stood when Python started it, and
runs the program there, so that the job ends as Python ends a main file.
The zygote answers with the job's pid at once, and with how it ended once
the job has ended and every process it left behind has been killed: the
zygote is a child subreaper, so orphans of the job become its children.

Nothing of one job survives into the next: each is forked from the same
pristine zygote. The zygote dies with its worker (PR_SET_PDEATHSIG), and
its jobs with it.
"""

import sys

# The interpreter as ``python3 FILE`` has it at its start: each job gets it so (see the end).
MODULES_AT_START = frozenset(sys.modules)
PATH_AT_START = list(sys.path)
PATH_IMPORTER_CACHE_AT_START = dict(sys.path_importer_cache)

import ctypes  # noqa: E402
import gc
import os
import select
import signal
import socket
import time
import types

# sieci's own parent folder, in place of this file's: the job's process forgets both (job_process.py).
sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sieci.jobs import cgroups, fork_channel, job_process, sandbox  # noqa: E402
from sieci.wire import bundle  # noqa: E402

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# After a job, the next job's process is forked once the zygote has been quiet this long
# (seconds): the fork then does not slow the results on their way out. A request that comes
# first is forked for at once, and while requests keep coming that soon (under load, where
# a fork costs throughput, not latency), the next process is forked straight after each job.
STANDBY_AFTER = 0.002

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option, value):
    _libc.prctl(option, value, 0, 0, 0)




def main():
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    del sys.path[0]  # sieci's folder is no job's business
    channel = socket.socket(fileno=int(sys.argv[1]))
    channel.set_inheritable(False)  # no program it starts may hold the worker's line
    channel.setblocking(True)  # the worker's end is non-blocking, and the flag is shared
    try:
        os.close(os.pidfd_open(os.getpid()))  # the worker stops its jobs through one (Linux 5.3)
        warm_up()
        build_walls(fork_channel.decode_walls(sys.argv[2]) if len(sys.argv) > 2 else {})
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


# This fork server's walls for its jobs (see build_walls): "sandbox", the settings of
# the jobs' namespaces, "cgroup", the one cgroup each job in turn runs in, "used",
# its counters when the last job ended, and "cpu", the CPU seconds a job may use there.
WALLS = {}
NAME_PREFIX = "sieci-jobs-of-"  # + the fork server's pid: its jobs' cgroup


def build_walls(walls):
    """Once, here: the cgroup each job runs in (one at a time), and the view of the
    files every job's mount namespace starts from (see sandbox.py)."""
    if walls.get("sandbox"):
        WALLS["sandbox"] = walls["sandbox"]
        sandbox.build_template(walls["sandbox"])
    if walls.get("cgroup"):
        # The zygote moves into the cgroup itself, so that its children are born there (moving
        # each would cost more than a job's namespaces).
        job_cgroups = cgroups.discover()
        job_cgroups.remove_stale(NAME_PREFIX, alive=lambda pid: os.path.exists(f"/proc/{pid}"))
        limits = walls["cgroup"]
        WALLS["cgroup"] = job_cgroups.create(f"{NAME_PREFIX}{os.getpid()}", limits["memory"], limits["processes"])
        WALLS["cpu"] = limits.get("cpu")
        WALLS["cgroup"].join()
        WALLS["used"] = WALLS["cgroup"].counters()


def set_oom_score_adj(value):
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)  # not open(): fewer objects, fewer pages copied
    try:
        os.write(fd, b"%d" % value)
    finally:
        os.close(fd)


def wait_for_job(job, job_pidfd, job_line, namespaces):
    """Wait until the job and all it left are gone; the answer that says how it ended, and
    a sandboxed job's folder (a directory fd, or None), which only its namespaces reach.

    The job's process says if it could not start (or, without root, its
    init says how the job ended and whether its /tmp was full, and passes
    its folder); letting its namespace's init go kills all the job left
    (``namespaces``: see fork_standby); its cgroup says what it used and
    which limits it hit.
    """
    wait_for_first_process(job, job_pidfd)
    kill_group(job)
    _, status, usage = os.wait4(job, 0)
    report, folder = _receive_quietly(job_line)
    job_line.close()
    tmp = None
    if namespaces:
        init, keep_alive, tmp, _ = namespaces
        os.close(keep_alive)  # its init goes, and the kernel kills all the job left
        os.waitpid(init, 0)
        folder = open_job_folder(sandbox.WORKDIR, tmp)
    kill_leftovers()
    cpu, hit = usage.ru_utime + usage.ru_stime, []
    if report.get("disk_full") or (tmp is not None and sandbox.disk_full(tmp)):
        hit.append("disk")
    if WALLS.get("cgroup"):  # the counters only grow: the job's part is what grew since the last job
        used, before = WALLS["cgroup"].counters(), WALLS["used"]
        cpu = used["cpu"] - before["cpu"]
        hit += [limit for limit in ("memory", "processes") if used[limit] > before[limit]]
        WALLS["used"] = used
    if "error" in report:
        if folder is not None:
            os.close(folder)
        return fork_channel.encode_failed(job, report["error"]), None
    return fork_channel.encode_ended(job, report.get("status", status), cpu, hit), folder


CPU_CHECK_EVERY = 1.0  # seconds between two looks at a job's CPU time, all its processes together


def wait_for_first_process(job, job_pidfd):
    """Until the job's first process has ended (``job_pidfd`` is closed here); it is not reaped, so
    that its group is still its own. In a cgroup, the job is killed once all its processes together
    have used more than the CPU limit."""
    try:
        poller = select.poll()
        poller.register(job_pidfd, select.POLLIN)
        limit = WALLS.get("cgroup") and WALLS.get("cpu")
        while not poller.poll(CPU_CHECK_EVERY * 1000 if limit else None):
            if WALLS["cgroup"].counters()["cpu"] - WALLS["used"]["cpu"] > limit:
                signal.pidfd_send_signal(job_pidfd, signal.SIGKILL)
                limit = None
    finally:
        os.close(job_pidfd)
    os.waitid(os.P_PID, job, os.WEXITED | os.WNOWAIT)


def open_job_folder(path, tmp=None):
    """A directory fd of the sandboxed job's folder at ``path`` (reached from ``tmp``, an fd of
    the job's /tmp, if given), or None if the job has put something else in its place."""
    try:
        return os.open(path if tmp is None else os.path.basename(path),
                       os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tmp)
    except OSError:
        return None


def send_with_fd(line, message, fd):
    """Send ``message`` with ``fd`` beside it (if not None), which is closed here."""
    if fd is None:
        line.send(message)
        return
    try:
        socket.send_fds(line, [message], [fd])
    finally:
        os.close(fd)


def _receive_quietly(line):
    """Every message waiting on ``line``, merged, and the last fd that came with one (or None)."""
    report, folder = {}, None
    line.setblocking(False)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(line, fork_channel.MAX_ANSWER, 1)
            for fd in fds:
                if folder is not None:
                    os.close(folder)
                folder = fd
            if not message:
                return report, folder
            report.update(fork_channel.decode_report(message))
        except (OSError, ValueError):
            return report, folder


def quiet_for(channel, seconds):
    """Whether no request comes within ``seconds`` (poll: the channel's fd may be past select's 1024)."""
    poller = select.poll()
    poller.register(channel, select.POLLIN)
    return not poller.poll(seconds * 1000)


def fork_standby(channel, rehearsed=True):
    """Fork the next job's process ahead of time, so a job does not wait for a fork.

    The child (``rehearsed``: after a rehearsal of a job's start) waits for
    its request on a socket of its own; returns its pid, that socket, and
    the job's namespaces when the zygote made them: the pid of their init,
    the fd that keeps it alive, and fds of the job's /tmp and of its mount
    namespace. Sandboxed, as
    root, the zygote makes the job's namespaces and starts their init (PID
    1), and the child is born in them, PID 2 (see job_in_sandbox); without
    root, the child makes them itself (see standby_in_sandbox).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    namespaces = walls_failed = None
    as_root = WALLS.get("sandbox") and os.geteuid() == 0
    if as_root:
        namespaces, walls_failed = enter_job_namespaces()
    pid = os.fork()
    if pid == 0:
        becomes_job = False
        try:
            channel.close()
            ours.close()
            os.setsid()
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            prctl(PR_SET_CHILD_SUBREAPER, 0)
            if WALLS.get("cgroup"):
                set_oom_score_adj(1000)  # in their shared cgroup, the OOM killer picks the job, not the zygote
            if as_root:
                job_in_sandbox(theirs, rehearsed, walls_failed)
            if WALLS.get("sandbox"):
                standby_in_sandbox(theirs, rehearsed)
            if rehearsed:
                rehearse()  # while no job waits: the pages a job's start writes to are copied now, not then
            request, fds = receive_request(theirs)
            theirs.close()
            if request:
                job_process.start_job(request, fds, request.workdir, unpack=unpack_files)
        except job_process.MainProgram:
            becomes_job = True
            raise
        finally:
            if not becomes_job:
                os._exit(127)  # whatever happened, the child never goes back to serving
    if as_root:
        sandbox.leave_job_namespaces()
    theirs.close()
    return pid, ours, namespaces


def enter_job_namespaces():
    """The next job's namespaces and their init (see fork_standby), and what went wrong, if anything."""
    held = ()
    try:
        held = sandbox.enter_job_namespaces(WALLS["sandbox"])
        return (*sandbox.spawn_init(), *held), None
    except Exception as error:
        for fd in held:
            os.close(fd)
        return None, error


def job_in_sandbox(job_line, rehearsed, walls_failed):
    """In a standby child born PID 2 of its job's namespaces: mount its /proc, enter the jobs'
    user namespace, then become the job; never returns."""
    try:
        if not walls_failed:
            sandbox.mount_proc()
            sandbox.enter_jobs_user_namespace()
    except Exception as error:
        walls_failed = error
    if rehearsed:
        rehearse()
    start_sandboxed_job(job_line, sandbox.WORKDIR, walls_failed)


def standby_in_sandbox(job_line, rehearsed):
    """In a standby child, without root: build the job's namespaces in a user
    namespace, then serve as their init; never returns.

    The init (PID 1: a child forked into the new PID namespace) forks the
    job's process (PID 2), which takes the request, and reports on
    ``job_line`` how the job ended. When the init exits, the kernel kills
    whatever the job left behind.
    """
    workdir = walls_failed = None
    try:
        sandbox.enter_namespaces(WALLS["sandbox"], new_pid=True)
        init = os.fork()
        if init:
            os.waitpid(init, 0)
            os._exit(0)
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # with the process above, which dies with the zygote
        workdir = sandbox.finish_namespaces(WALLS["sandbox"])
    except Exception as error:
        walls_failed = error
    job = os.fork()
    if job == 0:
        os.setsid()
        if rehearsed:
            rehearse()
        start_sandboxed_job(job_line, workdir, walls_failed)
    while True:  # the init reaps every orphan of the job's, until the job itself ends
        pid, status = os.wait()
        if pid == job:
            break
    if not walls_failed:
        send_with_fd(job_line, fork_channel.encode_report_ended(status, sandbox.disk_full("/tmp")),
                     open_job_folder(workdir))
    os._exit(0)  # and the kernel kills all the job left behind


def start_sandboxed_job(job_line, workdir, walls_failed):
    """Take the request, put the job's file in its folder, and become the job; never returns."""
    request, fds = receive_request(job_line)
    if not request:
        os._exit(127)
    try:
        if walls_failed:
            raise walls_failed
        if not request.directory:  # a directory program comes in the files bundle
            sandbox.place_code(request.filename, workdir, fds.pop(), WALLS["sandbox"].get("user"))
    except BaseException as error:
        job_line.send(fork_channel.encode_report_failed(f"cannot start the job: {error}"))
        os._exit(127)
    job_line.close()
    job_process.start_job(request, fds, workdir, sandbox, unpack_files)


def receive_request(job_line):
    """In a job's process: its request (None if the fork server has gone) and the fds that came with it."""
    message, fds, _, _ = socket.recv_fds(job_line, len(fork_channel.JOB), fork_channel.MAX_FDS)
    if not message or not fds:
        return None, fds
    request_fd = fds.pop(0)
    try:
        size = min(os.fstat(request_fd).st_size, fork_channel.MAX_REQUEST)
        return fork_channel.decode_request(os.read(request_fd, size)), fds
    finally:
        os.close(request_fd)


def unpack_files(bundle_fd, folder_fd, max_size):
    """In the job's process: its files, into its folder."""
    bundle.unpack(bundle_fd, folder_fd, max_size)


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
    # The collector leaves our objects alone, so children copy fewer pages: a job that unfroze them
    # would copy them all when it ends (its last collection visits them); bench/README.md has the cost.
    gc.freeze()


REHEARSAL = fork_channel.encode_request(fork_channel.Request("x.py", dict(os.environ), {"cpu": 1}, workdir="/"))


def rehearse():
    """Run the library code a job's start runs, changing nothing."""
    job_process.set_environment(fork_channel.decode_request(REHEARSAL).env)
    os.environ["SIECI_WARM_UP"] = "1"
    del os.environ["SIECI_WARM_UP"]
    path = os.path.join(os.path.dirname("/a/b.py"), os.path.basename("/a/b.py"))
    exec(compile(b"pass\n", path, "exec", dont_inherit=True), types.ModuleType("__main__").__dict__)


def kill_group(job_pid):
    try:
        os.killpg(job_pid, signal.SIGKILL)
    except OSError:
        pass


def kill_leftovers():
    """Kill and reap whatever the job left running (its orphans are our children), or, at the end,
    the standby and its namespace's init.

    All that are listed are killed first, then as many are reaped as were killed, whichever ends
    first: an init ends only once every process of its namespace is reaped, a standby of ours among
    them, so waiting for it first would wait for ever.
    """
    for _ in range(1000):
        children = list_children()
        if not children:
            return
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        for _ in children:
            try:
                os.wait()
            except ChildProcessError:
                break


def list_children():
    me = os.getpid()
    try:
        fd = os.open(f"/proc/{me}/task/{me}/children", os.O_RDONLY)
        try:
            return [int(pid) for pid in os.read(fd, 1 << 16).split()]
        finally:
            os.close(fd)
    except OSError:
        return []


if __name__ == "__main__":
    program = main()
    if program is not None:  # a job's process: its program runs here, as python3 runs a main file
        job_globals, path, source = job_process.take_interpreter(
            program, MODULES_AT_START, PATH_AT_START, PATH_IMPORTER_CACHE_AT_START)
        del program
        try:
            if source is None:  # a zipapp or a folder
                import runpy

                runpy._run_module_as_main("__main__", alter_argv=False)
            else:
                exec(compile(source, path, "exec", dont_inherit=True), job_globals)
        except BaseException as error:
            error.__traceback__ = error.__traceback__.tb_next  # this frame is the fork server's, not the job's
            raise
        finally:  # our globals are frozen, never collected: they must not keep the job's alive past its end
            del job_globals, path, source
