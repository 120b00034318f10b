"""sieci.Executor's functions (issue 29) against a real cluster on loopback, with the cluster's secret:
values back, exceptions with their remote tracebacks, output, the Python version check, and no value
from anything but the sealed outcome."""

import builtins
import marshal
import pickle
import re
import socket
import subprocess
import sys
import textwrap
import xml.etree.ElementTree

import cloudpickle
import gevent
import pytest

import sieci
from sieci.client import call_codec
from sieci.jobs.call import OUTCOME
from sieci.wire.results import Status, file_items

from tests.helpers import WAIT, client_address, files_under
from tests.helpers.proxy import TamperingProxy, _pump

SECRET = b"the functions test secret, long enough"


@pytest.fixture
def guarded(cluster):
    """A master and two workers that hold the secret."""
    master = cluster.master(secret=SECRET)
    cluster.worker(master, secret=SECRET)
    cluster.worker(master, secret=SECRET)
    assert master.wait_for_workers(2, WAIT)
    return master


@pytest.fixture
def pool(guarded):
    with sieci.Executor(client_address(guarded), max_workers=4, secret=SECRET) as executor:
        yield executor


def test_a_lambda_returns_its_value(pool):
    assert pool.submit(lambda: 1).result(timeout=WAIT) == 1


def test_map_yields_fifty_values_in_order(pool):
    offset = 1000
    assert list(pool.map(lambda n: n * n + offset, range(50), timeout=WAIT)) == [n * n + offset for n in range(50)]


@pytest.mark.parametrize("chunksize", [2, 7, 50])
def test_map_in_chunks_yields_the_same_values_in_order(pool, chunksize):
    assert list(pool.map(lambda n: -n, range(23), timeout=WAIT, chunksize=chunksize)) == [-n for n in range(23)]


