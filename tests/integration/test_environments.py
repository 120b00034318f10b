"""Jobs' environments (--requirements): built once on the worker from shipped wheels, kept in a bounded
store, run through a fork server of their own; a real master, workers and clients over loopback.
No network: the wheels are written by hand (tests/helpers/wheels.py) and builds get no index."""

import io
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


def environment_folders(folder):
    return sorted(name for name in os.listdir(folder / "environments") if len(name) == 64)


PARENT = b"import os, sys, tinypkg\nprint(open(f'/proc/{os.getppid()}/cmdline', 'rb').read().split(b'\\0')[1:3])\n"


def test_the_same_requirements_twice_build_once_and_run_through_one_fork_server(cluster, wheels):
    master = cluster.master()
    worker = cluster.worker(master, environments=environments(wheels))
    results = [run(master, wheels, PARENT) for _ in range(2)]
    # Each job's parent is the environment's fork server: its interpreter started with -S, then zygote.py.
    assert [(result.exit_status, result.stdout) for result in results] == [(0, b"[b'-S', b'" + os.fsencode(
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__import__("sieci").__file__))), "sieci",
                     "jobs", "zygote.py")) + b"']\n")] * 2
    environments_ = worker.runner.environments
    assert (environments_.store.builds, environments_.servers_started) == (1, 1)
    assert len(environment_folders(wheels)) == 1


def test_two_jobs_at_once_with_the_same_requirements_build_once(cluster, wheels):
    master = cluster.master()
    workers = [cluster.worker(master, environments=environments(wheels)) for _ in range(2)]
    assert master.wait_for_workers(2, WAIT)
    jobs = [gevent.spawn(run, master, wheels) for _ in range(2)]
    gevent.joinall(jobs, timeout=WAIT * 3, raise_error=True)
    assert [(job.value.stdout, job.value.exit_status) for job in jobs] == [(b"42 True\n", 0)] * 2
    assert sum(worker.runner.environments.store.builds for worker in workers) == 1
    assert sorted(worker.runner.environments.servers_started for worker in workers) == [1, 1]


def test_a_requirement_that_cannot_be_installed_exits_2_with_pips_message(cluster, wheels):
    (wheels / "impossible.txt").write_text("tinypkg==2.0\n")
    master = cluster.master()
    worker = cluster.worker(master, environments=environments(wheels))
    result = run(master, wheels, requirements="impossible.txt")
    assert result.exit_status == 2
    assert b"Could not find a version that satisfies the requirement tinypkg==2.0" in result.stderr
    assert b"sieci-worker: cannot build the job's environment: pip could not install" in result.stderr
    assert result.stdout == b"" and environment_folders(wheels) == []
    again = run(master, wheels, requirements="impossible.txt")  # the same answer, pip not run again
    assert (again.exit_status, again.stderr) == (2, result.stderr)
    assert run(master, wheels).stdout == b"42 True\n"  # and the worker serves on
    assert worker.runner.environments.store.builds == 1
    assert worker.runner.environments.builds_started == 2


def test_a_full_store_removes_the_environment_used_longest_ago(cluster, wheels):
    (wheels / "other.txt").write_text("tinypkg\n")  # other bytes: another environment
    master = cluster.master()
    worker = cluster.worker(master, environments=environments(wheels, max_size=1, servers=1))
    assert run(master, wheels).stdout == b"42 True\n"
    first = environment_folders(wheels)
    assert run(master, wheels, requirements="other.txt").stdout == b"42 True\n"
    second = environment_folders(wheels)
    assert len(first) == len(second) == 1 and first != second  # the first went; the one in use stays
    assert run(master, wheels).stdout == b"42 True\n"  # built again
    assert environment_folders(wheels) == first
    assert worker.runner.environments.store.builds == 3


def test_sieci_client_runs_a_file_in_its_requirements_environment(cluster, wheels, capfd):
    from sieci.client import command

    (wheels / "job.py").write_bytes(IMPORTS)
    master = cluster.master()
    cluster.worker(master, environments=environments(wheels))
    status = command.main(["--requirements", str(wheels / "requirements.txt"), "--with-wheels", str(wheels / "wheels"),
                           client_address(master), str(wheels / "job.py")])
    assert (status, capfd.readouterr().out) == (0, "42 True\n")
    (wheels / "impossible.txt").write_text("tinypkg==2.0\n")
    status = command.main(["--requirements", str(wheels / "impossible.txt"), "--with-wheels",
                           str(wheels / "wheels"), client_address(master), str(wheels / "job.py")])
    assert status == 2
    assert "No matching distribution found for tinypkg==2.0" in capfd.readouterr().err


LISTS_ITS_FOLDER = b"import os, tinypkg\nprint(sorted(os.listdir('.')))\n"


