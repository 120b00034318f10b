"""A job's namespaces and view of the files, built with the kernel's own parts.

The zygote loads this file by path (it imports nothing of sieci's, and
nothing here may be seen by a job as an importable module). It builds, once,
the view of the files every job starts from (build_template); each job then
gets, made before it comes (by the fork server as root, see
enter_job_namespaces, or else by the job's standby process):

- its own PID, mount, IPC and UTS namespaces: the job is PID 2 under a small init, and when the job
  ends the init goes, and the kernel kills whatever the job left, however it forked; the fork
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
import signal
import stat
import struct
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
# System calls that glibc has no wrapper for; their numbers are the same on every architecture.
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
AT_RECURSIVE = 0x8000
AT_FDCWD = -100
MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_RDONLY = 1
PR_SET_NO_NEW_PRIVS = 38
KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR, KEYCTL_GET_PERSISTENT = 1, 7, 22
KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING = -3, -4, -5
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219}.get(os.uname().machine)  # no generic number

WORKDIR = "/tmp/sieci-job"
# sieci's own package, which the fork server imports (from an editable checkout too).
SIECI_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _check(result, what):
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")
    return result


def _mount(source, target, fstype, flags, options=None):
    _check(_libc.mount(_c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(options)),
           f"mount {target}")


def _c(text):
    return None if text is None else os.fsencode(text)


# --- the namespaces and the file tree ------------------------------------------------------
#
# ``config`` (from the worker, the same for all its jobs): "disk" (bytes, the size of
# each tmpfs), "network" (False: a network namespace with only loopback), "hide" (paths
# no job may see) and "user" ((uid, gid) jobs run as, or None for the worker's own).


_interpreter_folders = []


def build_template(config):
    """In the fork server, once: a mount namespace of its own holding the view every
    job's starts from (and, without network, a network namespace with only a loopback,
    once: one per job costs every job its making and teardown, see bench/README.md). The tree is read-only, hidden paths
    are covered, and the interpreter's folders are reachable for the job user. (Without
    root, it is in a user namespace of the worker's user, which every job's namespaces
    then sit in.)"""
    uid, gid = os.geteuid(), os.getegid()
    network = CLONE_NEWNET if not config.get("network", True) else 0
    _check(_libc.unshare(CLONE_NEWNS | network | (CLONE_NEWUSER if uid != 0 else 0)), "unshare")
    if uid != 0:
        _map_user(uid, gid)
    else:
        _jobs_user_namespace[:] = [_make_user_namespace()]
    if network:
        _bring_up_loopback()
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _interpreter_folders[:] = _outermost([*interpreter_paths(), SIECI_FOLDER])
    _make_reachable(_interpreter_folders, config.get("user"))
    for path in config.get("hide", ()):
        _hide(path)
    _set_attributes("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0)
    # The fork server still writes to its jobs' cgroup and to /proc (jobs get a /proc of their own).
    for tree in ["/proc", *_cgroup_mounts()]:
        _set_attributes(tree, 0, 0, MOUNT_ATTR_RDONLY)


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
        _init_programs.append(_init_program())  # tried once, before a child of it would be an init
    enter_namespaces(config, new_pid=True)
    _make_workdir(config)
    return os.open("/tmp", os.O_PATH | os.O_CLOEXEC), os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


def leave_job_namespaces():
    """In the fork server: back in its own namespaces, its children too."""
    for flag, fd in _own_namespaces.items():
        _check(_libc.setns(fd, flag), "setns")


def spawn_init():
    """In the fork server: start the init (PID 1) of the new PID namespace; returns its
    pid and the fd that keeps it alive. It only waits, reaping the job's orphans (it
    ignores SIGCHLD), until that fd's pipe closes: when the fork server closes it, or
    dies, which no signal could miss."""
    lifeline, keep_alive = os.pipe()
    try:
        program = _init_programs[0]
        pid = _spawn_init_program(program, lifeline) if program else _fork_init(lifeline)
    finally:
        os.close(lifeline)
    return pid, keep_alive


# The init as a program of its own: rt_sigaction(SIGCHLD, SIG_IGN); read(0, sp, 1);
# exit_group(0), for x86-64 Linux. Spawned (vfork and exec), it costs a tenth of a
# fork of the fork server, whose page tables a fork copies and whose exit unmaps them;
# a dynamically linked program would cost more still (in a VM, the dynamic loader's
# CPUID probes trap to the hypervisor).
INIT_PROGRAM_X86_64 = bytes.fromhex(
    "6a00" "6a00" "6a00" "6a01"  # a struct sigaction on the stack: SIG_IGN, no flags, empty mask
    "4889e6" "31d2" "41ba08000000" "bf11000000" "b80d000000" "0f05"  # rt_sigaction(17, rsp, 0, 8)
    "31ff" "ba01000000" "31c0" "0f05"  # read(0, rsp, 1): returns when the pipe closes
    "31ff" "b8e7000000" "0f05"  # exit_group(0)
)
_init_programs = []


def _init_program():
    """The path of the init program (in a memfd), or None where there is none (not
    x86-64, or the kernel does not execute memfds): the init is then a fork."""
    if os.uname().machine != "x86_64":
        return None
    fd = os.memfd_create("sieci-init", os.MFD_CLOEXEC)
    os.write(fd, _elf_executable(INIT_PROGRAM_X86_64))
    path = f"/proc/self/fd/{fd}"
    try:
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _, status = os.waitpid(_spawn_init_program(path, null), 0)
        finally:
            os.close(null)
        if status == 0:
            return path
    except OSError:
        pass
    os.close(fd)
    return None


def _spawn_init_program(path, lifeline):
    return os.posix_spawn(path, ["init"], {}, file_actions=[(os.POSIX_SPAWN_DUP2, lifeline, 0)],
                          setsigmask=())


def _elf_executable(code):
    """A static x86-64 ELF executable of ``code`` alone, loaded at 4 MiB, stack not executable."""
    base, header_size, entry_size = 0x400000, 64, 56
    start = header_size + 2 * entry_size
    header = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, base + start, header_size, 0, 0, header_size, entry_size, 2, 0, 0, 0)
    size = start + len(code)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)  # PT_LOAD, read and execute
    stack = struct.pack("<IIQQQQQQ", 0x6474E551, 6, 0, 0, 0, 0, 0, 16)  # PT_GNU_STACK, read and write
    return header + load + stack + code


def _fork_init(lifeline):
    pid = os.fork()
    if pid == 0:
        try:
            os.closerange(3, lifeline)
            os.closerange(lifeline + 1, 1 << 16)
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
            os.read(lifeline, 1)
        finally:
            os._exit(0)
    return pid


def enter_namespaces(config, new_pid):
    """Mount, IPC and UTS namespaces (and, with ``new_pid``, PID for the children) of a
    job's own, with a fresh tmpfs on /tmp and /dev/shm."""
    _check(_libc.unshare(_namespace_flags(new_pid)), "unshare")
    size = f"size={config['disk']}" if config.get("disk") else "size=50%"
    # An interpreter or its packages under /tmp (a venv made there) stay where they are.
    _cover(["/tmp", "/dev/shm"], _interpreter_folders, lambda: _mount_job_tmpfs(size))


