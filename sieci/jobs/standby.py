"""The next job's process, forked by the fork server ahead of time (the standby), and how it becomes
the job: its namespaces made, sandboxed, its request taken, its file placed (see job_process.py)."""

import os
import signal
import socket
import types

from sieci.jobs import fork_channel, job_process, pid_init, sandbox
from sieci.jobs.libc import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl
from sieci.jobs.reaping import open_job_folder, send_with_fd
from sieci.jobs.walls import WALLS
from sieci.wire import bundle

def set_oom_score_adj(value):
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)  # not open(): fewer objects, fewer pages copied
    try:
        os.write(fd, b"%d" % value)
    finally:
        os.close(fd)


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
        return (*pid_init.spawn_init(), *held), None
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
        # A directory program comes in the files bundle; code from stdin that a fresh ``python -`` reads, on its stdin.
        if not (request.directory or (request.from_stdin and request.command)):
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


REHEARSAL = fork_channel.encode_request(fork_channel.Request("x.py", dict(os.environ), {"cpu": 1}, workdir="/"))


def rehearse():
    """Run the library code a job's start runs, changing nothing."""
    job_process.set_environment(fork_channel.decode_request(REHEARSAL).env)
    os.environ["SIECI_WARM_UP"] = "1"
    del os.environ["SIECI_WARM_UP"]
    path = os.path.join(os.path.dirname("/a/b.py"), os.path.basename("/a/b.py"))
    exec(compile(b"pass\n", path, "exec", dont_inherit=True), types.ModuleType("__main__").__dict__)
