"""A master's state folder (--state-dir): what it keeps across a restart, and the one lock that keeps
other masters out.

The folder (mode 0700, the master's own) holds ``lock`` (flock'ed for the master's life), ``jobs.db``
(SQLite, WAL: one row per kept job, see job_record.py), ``kept/`` (kept jobs' uploads and results, in
files named at random) and ``files/`` (the files store's bundles, named by digest). Every entry is
opened relative to the folder's descriptor without following symbolic links; a database that is not
this schema's, or is damaged, is refused, never dropped.

The master's one writer is its ``Recorder``: a job's moves mark it dirty, and a greenlet writes every
dirty record in one transaction a moment later. A record may lag its job by that much, so the files in
``kept/`` say what a record may not yet: a kept job's upload file, written before its client is told
its id, begins with a line that holds what its first record holds (job_record.preamble), and goes,
synchronously, when a worker says RECEIVED for a detached job.
"""

import errno
import fcntl
import logging
import os
import sqlite3
import stat

import gevent

from sieci.master.job_record import COLUMNS, row_of

log = logging.getLogger("sieci.master")

APPLICATION_ID = 0x53494543  # "SIEC", in the database header: a sieci master's state, not another's
SCHEMA_VERSION = 1
COMMIT_DELAY = 0.25  # seconds a dirty record waits for others to share its transaction
_COLUMN_TYPES = {"arguments": "INTEGER", "exit_status": "INTEGER", "submitted": "REAL", "started": "REAL",
                 "ended": "REAL", "detached": "INTEGER", "keep": "INTEGER", "upload_size": "INTEGER",
                 "complete": "INTEGER", "stdin": "INTEGER"}
SCHEMA = ("CREATE TABLE jobs (id TEXT PRIMARY KEY, "
          + ", ".join(f"{column} {_COLUMN_TYPES.get(column, 'TEXT')}" for column in COLUMNS[1:]) + ")")
