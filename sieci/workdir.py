"""A job's working directory on the host, for workers that run jobs without namespaces.

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

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Folders held open at once while walking a job's tree. Deeper folders are moved up
# to the top before removal; a tree deeper than this counts as over the disk limit.
MAX_DEPTH = 128
# gevent's os.close puts a close off until its loop runs: thousands of folders would
# hold their fds until then.
_close = posix.close


def make(code, filename, user=None):
    """A fresh private folder in the system's temp folder holding the job's file (none for ``code``
    None: a directory program, which comes in the job's files bundle); its path."""
    folder = tempfile.mkdtemp(prefix="sieci-job-")
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


def _listing(folder_fd):
    """[(name, is a real folder, blocks)] for the folder's entries, never following a symlink."""
    listing = []
    with os.scandir(folder_fd) as entries:
        for entry in entries:
            try:
                status = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            listing.append((entry.name, stat.S_ISDIR(status.st_mode), status.st_blocks))
    return listing


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
    """Remove ``path`` and all under it, whatever the job did to it; never raises."""
    _in_parent(path, lambda parent_fd, name: _walk(parent_fd, name, _unlink_quietly, _rmdir_quietly, _move_up))


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
