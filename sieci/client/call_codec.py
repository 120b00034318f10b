"""A Python function's call as a job's program, and the job's outcome as a value or an exception.

No I/O. The job's program (``CallCode.program``) is a prologue in plain source, which any Python 3
runs, that checks the worker's Python is the client's minor version and else writes an outcome
saying which it is; then jobs/call.py's code, compiled and marshalled here once (marshal's format,
like pickle's of code, holds within a minor version only), and jobs/call_pickled.py's where a part
of the call is pickled; then the call. The function is made ready once: its parts in marshal's
form where they are plain (``function_parts``), else pickled by cloudpickle (lambdas, closures and
``__main__``'s functions by value); each call's arguments are marshalled where plain, else pickled.
``value_of`` turns the outcome (jobs/call.py says its form) into what the call gives.
"""

import builtins
import dis
import functools
import marshal
import pickle
import sys
import types

from sieci.client.call_errors import CallFailed, CannotPickle, PythonVersionMismatch, RemoteError, with_remote_traceback
from sieci.jobs import call as job_side
from sieci.jobs import call_pickled
from sieci.jobs.call import PICKLED, PLAIN

PYTHON = tuple(sys.version_info[:2])  # what made the call's parts: the worker must be the same minor version
OUTCOME = job_side.OUTCOME

_PROLOGUE = """import sys
if sys.version_info[:2] != {python!r}:
    with open({outcome!r}, "wb") as outcome:
        outcome.write(b"python %d.%d.%d" % tuple(sys.version_info[:3]))
    sys.exit(1)
import marshal
"""
_RUN = "exec(marshal.loads({code}))\n"


@functools.lru_cache(maxsize=None)
def marshalled(module):
    """The code of ``module`` (jobs/call.py or jobs/call_pickled.py), compiled and marshalled."""
    source = module.__loader__.get_source(module.__name__)
    return marshal.dumps(compile(source, "<sieci call>", "exec", dont_inherit=True, optimize=2))


def run_line(module):
    """The line of a job's program that runs ``module``'s code there."""
    return _RUN.format(code=literal(marshalled(module)).decode()).encode()


def literal(data):
    """``data`` in the program: hexadecimal digits for ``bytes.fromhex``, which compile and decode quicker
    than an escaped literal (a str of latin-1 characters, half the size, took five times as long to compile)."""
    return b'bytes.fromhex("' + data.hex().encode() + b'")'


class CallCode:
    """The job programs that call ``function`` (its parts made once, here: CannotPickle if they cannot be)."""

    def __init__(self, function):
        self.name = getattr(function, "__qualname__", None) or repr(function)
        parts = function_parts(function)
        self.function_form, function_data = (PLAIN, parts) if parts is not None else \
            (PICKLED, pickled(function, f"the function {self.name}"))
        head = [_PROLOGUE.format(python=PYTHON, outcome=OUTCOME).encode(), run_line(job_side)]
        if self.function_form == PICKLED:
            head.append(run_line(call_pickled))
        head.append(b"sieci_function = " + literal(function_data) + b"\n")
        self.head = b"".join(head)

    def program(self, calls):
        """The job's program that calls the function with each ``(args, kwargs)`` of ``calls`` in turn: its
        outcome's value is the list of their values."""
        arguments = [(tuple(args), dict(kwargs)) for args, kwargs in calls]
        if job_side.is_plain(arguments):
            form, data, loader = PLAIN, marshal.dumps(arguments), b""
        else:
            form, data = PICKLED, pickled(arguments, f"the arguments of {self.name}")
            loader = run_line(call_pickled) if self.function_form == PLAIN else b""
        return b"%s%srun_call(%r, sieci_function, %r, %s)\n" % (self.head, loader, self.function_form, form,
                                                                 literal(data))


