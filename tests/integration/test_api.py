"""The Python API: sieci.Client, sieci.Result and sieci.Executor against a real cluster on loopback."""

import concurrent.futures

import pytest

import sieci

from tests.helpers import WAIT, client_address

SECRET = b"the api test secret, long enough"


def test_run_returns_a_result_with_everything(cluster):
    master = cluster.master()
    cluster.worker(master, name="api-worker")
    result = sieci.Client([client_address(master)]).run("import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
                                                        "sys.exit(5)\n")
    assert isinstance(result, sieci.Result)
    assert (result.stdout, result.stderr, result.exit_status) == (b"out\n", b"err\n", 5)
    assert (result.limit, result.worker, result.master) == (None, "api-worker", client_address(master))
    assert result.seconds > 0


def test_a_limit_is_named_in_the_result(cluster):
    from sieci.worker.limits import Limits

    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=0.5))
    result = sieci.Client(client_address(master)).run(b"import time\ntime.sleep(30)\n")
    assert (result.exit_status, result.limit) == (124, "time")
    assert "time limit" in result.message


def test_sieci_failures_are_exceptions(cluster):
    master = cluster.master()
    address = client_address(master)
    master.stop(grace=0.1)
    with pytest.raises(sieci.NotAccepted, match="cannot reach master"):
        sieci.Client(address).run("print(1)")
    with pytest.raises(sieci.ClientError, match="cannot read the secret file"):
        sieci.Client(address, secret_file="/nonexistent/secret")


def test_the_secret_comes_from_a_file(cluster, tmp_path):
    master = cluster.master(secret=SECRET)
    cluster.worker(master, secret=SECRET)
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    secret_file.chmod(0o600)
    assert sieci.Client(client_address(master), secret_file=str(secret_file)).run("print(7)").stdout == b"7\n"
    with pytest.raises(sieci.NotAccepted, match="unauthorized"):
        sieci.Client(client_address(master)).run("print(7)")


def test_the_executor_runs_a_hundred_jobs(cluster):
    master = cluster.master()
    cluster.worker(master)
    cluster.worker(master)
    with sieci.Executor(client_address(master), max_workers=16) as pool:
        assert isinstance(pool, concurrent.futures.Executor)
        futures = [pool.submit(f"print({n} * {n})") for n in range(100)]
        results = [future.result(timeout=WAIT) for future in futures]
    assert [result.stdout for result in results] == [b"%d\n" % (n * n) for n in range(100)]
    assert all(result.exit_status == 0 for result in results)


def test_executor_map_keeps_the_order_and_failures_surface(cluster):
    master = cluster.master()
    cluster.worker(master)
    with sieci.Executor(client_address(master), max_workers=4) as pool:
        results = list(pool.map([f"print('{letter}')" for letter in "abcde"], timeout=WAIT))
        assert b"".join(result.stdout for result in results) == b"a\nb\nc\nd\ne\n"
        failing = pool.submit(b"raise ValueError('no')\n").result(timeout=WAIT)
        assert failing.exit_status == 1 and failing.stderr.endswith(b"ValueError: no\n")
    unreachable = sieci.Executor("127.0.0.1:1", max_workers=1, connect_timeout=1)
    try:
        with pytest.raises(sieci.NotAccepted):
            unreachable.submit("print(1)").result(timeout=WAIT)
    finally:
        unreachable.shutdown()
