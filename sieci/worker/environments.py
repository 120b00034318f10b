"""The worker's store of built environments: one folder each, named by its key (environment_plan.py).

Several workers (a host's, a sieci-cluster's) may share a store. Beside each
environment is its lock file: held shared by whoever uses the environment (a
fork server runs from it), exclusively by whoever builds or removes it. So an
environment is built once however many jobs ask for it at once (the others
wait for that build), is never removed while in use, and is never seen half
built (it is built in a folder of its own, then renamed into place). A
store past its bound removes the environments used longest ago.
"""

import errno
import fcntl
import logging
import os
import secrets
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass

import gevent

from sieci.environment_options import DEFAULT_BUILD_NETWORK, DEFAULT_BUILD_TIMEOUT, DEFAULT_MAX_SIZE, DEFAULT_SERVERS
from sieci.worker.environment_plan import StoredEnvironment, is_key, to_remove

log = logging.getLogger("sieci.worker")

LOCK_POLL = 0.05  # seconds between tries at a lock another holds (flock must not block the event loop)
STAGING_PREFIX = ".building-"
REMOVING_PREFIX = ".removing-"


@dataclass(frozen=True)
class EnvironmentOptions:
    """How a worker builds and keeps environments: the store's ``folder`` and ``max_size`` in bytes, the
    network a build has (``build_network``: "none" or "host"), its time limit (``build_timeout``, seconds)
    and how many environments' fork servers may run at once (``servers``)."""

    folder: str
    max_size: int = DEFAULT_MAX_SIZE
    build_network: str = DEFAULT_BUILD_NETWORK
    build_timeout: float = DEFAULT_BUILD_TIMEOUT
    servers: int = DEFAULT_SERVERS


def default_folder():
    """The store's folder when none is given: one of this user's in /var/tmp (kept across reboots, and
    not under /tmp, which each sandboxed job's own tmpfs covers: an interpreter's folder there is mounted
    back for every job), else in the system's temp folder."""
    top = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()
    return os.path.join(top, f"sieci-environments-{os.geteuid()}")


def default_environment_options():
    return EnvironmentOptions(default_folder())


class StoreUnusable(Exception):
    """The store's folder cannot be used; the message says why."""


class WaitedTooLong(Exception):
    """Another build of the same environment did not end before this job's time limit."""


