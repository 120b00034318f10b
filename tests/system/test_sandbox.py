"""A job is a prisoner: attacks on the worker, the host and other jobs, each of which once worked.

Jobs run in namespaces and, where this host has them, a cgroup of their own
(``isolation()`` skips where a test needs a wall this host cannot build), as
a user of this test run's own where the test needs root to switch to it.
"""

import os
import shutil
import signal
import socket
import subprocess  # gevent's: conftest patched the standard library first
import sys
import tempfile
from pathlib import Path

import gevent
import gevent.socket
import pytest

from sieci.client import client
from sieci.wire.protocol import STDOUT
from sieci.worker import executor
from sieci.worker.executor import JobSettings
from sieci.worker.limits import Limits

from tests.helpers import Captured, children_of, client_address, isolation, processes_of

# A user of this test run's own (no passwd entry is needed to switch to it).
JOB_USER = (61000 + os.getpid() % 4000,) * 2
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run jobs as another user")


@pytest.fixture
def prison(cluster):
    """A master and a worker with small limits, its jobs walled in; ``prison(**options)``."""

    def start(workers=1, walls=None, user=JOB_USER if os.geteuid() == 0 else None, **limits):
        options = dict(timeout=30, max_output=1 << 20, cpu=20, memory=256 << 20, file_size=64 << 20,
                       disk=8 << 20, open_files=64, processes=32)
        options.update(limits)
        master = cluster.master()
        for _ in range(workers):
            cluster.worker(master, limits=Limits(**options), job_user=user,
                           isolation=walls or isolation(cgroups="if any"))
        assert master.wait_for_workers(workers, 20)
        return master

    return start


def run(master, code, **settings):
    output = Captured()
    result = client.Client(client_address(master), **settings).run(code, output=output)
    return result, output


def assert_serves_on(master):
    result, output = run(master, b"print('next job')\n")
    assert (result.exit_status, output.stdout) == (0, b"next job\n")


@needs_root
@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "a host folder"])
def test_a_job_that_swaps_its_folder_for_a_symlink_deletes_nothing_of_roots(prison, tmp_path, namespaces):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "passwd").write_text("root's own")
    master = prison(walls=isolation(namespaces=namespaces, cgroups=False))
    code = (b"import os\nhere = os.getcwd()\nos.chdir('/')\n"
            b"try:\n    os.rename(here, here + '-moved')\n    os.symlink(%r, here)\n"
            b"except OSError as error:\n    print(error.strerror)\n" % str(victim).encode())
    result = client.Client(client_address(master)).run(code, filename="passwd")
    assert result.exit_status == 0
    assert (victim / "passwd").read_text() == "root's own"
    assert_serves_on(master)


def test_a_daemon_the_job_leaves_is_gone_and_the_job_reported_at_once(prison):
    master = prison(timeout=600)
    code = (b"import os, time\n"
            b"if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(600)\n    os._exit(0)\n"
            b"time.sleep(0.2)\nprint('left a daemon')\n")
    result, output = run(master, code)
    assert (result.exit_status, result.limit, output.stdout) == (0, None, b"left a daemon\n")
    if os.geteuid() == 0:
        assert processes_of(JOB_USER[0]) == []


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "a host folder"])
def test_3000_nested_folders_leave_the_worker_serving(prison, namespaces):
    master = prison(walls=isolation(namespaces=namespaces, cgroups=False))
    code = b"import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nprint('deep')\n"
    result, output = run(master, code)
    # On a host folder, a tree that deep counts as over the disk limit once the watcher sees it.
    assert (result.exit_status, output.stdout) == (0, b"deep\n") or (namespaces, result.limit) == (False, "disk")
    assert_serves_on(master)


def test_the_disk_limit_holds_however_the_files_hide(prison):
    master = prison(disk=8 << 20)
    code = (b"import os\nwritten = 0\nfor _ in range(2000):\n    os.mkdir('d')\n    os.chdir('d')\n"
            b"try:\n    with open('f', 'wb') as f:\n        while True:\n            f.write(b'z' * 65536)\n"
            b"            f.flush()\n            written += 65536\n"
            b"except OSError:\n    print(written)\n    raise\n")
    result, output = run(master, code)
    assert (result.exit_status, result.limit) == (137, "disk")
    assert int(output.stdout) <= 8 << 20


def test_memory_is_limited_for_the_whole_job_not_each_process(prison):
    master = prison(memory=256 << 20, walls=isolation())
    code = (b"import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        held = bytearray(100 << 20)\n"
            b"        held[::4096] = b'x' * len(held[::4096])\n        time.sleep(60)\n        os._exit(0)\n"
            b"for _ in range(4):\n    _, status = os.wait()\n    if status:\n        raise SystemExit(1)\n")
    result, _ = run(master, code)
    assert (result.exit_status, result.limit) == (137, "memory")
    assert "memory limit" in result.message
    assert_serves_on(master)


