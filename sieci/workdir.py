"""A job's working directory on the host, for workers that run jobs without namespaces.

The job owns the folder while it runs, so it may have put anything there:
symlinks, renamed folders, thousands of levels. Everything here that root
does afterwards goes through directory fds opened with ``O_NOFOLLOW``
from the folder's parent (which the job cannot write), one level at a
time, without recursion.
"""

import os
import stat
import tempfile

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def make(code, filename, user=None):
    """A fresh private folder in the system's temp folder holding the job's file; its path."""
    folder = tempfile.mkdtemp(prefix="sieci-job-")
    folder_fd = os.open(folder, _DIRECTORY)
    try:
        file_fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                          dir_fd=folder_fd)
        try:
            with open(file_fd, "wb", closefd=False) as file:
                file.write(code)
            if user:
                os.fchown(file_fd, *user)
                os.fchown(folder_fd, *user)
        finally:
            os.close(file_fd)
    finally:
        os.close(folder_fd)
    return folder


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


def _walk(parent_fd, name, visit_file, leave_folder):
    """Depth first through the folder ``name`` in ``parent_fd``: ``visit_file(folder_fd,
    name, blocks)`` for each entry that is not a folder, ``leave_folder(parent_fd, name)``
    once a folder's entries are done. A stack of dir fds, no recursion."""
    top = _open_below(parent_fd, name)
    if top is None:
        visit_file(parent_fd, name, 0)
        return
    stack = [(parent_fd, name, top, iter(_listing(top)))]
    while stack:
        holder_fd, folder_name, folder_fd, pending = stack[-1]
        for entry_name, is_folder, blocks in pending:
            below = _open_below(folder_fd, entry_name) if is_folder else None
            if below is not None:
                stack.append((folder_fd, entry_name, below, iter(_listing(below))))
                break
            visit_file(folder_fd, entry_name, blocks)
        else:
            stack.pop()
            os.close(folder_fd)
            leave_folder(holder_fd, folder_name)


def _in_parent(path, walk):
    parent, name = os.path.split(path.rstrip("/"))
    try:
        parent_fd = os.open(parent, _DIRECTORY)
    except OSError:
        return
    try:
        walk(parent_fd, name)
    finally:
        os.close(parent_fd)


def size(path):
    """Bytes the files under ``path`` take on disk."""
    total = 0

    def count(folder_fd, name, blocks):
        nonlocal total
        total += blocks * 512

    _in_parent(path, lambda parent_fd, name: _walk(parent_fd, name, count, lambda *_: None))
    return total


def remove(path):
    """Remove ``path`` and all under it, whatever the job did to it; never raises."""
    _in_parent(path, lambda parent_fd, name: _walk(parent_fd, name, _unlink_quietly, _rmdir_quietly))


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
