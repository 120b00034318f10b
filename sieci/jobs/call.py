"""A Python function's call on a worker (``sieci.Executor.submit(fn, ...)``): the job's side.

The client sends this file's code (compiled and marshalled, once) in the job's program, after a
prologue that checks the Python version and before a line that calls ``run_call`` (client/
call_codec.py's ``CallCode``). So it imports nothing of sieci (the worker may run another version of
sieci, or the job another environment) and, for a call of plain parts, nothing at all: a function
whose globals, closure and defaults are plain data (``is_plain``) or modules comes as its parts in
marshal's form (builtin), as do plain arguments and values; any other is cloudpickle's, which the
C unpickler loads with cloudpickle's reconstructors for functions and cells copied
(call_pickled.py, sent where a part of the call is pickled), importing cloudpickle only for anything
else.

The outcome goes into the file OUTCOME in the job's folder, which the client asks back as
``--return`` does, inside the results the worker seals: printing cannot make one. It is marshalled:

- ``("plain", VALUES)``: the function returned VALUES (a list, a value a call), plain data;
- ``("value", PICKLE)``: it returned the values PICKLE holds;
- ``("raised", TYPE_NAME, TRACEBACK_TEXT, PICKLE_OR_NONE)``: it raised (or its call could not be
  made: the function or its arguments would not load here); the exception's pickle, if it has one;
- ``("unpicklable", TEXT)``: its value cannot be pickled, TEXT says why.

Where the worker's Python is not the client's minor version, the prologue writes ``python VERSION``
(``3.12.1``, say) there instead, in ASCII, and nothing is loaded.
"""

import sys

OUTCOME = "sieci-call.outcome"
PLAIN = "m"  # a call's part in marshal's form (``is_plain``; a function, ``function_parts``'s)
PICKLED = "p"  # in cloudpickle's
_PLAIN_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, type(...)})
_PLAIN_CONTAINERS = frozenset({tuple, list, set, frozenset})
PLAIN_BUDGET = 10_000  # items: past them a value is pickled, which is quicker for much data


def is_plain(value, budget=PLAIN_BUDGET):
    """Whether marshal keeps ``value`` as it is: builtins alone, of their exact types (marshal makes
    bytes of a bytearray), at most ``budget`` containers' items."""
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind in _PLAIN_ATOMS:
            continue
        if kind in _PLAIN_CONTAINERS:
            todo.extend(item)
        elif kind is dict:
            todo.extend(item.keys())
            todo.extend(item.values())
        else:
            return False
        budget -= len(item)
        if budget < 0:
            return False
    return True


def run_call(function_form, function_data, arguments_form, arguments_data):
    """Call the function of ``function_data`` with each ``(args, kwargs)`` of the list in ``arguments_data``
    (each in the form PLAIN or PICKLED), in order, and write the outcome (of the list of their values,
    or of the first exception) to OUTCOME. The job's first lines have
    checked that this Python is the client's (call_codec.py's prologue), before anything was loaded."""
    import os

    folder = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the function may change folders
    outcome = call_outcome(function_form, function_data, arguments_form, arguments_data)
    write_outcome(folder, outcome)
    if outcome[0] not in ("plain", "value"):
        raise SystemExit(1)


def call_outcome(function_form, function_data, arguments_form, arguments_data):
    """The outcome (see the module's text) of loading and calling the function."""
    import marshal

    try:
        function = plain_function(function_data) if function_form == PLAIN else light_loads(function_data)
        calls = marshal.loads(arguments_data) if arguments_form == PLAIN else light_loads(arguments_data)
        value = [function(*args, **kwargs) for args, kwargs in calls]
    except BaseException as error:  # noqa: B036 (as concurrent.futures does: SystemExit too reaches the caller)
        return raised(error)
    if is_plain(value):
        return ("plain", value)
    try:
        return ("value", dumps(value))
    except Exception as error:
        return ("unpicklable", "%s: %s" % (type(error).__name__, error))


def plain_function(data):
    """The function of ``function_parts``' marshalled parts (client/call_codec.py)."""
    import builtins
    import marshal

    code, names, defaults, kwdefaults, annotations, values, modules, submodules, closure = marshal.loads(data)
    function_globals = dict(values)
    for name, module in modules.items():
        function_globals[name] = subimport(module)
    for module in submodules:  # reached as attributes of those (xml.etree.ElementTree, say): imported as here
        subimport(module)
    function_globals["__builtins__"] = builtins.__dict__
    cells = None if closure is None else tuple(make_cell(value) for value in closure)
    function = type(plain_function)(code, function_globals, names[0], defaults, cells)
    function.__qualname__, function.__module__, function.__doc__ = names[1:]
    function.__kwdefaults__ = kwdefaults
    function.__annotations__ = {name: getattr(builtins, value) if builtin else value
                                for name, value, builtin in annotations}
    return function


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
    """OUTCOME, marshalled, in the folder ``folder``, made anew: whatever the function left under that
    name goes."""
    import marshal
    import os

    data = marshal.dumps(outcome)
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


# --- cells, as cloudpickle 3 makes them ----------------------------------------------------


class _EmptyCell:
    """cloudpickle's ``_empty_cell_value``: the contents of a cell that has none."""


EMPTY_CELL = _EmptyCell()


def make_empty_cell():
    if False:
        cell = None  # a cell the lambda below closes over, never set
    return (lambda: cell).__closure__[0]


def make_cell(value=EMPTY_CELL):
    cell = make_empty_cell()
    if value is not EMPTY_CELL:
        cell.cell_contents = value
    return cell


def subimport(name):
    __import__(name)
    return sys.modules[name]


def light_loads(data):
    """Made by call_pickled.py, whose code the client adds to the job's program where a part of the
    call is pickled."""
    raise RuntimeError("call_pickled.py's code is not in this job's program")