def test_an_error_that_looks_like_a_limit_is_the_jobs_own(prison):
    master = prison()
    result, output = run(master, b"raise BlockingIOError(11, 'Resource temporarily unavailable')\n")
    assert (result.exit_status, result.limit) == (1, None)
    assert b"BlockingIOError: [Errno 11]" in output.stderr


@needs_root
def test_a_job_sees_neither_the_secret_nor_a_writable_package(cluster):
    folder = tempfile.mkdtemp(dir="/var/tmp")  # not under /tmp, which every job has a fresh one of
    os.chmod(folder, 0o755)
    secret = Path(folder) / "secret"
    secret.write_text("the cluster's secret")
    secret.chmod(0o644)  # even readable by all, a job must not see it
    package = os.path.dirname(client.__file__)
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=30), job_user=JOB_USER, isolation=isolation(hidden=[secret]))
    code = ("import os\nprint(repr(open(%r).read()))\n"
            "try:\n    open(os.path.join(%r, 'planted.py'), 'w')\nexcept OSError as error:\n    print(error.strerror)\n"
            % (str(secret), package)).encode()
    result, output = run(master, code)
    assert result.exit_status == 0, output.stderr
    assert output.stdout.splitlines()[0] == b"''"
    # (not there at all when the checkout is under /tmp, which each job has a fresh one of)
    assert output.stdout.splitlines()[1] in (b"Read-only file system", b"Permission denied", b"No such file or directory")
    assert not os.path.exists(os.path.join(package, "planted.py"))
    shutil.rmtree(folder)


def test_two_jobs_at_once_cannot_find_each_other(prison):
    """Both as the same user: each looks for the other's file and process, and finds neither."""
    master = prison(workers=2, walls=isolation(cgroups="if any", network=True))  # they meet through the test
    with socket.create_server(("127.0.0.1", 0)) as meeting:
        code = (b"import os, socket\nmark = 'mark-' + os.urandom(8).hex()\n"
                b"open(mark, 'w').write(mark)\nopen('/dev/shm/' + mark, 'w').write(mark)\n"
                b"line = socket.create_connection(('127.0.0.1', %d))\nline.sendall(mark.encode())\n"
                b"other = line.recv(100).decode()\n"
                b"found = [os.path.join(folder, name) for top in ('/tmp', '/dev/shm', '/var/tmp')\n"
                b"         for folder, _, names in os.walk(top) for name in names if name == other]\n"
                b"print(found, sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
                % meeting.getsockname()[1])
        jobs = [gevent.spawn(run, master, code) for _ in range(2)]
        lines = []
        with gevent.Timeout(20, AssertionError("the two jobs never met")):
            for _ in range(2):
                lines.append(meeting.accept()[0])
            marks = [line.recv(100) for line in lines]
        for line, other in zip(lines, reversed(marks)):
            line.sendall(other)
        results = gevent.joinall(jobs, timeout=20, raise_error=True)
        for line in lines:
            line.close()
    for job in results:
        result, output = job.value
        assert (result.exit_status, output.stdout) == (0, b"[] [1, 2]\n"), output.stderr


def test_a_job_cannot_kill_the_fork_server_or_the_worker(prison, cluster):
    master = prison()
    assert_serves_on(master)
    zygote = cluster.workers[0].runner.fork_server._process.pid
    code = (b"import os, signal\nfor pid in [%d, %d, *range(1, 4096)]:\n    if pid != os.getpid():\n"
            b"        try:\n            os.kill(pid, signal.SIGKILL)\n        except OSError:\n            pass\n"
            b"print('tried')\n" % (os.getpid(), zygote))
    result, output = run(master, code)
    assert (result.exit_status, output.stdout) == (0, b"tried\n")
    assert_serves_on(master)
    assert cluster.workers[0].runner.fork_server._process.pid == zygote


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_works_inside_the_walls(prison, method):
    master = prison(processes=64, timeout=60)
    code = ("import multiprocessing as mp\n\ndef square(n):\n    return n * n\n\n"
            "if __name__ == '__main__':\n    with mp.get_context(%r).Pool(2) as pool:\n"
            "        print(sum(pool.map(square, range(100))))\n" % method).encode()
    result, output = run(master, code)
    assert (result.exit_status, output.stdout) == (0, b"328350\n"), output.stderr


def test_without_network_a_job_has_only_a_loopback_of_its_own(prison):
    master = prison(walls=isolation(cgroups="if any", network=False))
    with socket.create_server(("127.0.0.1", 0)) as host_service:
        code = (b"import socket\nprint([name for _, name in socket.if_nameindex()])\n"
                b"try:\n    socket.create_connection(('127.0.0.1', %d), timeout=5)\n    print('reached the host')\n"
                b"except OSError as error:\n    print(type(error).__name__)\n"
                b"with socket.create_server(('127.0.0.1', 0)) as own:\n"
                b"    socket.create_connection(own.getsockname()).close()\n    print('own loopback works')\n"
                % host_service.getsockname()[1])
        result, output = run(master, code)
    assert (result.exit_status, output.stdout) == (0, b"['lo']\nConnectionRefusedError\nown loopback works\n"), \
        output.stderr


