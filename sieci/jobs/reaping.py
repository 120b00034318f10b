"""How the fork server sees a job end: it waits for the job's first process, kills and reaps all the
job left (its orphans are the fork server's children: it is a child subreaper), and says how it ended."""

import os
import select
import signal
import socket

from sieci.jobs import fork_channel, sandbox
from sieci.jobs.walls import WALLS

CPU_CHECK_EVERY = 1.0  # seconds between two looks at a job's CPU time, all its processes together


def wait_for_job(job, job_pidfd, job_line, namespaces):
    """Wait until the job and all it left are gone; the answer that says how it ended, and
    a sandboxed job's folder (a directory fd, or None), which only its namespaces reach.

    The job's process says if it could not start (or, without root, its
    init says how the job ended and whether its /tmp was full, and passes
    its folder); letting its namespace's init go kills all the job left
    (``namespaces``: see standby.fork_standby); its cgroup says what it used and
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
