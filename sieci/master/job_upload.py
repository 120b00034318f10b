"""A job's upload as the master holds it: in memory, or, a kept job's, in a file of the kept jobs' folder
(in a --state-dir, after a preamble line that a restarted master reads: see job_record.preamble)."""

import logging
import os

log = logging.getLogger("sieci.master")


class KeptUpload:
    """What Job has of its upload: ``_upload`` (bytes), or ``_upload_file`` (its path, and the store's
    release) from ``_upload_offset``; ``_preamble_file`` once only the preamble is left."""

    @property
    def upload(self):
        """The block to forward to a worker, from memory or, a kept job's, from its file (past its preamble)."""
        if self._upload_file is None:
            return self._upload
        with open(os.open(self._upload_file[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as file:
            file.seek(self._upload_offset)
            return file.read()

    def move_upload_to(self, path, release, preamble=b""):
        """Keep the upload in a new file at ``path``, after ``preamble``; ``release(size)`` once it has gone."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self._upload_file, self._upload_offset = (path, release), len(preamble)
        with open(fd, "wb") as file:
            file.write(preamble + self._upload)
        self._upload = None

    def adopt_upload_file(self, path, size, release, offset):
        """A restarted master's file at ``path`` holds the upload, ``size`` bytes from ``offset``; or, with
        ``release`` None, only its preamble (a worker took it), which goes when the job is forgotten."""
        if release is None:
            self._preamble_file = path
        else:
            self._upload, self._upload_file, self.upload_size, self._upload_offset = None, (path, release), size, \
                offset

    @property
    def upload_file_name(self):
        """The name of the file that holds the upload (in the kept jobs' folder), or None."""
        path = self._upload_file[0] if self._upload_file is not None else self._preamble_file
        return os.path.basename(path) if path is not None else None

    def drop_upload(self):
        """A worker has accepted the job: its upload is not needed any more, but by a kept job that may run
        again after a restart (``upload_kept_until_end``), until it ends. In a state folder, the file's
        preamble stays until the job is forgotten (a record may lag: see state.py)."""
        if not (self.upload_kept_until_end and not self.ended):
            self.discard_upload(keep_preamble=True)

    def discard_upload(self, keep_preamble=False):
        self._upload = b""
        if self._upload_file is not None:
            path, release = self._upload_file
            self._upload_file = None
            if keep_preamble and self._upload_offset:
                self._preamble_file = path
                _truncate(path, self._upload_offset)
            else:
                _unlink(path)
            release(self.upload_size)
        elif self._preamble_file is not None and not keep_preamble:
            _unlink(self._preamble_file)
            self._preamble_file = None


def _truncate(path, size):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # the store went first, at the master's stop
    except OSError as error:
        log.warning("cannot cut %s to its preamble: %s", path, error.strerror or error)
        return
    try:
        os.ftruncate(fd, size)
    except OSError as error:  # a folder gone read-only: the job runs all the same
        log.warning("cannot cut %s to its preamble: %s", path, error.strerror or error)
    finally:
        os.close(fd)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # the store went first, at the master's stop
    except OSError as error:  # a folder gone read-only: the job is forgotten all the same, its file left
        log.warning("cannot remove %s: %s", path, error.strerror or error)
