"""Where the client writes the files a job returns: under its results folder, and nowhere else.

The names come from the worker, which may lie, and the folder may hold
anything already: every file is made through directory fds, one component at
a time from the results folder down, never following a symlink
(``O_NOFOLLOW``), under a name returns.name_parts accepts and the client's own
globs match (a worker that sends another is refused, never obeyed). Like the client,
it imports no gevent.
"""

import errno
import os
import stat

from sieci.wire.returns import ENTRY_BYTES, glob_matches, name_parts, split_glob

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


class ResultsFolder:
    """Writes the files a job returns (results.FilePiece after FilePiece) under ``path``, made when
    the first file comes: only those whose names match one of ``globs`` (the client's --return), at
    most ``max_bytes`` of them in all, each file costing ENTRY_BYTES more. ``written`` lists the names
    written whole, ``failed`` ``(name, why)`` for each file that could not be."""

    def __init__(self, path, globs, max_bytes):
        self.path = path
        self.globs = [split_glob(glob) for glob in globs]
        self.max_bytes = max_bytes
        self.written = []
        self.failed = []
        self.total = 0  # bytes that came, of files written or not: the worker counts them all
        self._root_fd = None
        self._current = None  # (name, fd, the fd of its folder) of the file being written
        self._refusing = False  # the pieces of the current file are dropped

    def write(self, piece):
        if piece.name is not None:
            self._finish_file()
            self.total += ENTRY_BYTES
            self._start_file(piece.name)
        self.total += len(piece.data)
        if self._refusing:
            return
        if self.total > self.max_bytes:
            self._fail(f"the files returned pass --max-return ({self.max_bytes} bytes)")
            return
        view = memoryview(piece.data)
        try:
            while view:
                view = view[os.write(self._current[1], view):]
        except OSError as error:
            self._fail(_reason(error))

    def close(self, complete=True):
        """The results have ended; ``complete``: whole (a file they cut short is removed, not kept)."""
        if not complete and self._current is not None:
            self._fail("the results were cut short")
        self._finish_file()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    def discard(self):
        """Remove the files written: they are not to be trusted."""
        self._finish_file()
        for name in self.written:
            parts = name.split("/")
            try:
                folder_fd = self._open_folders(parts[:-1])
            except OSError:
                continue
            try:
                os.unlink(parts[-1], dir_fd=folder_fd)
                self.failed.append((name, "removed: the results' seal did not match"))
            except OSError:
                pass
            finally:
                os.close(folder_fd)
        self.written = []

    def _start_file(self, name):
        self._refusing = True
        try:
            parts = name_parts(name)
        except ValueError as why:
            self.failed.append((name, f"refused: {why}"))
            return
        if not any(glob_matches(glob, parts) for glob in self.globs):
            self.failed.append((name, "refused: the worker sent a file that no --return asked for"))
            return
        if self.total > self.max_bytes:
            self.failed.append((name, f"the files returned pass --max-return ({self.max_bytes} bytes)"))
            return
        folder_fd = None
        try:
            folder_fd = self._open_folders(parts[:-1])
            fd = os.open(parts[-1], _FILE, 0o666, dir_fd=folder_fd)
        except OSError as error:
            if folder_fd is not None:
                os.close(folder_fd)
            self.failed.append((name, _reason(error)))
            return
        self._current, self._refusing = (name, fd, folder_fd), False

    def _open_folders(self, parts):
        """The fd of the folder ``parts`` below the results folder, made where missing."""
        if self._root_fd is None:
            os.makedirs(self.path, exist_ok=True)
            self._root_fd = os.open(self.path, _FOLDER & ~os.O_NOFOLLOW)  # the user's to choose, link or not
        fd = os.dup(self._root_fd)
        for part in parts:
            try:
                below = _folder_below(fd, part)
            finally:
                os.close(fd)
            fd = below
        return fd

    def _finish_file(self):
        if self._current is not None and not self._refusing:
            self.written.append(self._current[0])
        self._close_current()

    def _fail(self, why):
        """The current file cannot be written whole: it is removed, and its other pieces dropped."""
        name, _, folder_fd = self._current
        self.failed.append((name, why))
        try:
            os.unlink(os.path.basename(name), dir_fd=folder_fd)
        except OSError:
            pass
        self._close_current()
        self._refusing = True

    def _close_current(self):
        if self._current is not None:
            os.close(self._current[1])
            os.close(self._current[2])
            self._current = None


def _folder_below(fd, name):
    """The folder ``name`` in the folder ``fd``, made if missing; a symlink there is ELOOP."""
    try:
        return os.open(name, _FOLDER, dir_fd=fd)
    except FileNotFoundError:
        os.mkdir(name, dir_fd=fd)
        return os.open(name, _FOLDER, dir_fd=fd)
    except NotADirectoryError:
        if stat.S_ISLNK(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, "a symbolic link") from None
        raise


def _reason(error):
    if error.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
        return "refused: a symbolic link is in the way"
    return f"cannot be written ({(error.strerror or str(error)).lower()})"