def test_a_job_that_ships_wheels_finds_in_its_folder_only_its_program_and_its_with_files(cluster, wheels, capfd):
    from sieci.client import command

    (wheels / "job.py").write_bytes(LISTS_ITS_FOLDER)
    (wheels / "data.txt").write_text("x\n")
    (wheels / "lib").mkdir()
    (wheels / "lib" / "helper.py").write_text("")
    master = cluster.master()
    worker = cluster.worker(master, environments=environments(wheels))
    shipping = ["--requirements", str(wheels / "requirements.txt"), "--with-wheels", str(wheels / "wheels")]
    status = command.main([*shipping, "--with", str(wheels / "data.txt"), "--with", str(wheels / "lib"),
                           client_address(master), str(wheels / "job.py")])
    assert (status, capfd.readouterr().out) == (0, "['data.txt', 'job.py', 'lib']\n")
    status = command.main([*shipping, client_address(master), str(wheels / "job.py")])
    assert (status, capfd.readouterr().out) == (0, "['job.py']\n")
    assert worker.runner.environments.store.builds == 2  # other files, which the build sees: another environment
    (wheels / ".sieci-wheels").mkdir()
    status = command.main([*shipping, "--with", str(wheels / ".sieci-wheels"), client_address(master),
                           str(wheels / "job.py")])
    assert status != 0
    assert "--with: .sieci-wheels is the wheels' folder in the job's" in capfd.readouterr().err


def test_malformed_requirements_fields_are_refused_with_an_error(cluster, wheels):
    from tests.helpers import RawPeer

    master = cluster.master()
    cluster.worker(master, environments=environments(wheels))
    assert master.wait_for_workers(1, WAIT)
    peer = RawPeer(master.clients_address)
    try:
        peer.send(b"ENDSEQ T v=2 requirements=six%0\nprint(1)\nT\n")
        answer = peer.answer()
        assert answer.startswith(b"ERROR ") and answer.endswith(b"bad --requirements\n")
    finally:
        peer.close()


def test_a_client_without_wheels_or_requirements_is_told_so(wheels):
    from sieci.client.errors import ClientError

    with pytest.raises(ClientError, match="--with-wheels goes with --requirements"):
        Client(["127.0.0.1:1"], wheels=str(wheels / "wheels"))
    with pytest.raises(ClientError, match="no wheel"):
        Client(["127.0.0.1:1"], requirements=str(wheels / "requirements.txt"), wheels=str(wheels))
    with pytest.raises(ClientError, match="cannot read --requirements"):
        Client(["127.0.0.1:1"], requirements=str(wheels / "missing.txt"))



def test_an_executors_functions_and_programs_run_in_its_requirements_environment(cluster, wheels):
    import sieci

    secret = b"the environments test secret, long enough"
    master = cluster.master(secret=secret)
    cluster.worker(master, secret=secret, environments=environments(wheels))

    def value_of_tinypkg(offset):
        import tinypkg

        return tinypkg.VALUE + offset

    with sieci.Executor([client_address(master)], max_workers=2, secret=secret,
                        requirements=str(wheels / "requirements.txt"), wheels=str(wheels / "wheels")) as pool:
        assert list(pool.map(value_of_tinypkg, [0, 1])) == [42, 43]
        assert pool.submit(IMPORTS).result(WAIT).stdout == b"42 True\n"


def test_through_a_classic_master_the_requirements_and_wheels_reach_the_worker(cluster, classic, wheels):
    master = classic.master()
    worker = cluster.worker(master.workers_address, environments=environments(wheels))
    master.wait_for_workers(1)
    for _ in range(2):  # the first goes again with its files inline (a classic master cannot send them)
        result = run(master, wheels)
        assert (result.exit_status, result.stdout) == (0, b"42 True\n")
    assert worker.runner.environments.store.builds == 1


def test_a_sieci_master_passes_the_fields_on_to_a_classic_worker_untouched(cluster, classic, wheels):
    master = cluster.master()
    worker = classic.worker(master)
    assert master.wait_for_workers(1, WAIT)
    run(master, wheels)
    header = worker.uploads[0].split(b"\n", 1)[0].split()
    assert b"requirements=tinypkg==1.0%0A" in header and b"wheels" in header


def test_what_a_dead_worker_left_in_the_store_goes(cluster, wheels):
    store = wheels / "environments"
    store.mkdir(mode=0o755)
    left = [store / (".building-" + "a" * 64 + "-0badf00d"), store / (".removing-" + "b" * 64 + "-0badf00d")]
    for folder in left:
        (folder / "lib").mkdir(parents=True)
    master = cluster.master()
    cluster.worker(master, environments=environments(wheels))
    assert run(master, wheels).stdout == b"42 True\n"
    assert not any(folder.exists() for folder in left) and len(environment_folders(wheels)) == 1


def test_a_job_in_an_environment_reads_its_streamed_stdin(cluster, wheels):
    master = cluster.master()
    cluster.worker(master, environments=environments(wheels))
    code = b"import sys, tinypkg\nprint(tinypkg.VALUE, sys.stdin.read().upper())\n"
    result = run(master, wheels, code, stdin=io.BytesIO(b"built first"))
    assert (result.exit_status, result.stdout) == (0, b"42 BUILT FIRST\n")


