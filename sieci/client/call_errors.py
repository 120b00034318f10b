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


def with_remote_traceback(exception, text):
    """``exception`` (unpickled here) remade as an instance of a subclass of its own type, named as it
    is, whose message ends with the remote traceback ``text`` (also its ``remote_traceback``): so
    ``except ValueError`` still catches it, and its message says where it was raised on the worker.
    Made as pickle remakes an exception (its class called with its args, then its attributes), so an
    exception that unpickled remakes; one that does not is returned as it is, with the attribute."""
    kind = type(exception)
    try:
        remade = _told_type(kind)(*exception.args)
        remade.__dict__.update(exception.__dict__)
    except Exception:
        remade = exception
    remade.remote_traceback = text
    return remade


_told_types = {}


def _told_type(kind):
    if kind not in _told_types:
        def __str__(self):
            return f"{kind.__str__(self)}\n\nRemote traceback (on the worker):\n{self.remote_traceback}"

        def __reduce__(self):
            return kind, self.args, self.__dict__

        _told_types[kind] = type(kind.__name__, (kind,), {
            "__module__": kind.__module__, "__qualname__": kind.__qualname__, "__doc__": kind.__doc__,
            "__str__": __str__, "__reduce__": __reduce__})
    return _told_types[kind]