def _mount_job_tmpfs(size):
    """One tmpfs of the job's disk limit for both /tmp and /dev/shm (two would give it twice the
    room): mounted on /tmp, two folders of it are bound over /dev/shm and then over /tmp itself."""
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=755")
    for name, target in (("shm", "/dev/shm"), ("tmp", "/tmp")):
        os.mkdir(f"/tmp/{name}")
        os.chmod(f"/tmp/{name}", 0o1777)
        _mount(f"/tmp/{name}", target, None, MS_BIND)


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


def _set_attributes(path, flags, attributes_set, attributes_cleared):
    attributes = struct.pack("QQQQ", attributes_set, attributes_cleared, 0, 0)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(path), flags, attributes, len(attributes)),
           f"mount_setattr {path}")


def _cgroup_mounts():
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            ours, theirs = line.split(" - ", 1)
            if theirs.split()[0] in ("cgroup", "cgroup2"):
                yield ours.split()[4]


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


def _hide(path):
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode):
        _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    else:
        _mount("/dev/null", path, None, MS_BIND)


def _make_reachable(folders, user):
    """Make ``folders`` (the interpreter's, and its packages') reachable for the job user.

    For a folder the job user may enter under one it may not (a Python
    under /root), the blocking folder is covered with a tmpfs holding only
    the way down, and the folder itself is mounted back there.
    """
    blocked = {folder: _first_blocking(folder, user) for folder in folders}
    tops = sorted({blocking for blocking in blocked.values() if blocking})
    _cover(tops, [folder for folder, blocking in blocked.items() if blocking],
           lambda: [_mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755") for top in tops])


def _cover(tops, folders, mount):
    """Cover the folders ``tops`` with what ``mount()`` mounts there, keeping those of ``folders``
    that are under one of them where they were."""
    kept = [(folder, _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(folder),
                                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE), f"open_tree {folder}"))
            for folder in folders if any(folder.startswith(top.rstrip("/") + "/") or folder == top
                                         for top in tops)]
    mount()
    for folder, tree in kept:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        _check(_libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(folder), MOVE_MOUNT_F_EMPTY_PATH),
               f"move_mount {folder}")
        os.close(tree)


