"""Hostile jobs: each limit stops its job with the right status, and the worker serves on.

The jobs run as an unprivileged user (as a worker running as root does by
default), which is what makes the process limit bite; these tests need root
to switch to it, and skip otherwise.
"""

import os

import pytest

from sieci.client import client
from sieci.worker.limits import Limits

from tests.helpers import Captured, Stdout, client_address, isolation, processes_of, unavailable_walls

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run jobs as an unprivileged user")


# A user of this test run's own (no passwd entry is needed to switch to it),
# so that counting its processes counts only the jobs of this test.
JOB_USER = (60000 + os.getpid() % 5000,) * 2


def job_user():
    return JOB_USER


@pytest.fixture
def hardened(cluster):
    """A master and one worker that runs jobs as an unprivileged user, with small limits."""

    def start(**limits):
        options = dict(timeout=20, max_output=1 << 20, cpu=2, memory=512 << 20, file_size=1 << 20,
                       disk=8 << 20, open_files=64, processes=32)
        options.update(limits)
        master = cluster.master()
        cluster.worker(master, limits=Limits(**options), job_user=job_user(), isolation=isolation())
        return master

    return start


def run(master, code):
    output = Captured()
    return client.run(client_address(master), code, output=output), output


def assert_serves_on(master):
    assert run(master, b"print('next job')\n") == (0, Stdout(b"next job\n"))


HOLDS_300_MB = b"held = b'x' * (300 << 20)\nimport time\ntime.sleep(600)\n"
HOSTILE = {
    "memory hog": (b"hog = []\nwhile True:\n    hog.append(bytearray(50 << 20))\n", "memory", 137),
    "CPU spin": (b"while True:\n    pass\n", "cpu", 137),
    "output flood": (b"import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n", "output", 137),
    "fork bomb": (b"import os\nwhile True:\n    os.fork()\n", "processes", 137),
    "disk filler": (b"i = 0\nwhile True:\n    i += 1\n    open(f'f{i}', 'wb').write(b'z' * 500_000)\n", "disk", 137),
    "one huge file": (b"with open('big', 'wb') as f:\n    while True:\n        f.write(b'z' * 65536)\n",
                      "file-size", 137),
    "sleeper holding 300 MB, which the kernel takes a while to free once it is killed": (
        HOLDS_300_MB, "time", 124),
    "sleeper that ignores SIGTERM and closes its stdout": (
        b"import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nos.close(1)\ntime.sleep(600)\n",
        "time", 124),
}


@pytest.mark.parametrize("code, limit, exit_status", HOSTILE.values(), ids=HOSTILE.keys())
def test_each_limit_stops_its_hostile_job(hardened, code, limit, exit_status):
    time_limit = 3 if code == HOLDS_300_MB else 0.5  # 3 s: for it to take its 300 MB before it is stopped
    master = hardened(timeout=time_limit if limit == "time" else 20)
    result = client.Client(client_address(master)).run(code)
    assert (result.exit_status, result.limit) == (exit_status, limit)
    assert f"{limit} limit" in result.message
    assert processes_of(job_user()[0]) == []  # every process the job started is gone
    assert_serves_on(master)


def test_a_daemon_the_job_leaves_behind_is_killed(hardened):
    master = hardened()
    code = (b"import os, time\n"
            b"if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(600)\n    os._exit(0)\n"
            b"time.sleep(0.2)\nprint('left a daemon')\n")
    status, output = run(master, code)
    assert (status, output.stdout) == (0, b"left a daemon\n")
    assert processes_of(job_user()[0]) == []
    assert_serves_on(master)


def test_a_job_cannot_read_the_workers_environment(hardened, monkeypatch):
    monkeypatch.setenv("SIECI_WORKER_SECRET", "do-not-leak")
    master = hardened()
    code = (b"import os\nprint(sorted(os.environ))\n"
            b"for pid in (os.getppid(), os.getpid()):\n"
            b"    try:\n        print(b'do-not-leak' in open(f'/proc/{pid}/environ', 'rb').read())\n"
            b"    except OSError as error:\n        print(type(error).__name__)\n"
            b"print(os.getuid() != 0, os.getcwd() == os.environ['HOME'])\n")
    status, output = run(master, code)
    assert status == 0
    names, *leaks, flags = output.stdout.decode().splitlines()
    assert names == "['HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']"
    assert all(leak in ("False", "PermissionError", "FileNotFoundError") for leak in leaks)  # no parent in its namespace
    assert flags == "True True"


SPREADS_ITS_CPU = b"""\
import multiprocessing, time

def burn():
    end = time.process_time() + 2
    while time.process_time() < end:
        pass

if __name__ == "__main__":
    burners = [multiprocessing.Process(target=burn) for _ in range(4)]
    for burner in burners:
        burner.start()
    for burner in burners:
        burner.join()
    print("8 s of CPU, 2 s a process")
"""


def test_the_cpu_limit_holds_for_the_whole_job_not_each_process(hardened):
    if "--job-cgroups" in unavailable_walls():
        pytest.skip("the job's CPU time is counted in its cgroup, and this host has none for jobs")
    master = hardened(cpu=1)
    result = client.Client(client_address(master)).run(SPREADS_ITS_CPU)
    assert (result.exit_status, result.limit) == (137, "cpu"), result.stdout
    assert processes_of(job_user()[0]) == []
    assert_serves_on(master)


def test_dev_shm_counts_in_the_jobs_disk_limit(hardened):
    master = hardened(disk=8 << 20, file_size=16 << 20)
    code = b"open('a', 'wb').write(b'x' * (6 << 20))\nopen('/dev/shm/b', 'wb').write(b'y' * (6 << 20))\nprint('12 MB')\n"
    result = client.Client(client_address(master)).run(code)
    assert (result.exit_status, result.limit) == (137, "disk"), result.stdout
    assert_serves_on(master)


def test_without_namespaces_a_job_cannot_move_its_folder_away_from_its_disk_limit(cluster, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the job as another user (as the worker's own user it owns all)")
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=20, disk=8 << 20), job_user=job_user(),
                   isolation=isolation(namespaces=False, cgroups="if any"))
    code = (b"import os\nhere = os.getcwd()\ntry:\n    os.rename(here, here + '-moved')\n    print('moved')\n"
            b"except OSError as error:\n    print(type(error).__name__)\n")
    assert run(master, code) == (0, Stdout(b"PermissionError\n"))