def function_parts(function):
    """``function`` in marshal's form (jobs/call.py's ``plain_function`` makes it again), where it is a
    function that cloudpickle would send by value whose globals, closure, defaults and annotations are
    plain data or modules; else None."""
    if type(function) is not types.FunctionType or function.__dict__:
        return None
    from cloudpickle import cloudpickle

    by_reference = getattr(cloudpickle, "_should_pickle_by_reference", None)  # cloudpickle's own test, 2.0 to 3.1
    if by_reference is None or by_reference(function):
        return None
    code, function_globals, values, modules = function.__code__, function.__globals__, {}, {}
    codes = inner_codes(code)
    for name in global_names(codes):
        value = function_globals.get(name, _MISSING)
        if type(value) is types.ModuleType and sys.modules.get(value.__name__) is value:
            modules[name] = value.__name__
        elif value is not _MISSING:  # else a builtin, or a NameError there as here
            values[name] = value
    values.update((name, function_globals[name]) for name in ("__package__", "__name__", "__file__")
                  if type(function_globals.get(name)) is str)  # as cloudpickle keeps them, for relative imports
    try:
        closure = None if function.__closure__ is None else tuple(cell.cell_contents for cell in function.__closure__)
    except ValueError:  # an empty cell
        return None
    names = (function.__name__, function.__qualname__, function.__module__, function.__doc__)
    parts = (names, function.__defaults__, function.__kwdefaults__, annotation_parts(function.__annotations__),
             values, modules, submodules(modules.values(), codes), closure)
    if not job_side.is_plain(parts):
        return None
    return marshal.dumps((code, *parts))


_MISSING = object()


def annotation_parts(annotations):
    """``[(name, annotation, False)]`` in order, a builtin type (``int``) as ``(name, its name, True)``."""
    return [(name, value.__name__, True) if type(value) is type and getattr(builtins, value.__name__, None) is value
            else (name, value, False) for name, value in annotations.items()]


def inner_codes(code):
    """``code`` and the code it holds (inner functions, comprehensions, ...)."""
    codes, todo = [], [code]
    while todo:
        code = todo.pop()
        codes.append(code)
        todo.extend(const for const in code.co_consts if type(const) is types.CodeType)
    return codes


def global_names(codes):
    """The names that ``codes`` load from, store to or delete from their globals."""
    return {instruction.argval for code in codes for instruction in dis.get_instructions(code)
            if instruction.opcode in _GLOBAL_OPS}


_GLOBAL_OPS = frozenset(dis.opmap[name] for name in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL"))


def submodules(modules, codes):
    """The loaded submodules of ``modules`` (names) that ``codes`` may reach as attributes of theirs
    (``xml.etree.ElementTree`` from ``xml``): the worker imports them as cloudpickle has it do."""
    names = {name for code in codes for name in code.co_names}
    found = []
    for loaded in list(sys.modules):
        for module in modules:
            if loaded.startswith(module + ".") and set(loaded[len(module) + 1:].split(".")) <= names:
                found.append(loaded)
                break
    return sorted(found)


def pickled(thing, what):
    import cloudpickle

    try:
        return cloudpickle.dumps(thing)
    except Exception as error:
        raise CannotPickle(f"{what} cannot be pickled: {type(error).__name__}: {error}") from None


_OUTCOME_SHAPES = {"plain": (object,), "value": (bytes,), "raised": (str, str, (bytes, type(None))),
                   "unpicklable": (str,)}
_PYTHON_OUTCOME = b"python "


def read_outcome(data):
    """The outcome tuple in ``data`` (the file OUTCOME's bytes, from sealed results: marshal's form is not
    for data from strangers); CallFailed if it is not one."""
    if data.startswith(_PYTHON_OUTCOME):
        return ("python", data[len(_PYTHON_OUTCOME):].decode("ascii", "replace"))
    try:
        outcome = marshal.loads(data)
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
    if kind == "plain":
        return outcome[1]
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
    """The exception the function raised, its remote traceback at the end of its message; a RemoteError
    that says so where it does not unpickle here."""
    why = "it was not pickled on the worker"
    if exception_pickle is not None:
        try:
            exception = pickle.loads(exception_pickle)
        except Exception as error:
            why = f"{type(error).__name__}: {error}"
        else:
            if isinstance(exception, BaseException):
                return with_remote_traceback(exception, traceback_text)
            why = "it is not an exception here"
    shown = type_name.removeprefix("builtins.")
    return RemoteError(f"the function raised {shown}, which cannot be unpickled here ({why}); its remote "
                       f"traceback:\n{traceback_text}", type_name, traceback_text)