def test_a_killed_fork_servers_cgroup_and_what_is_left_in_it_go_at_the_next_start():
    from sieci.jobs import cgroups

    isolation(namespaces=False)  # skips where this host has no cgroups for us
    tree = cgroups.discover()
    stale = tree.create("sieci-test-stale-999999999", 1 << 28, 10)
    left = subprocess.Popen(["sleep", "600"])
    try:
        for folder in stale.folders:
            with open(os.path.join(folder, "cgroup.procs"), "w") as procs:
                procs.write(str(left.pid))
        tree.remove_stale("sieci-test-stale-", alive=lambda pid: False)
        assert left.wait(timeout=20) == -9
        assert not any(os.path.exists(folder) for folder in stale.folders)
    finally:
        left.kill()
        stale.remove()


def test_nothing_of_a_fork_server_outlives_it():
    """Killed with SIGKILL (its worker died) while a job runs, it leaves neither the job
    nor its namespace's init behind."""
    runner = executor.JobRunner(Limits(timeout=60), isolation=isolation(cgroups="if any"))
    try:
        with runner.run(JobSettings(b"import time\nprint('running', flush=True)\ntime.sleep(60)\n")) as job:
            assert next(job.output()) == (STDOUT, b"running\n")
            zygote = runner.fork_server._process.pid
            left = children_of(zygote)
            assert left  # the job's process and its namespace's init
            exits = [os.pidfd_open(pid) for pid in left]
            os.kill(zygote, signal.SIGKILL)
            with gevent.Timeout(20, AssertionError(f"outlived their fork server: {left}")):
                for pidfd in exits:
                    gevent.socket.wait_read(pidfd)  # readable once that process has ended
                    os.close(pidfd)
    finally:
        runner.close()


@needs_root
def test_orphans_of_a_job_are_reaped_by_its_namespaces_small_init(prison):
    master = prison()
    code = (b"import os, select, time\n"
            b"read_end, write_end = os.pipe()\npid_out, pid_in = os.pipe()\n"
            b"if os.fork() == 0:\n"  # a child that leaves an orphan, which ends after it
            b"    orphan = os.fork()\n"
            b"    if orphan == 0:\n"
            b"        os.close(write_end)\n        os.read(read_end, 1)\n        os._exit(0)\n"
            b"    os.write(pid_in, str(orphan).encode())\n    os._exit(0)\n"
            b"os.close(write_end)\nos.wait()\norphan = int(os.read(pid_out, 20))\n"
            b"deadline = time.monotonic() + 20\n"
            b"while os.path.exists(f'/proc/{orphan}') and time.monotonic() < deadline:\n    os.sched_yield()\n"
            b"print(open('/proc/1/cmdline', 'rb').read(), os.path.exists(f'/proc/{orphan}'))\n")
    result, output = run(master, code)
    init = b"b'init\\x00'" if os.uname().machine == "x86_64" else b"b'"
    assert result.exit_status == 0, output.stderr
    assert output.stdout.startswith(init) and output.stdout.endswith(b" False\n"), output.stdout


@pytest.mark.parametrize("kind", ["program", "fork"])
def test_an_init_ignores_sigchld_and_ends_when_its_lifeline_closes(kind):
    if kind == "program" and os.uname().machine != "x86_64":
        pytest.skip("the init program is x86-64 code; elsewhere the init is a fork")
    script = f"""
import os, sys
from sieci.jobs import pid_init
lifeline, keep_alive = os.pipe()
if {kind!r} == "program":
    pid = pid_init._spawn_init_program(pid_init._init_program(), lifeline)
else:
    pid = pid_init._fork_init(lifeline)
os.close(lifeline)
fields = {{"State": "R"}}
while fields["State"].split()[0] == "R":  # until it waits on its lifeline
    with open(f"/proc/{{pid}}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
print(fields["State"].split()[0], int(fields["SigIgn"], 16) >> 16 & 1, flush=True)
os.close(keep_alive)
print(os.waitpid(pid, 0)[1])
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    assert finished.stdout == b"S 1\n0\n", finished.stderr


def test_a_walled_jobs_arguments_and_environment_reach_it(prison):
    master = prison()
    output = Captured()
    code = b"import os, sys\nprint(sys.argv, os.environ['GREETING'], os.environ['PATH'].split(':')[0])\n"
    result = client.Client(client_address(master)).run(code, "show.py", output, ["a b", "zażółć"], {"GREETING": "hi"})
    expected = f"['show.py', 'a b', 'zażółć'] hi {os.path.dirname(sys.executable)}\n"
    assert (result.exit_status, output.stdout) == (0, expected.encode())
