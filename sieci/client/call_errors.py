"""Why a function's call on a worker (``sieci.Executor.submit(fn, ...)``) gave no value, where the
function did not raise it itself."""

import pickle

from sieci.client.errors import ClientError


class CannotPickle(ClientError, pickle.PicklingError):
    """The function or its arguments cannot be pickled: the job was not sent."""


class PythonVersionMismatch(ClientError):
    """The worker's Python is not the client's minor version: the function was not unpickled there."""


class CallFailed(ClientError):
    """The job ran, and its outcome did not come back: it was killed, hit a limit, left the interpreter
    before its end, or its value could not be pickled there or unpickled here."""


class RemoteError(Exception):
    """The function raised an exception that cannot be unpickled here: its type's name, and the remote
    traceback, are in the message (and in ``type_name`` and ``remote_traceback``)."""

    def __init__(self, message, type_name, remote_traceback):
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback


class RemoteTraceback(Exception):
    """The remote traceback of an exception the function raised: the ``__cause__`` of the exception
    raised in the caller (as concurrent.futures.ProcessPoolExecutor does), so that printing it shows
    where it was raised on the worker."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return f'\n"""\n{self.text}"""'
