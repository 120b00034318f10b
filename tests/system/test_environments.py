"""Jobs' environments behind the jobs' walls: built by pip in a job's namespaces (as the job user, where
the tests run as root), and read-only to the jobs that run in them (a read-only mount, not a permission a
job could change). ``isolation()`` skips where this host cannot build namespaces."""

import os

import pytest

from sieci.client.client import Client
from sieci.worker.environments import EnvironmentOptions
from sieci.worker.limits import Limits
from tests.helpers import client_address, isolation
from tests.helpers.wheels import write_wheel

JOB_USER = (61000 + os.getpid() % 4000,) * 2

WRITES_INTO_ITS_ENVIRONMENT = b"""\
import os, sys, tinypkg
print(os.getuid() == os.geteuid(), tinypkg.VALUE)
for target in [tinypkg.__file__, os.path.join(sys.prefix, "planted.py"), os.path.dirname(tinypkg.__file__)]:
    try:
        if os.path.isdir(target):
            os.chmod(target, 0o777)
        else:
            with open(target, "a") as file:
                file.write("planted = True\\n")
        print("wrote", os.path.basename(target))
    except OSError as error:
        print(os.path.basename(target), error.strerror)
"""


@pytest.fixture
def walled(cluster, tmp_path):
    """A master and a worker whose jobs are in namespaces (as another user, as root), with a store;
    ``walled(user)``: as ``user`` instead (None: the worker's own, who owns the store's files)."""

    def start(user=JOB_USER if os.geteuid() == 0 else None):
        return _start(cluster, tmp_path, user)

    umask = os.umask(0o077)  # as the systemd unit has it: the environments are still every job user's to read
    try:
        yield start
    finally:
        os.umask(umask)


def _start(cluster, tmp_path, user):
    walls = isolation(cgroups="if any")
    (tmp_path / "wheels").mkdir()
    write_wheel(str(tmp_path / "wheels"))
    (tmp_path / "requirements.txt").write_text("tinypkg\n")
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=120, disk=256 << 20, processes=64), isolation=walls,
                   job_user=user,
                   environments=EnvironmentOptions(str(tmp_path / "environments")))
    return master, tmp_path


def test_a_job_cannot_write_into_its_environment_even_as_its_files_owner(walled):
    master, folder = walled(user=None)  # the job is the files' owner (as root: without capabilities)
    client = Client([client_address(master)], requirements=str(folder / "requirements.txt"),
                    wheels=str(folder / "wheels"))
    result = client.run(WRITES_INTO_ITS_ENVIRONMENT)
    assert (result.exit_status, result.stderr) == (0, b"")
    assert result.stdout == (b"True 42\n__init__.py Read-only file system\nplanted.py Read-only file system\n"
                             b"tinypkg Read-only file system\n")
    environment, = [name for name in os.listdir(folder / "environments") if len(name) == 64]
    assert not os.path.exists(folder / "environments" / environment / "planted.py")
    # And the next job finds it as it was built.
    assert client.run(b"import tinypkg; print(hasattr(tinypkg, 'planted'))\n").stdout == b"False\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run jobs as another user")
def test_an_environment_built_behind_the_walls_holds_the_workers_files_which_the_job_user_cannot_change(walled):
    master, folder = walled()
    result = Client([client_address(master)], requirements=str(folder / "requirements.txt"),
                    wheels=str(folder / "wheels")).run(b"import tinypkg; print(tinypkg.__file__)\n")
    assert result.exit_status == 0, result.stderr
    installed = result.stdout.decode().strip()
    result = Client([client_address(master)], requirements=str(folder / "requirements.txt"),
                    wheels=str(folder / "wheels")).run(WRITES_INTO_ITS_ENVIRONMENT)
    assert result.stdout.startswith(b"True 42\n") and b"wrote" not in result.stdout
    assert installed.startswith(str(folder / "environments"))
    assert (os.stat(installed).st_uid, os.stat(installed).st_mode & 0o777) == (0, 0o644)
