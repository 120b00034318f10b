"""Python functions' calls on a cluster, for sieci.Executor: each call a job (call_codec.py's program),
whose outcome comes back as a file it returns (``--return``), inside the results that the worker seals
with the cluster's secret and the client checks before it returns them. Nothing else is unpickled:
what the job prints is its output, shown to the caller, never read for a value."""

import itertools
import os
import shutil
import sys
import tempfile
import threading
import weakref

from sieci.client.call_codec import OUTCOME, read_outcome, value_of
from sieci.client.call_errors import CallFailed
from sieci.client.errors import ClientError

_OUTCOME_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class Calls:
    """Runs calls through ``client`` (a Client holding the cluster's secret: ClientError without one)."""

    def __init__(self, client):
        if client.secret is None:
            raise ClientError("functions run only with the cluster's secret (secret= or secret_file=): a function's "
                              "value comes back pickled, and unpickling runs code, so sieci unpickles only results "
                              "sealed with the secret")
        self.client = client
        self._numbers = itertools.count()
        self._threads_folders = threading.local()
        self._output_lock = threading.Lock()
        self._folder = tempfile.mkdtemp(prefix="sieci-calls-")
        self._remove_folder = weakref.finalize(self, shutil.rmtree, self._folder, True)

    def call(self, program, count):
        """What the ``count`` calls of ``program`` (a call_codec.CallCode's) give: the list of the function's
        values, or what it raised, raised; the job's output goes to this process's stdout and stderr."""
        results = self._thread_folder()
        result = self.client.run(program, returns=[OUTCOME], results=results)
        self._show_output(result)
        values = value_of(read_outcome(_outcome_bytes(result, results)), result.worker or result.master)
        if type(values) is not list or len(values) != count:
            raise CallFailed(f"the job's outcome does not hold the values of its {count} call(s)")
        return values

    def call_one(self, program):
        """The value of ``program``'s one call (as ``call``)."""
        return self.call(program, 1)[0]

    def _thread_folder(self):
        """The results folder of this thread's calls, one at a time: a call reads only the outcome it
        has written itself (Result.returned), and removes it."""
        folder = getattr(self._threads_folders, "path", None)
        if folder is None:
            folder = self._threads_folders.path = os.path.join(self._folder, str(next(self._numbers)))
        return folder

    def close(self):
        self._remove_folder()

    def _show_output(self, result):
        """The job's output, whole, to this process's stdout and stderr, as its own output would go."""
        with self._output_lock:
            for data, stream in ((result.stdout, sys.stdout), (result.stderr, sys.stderr)):
                if data:
                    _write(stream, data)


def _outcome_bytes(result, results):
    """The outcome file the job returned, from the folder ``results``; CallFailed if none came."""
    if OUTCOME not in result.returned:
        why = "; ".join(f"{name or 'its files'}: {reason}" for name, reason in result.not_returned)
        ended = result.message or f"it exited with status {result.exit_status}"
        raise CallFailed(f"the function's job ended without its outcome ({why or ended})")
    path = os.path.join(results, OUTCOME)
    try:
        if result.returned != [OUTCOME] or result.not_returned:
            # The seal hashes each file returned as \0name\0 then its bytes: an outcome holding \0<its name>\0
            # can be cut in two on the way, seal unchanged, the second file of the name written over the first.
            raise CallFailed("the function's job returned more than its one outcome: the results were re-framed "
                             "on the way")
        with open(os.open(path, _OUTCOME_FILE), "rb") as outcome:
            return outcome.read()
    except OSError as error:
        raise CallFailed(f"the function's outcome cannot be read: {error.strerror or error}") from None
    finally:  # the next call's is a new file: rewriting one costs a flush on some filesystems (ext4's auto_da_alloc)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _write(stream, data):
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode("utf-8", "replace"))
    else:
        stream.flush()
        buffer.write(data)
    stream.flush()
