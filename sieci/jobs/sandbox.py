"""A job's namespaces and view of the files, built with the kernel's own parts.

The fork server builds, once, the view of the files every job starts from
(build_template; its mounts are file_view.py's); each job then
gets, made before it comes (by the fork server as root, see
enter_job_namespaces, or else by the job's standby process):

- its own PID, mount, IPC and UTS namespaces: the job is PID 2 under a small init, and when the job
  ends the init (pid_init.py) goes, and the kernel kills whatever the job left, however it forked; the fork
  server's user namespace, in which its user's keyrings are emptied for it (see _keyrings_of_its_own);
- when jobs get no network, the fork server's network namespace, made once in build_template,
  with only a loopback: its jobs use it one after another, and nothing of one is left there for
  the next (its sockets close with its processes, and it has no capability to change the rest);
- its own view of the files: the whole tree read-only, one fresh tmpfs as
  large as the disk limit for ``/tmp`` (its working directory is there) and
  ``/dev/shm`` together, its own ``/proc``, and the worker's secrets
  hidden. Nothing of it outlives the job: no one walks its files after it.

Without root, the namespaces sit in a user namespace of the worker's user.
The job's cgroup is cgroups.py's.
"""

import ctypes
import errno
import os
import struct

from sieci.jobs import pid_init
from sieci.jobs.file_view import build_view, mount_job_tmp, mount_proc
from sieci.jobs.libc import PR_SET_NO_NEW_PRIVS, check, libc

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR, KEYCTL_GET_PERSISTENT = 1, 7, 22
KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -3, -4, -5
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219}.get(os.uname().machine)  # no generic number

WORKDIR = "/tmp/sieci-job"


# --- the namespaces and the file tree ------------------------------------------------------
#
# ``config`` (from the worker, the same for all its jobs): "disk" (bytes, the size of
# each tmpfs), "network" (False: a network namespace with only loopback), "hide" (paths
# no job may see) and "user" ((uid, gid) jobs run as, or None for the worker's own).


def build_template(config):
    """In the fork server, once: a mount namespace of its own holding the view every
    job's starts from (and, without network, a network namespace with only a loopback,
    once: one per job costs every job its making and teardown, see bench/README.md). The tree is read-only, hidden paths
    are covered, and the interpreter's folders are reachable for the job user. (Without
    root, it is in a user namespace of the worker's user, which every job's namespaces
    then sit in.)"""
    uid, gid = os.geteuid(), os.getegid()
    network = CLONE_NEWNET if not config.get("network", True) else 0
    check(libc.unshare(CLONE_NEWNS | network | (CLONE_NEWUSER if uid != 0 else 0)), "unshare")
    if uid != 0:
        _map_user(uid, gid)
    else:
        _jobs_user_namespace[:] = [_make_user_namespace()]
    if network:
        _bring_up_loopback()
    build_view(config)


# The fork server's own namespaces (CLONE_NEW* flag: an fd of it), to go back to.
_own_namespaces = {}


def enter_job_namespaces(config):
    """In the fork server (as root): move into new mount, IPC and UTS namespaces for
    the next job, with fresh tmpfs on /tmp and /dev/shm and the job's folder
    made; the next child it starts is the init of a new PID namespace. Returns fds of
    the job's /tmp and of its mount namespace (which then ends when that fd is closed,
    not with the job). (Made here, not in the job's process, the fork server's Python
    does not copy its pages for each job.) leave_job_namespaces goes back."""
    if not _own_namespaces:
        flags = _namespace_flags(new_pid=True)
        for flag, name in [(CLONE_NEWNS, "mnt"), (CLONE_NEWIPC, "ipc"), (CLONE_NEWUTS, "uts"),
                           (CLONE_NEWPID, "pid")]:
            if flags & flag:
                _own_namespaces[flag] = os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        pid_init.find_program()
    enter_namespaces(config, new_pid=True)
    _make_workdir(config)
    return os.open("/tmp", os.O_PATH | os.O_CLOEXEC), os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


def leave_job_namespaces():
    """In the fork server: back in its own namespaces, its children too."""
    for flag, fd in _own_namespaces.items():
        check(libc.setns(fd, flag), "setns")


