"""A program's files as sieci-client sends them (--with, folders, zipapps, batches), and in the sandbox."""

import os
import subprocess  # gevent's: conftest patched the standard library first
import sys
import zipapp

import pytest

from sieci.client import client
from sieci.worker.limits import Limits

from tests.helpers import REPO, WAIT, client_address, isolation

CLIENT = os.path.join(REPO, "bin", "client")


@pytest.fixture
def project(tmp_path):
    """scripts/job.py, which imports lib (a package inside scripts/) and reads data.csv from outside."""
    (tmp_path / "scripts" / "lib").mkdir(parents=True)
    (tmp_path / "scripts" / "lib" / "__init__.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "scripts" / "job.py").write_text(
        "import sys, lib\nprint(sys.argv[1:], lib.double(int(open('data.csv').read())))\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.csv").write_text("21\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text("import sys, helper\nprint(sys.argv, helper.X)\n")
    (tmp_path / "app" / "helper.py").write_text("X = 'from the folder'\n")
    zipapp.create_archive(tmp_path / "app", tmp_path / "app.pyz")
    return tmp_path


def sieci_client(*argv, cwd):
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
    done = subprocess.run([sys.executable, CLIENT, *argv], capture_output=True, text=True, timeout=WAIT, cwd=cwd,
                          env=environ)
    return done.returncode, done.stdout, done.stderr


def test_with_places_files_beside_the_program_for_imports_and_opens(cluster, project):
    master = cluster.master()
    cluster.worker(master)
    assert sieci_client("--with", "scripts/lib", "--with", "data/data.csv", client_address(master),
                        "scripts/job.py", "a b", cwd=project) == (0, "['a b'] 42\n", "")


@pytest.mark.parametrize("prog", ["app", "app.pyz"])
def test_a_folder_and_a_zipapp_run_as_python3_runs_them(cluster, project, prog):
    master = cluster.master()
    cluster.worker(master)
    local = subprocess.run([sys.executable, prog, "x"], capture_output=True, text=True, cwd=project, timeout=WAIT)
    assert sieci_client(client_address(master), prog, "x", cwd=project) == (0, local.stdout, "")


def test_a_batch_sends_its_files_with_every_job_and_each_worker_gets_them_once(cluster, project):
    master = cluster.master()
    worker = cluster.worker(master)
    status, stdout, _ = sieci_client("--with", "scripts/lib", "--with", "data/data.csv", client_address(master),
                                     "scripts/job.py", ":::", "1", "2", "3", cwd=project)
    assert (status, stdout) == (0, "['1'] 42\n['2'] 42\n['3'] 42\n")
    assert worker.files.store.received_bytes == master.files.received_bytes == master.files.sent_bytes > 0


def test_with_a_path_that_is_not_there_is_a_clear_error(cluster, project):
    master = cluster.master()
    status, _, stderr = sieci_client("--with", "nowhere.csv", client_address(master), "scripts/job.py", cwd=project)
    assert (status, stderr) == (255, "sieci-client: error: --with: cannot read nowhere.csv: No such file or directory\n")


@pytest.mark.parametrize("fresh_interpreter", [False, True], ids=["forked", "fresh interpreter"])
def test_files_and_folders_unpack_in_the_sandbox(cluster, project, fresh_interpreter):
    walls = isolation(cgroups="if any")
    master = cluster.master()
    user = (61000 + os.getpid() % 4000,) * 2 if os.geteuid() == 0 else None
    cluster.worker(master, limits=Limits(timeout=30, disk=8 << 20), job_user=user, isolation=walls,
                   fresh_interpreter=fresh_interpreter)
    runner = client.Client(client_address(master))
    result = runner.run_path(str(project / "scripts" / "job.py"), ["s"],
                             files=[str(project / "scripts" / "lib"), str(project / "data" / "data.csv")])
    assert (result.exit_status, result.stdout, result.stderr) == (0, b"['s'] 42\n", b"")
    result = runner.run_path(str(project / "app"), ["t"])
    assert (result.exit_status, result.stdout) == (0, b"['app', 't'] from the folder\n")
