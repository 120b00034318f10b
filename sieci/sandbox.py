"""A job's walls, built by the fork server's child from the kernel's own parts.

The zygote loads this file by path (it imports nothing of sieci's, and
nothing here may be seen by a job as an importable module). For each job:

- its own PID, mount, IPC and UTS namespaces (and network, when jobs get
  none): the job is PID 2 under a small init, and when the job ends, the
  init exits and the kernel kills whatever the job left, however it forked;
- its own view of the files: the whole tree read-only, a fresh tmpfs on
  ``/tmp`` (its working directory is there) and on ``/dev/shm``, each as
  large as the disk limit, its own ``/proc``, and the worker's secrets
  hidden. Nothing of it outlives the job: no one walks its files after it;
- its own cgroup, holding the whole job to the memory and process limits
  and counting its CPU; its counters say which limit ended it.

Without root, the namespaces sit in a user namespace of the worker's user.
"""

import ctypes
import os
import stat
import struct

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
MS_REMOUNT = 32
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

WORKDIR = "/tmp/sieci-job"

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


def enter(request, code_fd):
    """In the job's first process: new namespaces and the job's view of the files.

    ``request["sandbox"]`` says what to hide, the disk limit and whether the
    job has a network.
    Returns the working directory, holding the job's file.
    """
    sandbox = request["sandbox"]
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not sandbox.get("network", True):
        flags |= CLONE_NEWNET
    if uid != 0:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare")
    if uid != 0:
        _map_user(uid, gid)
    if flags & CLONE_NEWNET:
        _bring_up_loopback()
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _make_reachable(interpreter_folders(), request.get("user"))
    for path in sandbox.get("hide", ()):
        _hide(path)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE,
                         struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0), 32), "mount_setattr /")
    size = f"size={sandbox['disk']}" if sandbox.get("disk") else "size=50%"
    for folder in ("/tmp", "/dev/shm"):
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=1777")
    os.mkdir(WORKDIR, 0o700)
    path = os.path.join(WORKDIR, request["filename"])
    with open(path, "xb") as file, open(code_fd, "rb", closefd=False) as code:
        while chunk := code.read(1 << 20):
            file.write(chunk)
    user = request.get("user")
    if user:
        for owned in (WORKDIR, path):
            os.chown(owned, *user, follow_symlinks=False)
    return WORKDIR


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
    moves = []
    for folder in folders:
        blocking = _first_blocking(folder, user)
        if blocking is not None:
            tree = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(folder),
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE), f"open_tree {folder}")
            moves.append((blocking, folder, tree))
    for blocking in sorted({blocking for blocking, _, _ in moves}):
        _mount("tmpfs", blocking, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
    for _, folder, tree in moves:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        _check(_libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(folder), MOVE_MOUNT_F_EMPTY_PATH),
               f"move_mount {folder}")
        os.close(tree)


def interpreter_folders():
    """The folders this Python reads from: its prefixes and import path, none inside another."""
    import sys

    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.realpath(sys.executable)), *sys.path}
    folders = sorted(os.path.realpath(path) for path in candidates if path and os.path.isdir(path))
    kept = []
    for folder in folders:
        if folder != "/" and not any(folder.startswith(outer.rstrip("/") + "/") for outer in kept):
            kept.append(folder)
    return kept


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
    """In the job's process: the job user, and no way back to more."""
    if user:
        os.setgroups([])
        os.setgid(user[1])
        os.setuid(user[0])
    else:  # in a user namespace of our own user, with every capability there: shed them
        header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        _check(_libc.capset(header, bytes(24)), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def mount_proc():
    """In the namespace's init: a /proc that shows the job's processes only."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def disk_full():
    status = os.statvfs("/tmp")
    return status.f_bavail == 0 or status.f_favail == 0


def _probe(network):
    """Build, in this throwaway process, the walls a job gets; fails with the reason."""
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | (0 if network else CLONE_NEWNET)
    _check(_libc.unshare(flags | (CLONE_NEWUSER if uid != 0 else 0)), "unshare")
    if uid != 0:
        _map_user(uid, gid)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE,
                         struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0), 32), "mount_setattr /")
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=4k")
    child = os.fork()
    if child == 0:
        mount_proc()
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError("cannot mount /proc in a PID namespace")


if __name__ == "__main__":
    import sys

    try:
        _probe(network=sys.argv[2:] != ["off"])
    except OSError as error:
        sys.exit(str(error))
