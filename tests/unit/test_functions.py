"""A function's call as a job's program and its outcome (client/call_codec.py, jobs/call.py), with no
cluster: each program runs here, in a folder of its own, as a job would run it."""

import fractions
import marshal
import math
import os
import pickle
import sys
import xml.etree.ElementTree

import cloudpickle
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sieci
from sieci.client import call_codec
from sieci.client.call_codec import CallCode, OUTCOME, read_outcome, value_of
from sieci.jobs import call as job_side
from sieci.jobs import call_pickled

SCALE = 3
items = list(range(5000))  # a global that a function below names only as an attribute


def run_program(program):
    """Run a call's program as its job would (its own globals, as __main__), in the current folder;
    its exit status and the outcome it wrote."""
    folder = os.getcwd()
    try:
        exec(compile(program, "job.py", "exec"), {"__name__": "__main__"})
        status = 0
    except SystemExit as leaving:
        status = leaving.code
    os.chdir(folder)
    with open(OUTCOME, "rb") as outcome:
        return status, outcome.read()


def call(function, *args, **kwargs):
    """What calling ``function`` through its program gives (a value, or an exception raised)."""
    _, data = run_program(CallCode(function).program([(args, kwargs)]))
    return value_of(read_outcome(data), "here")[0]


@pytest.fixture(autouse=True)
def job_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_plain_function_with_its_globals_closure_defaults_and_modules_comes_as_its_parts():
    offset = 10

    def scaled(x, y=2, *, root: int = 16):
        """Scaled."""
        return x * y * SCALE + offset + math.isqrt(root)

    parts = call_codec.function_parts(scaled)
    assert parts is not None
    assert call(scaled, 5) == 5 * 2 * 3 + 10 + 4
    assert call(scaled, 1, 1, root=9) == 3 + 10 + 3
    rebuilt = job_side.plain_function(parts)
    assert (rebuilt.__name__, rebuilt.__qualname__, rebuilt.__doc__) == (scaled.__name__, scaled.__qualname__,
                                                                         "Scaled.")
    assert (rebuilt.__defaults__, rebuilt.__kwdefaults__) == ((2,), {"root": 16})
    assert rebuilt.__annotations__ == {"root": int}


def test_only_the_globals_a_function_uses_travel_and_the_submodules_it_reaches_are_named():
    def parse(text, table):
        return xml.etree.ElementTree.fromstring(text).tag, list(table.items())

    code, names, defaults, kwdefaults, annotations, values, modules, submodules, closure = marshal.loads(
        call_codec.function_parts(parse))
    assert "items" not in values
    assert modules == {"xml": "xml"}
    assert submodules == ["xml.etree", "xml.etree.ElementTree"]
    assert call(parse, "<a/>", {1: 2}) == ("a", [(1, 2)])


def test_a_function_that_is_not_plain_is_pickled_and_loaded_by_the_light_unpickler():
    half = fractions.Fraction(1, 2)  # not plain: cloudpickle's

    def times_half(x):
        return x * half

    assert call_codec.function_parts(times_half) is None
    assert CallCode(times_half).function_form == "p"
    assert call(times_half, 3) == fractions.Fraction(3, 2)  # a value that is not plain: pickled back


def test_a_recursive_closure_loads_as_cloudpickle_would():
    def make():
        def countdown(n):
            return [] if n == 0 else [n] + countdown(n - 1)
        return countdown

    assert call(make(), 3) == [3, 2, 1]


def test_a_function_of_an_importable_module_goes_by_reference():
    assert call_codec.function_parts(os.path.join) is None
    assert call(os.path.join, "a", "b") == "a/b"


def test_the_pickled_part_of_the_runner_goes_only_where_a_part_of_the_call_is_pickled():
    loader = call_codec.run_line(call_pickled)
    plain = CallCode(lambda x: x)
    assert loader not in plain.program([((1,), {})])
    assert plain.program([((fractions.Fraction(1, 2),), {})]).count(loader) == 1
    assert call(lambda x: x * 2, fractions.Fraction(1, 2)) == 1
    half = fractions.Fraction(1, 2)
    pickled = CallCode(lambda: half)
    assert pickled.function_form == "p"
    assert pickled.program([((), {})]).count(loader) == 1
    assert pickled.program([((fractions.Fraction(1, 2),), {})]).count(loader) == 1


def test_a_lambda_value_is_pickled_by_cloudpickle_and_works_here():
    assert call(lambda: (lambda x: x + 1))(1) == 2


def test_an_exception_is_raised_again_with_its_remote_traceback_as_its_cause():
    def fails(n):
        raise KeyError(n)

    status, data = run_program(CallCode(fails).program([((4,), {})]))
    assert status == 1
    with pytest.raises(KeyError) as raised:
        value_of(read_outcome(data), "here")
    assert raised.value.args == (4,)
    remote = raised.value.remote_traceback
    assert "in fails" in remote and "KeyError: 4" in remote and str(raised.value).endswith(remote)
    again = pickle.loads(pickle.dumps(raised.value))  # it travels on as the plain KeyError it was
    assert type(again) is KeyError and again.args == (4,)


