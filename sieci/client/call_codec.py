"""A Python function's call as a job's program, and the job's outcome as a value or an exception.

No I/O. The job's program (``CallCode.program``) is a prologue in plain source, which any Python 3
runs, that checks the worker's Python is the client's minor version and else writes an outcome
saying which it is; then jobs/call.py's code, compiled and marshalled here once (marshal's format,
like pickle's of code, holds within a minor version only); then the call, with the function pickled
once (by cloudpickle: lambdas, closures and ``__main__``'s functions by value) and each call's
arguments. ``value_of`` turns the outcome (jobs/call.py says its form) into what the call gives.
"""

import functools
import io
import marshal
import pickle
import sys

from sieci.client.call_errors import CallFailed, CannotPickle, PythonVersionMismatch, RemoteError, RemoteTraceback
from sieci.jobs import call as job_side

PYTHON = tuple(sys.version_info[:2])  # what pickled the call: the worker must be the same minor version
OUTCOME = job_side.OUTCOME

_PROLOGUE = """import sys
if sys.version_info[:2] != {python!r}:
    import _pickle
    with open({outcome!r}, "wb") as outcome:
        outcome.write(_pickle.dumps(("python", "%d.%d.%d" % tuple(sys.version_info[:3])), protocol={protocol}))
    sys.exit(1)
import marshal
exec(marshal.loads({runner}))
run_call({function}, """


@functools.lru_cache(maxsize=1)
def marshalled_runner():
    source = job_side.__loader__.get_source(job_side.__name__)
    return marshal.dumps(compile(source, "<sieci call>", "exec", dont_inherit=True, optimize=2))


def literal(data):
    """``data`` (bytes) as a Python bytes literal, in ASCII."""
    return repr(bytes(data)).encode("ascii")


class CallCode:
    """The job programs that call ``function`` (pickled once, here: CannotPickle if it cannot be)."""

    def __init__(self, function):
        self.name = getattr(function, "__qualname__", None) or repr(function)
        function_pickle = pickled(function, f"the function {self.name}")
        head = _PROLOGUE.format(python=PYTHON, outcome=OUTCOME, protocol=job_side.OUTCOME_PROTOCOL,
                                runner=literal(marshalled_runner()).decode(),
                                function=literal(function_pickle).decode())
        self.head = head.encode("ascii")

    def program(self, args, kwargs):
        """The job's program that calls the function with ``args`` and ``kwargs``."""
        return self.head + literal(pickled((tuple(args), dict(kwargs)), f"the arguments of {self.name}")) + b")\n"


def pickled(thing, what):
    import cloudpickle

    try:
        return cloudpickle.dumps(thing)
    except Exception as error:
        raise CannotPickle(f"{what} cannot be pickled: {type(error).__name__}: {error}") from None


class _BuiltinsOnly(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"an outcome holds builtins alone, not {module}.{name}")


_OUTCOME_SHAPES = {"value": (bytes,), "raised": (str, str, (bytes, type(None))), "unpicklable": (str,),
                   "python": (str,)}


def read_outcome(data):
    """The outcome tuple in ``data`` (the file OUTCOME's bytes); CallFailed if it is not one."""
    try:
        outcome = _BuiltinsOnly(io.BytesIO(data)).load()
    except Exception as error:
        raise CallFailed(f"the call's outcome cannot be read: {error}") from None
    shape = _OUTCOME_SHAPES.get(outcome[0]) if isinstance(outcome, tuple) and outcome and isinstance(outcome[0], str) \
        else None
    if shape is None or len(outcome) != len(shape) + 1 or not all(map(isinstance, outcome[1:], shape)):
        raise CallFailed("the call's outcome is not one sieci knows")
    return outcome


def value_of(outcome, where):
    """What the call gives, from its ``outcome`` (read_outcome's): its value, or what it raised, raised;
    ``where`` names the worker for people."""
    kind = outcome[0]
    if kind == "value":
        try:
            return pickle.loads(outcome[1])
        except Exception as error:
            raise CallFailed(f"the function's value cannot be unpickled here: {type(error).__name__}: {error}") \
                from None
    if kind == "raised":
        raise remote_exception(*outcome[1:])
    if kind == "unpicklable":
        raise CallFailed(f"the function's value cannot be pickled on the worker ({where}): {outcome[1]}")
    client = "%d.%d" % PYTHON
    raise PythonVersionMismatch(f"the worker ({where}) runs Python {outcome[1]}, this client Python {client}: a "
                                f"function travels pickled, which needs the same minor version ({client}) on both "
                                "ends")


def remote_exception(type_name, traceback_text, exception_pickle):
    """The exception the function raised, with its remote traceback as its cause; a RemoteError that
    says so where it does not unpickle here."""
    why = "it was not pickled on the worker"
    if exception_pickle is not None:
        try:
            exception = pickle.loads(exception_pickle)
        except Exception as error:
            why = f"{type(error).__name__}: {error}"
        else:
            if isinstance(exception, BaseException):
                exception.__cause__ = RemoteTraceback(traceback_text)
                exception.__suppress_context__ = True
                return exception
            why = "it is not an exception here"
    shown = type_name.removeprefix("builtins.")
    return RemoteError(f"the function raised {shown}, which cannot be unpickled here ({why}); its remote "
                       f"traceback:\n{traceback_text}", type_name, traceback_text)
