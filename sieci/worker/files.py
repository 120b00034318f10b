"""A worker's side of a job's files: the bundle found in its store, taken inline, or asked of its master.

A bundle the worker lacks comes inline in the upload (part ``f``, from a
client behind a classic master), or, when a sieci master said RELAY, is asked
for with ``NEED``. Without either (a classic master, which can send nothing
but the upload), the job is refused with ``ERROR missing files <sha256>``,
and the client sends it again inline. Each bundle is checked
once, when it arrives (bundle.check: names, entries, size); the job's process
unpacks it (see job_process.py).
"""

import os

from sieci.files_store import Mismatch, StoreFull
from sieci.wire import bundle, files_transfer, protocol, upload_format
from sieci.worker.executor import safe_filename

MAX_CHECKED = 1024  # bundles whose check is remembered


class JobRefused(Exception):
    """This worker refuses a job it cannot run; ``reason`` (bytes) is the ERROR's, ``why`` what the log says."""

    def __init__(self, reason, why=None):
        super().__init__(why or reason.decode("utf-8", "replace"))
        self.reason = reason


class WorkerFiles:
    """The bundles of a worker's jobs, kept in ``store`` (a FilesStore); a bundle may be at most
    ``max_upload`` bytes and unpack to at most ``max_size`` bytes."""

    def __init__(self, store, max_upload, max_size):
        self.store = store
        self.max_upload = max_upload
        self.max_size = max_size
        self.checked = {}  # digest: the bundle's top-level names, once it passed bundle.check

    def open_for(self, conn, header, upload, relayed):
        """An fd of the job's bundle, checked, or None if the job has none. JobRefused if it cannot have it;
        RemoteProtocolError if the master broke the protocol when asked for it."""
        try:
            wanted = upload_format.files_wanted(header)
        except protocol.RemoteProtocolError as error:
            raise JobRefused(str(error).encode()) from None
        directory = upload_format.RUN_DIRECTORY in header.fields
        if wanted is None:
            if directory:
                raise JobRefused(b"a directory program without its files")
            return None
        if wanted.size > self.max_upload:
            raise JobRefused(b"the files bundle is larger than this worker's --max-upload")
        try:
            self._obtain(conn, wanted, upload, relayed)
        except (Mismatch, StoreFull) as error:
            raise JobRefused(str(error).encode()) from None
        self._check_names(wanted, safe_filename(header.field(upload_format.NAME_FIELD, b"").decode("ascii", "replace")), directory)
        return self.store.open(wanted.digest)

    def _obtain(self, conn, wanted, upload, relayed):
        if upload.bundle is not None:
            if upload.bundle_digest != wanted.digest:
                raise Mismatch("the files inline are not those the upload names")
            self.store.put(wanted, upload.bundle)
        elif not self.store.has(wanted.digest):
            if not relayed:  # a classic master: it cannot send them; the client sends them again, inline
                raise JobRefused(upload_format.MISSING_FILES + b" " + wanted.digest.encode("ascii"))
            files_transfer.fetch(conn, self.store, wanted)

    def _check_names(self, wanted, filename, directory):
        """The bundle is well formed, and holds the program's folder (``directory``), or not its file."""
        names = self._top_names(wanted.digest)
        if directory and filename.encode() not in names:
            raise JobRefused(f"the files bundle does not hold the program's folder {filename}".encode())
        if not directory and filename.encode() in names:
            raise JobRefused(f"the files bundle holds {filename}, the program's own name".encode())

    def _top_names(self, digest):
        if digest not in self.checked:
            fd = self.store.open(digest)
            try:
                names = bundle.check(fd, self.max_size)
            except bundle.BadBundle as error:
                self.store.forget(digest)
                raise JobRefused(f"a bad files bundle: {error}".encode()) from None
            finally:
                os.close(fd)
            if len(self.checked) >= MAX_CHECKED:
                self.checked.clear()
            self.checked[digest] = names
        return self.checked[digest]