def test_an_exception_that_does_not_unpickle_here_is_a_remote_error():
    error = call_codec.remote_exception("worker_only.Trouble", "Traceback...\nworker_only.Trouble: x\n",
                                        b"\x80\x04\x95not a pickle")
    assert isinstance(error, sieci.RemoteError)
    assert error.type_name == "worker_only.Trouble"
    assert "the function raised worker_only.Trouble, which cannot be unpickled here" in str(error)
    assert str(error).endswith("worker_only.Trouble: x\n")


def test_a_value_that_cannot_be_pickled_on_the_worker_is_a_call_failed():
    with pytest.raises(sieci.CallFailed, match="cannot be pickled on the worker \\(here\\): TypeError"):
        call(lambda: (n for n in range(3)))


def test_another_python_is_named_in_the_outcome_and_nothing_is_loaded(monkeypatch, job_folder):
    monkeypatch.setattr(call_codec, "PYTHON", (3, 99))

    def leaves_a_mark():
        open("called", "w").close()

    status, data = run_program(CallCode(leaves_a_mark).program([((), {})]))
    here = "%d.%d.%d" % sys.version_info[:3]
    assert (status, data) == (1, b"python " + here.encode())
    assert not (job_folder / "called").exists()
    with pytest.raises(sieci.PythonVersionMismatch) as raised:
        value_of(read_outcome(data), "worker-7")
    assert str(raised.value) == (f"the worker (worker-7) runs Python {here}, this client Python 3.99: a function "
                                 "travels pickled, which needs the same minor version (3.99) on both ends")


def test_the_outcome_replaces_what_the_function_left_under_its_name(job_folder):
    def squats():
        os.mkdir("elsewhere")
        os.symlink("elsewhere/target", OUTCOME)
        os.chdir("elsewhere")
        return "mine"

    status, data = run_program(CallCode(squats).program([((), {})]))
    assert (status, value_of(read_outcome(data), "here")) == (0, ["mine"])
    assert not os.path.islink(job_folder / OUTCOME)
    assert os.listdir(job_folder / "elsewhere") == []


@pytest.mark.parametrize("data", [b"", b"garbage", marshal.dumps(("value", 1)), marshal.dumps(("nope", b"")),
                                  marshal.dumps(["plain", 1]), marshal.dumps(()), marshal.dumps((1, 2))])
def test_an_outcome_sieci_does_not_know_is_a_call_failed(data):
    with pytest.raises(sieci.CallFailed, match="outcome"):
        read_outcome(data)


def test_a_program_of_several_calls_gives_their_values_in_order_or_the_first_exception():
    def inverse(n):
        return 1 / n

    calls = [((n,), {}) for n in (1, 2, 4)]
    assert value_of(read_outcome(run_program(CallCode(inverse).program(calls))[1]), "here") == [1.0, 0.5, 0.25]
    status, data = run_program(CallCode(inverse).program([((1,), {}), ((0,), {}), ((2,), {})]))
    assert status == 1
    with pytest.raises(ZeroDivisionError):
        value_of(read_outcome(data), "here")


def test_a_function_or_arguments_that_cannot_be_pickled_raise_at_once():
    numbers = (n for n in range(3))
    with pytest.raises(sieci.CannotPickle, match="the function .*<lambda> cannot be pickled: TypeError"):
        CallCode(lambda: next(numbers))
    with pytest.raises(sieci.CannotPickle, match="the arguments of len cannot be pickled"):
        CallCode(len).program([((numbers,), {})])


plain_atoms = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary() | \
    st.complex_numbers(allow_nan=False)
plain_values = st.recursive(plain_atoms, lambda inner: st.lists(inner) | st.tuples(inner, inner)
                            | st.dictionaries(st.text() | st.integers(), inner)
                            | st.frozensets(st.integers() | st.text()), max_leaves=20)


@given(plain_values)
def test_plain_values_go_through_marshal_as_they_are(value):
    assert job_side.is_plain(value)
    assert marshal.loads(marshal.dumps(value)) == value


@pytest.mark.parametrize("value", [bytearray(b"x"), memoryview(b"x"), [bytearray()], {"a": {1: range(2)}},
                                   fractions.Fraction(1, 2), StopIteration, True.__class__, list(range(10_001))])
def test_values_marshal_would_change_or_refuse_are_not_plain(value):
    assert not job_side.is_plain(value)


@given(st.binary(max_size=600))
def test_bytes_in_the_program_are_the_bytes_sent(data):
    assert eval(call_codec.literal(data)) == data


def test_the_light_unpickler_loads_cloudpickles_functions():
    limit = 7

    def below(n):
        return n < limit

    assert call_pickled.light_loads(cloudpickle.dumps(below))(6) is True
