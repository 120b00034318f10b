"""cloudpickle's reconstructors for functions and cells, as cloudpickle 3 has them, and an unpickler that
uses them: the part of a call's job (jobs/call.py) that loads what is pickled. The client adds its code
to the job's program only where a part of the call is pickled (client/call_codec.py), run in the
same globals as call.py's, whose names it uses (``make_cell``, ``subimport``, ...) and whose
``light_loads`` it replaces.
"""

if __name__ != "__main__":  # imported (by the tests); in a job, call.py's code has made these names already
    from sieci.jobs.call import EMPTY_CELL, make_cell, make_empty_cell, subimport


def make_function(code, globals, name, argdefs, closure):
    import builtins

    globals["__builtins__"] = builtins.__dict__
    return type(make_function)(code, globals, name, argdefs, closure)


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
