"""A Python function's call on a worker (``sieci.Executor.submit(fn, ...)``): the job's side.

The client sends this file's code (compiled and marshalled, once) in the job's program, after a
prologue that checks the Python version and before a line that calls ``run_call`` (client/
call_codec.py's ``CallCode``). So it imports nothing of sieci (the worker may run
another version of sieci, or the job another environment) and nothing heavy: the standard library's
C pickler, not cloudpickle, loads the function, cloudpickle's few reconstructors for functions and
cells being copied here (``LIGHT_RECONSTRUCTORS``); anything else cloudpickle pickled imports it.

The outcome goes into the file OUTCOME in the job's folder, which the client asks back as
``--return`` does, inside the results the worker seals: printing cannot make one. It is a pickle of
builtins alone (OUTCOME_PROTOCOL, read by any Python 3):

- ``("value", PICKLE)``: the function returned what PICKLE holds;
- ``("raised", TYPE_NAME, TRACEBACK_TEXT, PICKLE_OR_NONE)``: it raised (or its call could not be
  made: the function or its arguments would not unpickle here); the exception's pickle, if it has one;
- ``("unpicklable", TEXT)``: its value cannot be pickled, TEXT says why;
- ``("python", VERSION)``: this Python (VERSION, such as ``3.12.1``) is not the client's minor version,
  with which nothing is unpickled.
"""

import sys

OUTCOME = "sieci-call.outcome"
OUTCOME_PROTOCOL = 3


def run_call(function_pickle, arguments_pickle):
    """Call the function of ``function_pickle`` with the ``(args, kwargs)`` of ``arguments_pickle``,
    and write the outcome to OUTCOME. The job's first lines have checked that this Python is the
    client's (calls.py's PROLOGUE), before anything was unpickled."""
    import os

    folder = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the function may change folders
    outcome = call_outcome(function_pickle, arguments_pickle)
    write_outcome(folder, outcome)
    if outcome[0] != "value":
        raise SystemExit(1)


def call_outcome(function_pickle, arguments_pickle):
    """The outcome (see the module's text) of loading and calling the function."""
    try:
        function = light_loads(function_pickle)
        args, kwargs = light_loads(arguments_pickle)
        value = function(*args, **kwargs)
    except BaseException as error:  # noqa: B036 (as concurrent.futures does: SystemExit too reaches the caller)
        return raised(error)
    try:
        return ("value", dumps(value))
    except Exception as error:
        return ("unpicklable", "%s: %s" % (type(error).__name__, error))


def raised(error):
    import traceback

    lines = traceback.format_exception(type(error), error, error.__traceback__.tb_next)  # not call_outcome's frame
    try:
        pickled = dumps(error)
    except Exception:
        pickled = None
    kind = type(error)
    return ("raised", "%s.%s" % (kind.__module__, kind.__qualname__), "".join(lines), pickled)


def dumps(thing):
    """``thing`` pickled by the C pickler; by cloudpickle where that fails (a lambda, say)."""
    import _pickle

    try:
        return _pickle.dumps(thing, protocol=-1)
    except Exception:
        pass
    try:
        import cloudpickle
    except ImportError:
        return _pickle.dumps(thing, protocol=-1)  # its error says why
    return cloudpickle.dumps(thing, protocol=-1)


def write_outcome(folder, outcome):
    """OUTCOME, in the folder ``folder``, made anew: whatever the function left under that name goes."""
    import _pickle
    import os

    data = _pickle.dumps(outcome, protocol=OUTCOME_PROTOCOL)
    try:
        os.unlink(OUTCOME, dir_fd=folder)
    except OSError:
        pass
    fd = os.open(OUTCOME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


# --- cloudpickle's reconstructors for functions, as cloudpickle 3 has them ----------------------


class _EmptyCell:
    """cloudpickle's ``_empty_cell_value``: the contents of a cell that has none."""


EMPTY_CELL = _EmptyCell()


def make_function(code, globals, name, argdefs, closure):
    import builtins

    globals["__builtins__"] = builtins.__dict__
    return type(make_function)(code, globals, name, argdefs, closure)


def make_empty_cell():
    if False:
        cell = None  # a cell the lambda below closes over, never set
    return (lambda: cell).__closure__[0]


def make_cell(value=EMPTY_CELL):
    cell = make_empty_cell()
    if value is not EMPTY_CELL:
        cell.cell_contents = value
    return cell


def function_setstate(function, state):
    """Set what FunctionType's constructor cannot: its __dict__, its globals, its cells' contents and
    the attributes of ``state`` (a ``(state, slotstate)`` pair)."""
    import builtins

    state, slotstate = state
    function.__dict__.update(state)
    function_globals = slotstate.pop("__globals__")
    closure = slotstate.pop("__closure__")
    slotstate.pop("_cloudpickle_submodules")  # held only so that they were imported before
    function.__globals__.update(function_globals)
    function.__globals__["__builtins__"] = builtins.__dict__
    for index, cell in enumerate(closure or ()):
        try:
            function.__closure__[index].cell_contents = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    for name, value in slotstate.items():
        setattr(function, name, value)


def subimport(name):
    __import__(name)
    return sys.modules[name]


def builtin_type(name):
    import types

    return type if name == "ClassType" else getattr(types, name)


LIGHT_RECONSTRUCTORS = {"_make_function": make_function, "_make_empty_cell": make_empty_cell,
                        "_make_cell": make_cell, "_function_setstate": function_setstate,
                        "_empty_cell_value": EMPTY_CELL, "subimport": subimport, "_builtin_type": builtin_type}
CLOUDPICKLE = ("cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast")


def light_loads(data):
    """Unpickle ``data`` (cloudpickle's), importing cloudpickle only for what LIGHT_RECONSTRUCTORS lacks."""
    import io

    return light_unpickler()(io.BytesIO(data)).load()


def light_unpickler():
    import _pickle

    class LightUnpickler(_pickle.Unpickler):
        def find_class(self, module, name):
            if module in CLOUDPICKLE and name in LIGHT_RECONSTRUCTORS:
                return LIGHT_RECONSTRUCTORS[name]
            return super().find_class(module, name)

    return LightUnpickler