def enter_namespaces(config, new_pid):
    """Mount, IPC and UTS namespaces (and, with ``new_pid``, PID for the children) of a
    job's own, with a fresh tmpfs on /tmp and /dev/shm."""
    check(libc.unshare(_namespace_flags(new_pid)), "unshare")
    mount_job_tmp(config)


def _namespace_flags(new_pid):
    return CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (CLONE_NEWPID if new_pid else 0)


def finish_namespaces(config):
    """In a process of the new PID namespace: its /proc, and the job's folder; returns the folder."""
    mount_proc()
    return _make_workdir(config)


def _make_workdir(config):
    os.mkdir(WORKDIR, 0o700)
    if config.get("user"):
        os.chown(WORKDIR, *config["user"], follow_symlinks=False)
    return WORKDIR


def place_code(filename, workdir, code_fd, user):
    """Copy the job's file from ``code_fd`` into its folder (no job has run there yet)."""
    fd = os.open(os.path.join(workdir, filename), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        size = os.fstat(code_fd).st_size
        copied = 0
        while copied < size:
            copied += os.sendfile(fd, code_fd, copied, size - copied)
        if user:
            os.fchown(fd, *user)
    finally:
        os.close(fd)
        os.close(code_fd)


def _map_user(uid, gid):
    """Be the same user inside the new user namespace as outside."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as file:
            file.write(text)


def _bring_up_loopback():
    import fcntl
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, 0x8914, struct.pack("16sh22x", b"lo", 0x1 | 0x8 | 0x40))  # SIOCSIFFLAGS: up


def drop_privileges(user):
    """In the job's process: the job user, and no way back to more; its keyrings its own (see
    _keyrings_of_its_own: not even the session keyring it inherited, the worker's under systemd)."""
    if user:
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
    else:  # in a user namespace of our own user, with every capability there: shed them
        header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        check(libc.capset(header, bytes(24)), "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _keyrings_of_its_own()


# A user's keyrings are kept per user namespace. The fork server's jobs run in one of its own, one
# after another (as root: made once, every id in it the host's, so nothing looks different; without
# root: the one build_template made), and each job starts by emptying its user's keyrings there and
# joining a session keyring of its own: nothing a job leaves in a keyring reaches the next, and jobs
# of other workers, in other user namespaces, never share one. (A user namespace per job would do
# the same at the cost of making and tearing one down for every job: see bench/README.md.)
_jobs_user_namespace = []


def _make_user_namespace():
    """As root: an fd of a new user namespace in which every id is itself (its maker is gone)."""
    in_it, made = os.pipe()
    go, wait = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(in_it)
            os.close(wait)
            check(libc.unshare(CLONE_NEWUSER), "unshare a user namespace")
            os.close(made)
            os.read(go, 1)
        finally:
            os._exit(0)
    os.close(made)
    os.close(go)
    try:
        os.read(in_it, 1)  # end of file: the child is in it
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{child}/{name}", "w") as ids:
                ids.write("0 0 4294967295")
        return os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(in_it)
        os.close(wait)
        os.waitpid(child, 0)


def enter_jobs_user_namespace():
    """In a job's process, as root, before it becomes the job: the jobs' user namespace."""
    check(libc.setns(_jobs_user_namespace[0], CLONE_NEWUSER), "setns a user namespace")


def _keyrings_of_its_own():
    """In the job's process, as the job user: its user's keyrings emptied, and a new session keyring."""
    if SYS_KEYCTL is None:
        return
    for operation, *arguments in [(KEYCTL_JOIN_SESSION_KEYRING, None), (KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING),
                                  (KEYCTL_CLEAR, KEY_SPEC_USER_SESSION_KEYRING)]:
        if libc.syscall(SYS_KEYCTL, operation, *arguments) < 0 and ctypes.get_errno() != errno.ENOSYS:
            check(-1, "keyctl")  # (a kernel without keyrings has none to share)
    persistent = libc.syscall(SYS_KEYCTL, KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_SESSION_KEYRING)
    if persistent >= 0:  # (a kernel without persistent keyrings says EOPNOTSUPP)
        check(libc.syscall(SYS_KEYCTL, KEYCTL_CLEAR, persistent), "keyctl")


def disk_full(tmp):
    """Whether the job's /tmp (a path, or an fd of it) has no room left."""
    status = os.statvfs(tmp)
    return status.f_bavail == 0 or status.f_favail == 0
