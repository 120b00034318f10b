"""A root worker installed in a folder only root can enter (issue 32): its jobs run, or it says why at start.

The installation is made as ``pip install -e`` makes one: a venv inside the
private folder, whose site-packages finds sieci's package in a checkout
beside it (not on ``sys.path``), and a fork server that runs as the job user.
"""

import os
import shutil
import signal
import stat
import subprocess  # gevent's: tests/conftest.py patched the standard library first
import sys
import sysconfig

import gevent
import pytest

from tests.helpers import PYTHON, REPO, children_of, unavailable_walls
from tests.helpers.processes import FAST_WORKER

needs_root_and_namespaces = pytest.mark.skipif(
    os.geteuid() != 0 or "--job-namespaces" in unavailable_walls(),
    reason="needs root, and namespaces for jobs, to run jobs as nobody in a view of the files of their own")

EDITABLE_FINDER = '''\
import importlib.util, sys

class Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "sieci":
            return importlib.util.spec_from_file_location(
                "sieci", {package!r} + "/__init__.py", submodule_search_locations=[{package!r}])

sys.meta_path.append(Finder)
'''


@pytest.fixture
def private_install(tmp_path):
    """``(folder, python)``: a folder of mode 0700 holding a checkout of sieci, a secret beside it,
    and a venv whose ``python`` imports sieci from that checkout, as an editable install's does."""
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    shutil.copytree(os.path.join(REPO, "sieci"), folder / "checkout" / "sieci",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "checkout" / "notes.txt").write_text("root's notes\n")
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(folder / "venv")], check=True, timeout=60)
    site_packages = next((folder / "venv" / "lib").glob("python3*/site-packages"))
    package = str(folder / "checkout" / "sieci")
    (site_packages / "_sieci_editable_finder.py").write_text(EDITABLE_FINDER.format(package=package))
    (site_packages / "_sieci_editable.pth").write_text("import _sieci_editable_finder\n")
    (site_packages / "_sieci_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    worker = folder / "venv" / "bin" / "sieci-worker"
    worker.write_text(f"#!{folder}/venv/bin/python\nimport sys\nfrom sieci.main import worker_main\n"
                      "sys.exit(worker_main())\n")
    worker.chmod(0o755)
    return folder, str(worker)


def start_worker(procs, worker, *args):
    return procs.start("worker", [worker, f"127.0.0.1:{procs.workers_port}", *FAST_WORKER, *args])


@needs_root_and_namespaces
def test_a_root_worker_installed_in_a_private_folder_runs_walled_jobs_that_see_only_its_way_down(
        procs, private_install):
    folder, worker = private_install
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    procs.master()
    worker = start_worker(procs, worker)
    code = (b"import json, os, sys\n"
            b"checkout = os.path.join(os.path.dirname(os.path.dirname(sys.executable)), '..', 'checkout')\n"
            b"print(json.dumps(sorted(os.listdir(checkout))), os.getuid() != 0)\n")
    for _ in range(2):
        result = procs.run_job(code)
        assert (result.returncode, result.stdout) == (0, b'["sieci"] True\n'), procs.logs()
    assert "Traceback" not in worker.stderr()
    [fork_server] = [command_line(pid) for pid in children_of(worker.pid)]
    assert f"{folder}/checkout/sieci/jobs/zygote.py".encode() in fork_server  # the private checkout's


@needs_root_and_namespaces
def test_modules_beside_sieci_s_package_shadow_nothing_the_fork_server_imports(procs, private_install):
    folder, worker = private_install
    for name in ("json", "struct", "zlib", "resource"):  # (a checkout's, or site-packages' own)
        (folder / "checkout" / f"{name}.py").write_text(f"raise ImportError('the standard {name} was shadowed')\n")
    procs.master()
    worker = start_worker(procs, worker)
    result = procs.run_job(b"print('not shadowed')\n")
    assert (result.returncode, result.stdout) == (0, b"not shadowed\n"), procs.logs()
    assert "shadowed" not in worker.stderr()


@needs_root_and_namespaces
@pytest.mark.parametrize("namespaces", ["on", "off"])
def test_a_worker_whose_job_user_cannot_read_its_venv_says_so_in_one_line_before_linking(
        procs, private_install, namespaces):
    folder, worker = private_install
    (folder / "venv").chmod(0o700)  # no way down makes the venv itself readable for the job user
    procs.master()
    worker = start_worker(procs, worker, "--job-namespaces", namespaces)
    assert worker.popen.wait(timeout=60) == 1
    [line] = worker.stderr().splitlines()
    blocked = line.split("the job user cannot read ", 1)[1].split(",", 1)[0]
    assert line.startswith("sieci-worker: error: "), line
    if namespaces == "on":
        assert blocked == str(folder / "venv")  # the folders above it are made enterable for jobs
    else:  # the host's own first folder on the way that the job user may not enter
        assert any(f"{path}/".startswith(f"{blocked}/") for path in (sys.base_prefix, str(folder))), line
    assert "linked to master" not in worker.stderr()


def test_a_worker_whose_fork_server_cannot_start_says_so_in_one_line_before_linking(procs, tmp_path):
    python = tmp_path / "python"  # the interpreter runs the worker's checks, but not its fork server
    python.write_text(f'#!/bin/sh\ncase "$1" in */zygote.py) exit 3;; esac\nexec {PYTHON} "$@"\n')
    python.chmod(0o755)
    procs.master()
    worker = procs.worker(args=["--python", str(python)])
    assert worker.popen.wait(timeout=60) == 1
    assert [line for line in worker.stderr().splitlines() if "error" in line.lower()] == [
        "sieci-worker: error: the fork server cannot start (it exited at once)"]
    assert "Traceback" not in worker.stderr() and "linked to master" not in worker.stderr()


def test_a_fork_server_killed_while_a_job_runs_fails_that_job_in_one_line_and_the_next_one_runs(procs):
    procs.master()
    worker = procs.worker()
    procs.wait_for_log(worker, "linked to master")
    client = procs.client(f"127.0.0.1:{procs.clients_port}",
                          procs.code_file(b"import time\nprint('running', flush=True)\ntime.sleep(60)\n"))
    with gevent.Timeout(30):
        assert client.popen.stdout.readline() == b"running\n"
    [fork_server] = [pid for pid in children_of(worker.pid) if b"zygote.py" in command_line(pid)]
    os.kill(fork_server, signal.SIGKILL)
    assert procs.finish(client).returncode == 255
    result = procs.run_job(b"print('next')\n")
    assert (result.returncode, result.stdout) == (0, b"next\n"), procs.logs()
    assert "Traceback" not in worker.stderr() and worker.stderr().count("fork server") == 1, worker.stderr()


def command_line(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read()
