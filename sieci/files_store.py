"""Files bundles kept on disk by their SHA-256 digest: a master's, and a worker's, bounded store.

A store is a private folder (mode 0700) of its own, made fresh when its
daemon starts and removed when it stops (or a master's lasting one in its
--state-dir, whose bundles it finds again at its next start); each bundle is a file there named
by its digest, written under a temporary name and renamed once its size and
digest have been checked. A digest is used as a file name only once it is
known to be 64 lower-case hex digits. The bundles together take at most
``capacity`` bytes: to make room, those unused longest go first, but never
one a job still needs (``hold``).
"""

import collections
import hashlib
import os
import re
import shutil
import stat
import tempfile

_DIGEST = re.compile(r"[0-9a-f]{64}\Z")


class StoreFull(Exception):
    """No room for a bundle: the rest is held by jobs, or the bundle is larger than the store."""


class Mismatch(Exception):
    """The bytes sent are not the bundle announced: another size, or another digest."""


def _checked(digest):
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise ValueError(f"not a SHA-256 digest: {digest!r}")
    return digest


class FilesStore:
    """Bundles on disk, at most ``capacity`` bytes of them, in a private folder made in ``parent``
    (default: the system's temp folder). Counts what it took in (``received_bytes``) and gave out
    (``sent_bytes``, counted by the caller), and how often a bundle was there already (``hits``)."""

    def __init__(self, capacity, parent=None, lasting_folder=None):
        self.capacity = capacity
        self.lasting = lasting_folder is not None
        self.folder = lasting_folder or tempfile.mkdtemp(prefix="sieci-files-", dir=parent)
        self.sizes = collections.OrderedDict()  # digest: size, the least recently used first
        self.holds = collections.Counter()  # digest: jobs that need it
        self.reserved = 0  # bytes of bundles on their way in
        self.terminators = {}  # digest: a token that occurs nowhere in it, once one was needed
        self.received_bytes = 0
        self.sent_bytes = 0
        if self.lasting:
            self._find_bundles()

    def _find_bundles(self):
        """The bundles a lasting folder holds from the master's last run, the least recently used first;
        a bundle that never finished arriving is thrown away."""
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            found = []
            for name in os.listdir(fd):
                if name.startswith(".incoming-"):
                    os.unlink(name, dir_fd=fd)
                elif _DIGEST.match(name):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        found.append((info.st_mtime, name, info.st_size))
        finally:
            os.close(fd)
        for _, digest, size in sorted(found):
            self.sizes[digest] = size

    def trim(self):
        """Forget bundles no job needs until the store fits its capacity (which may have shrunk)."""
        for digest in [digest for digest in self.sizes if digest not in self.holds]:
            if self.used <= self.capacity:
                break
            self.forget(digest)

    @property
    def used(self):
        return sum(self.sizes.values()) + self.reserved

    def has(self, digest):
        """Whether the bundle is here (it then counts as just used)."""
        if _checked(digest) not in self.sizes:
            return False
        self.sizes.move_to_end(digest)
        return True

    def hold(self, digest):
        """A job needs the bundle (which is here): it stays until ``release``."""
        if digest not in self.sizes:
            raise KeyError(digest)
        self.holds[digest] += 1

    def release(self, digest):
        self.holds[digest] -= 1
        if self.holds[digest] <= 0:
            del self.holds[digest]

    def open(self, digest):
        """A read-only fd of the bundle, which stays good even if the bundle is then evicted."""
        return os.open(self._path(digest), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)

    def path(self, digest):
        return self._path(digest)

    def _path(self, digest):
        return os.path.join(self.folder, _checked(digest))

    def incoming(self, wanted):
        """An Incoming for the bundle ``wanted`` (an upload_format.FilesWanted) to be written to; room is made
        for it first. StoreFull if there is none."""
        _checked(wanted.digest)
        self._make_room(wanted.size)
        self.reserved += wanted.size
        return Incoming(self, wanted)

    def put(self, wanted, data):
        """Keep ``data``, which must be the bundle ``wanted``: Mismatch if it is not."""
        with self.incoming(wanted) as incoming:
            incoming.write(data)
            incoming.finish()

    def _make_room(self, size):
        if size > self.capacity:
            raise StoreFull(f"a files bundle of {size} bytes is larger than the store ({self.capacity} bytes)")
        for digest in [digest for digest in self.sizes if digest not in self.holds]:
            if self.used + size <= self.capacity:
                break
            self.forget(digest)
        if self.used + size > self.capacity:
            raise StoreFull("no room for another files bundle now: the rest is in use; try again later")

    def forget(self, digest):
        self.sizes.pop(digest, None)
        self.terminators.pop(digest, None)
        try:
            os.unlink(self._path(digest))
        except FileNotFoundError:
            pass

    def _arrived(self, wanted, temporary):
        os.rename(temporary, self._path(wanted.digest))
        self.sizes[wanted.digest] = wanted.size
        self.received_bytes += wanted.size

    def terminator(self, digest, choose):
        """A block terminator that occurs nowhere in the bundle: ``choose(data)``'s, chosen once."""
        if digest not in self.terminators:
            with open(self.open(digest), "rb") as file:
                self.terminators[digest] = choose(file.read())
        return self.terminators[digest]

    def close(self):
        if not self.lasting:
            shutil.rmtree(self.folder, ignore_errors=True)


class Incoming:
    """A bundle on its way into the store: ``write`` its bytes as they come, then ``finish``, which
    checks its size and digest; leaving the ``with`` block unfinished throws away what came."""

    def __init__(self, store, wanted):
        self.store = store
        self.wanted = wanted
        self.digest = hashlib.sha256()
        self.written = 0
        fd, self.temporary = tempfile.mkstemp(prefix=".incoming-", dir=store.folder)
        self.file = os.fdopen(fd, "wb")

    def __enter__(self):
        return self

    def write(self, data):
        self.written += len(data)
        if self.written > self.wanted.size:
            raise Mismatch(f"the files bundle is larger than the {self.wanted.size} bytes announced")
        self.digest.update(data)
        self.file.write(data)

    def finish(self):
        if self.written != self.wanted.size or self.digest.hexdigest() != self.wanted.digest:
            raise Mismatch(f"the files bundle is not the one announced ({self.written} bytes, "
                           f"SHA-256 {self.digest.hexdigest()})")
        self.file.close()
        self.store._arrived(self.wanted, self.temporary)
        self.temporary = None

    def __exit__(self, *exc_info):
        self.file.close()
        self.store.reserved -= self.wanted.size
        if self.temporary is not None:
            os.unlink(self.temporary)
