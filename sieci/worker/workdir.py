"""A job's working directory: on the host, for workers that run jobs without namespaces; and the
files a job returns, from its folder wherever it is.

The job owns the folder while it runs, so it may have put anything there:
symlinks, renamed folders, thousands of levels. Everything here that root
does afterwards goes through directory fds opened with ``O_NOFOLLOW``
from the folder's parent (which the job cannot write), one level at a
time, without recursion, holding at most MAX_DEPTH fds.
"""

import itertools
import os
import posix
import stat
import tempfile

from sieci.wire.returns import MAX_LISTED, MAX_NAME, glob_matches, may_match_below

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Folders held open at once while walking a job's tree. Deeper folders are moved up
# to the top before removal; a tree deeper than this counts as over the disk limit.
MAX_DEPTH = 128
# gevent's os.close puts a close off until its loop runs: thousands of folders would
# hold their fds until then.
_close = posix.close


JOB_FOLDER = "job"


def make(code, filename, user=None):
    """A fresh private folder in the system's temp folder holding the job's file (none for ``code``
    None: a directory program, which comes in the job's files bundle, or code from the client's stdin
    that a fresh ``python -`` reads from its own); its path. It is made inside a
    folder of the worker's own, which the job user may enter but not change: so the job cannot move
    its folder away from where its disk use is measured and it is removed (see remove)."""
    holder = tempfile.mkdtemp(prefix="sieci-job-")
    os.chmod(holder, 0o711)
    folder = os.path.join(holder, JOB_FOLDER)
    os.mkdir(folder, 0o700)
    folder_fd = os.open(folder, _DIRECTORY)
    try:
        if code is not None:
            _write_file(folder_fd, filename, code, user)
        if user:
            os.fchown(folder_fd, *user)
    finally:
        _close(folder_fd)
    return folder


def _write_file(folder_fd, filename, code, user):
    file_fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=folder_fd)
    try:
        with open(file_fd, "wb", closefd=False) as file:
            file.write(code)
        if user:
            os.fchown(file_fd, *user)
    finally:
        _close(file_fd)


def _entries(folder_fd, most=None):
    """[(name, its status, or None if it has gone since)] for the folder's entries, in name order,
    never following a symlink; with ``most``, at most that many (and then in no order)."""
    entries = []
    with os.scandir(folder_fd) as scan:
        for entry in itertools.islice(scan, most):
            try:
                status = entry.stat(follow_symlinks=False)
            except OSError:
                status = None
            entries.append((entry.name, status))
    return sorted(entries, key=lambda entry: entry[0])


def _listing(folder_fd):
    """[(name, is a real folder, blocks)] for the folder's entries."""
    return [(name, stat.S_ISDIR(status.st_mode), status.st_blocks)
            for name, status in _entries(folder_fd) if status is not None]


def _open_below(folder_fd, name):
    try:
        return os.open(name, _DIRECTORY, dir_fd=folder_fd)
    except OSError:
        return None


def _walk(parent_fd, name, visit_file, leave_folder, too_deep):
    """Depth first through the folder ``name`` in ``parent_fd``: ``visit_file(folder_fd,
    name, blocks)`` for each entry that is not a folder, ``leave_folder(parent_fd, name)``
    once a folder's entries are done, ``too_deep(folder_fd, name, top_fd)`` for a folder
    MAX_DEPTH levels down. A stack of dir fds, no recursion."""
    top = _open_below(parent_fd, name)
    if top is None:
        visit_file(parent_fd, name, 0)
        return
    listing = _listing(top)
    seen_at_top = {entry[0] for entry in listing}
    stack = [(parent_fd, name, top, iter(listing))]
    while stack:
        holder_fd, folder_name, folder_fd, pending = stack[-1]
        for entry_name, is_folder, blocks in pending:
            if is_folder and len(stack) >= MAX_DEPTH:
                too_deep(folder_fd, entry_name, top)
                continue
            below = _open_below(folder_fd, entry_name) if is_folder else None
            if below is not None:
                stack.append((folder_fd, entry_name, below, iter(_listing(below))))
                break
            visit_file(folder_fd, entry_name, blocks)
        else:
            stack.pop()
            _close(folder_fd)
            leave_folder(holder_fd, folder_name)
            moved_up = [entry for entry in _listing(top) if entry[0] not in seen_at_top] if len(stack) == 1 else []
            if moved_up:  # folders moved up from below: walk them from the top
                seen_at_top.update(entry[0] for entry in moved_up)
                stack[-1] = (*stack[-1][:3], itertools.chain(moved_up, stack[-1][3]))


def _in_parent(path, walk):
    parent, name = os.path.split(path.rstrip("/"))
    try:
        parent_fd = os.open(parent, _DIRECTORY)
    except OSError:
        return
    try:
        walk(parent_fd, name)
    finally:
        _close(parent_fd)


def size(path):
    """Bytes the files under ``path`` take on disk (infinite for a tree deeper than MAX_DEPTH)."""
    total = 0

    def count(folder_fd, name, blocks):
        nonlocal total
        total += blocks * 512

    def too_deep(*_):
        nonlocal total
        total = float("inf")

    _in_parent(path, lambda parent_fd, name: _walk(parent_fd, name, count, lambda *_: None, too_deep))
    return total