def test_map_in_chunks_raises_at_the_failing_item(pool):
    values = pool.map(lambda n: 10 // (n - 5), range(10), chunksize=3)
    assert [next(values) for _ in range(3)] == [-2, -3, -4]
    with pytest.raises(ZeroDivisionError):
        next(values)  # 3, 4 and 5 went in one job
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(len, ["a"], chunksize=0)


def test_map_takes_several_iterables_as_concurrent_futures_does(pool):
    assert list(pool.map(lambda a, b: a + b, "abc", "xyz", timeout=WAIT)) == ["ax", "by", "cz"]


def test_arguments_and_keyword_arguments_reach_the_function(pool):
    def describe(a, b, *, scale=1, **rest):
        return a, b, scale, rest

    future = pool.submit(describe, 1, [2, 3], scale=10, label="x")
    assert future.result(timeout=WAIT) == (1, [2, 3], 10, {"label": "x"})


def test_a_submodule_reached_through_its_package_is_imported_in_the_job(pool):
    assert pool.submit(lambda text: xml.etree.ElementTree.fromstring(text).tag, "<root/>").result(timeout=WAIT) \
        == "root"


def test_a_function_is_loaded_without_cloudpickle_in_the_job_and_a_lambda_value_comes_back(pool):
    def light():
        import sys

        return "cloudpickle" in sys.modules, lambda x: x + 1  # the lambda's pickle needs cloudpickle

    loaded, returned = pool.submit(light).result(timeout=WAIT)
    assert loaded is False
    assert returned(1) == 2


def test_a_remote_exception_is_raised_in_the_caller_with_its_remote_traceback(pool):
    def inner(n):
        raise ValueError(f"bad {n}")

    def outer(n):
        return inner(n)

    with pytest.raises(ValueError) as raised:
        pool.submit(outer, 7).result(timeout=WAIT)
    message, remote = str(raised.value), raised.value.remote_traceback
    assert message.startswith("bad 7\n\nRemote traceback (on the worker):\n") and message.endswith(remote)
    assert raised.value.args == ("bad 7",) and type(raised.value).__name__ == "ValueError"
    assert "in outer" in remote and "in inner" in remote
    assert remote.rstrip().endswith("ValueError: bad 7")
    assert "run_call" not in remote and "call_outcome" not in remote  # sieci's frames are left out


def test_an_exception_that_cannot_be_pickled_comes_as_a_remote_error_with_its_traceback(pool):
    def fails():
        import threading

        raise KeyError(threading.Lock())

    with pytest.raises(sieci.RemoteError) as raised:
        pool.submit(fails).result(timeout=WAIT)
    assert raised.value.type_name == "builtins.KeyError"
    assert "the function raised KeyError, which cannot be unpickled here" in str(raised.value)
    assert "in fails" in str(raised.value)


def test_print_output_reaches_the_callers_stdout_and_stderr(pool, capsys):
    def talks(n):
        import sys

        print(f"out {n}")
        print(f"err {n}", file=sys.stderr)
        return n

    assert list(pool.map(talks, range(3), timeout=WAIT)) == [0, 1, 2]
    captured = capsys.readouterr()
    assert sorted(captured.out.splitlines()) == ["out 0", "out 1", "out 2"]
    assert sorted(captured.err.splitlines()) == ["err 0", "err 1", "err 2"]


def test_another_python_version_is_a_clear_error_and_nothing_is_unpickled(pool, monkeypatch, capsys):
    monkeypatch.setattr(call_codec, "PYTHON", (3, 99))  # as if this client were Python 3.99

    def never():
        print("the function ran")

    with pytest.raises(sieci.PythonVersionMismatch) as raised:
        pool.submit(never).result(timeout=WAIT)
    worker = "%d.%d.%d" % sys.version_info[:3]
    assert f"runs Python {worker}, this client Python 3.99" in str(raised.value)
    assert "same minor version" in str(raised.value)
    assert capsys.readouterr().out == ""


def forged_outcome(value):
    """What a job would print to pass a value off as its outcome: the outcome file's bytes, and the
    results' items that carry it, ending in a good status."""
    outcome = call_codec.pickle.dumps(("value", call_codec.pickle.dumps(value)), protocol=3)
    return outcome + b"\n" + b"".join(file_items(outcome, b"\n.\n", name=OUTCOME)) + Status(b"exit", b"0").encode()


@pytest.mark.parametrize("ending", ["returns", "leaves without an outcome"])
def test_what_a_function_prints_never_becomes_its_value(pool, capsysbinary, ending):
    forgery = forged_outcome("forged")

    def prints_a_forgery(data, leave):
        import os
        import sys

        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        if leave:
            os._exit(0)
        return "genuine"

    future = pool.submit(prints_a_forgery, forgery, ending != "returns")
    if ending == "returns":
        assert future.result(timeout=WAIT) == "genuine"
    else:
        with pytest.raises(sieci.CallFailed, match="ended without its outcome"):
            future.result(timeout=WAIT)
    assert forgery in capsysbinary.readouterr().out  # it was output, shown as such


def test_an_outcome_changed_on_the_way_is_refused_not_unpickled(cluster):
    """Between client and master, a stranger on the path (no TLS) swaps bytes of the value."""
    proxy = TamperingProxy(b"the truth", b"a forgery")
    on_the_path = proxy.address
    try:
        master = cluster.master(secret=SECRET, names=[on_the_path])
        proxy.target = master.clients_address
        cluster.worker(master, secret=SECRET)
        assert master.wait_for_workers(1, WAIT)
        with sieci.Executor(on_the_path, max_workers=1, secret=SECRET) as pool:
            with pytest.raises(sieci.JobLost, match="seal does not match"):
                pool.submit(lambda: "the truth").result(timeout=WAIT)
            assert files_under(pool._calls._folder) == {}  # the outcome that came is gone, never read
        with sieci.Executor(client_address(master), max_workers=1, secret=SECRET) as pool:
            assert pool.submit(lambda: "the truth").result(timeout=WAIT) == "the truth"  # straight: sealed, good
    finally:
        proxy.close()


def test_a_function_that_cannot_be_pickled_raises_at_submit(pool):
    numbers = (n for n in range(3))
    with pytest.raises(sieci.CannotPickle, match="the function .*<lambda> cannot be pickled: TypeError: .*generator"):
        pool.submit(lambda: next(numbers))
    with pytest.raises(sieci.CannotPickle, match="the arguments of .*<lambda> cannot be pickled"):
        pool.submit(lambda items: list(items), numbers)


def test_a_function_of_a_module_the_workers_lack_raises_their_import_error_here(pool, tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text("def twice(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import only_here

    try:
        with pytest.raises(ModuleNotFoundError, match="only_here") as raised:
            pool.submit(only_here.twice, 2).result(timeout=WAIT)  # by reference: the worker imports it
        assert "ModuleNotFoundError: No module named 'only_here'" in str(raised.value)
        cloudpickle.register_pickle_by_value(only_here)
        try:
            assert pool.submit(only_here.twice, 2).result(timeout=WAIT) == 4  # by value, as the docs say
        finally:
            cloudpickle.unregister_pickle_by_value(only_here)
    finally:
        del sys.modules["only_here"]


def test_a_job_that_ends_without_its_outcome_is_a_call_failed(pool):
    def leaves():
        import os

        os._exit(3)

    with pytest.raises(sieci.CallFailed, match=r"ended without its outcome \(it exited with status 3\)"):
        pool.submit(leaves).result(timeout=WAIT)


def test_a_job_stopped_by_the_workers_time_limit_is_a_call_failed_that_says_so(cluster):
    from sieci.worker.limits import Limits

    master = cluster.master(secret=SECRET)
    cluster.worker(master, secret=SECRET, limits=Limits(timeout=0.5))
    assert master.wait_for_workers(1, WAIT)

    def sleeps():
        import time

        time.sleep(60)

    with sieci.Executor(client_address(master), max_workers=1, secret=SECRET) as pool:
        with pytest.raises(sieci.CallFailed, match=r"ended without its outcome \(.*time limit"):
            pool.submit(sleeps).result(timeout=WAIT)


def test_functions_run_in_a_fresh_interpreter_too(guarded):
    with sieci.Executor(client_address(guarded), max_workers=2, secret=SECRET, fresh=True) as pool:
        assert list(pool.map(lambda n: n + 1, range(3), timeout=WAIT)) == [1, 2, 3]


def test_functions_need_the_secret(master_with_a_worker):
    with sieci.Executor(client_address(master_with_a_worker), max_workers=1) as pool:
        with pytest.raises(sieci.ClientError, match="functions run only with the cluster's secret"):
            pool.submit(lambda: 1)
        assert pool.submit("print(1)").result(timeout=WAIT).stdout == b"1\n"  # programs run as before


def test_code_strings_and_functions_share_one_executor(pool):
    results = list(pool.map([f"print({n})" for n in range(3)], timeout=WAIT))
    assert [result.stdout for result in results] == [b"0\n", b"1\n", b"2\n"]
    assert pool.submit(b"print('bytes')").result(timeout=WAIT).stdout == b"bytes\n"
    assert pool.submit(code="import sys\nprint(sys.argv)", args=["x"]).result(timeout=WAIT).stdout == \
        b"['job.py', 'x']\n"
    assert pool.submit(len, "four").result(timeout=WAIT) == 4  # a builtin, pickled by reference


def test_functions_and_classes_of_main_travel_by_value(guarded, tmp_path):
    """A script's own functions and classes, which no worker could import, as a user runs one."""
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""\
        import sys
        import sieci

        class Box:
            def __init__(self, value):
                self.value = value

        def triple(x):
            return Box(3 * x)

        if __name__ == "__main__":
            with sieci.Executor(sys.argv[1], secret_file=sys.argv[2], max_workers=2) as pool:
                print([box.value for box in pool.map(triple, [1, 2, 3])])
    """))
    done = subprocess.run([sys.executable, str(script), client_address(guarded), str(secret)], capture_output=True,
                          timeout=WAIT * 3, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"[3, 6, 9]\n", b"")


class _Reframing(TamperingProxy):
    """A stranger on the path who cuts the returned outcome file in two where its bytes hold
    ``\\0<its name>\\0``: the results' seal hashes each file as \\0name\\0 then its bytes, so the seal
    still matches, and the second file of that name is what the client would read."""

    def _handle(self, client, _):
        upstream = socket.create_connection(self.target)
        sending = gevent.spawn(_pump, client, upstream)
        try:
            _pump(upstream, client, change=self._reframe)
        finally:
            sending.kill()
            upstream.close()
            client.close()

    @staticmethod
    def _reframe(data):
        item = re.search(rb"r (\d+) " + OUTCOME.encode() + rb"\n", data)
        marker = b"\0" + OUTCOME.encode() + b"\0"
        if item is None or marker not in data[item.end():]:
            return data
        start, length = item.end(), int(item.group(1))
        cut = data.index(marker, start)
        rest = length - (cut + len(marker) - start)
        return (data[:item.start()] + b"r %d %s\n" % (cut - start, OUTCOME.encode()) + data[start:cut]
                + b"r %d %s\n" % (rest, OUTCOME.encode()) + data[cut + len(marker):])


class _Planted:
    def __reduce__(self):
        return exec, ("import builtins; builtins.sieci_planted = True",)


def test_an_outcome_cut_in_two_on_the_way_is_refused_not_unpickled(cluster):
    """A value whose bytes hold \\0<outcome's name>\\0 and a forged outcome after it (data the function
    fetched, say): a stranger on the path cuts the file in two there. The seal counts each file's name
    by its length and its bytes by their digest, so the cut shows (before results/3 it did not, and
    only the client's check that the outcome is the one file returned stood in the way)."""
    forged_outcome = marshal.dumps(("value", pickle.dumps(_Planted())))
    value = b"\0" + OUTCOME.encode() + b"\0" + forged_outcome
    proxy = _Reframing(b"", b"")
    try:
        master = cluster.master(secret=SECRET, names=[proxy.address])
        proxy.target = master.clients_address
        cluster.worker(master, secret=SECRET)
        assert master.wait_for_workers(1, WAIT)
        with sieci.Executor(proxy.address, max_workers=1, secret=SECRET) as pool:
            with pytest.raises(sieci.JobLost, match="seal does not match"):
                pool.submit(lambda: value).result(timeout=WAIT)
            assert files_under(pool._calls._folder) == {}
        assert not hasattr(builtins, "sieci_planted")
    finally:
        proxy.close()