def interpreter_paths():
    """The folders this Python reads from: its prefixes, its executable's and its import path."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable)), *sys.path}
    return sorted({os.path.realpath(path) for path in candidates if path and os.path.isdir(path)})


def _outermost(folders):
    """``folders``, leaving out those inside another."""
    kept = []
    for folder in sorted(folders):
        if folder != "/" and not any(folder.startswith(outer.rstrip("/") + "/") for outer in kept):
            kept.append(folder)
    return kept


def unreadable_folder(user):
    """The first folder this Python reads from (on the way to it, the first one) that
    ``user`` ``(uid, gid)`` cannot read and enter, in this process's view of the files;
    or None. A child that becomes the user asks the kernel (ACLs count)."""
    paths = interpreter_paths()  # here: the user may not even see them
    answer, report = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(answer)
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
            blocked = next((path for path in paths if not os.access(path, os.R_OK | os.X_OK)), None)
            os.write(report, os.fsencode(_first_unenterable(blocked)) if blocked else b"")
            os._exit(0)
        finally:
            os._exit(1)
    os.close(report)
    try:
        blocked = os.read(answer, 1 << 16)
    finally:
        os.close(answer)
        _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError(f"cannot become user {user[0]} to see what it may read")
    return os.fsdecode(blocked) or None


def _first_unenterable(folder):
    path = "/"
    for part in folder.strip("/").split("/"):
        path = os.path.join(path, part)
        if not os.access(path, os.X_OK):
            return path
    return folder


def _first_blocking(folder, user):
    """The highest folder on the way to ``folder`` that ``user`` may not enter, or None."""
    if not user:
        return None
    uid, gid = user
    path = "/"
    for part in folder.strip("/").split("/"):
        path = os.path.join(path, part)
        status = os.stat(path)
        shift = 0 if status.st_uid == uid else 3 if status.st_gid == gid else 6
        if not status.st_mode & (stat.S_IXUSR >> shift):
            return path
    return None


def drop_privileges(user):
    """In the job's process: the job user, and no way back to more; its keyrings its own (see
    _keyrings_of_its_own: not even the session keyring it inherited, the worker's under systemd)."""
    if user:
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
    else:  # in a user namespace of our own user, with every capability there: shed them
        header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        _check(_libc.capset(header, bytes(24)), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
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
            _check(_libc.unshare(CLONE_NEWUSER), "unshare a user namespace")
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
    _check(_libc.setns(_jobs_user_namespace[0], CLONE_NEWUSER), "setns a user namespace")


def _keyrings_of_its_own():
    """In the job's process, as the job user: its user's keyrings emptied, and a new session keyring."""
    if SYS_KEYCTL is None:
        return
    for operation, *arguments in [(KEYCTL_JOIN_SESSION_KEYRING, None), (KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING),
                                  (KEYCTL_CLEAR, KEY_SPEC_USER_SESSION_KEYRING)]:
        if _libc.syscall(SYS_KEYCTL, operation, *arguments) < 0 and ctypes.get_errno() != errno.ENOSYS:
            _check(-1, "keyctl")  # (a kernel without keyrings has none to share)
    persistent = _libc.syscall(SYS_KEYCTL, KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_SESSION_KEYRING)
    if persistent >= 0:  # (a kernel without persistent keyrings says EOPNOTSUPP)
        _check(_libc.syscall(SYS_KEYCTL, KEYCTL_CLEAR, persistent), "keyctl")


def mount_proc():
    """In a process of the job's PID namespace: a /proc that shows the job's processes only."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def disk_full(tmp):
    """Whether the job's /tmp (a path, or an fd of it) has no room left."""
    status = os.statvfs(tmp)
    return status.f_bavail == 0 or status.f_favail == 0


def _probe(network):
    """Build, in this throwaway process, the walls a job gets; fails with the reason."""
    build_template({"user": None, "network": network})
    enter_namespaces({"disk": 4096}, new_pid=True)
    child = os.fork()
    if child == 0:
        try:
            finish_namespaces({})
            if os.geteuid() == 0:
                enter_jobs_user_namespace()
        except OSError as error:
            print(error, file=sys.stderr)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError("cannot finish a job's namespaces in a new PID namespace")


def _reach(user, in_template):
    """Print the folder the job user cannot read (see unreadable_folder), in the job's view of
    the files (``in_template``) or the host's."""
    if in_template:
        build_template({"user": user})
    print(unreadable_folder(user) or "")


if __name__ == "__main__":
    # sandbox.py --probe on|off: can jobs get namespaces (and, off, a network of their own)?
    # sandbox.py --reach UID:GID sandboxed|host: which folder of this Python can't that user read?
    try:
        if sys.argv[1] == "--reach":
            _reach(tuple(int(n) for n in sys.argv[2].split(":")), sys.argv[3] == "sandboxed")
        else:
            _probe(network=sys.argv[2:] != ["off"])
    except OSError as error:
        sys.exit(str(error))