class Lease:
    """A shared lock on one environment: it stays in the store while the lease is held."""

    def __init__(self, fd, path):
        self._fd = fd
        self.path = path

    def touch(self):
        """Note a use of the environment, which the store's bound goes by."""
        os.utime(self.path, follow_symlinks=False)

    def release(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EnvironmentStore:
    """Environments in ``folder`` (made if missing: a folder of this user's, which no one else may
    write to), at most ``max_size`` bytes of them beyond those in use."""

    def __init__(self, folder, max_size):
        self.folder = os.path.abspath(folder)
        self.max_size = max_size
        self.builds = 0  # environments this store object built (for logs and tests)
        _make_folder(self.folder)

    def path(self, key):
        return os.path.join(self.folder, key)

    def lease(self, key, build, deadline):
        """A Lease on the environment ``key``. If the store lacks it, ``build(folder)`` makes it in an
        empty ``folder`` first (raising what it raises), or, when another is building it already, this
        waits for that build until ``deadline`` (time.monotonic()), then raises WaitedTooLong."""
        while True:
            fd = self._open_lock(key)
            try:
                if _locked(fd, fcntl.LOCK_SH, self._lock_path(key)) and self._built(key):
                    return self._leased(key, fd)
                fcntl.flock(fd, fcntl.LOCK_UN)
                if _locked(fd, fcntl.LOCK_EX, self._lock_path(key)):
                    if not self._built(key):
                        self._build(key, build)
                    if _locked(fd, fcntl.LOCK_SH, self._lock_path(key)) and self._built(key):
                        return self._leased(key, fd)
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            if time.monotonic() >= deadline:
                raise WaitedTooLong(f"the environment {key[:12]} was still being built elsewhere")
            gevent.sleep(LOCK_POLL)

    def _leased(self, key, fd):
        lease = Lease(fd, self.path(key))
        lease.touch()
        return lease

    def _build(self, key, build):
        staging = os.path.join(self.folder, f"{STAGING_PREFIX}{key}-{secrets.token_hex(4)}")
        os.mkdir(staging, 0o755)
        started = time.monotonic()
        try:
            build(staging)
            _readable_by_all(staging)
            os.rename(staging, self.path(key))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            os.unlink(self._lock_path(key))  # held exclusively: those waiting on it find it gone, and open anew
            raise
        self.builds += 1
        log.info("environment %s built in %.1f s", key[:12], time.monotonic() - started)

    def make_room(self):
        """Remove the environments used longest ago, none in use, until the rest fit the bound
        (unless another worker is at it already)."""
        store_lock = _open_lock_file(os.path.join(self.folder, ".store.lock"))
        held = {}
        try:
            if not _locked(store_lock, fcntl.LOCK_EX):
                return []
            stored = []
            for key in filter(is_key, os.listdir(self.folder)):
                fd = self._open_lock(key)
                if _locked(fd, fcntl.LOCK_EX, self._lock_path(key)):
                    held[key] = fd
                else:
                    os.close(fd)
                status = os.lstat(self.path(key))
                stored.append(StoredEnvironment(key, tree_size(self.path(key)), status.st_mtime, key not in held))
            removed = to_remove(stored, self.max_size)
            for key in removed:
                self._remove(key)
            self._remove_leftovers(held)
            return removed
        finally:
            for fd in held.values():
                os.close(fd)
            os.close(store_lock)

    def _remove_leftovers(self, held):
        """What a worker that died in a build or a removal left: a removal's folder, and a build's that no
        one builds (its key's lock is free: ``held`` has the keys whose locks the caller holds); and the
        lock of an environment that is not there (its build failed), which no one holds."""
        for name in os.listdir(self.folder):
            if name.endswith(".lock") and is_key(name[:-len(".lock")]) and name[:-len(".lock")] not in held:
                self._remove_unused_lock(name[:-len(".lock")], held)
            elif name.startswith(STAGING_PREFIX):
                key = name[len(STAGING_PREFIX):].rpartition("-")[0]
                if not is_key(key):
                    continue
                fd = held.get(key)
                if fd is None:
                    fd = self._open_lock(key)
                    held[key] = fd
                    if not _locked(fd, fcntl.LOCK_EX, self._lock_path(key)):
                        continue
            elif not name.startswith(REMOVING_PREFIX):
                continue
            shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)

    def _remove_unused_lock(self, key, held):
        """Unlink the lock of ``key`` if no one holds it and its environment is not there (whoever opens it
        meanwhile finds, once it holds it, that it is not the one at its path, and opens that)."""
        fd = self._open_lock(key)
        held[key] = fd
        if _locked(fd, fcntl.LOCK_EX, self._lock_path(key)) and not self._built(key):
            os.unlink(self._lock_path(key))

    def _remove(self, key):
        """Remove an environment whose lock the caller holds exclusively."""
        doomed = os.path.join(self.folder, f"{REMOVING_PREFIX}{key}-{secrets.token_hex(4)}")
        os.rename(self.path(key), doomed)
        os.unlink(self._lock_path(key))
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("environment %s removed: the store was past its bound of %d bytes", key[:12], self.max_size)

    def _built(self, key):
        try:
            return stat.S_ISDIR(os.lstat(self.path(key)).st_mode)
        except FileNotFoundError:
            return False

    def _lock_path(self, key):
        return self.path(key) + ".lock"

    def _open_lock(self, key):
        return _open_lock_file(self._lock_path(key))


def _open_lock_file(path):
    """The lock file at ``path``, which no other user may open: one that may, a job as --job-user or anyone
    on the host could hold, and stall every job that needs the environment (flock needs no write access)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # made so by an older worker
    except BaseException:
        os.close(fd)
        raise
    return fd


def _locked(fd, kind, path=None):
    """Whether the lock ``kind`` on ``fd`` was taken at once; with ``path``, also that the file locked is
    still the one at ``path`` (a removal unlinks it)."""
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    if path is None:
        return True
    try:
        same = os.path.samestat(os.fstat(fd), os.lstat(path))
    except FileNotFoundError:
        same = False
    if not same:
        fcntl.flock(fd, fcntl.LOCK_UN)
    return same


def tree_size(path):
    """Bytes of the files under ``path``, links not followed."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _readable_by_all(folder):
    """Let every job user read the environment in ``folder`` (the worker's umask may be 077), none write."""
    for top, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(top, name)
            mode = os.lstat(path).st_mode  # only the worker has written here: no link can change under it
            if stat.S_ISDIR(mode):
                os.chmod(path, 0o755)
            elif stat.S_ISREG(mode):
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)
    os.chmod(folder, 0o755)


def _make_folder(folder):
    """Made through its own fd, never by its path: in a shared /var/tmp, a link planted there (by a job
    of a worker without namespaces, say) must not turn a chmod onto the folder it points to."""
    try:
        os.makedirs(os.path.dirname(folder), 0o755, exist_ok=True)
        try:
            os.mkdir(folder, 0o711)
            made = True
        except FileExistsError:
            made = False
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise StoreUnusable(f"cannot make the environments' folder {folder} ({error.strerror})") from None
    try:
        status = os.fstat(fd)
        if status.st_uid != os.geteuid() or status.st_mode & 0o022:
            raise StoreUnusable(f"the environments' folder {folder} is not a folder of this user's that only it "
                                "may write to")
        # Jobs, as another user, reach their environments through it, by their keys, but may not list it: an
        # environment may hold one user's private packages, and the key is a digest of them.
        mode = 0o711 if made else stat.S_IMODE(status.st_mode) & ~0o044
        if mode != stat.S_IMODE(status.st_mode):
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