def test_a_job_waiting_for_anothers_build_waits_no_longer_than_its_own_time_limit(cluster, wheels):
    import fcntl
    import hashlib

    from sieci.client.program import JobEnvironment, Program
    from sieci.worker.environment_plan import environment_key
    from sieci.worker.limits import Limits

    master = cluster.master()
    worker = cluster.worker(master, limits=Limits(timeout=1), environments=environments(wheels))
    wheel, = (wheels / "wheels").iterdir()
    sent = JobEnvironment(str(wheels / "requirements.txt"), str(wheels / "wheels")).apply(Program(IMPORTS, "job.py"))
    key = environment_key(worker.runner.environments.interpreter(), b"tinypkg==1.0\n",
                          [(f".sieci-wheels/{wheel.name}", hashlib.sha256(wheel.read_bytes()).hexdigest())],
                          sent.files.digest)
    (wheels / "environments").mkdir(mode=0o755)
    with open(wheels / "environments" / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as another worker building that environment holds it
        result = run(master, wheels)
        assert (result.exit_status, result.limit) == (124, "time")
        assert "waiting for its environment's build" in result.message
    assert worker.runner.environments.store.builds == 0
    assert run(master, wheels).stdout == b"42 True\n"  # the lock free, it builds


def test_a_fresh_interpreter_is_the_environments_python_started_as_python3_starts(cluster, wheels):
    master = cluster.master()
    cluster.worker(master, environments=environments(wheels))
    code = IMPORTS + b"print(sys.flags.no_site, sys.executable.startswith(sys.prefix))\n"
    assert run(master, wheels, code, fresh=True).stdout == b"42 True\n0 True\n"
    assert run(master, wheels, code).stdout == b"42 True\n1 True\n"  # forked: from python -S, site's work done


def test_a_batchs_jobs_run_in_its_requirements_environment(cluster, wheels, capfd):
    from sieci.client import command

    (wheels / "job.py").write_bytes(b"import sys, tinypkg\nprint(sys.argv[1], tinypkg.VALUE)\n")
    master = cluster.master()
    worker = cluster.worker(master, environments=environments(wheels))
    status = command.main(["-k", "--requirements", str(wheels / "requirements.txt"), "--with-wheels",
                           str(wheels / "wheels"), client_address(master), str(wheels / "job.py"), ":::", "a", "b"])
    assert (status, capfd.readouterr().out) == (0, "a 42\nb 42\n")
    assert worker.runner.environments.store.builds == 1


def test_the_store_removes_the_environment_whose_last_job_is_oldest(cluster, wheels):
    from sieci.worker.environments import tree_size

    for name in ("b", "c"):
        (wheels / f"{name}.txt").write_text(f"tinypkg  # {name}\n")
    master = cluster.master()
    worker = cluster.worker(master, environments=environments(wheels, servers=1))
    assert run(master, wheels).stdout == b"42 True\n"
    a, = environment_folders(wheels)
    store = worker.runner.environments.store
    store.max_size = int(tree_size(str(wheels / "environments" / a)) * 2.5)  # room for two, not three
    assert run(master, wheels, requirements="b.txt").stdout == b"42 True\n"
    b, = set(environment_folders(wheels)) - {a}
    assert run(master, wheels).stdout == b"42 True\n"  # a used again, after b
    assert run(master, wheels, requirements="c.txt").stdout == b"42 True\n"
    assert b not in environment_folders(wheels) and a in environment_folders(wheels)
    assert store.builds == 3


def test_an_environment_whose_fork_server_cannot_start_fails_its_job_not_the_worker(cluster, wheels):
    master = cluster.master()
    cluster.worker(master, environments=environments(wheels))
    assert run(master, wheels).exit_status == 0
    key, = environment_folders(wheels)
    master.stop(grace=1)
    (wheels / "environments" / key / "pyvenv.cfg").write_text("home = /nonexistent\n")  # broken behind its back
    for interpreter in (wheels / "environments" / key / "bin").iterdir():
        interpreter.unlink()
    master = cluster.master()
    cluster.worker(master, environments=environments(wheels))
    result = run(master, wheels)
    assert result.exit_status == 2
    assert b"sieci-worker: cannot start the job's environment: the fork server cannot start" in result.stderr
    assert Client([client_address(master)]).run(b"print('still serving')").stdout == b"still serving\n"


def test_a_job_whose_requirements_name_its_with_files_gets_an_environment_of_those_files(cluster, tmp_path, capfd):
    from sieci.client import command

    # The same requirements text names a wheel each job sends with --with: another job's wheel, of another
    # code, must not be what this job imports.
    master = cluster.master()
    cluster.worker(master, environments=environments(tmp_path))
    outputs = []
    for value in ("666", "42"):
        folder = tmp_path / f"sender-{value}"
        folder.mkdir()
        wheel = write_wheel(str(folder), source=f"VALUE = {value}\n")
        (folder / "requirements.txt").write_text(f"./{os.path.basename(wheel)}\n")
        (folder / "job.py").write_bytes(IMPORTS)
        status = command.main(["--requirements", str(folder / "requirements.txt"), "--with", wheel,
                               client_address(master), str(folder / "job.py")])
        outputs.append((status, capfd.readouterr().out))
    assert outputs == [(0, "666 True\n"), (0, "42 True\n")]
