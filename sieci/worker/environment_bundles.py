"""The files bundles of jobs with requirements: the bundle's digest and the wheels' names and digests
(``--with-wheels``), which key the job's environment, and the bundle the job itself unpacks, without the
wheels' folder.

The wheels travel in the job's files bundle (upload_format.WHEELS_FOLDER), so they are sent and kept once,
as the rest of it is. The environment's build unpacks all of it; the job's folder holds only what the
user's ``--with`` gave, as ``python3 PROG`` would find it, so the job gets a copy of the bundle without
that folder. Both come from one reading of the bundle, kept per bundle (bundles are immutable files:
known by their identity).
"""

import hashlib
import os
import tempfile

from sieci.wire import bundle
from sieci.wire.upload_format import WHEELS_FOLDER

KEPT = 16  # bundles whose wheels' digests and copy without them are kept


class WheelBundles:
    """What the bundles of a worker's jobs hold beside their wheels; ``max_size``: the most a bundle
    may unpack to."""

    def __init__(self, max_size):
        self.max_size = max_size
        self._kept = {}  # a bundle's identity: (its wheels' (name, sha256)s, an fd of it without them)
        self._digests = {}  # a bundle's identity: its SHA-256 hex

    def digest(self, files_fd):
        """The SHA-256 hex of the whole bundle at ``files_fd`` (its offset untouched)."""
        identity = _identity(files_fd)
        if identity not in self._digests:
            if len(self._digests) >= KEPT:
                self._digests.clear()
            digest = hashlib.sha256()
            offset = 0
            while piece := os.pread(files_fd, bundle.PIECE, offset):
                digest.update(piece)
                offset += len(piece)
            self._digests[identity] = digest.hexdigest()
        return self._digests[identity]

    def wheels(self, files_fd):
        """``(name, sha256)`` of each file in the wheels' folder of the bundle at ``files_fd``."""
        return self._read(files_fd)[0]

    def leave_out_wheels(self, files_fd):
        """Make the fd ``files_fd`` (its number is the job's run's) read, from its start, the bundle it
        reads without its wheels' folder. OSError if it cannot."""
        without = self._read(files_fd)[1]
        fresh = os.open(f"/proc/self/fd/{without}", os.O_RDONLY | os.O_CLOEXEC)  # an offset of its own
        try:
            os.dup2(fresh, files_fd, inheritable=False)
        finally:
            os.close(fresh)

    def _read(self, files_fd):
        identity = _identity(files_fd)
        if identity not in self._kept:
            if len(self._kept) >= KEPT:
                self.close()
            os.lseek(files_fd, 0, os.SEEK_SET)
            try:
                self._kept[identity] = _split(files_fd, self.max_size)
            finally:
                os.lseek(files_fd, 0, os.SEEK_SET)
        return self._kept[identity]

    def close(self):
        while self._kept:
            os.close(self._kept.popitem()[1][1])


def _identity(files_fd):
    """A bundle's identity: its inode, and its times, as the files store may reuse an inode's number."""
    status = os.fstat(files_fd)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _split(files_fd, max_size):
    """``(wheels, fd)``: the wheels' names and digests, and an unnamed file of the bundle without them."""
    found = []

    def take(kind, parts, size, inflater):
        if kind == bundle.FOLDER:
            return
        digest = hashlib.sha256()
        while size:
            piece = inflater.read_exactly(min(size, bundle.PIECE))
            size -= len(piece)
            digest.update(piece)
        found.append((b"/".join(parts).decode("utf-8", "replace"), digest.hexdigest()))

    without, path = tempfile.mkstemp(prefix="sieci-job-files-")
    try:
        os.unlink(path)
        bundle.copy_without(files_fd, without, WHEELS_FOLDER.encode(), max_size, take)
    except BaseException:
        os.close(without)
        raise
    return tuple(found), without
