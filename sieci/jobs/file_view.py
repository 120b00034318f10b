"""A job's view of the files, made of mounts: the template every job's mount namespace starts from
(the whole tree read-only, the worker's secrets hidden, the interpreter's folders reachable for the
job user), the tmpfs of the job's own /tmp and /dev/shm, and its /proc. sandbox.py makes the
namespaces these mounts are made in."""

import ctypes
import os
import stat
import struct
import sys

from sieci.jobs.libc import check, libc

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
# sieci's own package, which the fork server imports (from an editable checkout too).
SIECI_FOLDER = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_interpreter_folders = []


def build_view(config):
    """In the fork server's new mount namespace, once: the view every job's starts from (see
    sandbox.build_template; ``config``: its "user" and the paths to "hide")."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _interpreter_folders[:] = _outermost([*interpreter_paths(), SIECI_FOLDER])
    _make_reachable(_interpreter_folders, config.get("user"))
    for path in config.get("hide", ()):
        _hide(path)
    _set_attributes("/", AT_RECURSIVE, MOUNT_ATTR_RDONLY, 0)
    # The fork server still writes to its jobs' cgroup and to /proc (jobs get a /proc of their own).
    for tree in ["/proc", *_cgroup_mounts()]:
        _set_attributes(tree, 0, 0, MOUNT_ATTR_RDONLY)


def mount_job_tmp(config):
    """In a job's new mount namespace: a fresh tmpfs of the job's disk limit on /tmp and /dev/shm."""
    size = f"size={config['disk']}" if config.get("disk") else "size=50%"
    # An interpreter or its packages under /tmp (a venv made there) stay where they are.
    _cover(["/tmp", "/dev/shm"], _interpreter_folders, lambda: _mount_job_tmpfs(size))


def _mount(source, target, fstype, flags, options=None):
    check(libc.mount(_c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(options)),
          f"mount {target}")


def _c(text):
    return None if text is None else os.fsencode(text)


def _mount_job_tmpfs(size):
    """One tmpfs of the job's disk limit for both /tmp and /dev/shm (two would give it twice the
    room): mounted on /tmp, two folders of it are bound over /dev/shm and then over /tmp itself."""
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"{size},mode=755")
    for name, target in (("shm", "/dev/shm"), ("tmp", "/tmp")):
        os.mkdir(f"/tmp/{name}")
        os.chmod(f"/tmp/{name}", 0o1777)
        _mount(f"/tmp/{name}", target, None, MS_BIND)


def _set_attributes(path, flags, attributes_set, attributes_cleared):
    attributes = struct.pack("QQQQ", attributes_set, attributes_cleared, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, os.fsencode(path), flags, attributes, len(attributes)),
          f"mount_setattr {path}")


def _cgroup_mounts():
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            ours, theirs = line.split(" - ", 1)
            if theirs.split()[0] in ("cgroup", "cgroup2"):
                yield ours.split()[4]


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
    kept = [(folder, check(libc.syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(folder),
                                        OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE), f"open_tree {folder}"))
            for folder in folders if any(folder.startswith(top.rstrip("/") + "/") or folder == top
                                         for top in tops)]
    mount()
    for folder, tree in kept:
        os.makedirs(folder, mode=0o755, exist_ok=True)
        check(libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(folder), MOVE_MOUNT_F_EMPTY_PATH),
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


def mount_proc():
    """In a process of the job's PID namespace: a /proc that shows the job's processes only."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