def remove(path):
    """Remove the job's folder ``path`` (make's) and all under it, whatever the job did to it, and the
    folder make put it in; never raises."""
    _in_parent(os.path.dirname(path),
               lambda parent_fd, name: _walk(parent_fd, name, _unlink_quietly, _rmdir_quietly, _move_up))


def _move_up(folder_fd, name, top_fd):
    """Move a folder too deep to walk to the top of the tree, where the walk comes back for it."""
    try:
        os.rename(name, f".deep-{os.urandom(8).hex()}", src_dir_fd=folder_fd, dst_dir_fd=top_fd)
    except OSError:
        pass


def _unlink_quietly(folder_fd, name, blocks=0):
    try:
        os.unlink(name, dir_fd=folder_fd)
    except OSError:
        _rmdir_quietly(folder_fd, name)  # a folder that could not be opened, say


def _rmdir_quietly(folder_fd, name):
    try:
        os.rmdir(name, dir_fd=folder_fd)
    except OSError:
        pass


# A returned file is opened without following a symlink, and without waiting (a fifo would
# wait for a writer); it is read only if it then proves a regular file.
_RETURNED_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def open_folder(path):
    """A directory fd of the job's folder at ``path``, reached from its parent without following a
    symlink (the job may have put one in its place); OSError if there is none."""
    parent, name = os.path.split(path.rstrip("/"))
    parent_fd = os.open(parent, _DIRECTORY)
    try:
        return os.open(name, _DIRECTORY, dir_fd=parent_fd)
    finally:
        _close(parent_fd)


def returnable_files(folder_fd, globs, pulse=lambda: None):
    """What under the folder matches any of ``globs`` (returns.split_glob's), depth first in name
    order: ``(name, fd, None)`` for a regular file of the job's own, open for reading (the caller
    closes it), ``(name, None, why)`` for what is not returned. ``name`` is the path relative to the
    folder, with ``/``. Folders no glob can match below are not entered; ``pulse`` is called after
    each folder is listed (a walk of many may take a while). Nothing is followed: every folder is
    opened from its parent's fd with ``O_NOFOLLOW``, at most MAX_DEPTH at once."""
    owner = os.fstat(folder_fd).st_uid
    listed = _sorted_entries(folder_fd, MAX_LISTED + 1)
    left = MAX_LISTED - len(listed)
    stack = [((), folder_fd, iter(listed))]
    try:
        while stack and left >= 0:
            path, fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                if stack:
                    _close(fd)
                continue
            entry_name, mode = entry
            entry_path = (*path, entry_name)
            if stat.S_ISDIR(mode):
                if any(may_match_below(glob, entry_path) for glob in globs):
                    below, why = _folder_below(fd, entry_name, len(stack))
                    if why:
                        yield "/".join(entry_path), None, why
                    else:
                        listed = _sorted_entries(below, left + 1)
                        left -= len(listed)
                        stack.append((entry_path, below, iter(listed)))
                        pulse()
            elif any(glob_matches(glob, entry_path) for glob in globs):
                yield ("/".join(entry_path), *_returnable(fd, entry_name, entry_path, mode, owner))
        if left < 0:
            yield "/".join(stack[-1][0]) or ".", None, f"more than {MAX_LISTED} entries to list: nothing more returned"
    finally:
        for _, fd, _ in stack[1:]:
            _close(fd)


def _sorted_entries(folder_fd, most):
    """[(name, mode)] for the folder's entries (see _entries); mode 0 for one gone since (neither a
    folder nor a regular file)."""
    return [(name, status.st_mode if status else 0) for name, status in _entries(folder_fd, most)]


def _folder_below(folder_fd, name, depth):
    """``(fd, None)`` for the folder ``name`` below ``folder_fd``, or ``(None, why)``."""
    if depth >= MAX_DEPTH:
        return None, f"more than {MAX_DEPTH} folders deep"
    try:
        return os.open(name, _DIRECTORY, dir_fd=folder_fd), None
    except OSError as error:
        return None, f"a folder that cannot be read ({(error.strerror or str(error)).lower()})"


def _returnable(folder_fd, name, path, mode, owner):
    """``(fd, None)`` for a regular file of the job's own, open for reading; else ``(None, why)``."""
    if stat.S_ISLNK(mode):
        return None, "a symbolic link"
    if not stat.S_ISREG(mode):
        return None, "not a regular file"
    if len(os.fsencode("/".join(path))) > MAX_NAME:
        return None, f"a name longer than {MAX_NAME} bytes"
    try:
        fd = os.open(name, _RETURNED_FILE, dir_fd=folder_fd)
    except OSError as error:
        return None, f"cannot be read ({(error.strerror or str(error)).lower()})"
    status = os.fstat(fd)
    why = ("not a regular file" if not stat.S_ISREG(status.st_mode)
           # A hard link to another's file (the job user may make one where the kernel lets it):
           # the worker, root, would read what the job could not.
           else "not the job's own file" if status.st_uid != owner else None)
    if why:
        _close(fd)
        return None, why
    return fd, None
