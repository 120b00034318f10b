"""Jobs' environments (--requirements): built once on the worker from shipped wheels, kept in a bounded
store, run through a fork server of their own; a real master, workers and clients over loopback.
No network: the wheels are written by hand (tests/helpers/wheels.py) and builds get no index."""

import logging
import os

import gevent
import pytest

from sieci.client.client import Client
from sieci.worker.environments import EnvironmentOptions
from tests.helpers import WAIT, client_address
from tests.helpers.wheels import write_wheel

IMPORTS = b"import tinypkg, sys\nprint(tinypkg.VALUE, sys.prefix == sys.exec_prefix)\n"


@pytest.fixture
def wheels(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    write_wheel(str(folder))
    (tmp_path / "requirements.txt").write_text("tinypkg==1.0\n")
    return tmp_path


def environments(tmp_path, **options):
    return EnvironmentOptions(str(tmp_path / "environments"), **options)


def run(master, folder, code=IMPORTS, requirements="requirements.txt", **settings):
    client = Client([client_address(master)], requirements=str(folder / requirements), wheels=str(folder / "wheels"))
    return client.run(code, "job.py", **settings)


def test_a_job_imports_a_package_from_the_wheels_it_sent(cluster, wheels):
    master = cluster.master()
    worker = cluster.worker(master, environments=environments(wheels))
    result = run(master, wheels)
    assert (result.stdout, result.stderr, result.exit_status) == (b"42 True\n", b"", 0)
    assert worker.runner.environments.store.builds == 1