# A row already there is updated where it is: no delete and insert, which would write its id's index page again.
_UPSERT = (f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
           f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{column} = excluded.{column}' for column in COLUMNS[1:])}")


class StateRefused(Exception):
    """The state folder cannot be used: the message says why, and what to do."""


class StateDir:
    """The state folder at ``path``, made if missing, locked, its database open and checked."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.fd = _open_own_folder(self.path, None, self.path)
        try:
            self.lock_fd = self._lock()
            self.kept_folder = self._subfolder("kept")
            self.files_folder = self._subfolder("files")
            self.db = self._open_database()
        except BaseException:
            self.close()
            raise

    def _lock(self):
        try:
            fd = os.open("lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        except OSError as error:
            why = "a symbolic link" if error.errno == errno.ELOOP else error.strerror
            raise StateRefused(f"cannot use {os.path.join(self.path, 'lock')} as the lock ({why}): move it "
                               "away, or give another --state-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise StateRefused(f"--state-dir {self.path} is in use by another master (pid {holder}): "
                               "each master needs a state folder of its own") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _subfolder(self, name):
        os.close(_open_own_folder(name, self.fd, os.path.join(self.path, name)))
        return os.path.join(self.path, name)

    def _open_database(self):
        path = os.path.join(self.path, "jobs.db")
        try:
            found = os.stat("jobs.db", dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            found = None
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise StateRefused(f"{path} is not a regular file: move it away, or give another --state-dir")
        if found is None:  # made here first, for its mode: SQLite would follow the umask
            os.close(os.open("jobs.db", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                             dir_fd=self.fd))
        try:
            db = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as error:
            raise StateRefused(f"cannot open {path}: {error}") from None
        try:
            _check_schema(db, path)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # each commit survives the master's death; fsync at checkpoints
            db.execute("PRAGMA locking_mode=EXCLUSIVE")  # no other process reads it while the master lives
        except sqlite3.DatabaseError as error:
            db.close()
            raise StateRefused(f"{path} is damaged or not a database ({error}): move it away to start "
                               "afresh, or give another --state-dir") from None
        except StateRefused:
            db.close()
            raise
        return db

    def records(self):
        """Every job recorded, in the order they were submitted, as dicts (see job_record.COLUMNS)."""
        rows = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM jobs ORDER BY submitted").fetchall()
        return [dict(zip(COLUMNS, row)) for row in rows]

    def delete(self, job_ids):
        with self.db:
            self.db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in job_ids])

    def kept_files(self):
        """The names of the files in ``kept/``."""
        return set(os.listdir(self.kept_folder))

    def close(self):
        if getattr(self, "db", None) is not None:
            self.db.close()
            self.db = None
        for name in ("lock_fd", "fd"):
            if getattr(self, name, None) is not None:
                os.close(getattr(self, name))
                setattr(self, name, None)


def _open_own_folder(name, dir_fd, shown):
    """A descriptor of the folder ``name`` (relative to ``dir_fd``), made mode 0700 if missing; it must be
    a real folder (no symbolic link) of this user's, which then only this user may enter."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as error:
        raise StateRefused(f"cannot make the state folder {shown} ({error.strerror})") from None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as error:
        why = "a symbolic link" if error.errno in (errno.ELOOP, errno.ENOTDIR) else error.strerror
        raise StateRefused(f"cannot use the state folder {shown}: {why}") from None
    found = os.fstat(fd)
    if found.st_uid != os.geteuid():
        os.close(fd)
        raise StateRefused(f"the state folder {shown} belongs to user {found.st_uid}, not to this master's "
                           f"user {os.geteuid()}")
    if stat.S_IMODE(found.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    return fd


def _check_schema(db, path):
    """A new database gets the schema; one that is not a sieci master's state is refused."""
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if application_id == 0 and not tables:
        with db:
            db.execute(SCHEMA)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    if application_id != APPLICATION_ID or "jobs" not in tables:
        raise StateRefused(f"{path} is not a sieci master's state (another program's database?): move it "
                           "away, or give another --state-dir")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != SCHEMA_VERSION:
        raise StateRefused(f"{path} holds state of schema {version}, and this sieci reads schema "
                           f"{SCHEMA_VERSION}: run the sieci that wrote it, or move it away")
    problems = db.execute("PRAGMA quick_check").fetchall()
    if problems != [("ok",)]:
        raise StateRefused(f"{path} is damaged ({problems[0][0]}): move it away to start afresh, "
                           "or give another --state-dir")


class Recorder:
    """The one writer of ``state``'s (a StateDir's) job records."""

    def __init__(self, state):
        self.state = state
        self.dirty = {}  # id: the job whose record is to be written
        self.forgotten = set()  # ids whose records are to go
        self.pending = None  # the greenlet that writes them, once any wait
        self.failing = False

    def note(self, job):
        """``job`` moved: its record is written within COMMIT_DELAY."""
        self.dirty[job.id] = job
        if self.pending is None:
            self.pending = gevent.spawn_later(COMMIT_DELAY, self.commit)

    def forget(self, job_id):
        self.dirty.pop(job_id, None)
        self.forgotten.add(job_id)
        if self.pending is None:
            self.pending = gevent.spawn_later(COMMIT_DELAY, self.commit)

    def commit(self):
        """Write every dirty record and forget every forgotten one, in one transaction."""
        if self.pending is not None and self.pending is not gevent.getcurrent():
            self.pending.kill(block=False)
        self.pending = None
        if self.state.db is None:
            return  # closed: the master has stopped
        dirty, self.dirty = self.dirty, {}
        forgotten, self.forgotten = self.forgotten, set()
        rows = [row_of(job, exit_status_of(job)) for job in dirty.values()]
        try:
            with self.state.db:
                self.state.db.executemany(_UPSERT, rows)
                if forgotten:
                    self.state.db.executemany("DELETE FROM jobs WHERE id = ?", [(job_id,) for job_id in forgotten])
        except sqlite3.Error as error:
            if not self.failing:
                log.error("cannot record jobs in %s (%s): they would not survive a restart", self.state.path, error)
            self.failing = True
            for job_id, job in dirty.items():
                self.dirty.setdefault(job_id, job)
            self.forgotten |= forgotten
            return
        if self.failing:
            log.info("recording jobs in %s again", self.state.path)
        self.failing = False

    def close(self):
        self.commit()
        self.state.close()


def exit_status_of(job):
    """The exit status of a kept job that has ended, or None."""
    if job.status is not None:
        return job.status.exit_code
    return job.spool.exit_status() if job.spool is not None else None
