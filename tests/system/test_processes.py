"""The real scripts as real processes on 127.0.0.1, speaking real TCP (see tests/helpers/processes.py)."""

import os
import random
import re
import signal
import socket
import time

import gevent
import pytest

from tests.helpers import PYTHON, WAIT
from tests.helpers.processes import (CLIENT, DEADLINE, FAST_WORKER, MASTER, STOP_TIMEOUT, WORKER, clean_env)

JOB = b'import sys\nprint("hello from the cluster")\nprint("oops", file=sys.stderr)\nsys.exit(3)\n'


def assert_hello(result, procs):
    assert (result.returncode, result.stdout, result.stderr) == (3, b"hello from the cluster\n", b"oops\n"), \
        procs.logs()


def assert_one_error_line(result, prefix):
    assert result.returncode == 255, result
    assert result.stdout == b"", result
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and result.stderr.endswith(b"\n"), result
    assert lines[0].startswith(prefix), result
    assert b"Traceback" not in result.stderr, result


# --- a job end to end -------------------------------------------------------------


def test_master_two_workers_and_a_client_run_a_job(procs):
    procs.master()
    procs.worker()
    procs.worker()
    result = procs.run_job(JOB)
    assert_hello(result, procs)
    # a second job on the same processes, with a different status
    result = procs.run_job(b"print('again')\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"again\n", b""), procs.logs()


def test_twelve_clients_at_once_all_get_their_own_answer(procs):
    procs.master()
    procs.worker()
    procs.worker()
    clients = [
        procs.client(f"127.0.0.1:{procs.clients_port}",
                     procs.code_file(b"import time\ntime.sleep(0.05)\nprint('job %d:', %d * %d)\n" % (i, i, i)))
        for i in range(12)
    ]
    results = [procs.finish(client) for client in clients]
    assert [(r.returncode, r.stdout, r.stderr) for r in results] == \
        [(0, b"job %d: %d\n" % (i, i * i), b"") for i in range(12)], procs.logs()


@pytest.mark.parametrize("master_options, worker_options", [(["--classic-dispatch"], []), ([], ["--credit", "4"])])
def test_twelve_jobs_through_either_dispatch(procs, master_options, worker_options):
    procs.master(extra=master_options)
    procs.worker(args=worker_options)
    procs.worker(args=worker_options)
    clients = [procs.client(f"127.0.0.1:{procs.clients_port}", procs.code_file(b"print(%d)\n" % i))
               for i in range(12)]
    results = [procs.finish(client) for client in clients]
    assert [(r.returncode, r.stdout) for r in results] == [(0, b"%d\n" % i) for i in range(12)], procs.logs()


def test_code_from_stdin(procs):
    procs.master()
    procs.worker()
    code = b"import sys\nprint('from stdin as', sys.argv[0], __file__)\nraise SystemExit(7)\n"
    result = procs.run_client(f"127.0.0.1:{procs.clients_port}", "-", stdin=code)
    assert (result.returncode, result.stdout, result.stderr) == (7, b"from stdin as - <stdin>\n", b""), procs.logs()


BIG_OUTPUT_JOB = b"""import random, sys
rng = random.Random(7)
for i in range(6):
    sys.stdout.buffer.write(rng.randbytes(1 << 20))
    sys.stdout.flush()
    print("after MiB", i, file=sys.stderr, flush=True)
sys.exit(5)
"""


def big_output_expected():
    rng = random.Random(7)
    stdout = b"".join(rng.randbytes(1 << 20) for _ in range(6))
    return stdout, b"".join(b"after MiB %d\n" % i for i in range(6))


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_big_output_reaches_the_clients_stdout_exactly(procs, tmp_path, into):
    """Into a pipe the client splices it from the socket; into a file it writes it."""
    procs.master()
    procs.worker()
    argv = [f"127.0.0.1:{procs.clients_port}", procs.code_file(BIG_OUTPUT_JOB)]
    if into == "pipe":
        result = procs.run_client(*argv)
    else:
        with open(tmp_path / "stdout", "wb") as stdout:
            client = procs.start("client", [PYTHON, CLIENT, *argv], stdout=stdout)
        result = procs.finish(client)
        result.stdout = (tmp_path / "stdout").read_bytes()
    assert (result.returncode, result.stdout, result.stderr) == (5, *big_output_expected()), procs.logs()


def test_the_timeout_holds_while_output_is_spliced(procs):
    procs.master()
    procs.worker()
    code = b"import sys, time\nsys.stdout.buffer.write(b'x' * (1 << 20))\nsys.stdout.flush()\ntime.sleep(60)\n"
    result = procs.run_client("--timeout", "3", f"127.0.0.1:{procs.clients_port}", procs.code_file(code))
    assert (result.returncode, result.stderr) == (124, b"sieci-client: error: no result within the --timeout of 3 s\n")
    assert result.stdout == b"x" * (1 << 20), procs.logs()


@pytest.mark.parametrize("form", ["{port}", ":{port}"])
def test_the_client_takes_a_bare_port_or_colon_port(procs, form):
    procs.master()
    procs.worker()
    result = procs.run_job(JOB, address=form.format(port=procs.clients_port))
    assert_hello(result, procs)


def cluster_command():
    script = os.path.join(os.path.dirname(PYTHON), "sieci-cluster")
    if os.path.exists(script):
        return [script]
    return [PYTHON, "-c", "import sys; from sieci.main import cluster_main; sys.exit(cluster_main())"]


def run_sieci_cluster(procs, code, *args):
    proc = procs.start("sieci-cluster", [*cluster_command(), "--workers", "2", procs.code_file(code), *args],
                       capture_stdout=True)
    return procs.finish(proc)


def test_sieci_cluster_passes_the_programs_arguments(procs):
    result = run_sieci_cluster(procs, b"import sys\nprint(sys.argv[1:])\n", "a b", "--workers", "9")
    assert (result.returncode, result.stdout) == (0, b"['a b', '--workers', '9']\n"), procs.logs()


def test_sieci_cluster_runs_a_file_and_exits_with_its_status(procs):
    result = run_sieci_cluster(procs, JOB)
    assert (result.returncode, result.stdout) == (3, b"hello from the cluster\n"), procs.logs()
    assert result.stderr.startswith(b"oops\n") and b"Traceback" not in result.stderr, procs.logs()
    result = run_sieci_cluster(procs, b"print(6 * 7)\n")
    assert (result.returncode, result.stdout) == (0, b"42\n"), procs.logs()


def test_sieci_cluster_stderr_is_only_the_jobs(procs):
    result = run_sieci_cluster(procs, JOB)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"hello from the cluster\n", b"oops\n")


# --- errors -----------------------------------------------------------------------


def test_an_unreachable_master_is_one_error_line_and_255(procs, reserved_port):
    result = procs.run_client(reserved_port().address, procs.code_file(b"print(1)\n"))
    assert_one_error_line(result, "sieci-client: error: cannot reach master")


def test_a_missing_file_is_one_error_line_and_255(procs):
    procs.master()
    result = procs.run_client(f"127.0.0.1:{procs.clients_port}", str(procs.tmp_path / "no-such-file.py"))
    assert_one_error_line(result, "sieci-client: error: cannot read")


# --- signals ----------------------------------------------------------------------


def test_master_and_worker_exit_0_on_sigterm(procs):
    master = procs.master()
    worker = procs.worker()
    assert_hello(procs.run_job(JOB), procs)  # both are really up and linked
    started = time.monotonic()
    assert worker.terminate_and_wait() == 0, procs.logs()
    assert master.terminate_and_wait() == 0, procs.logs()
    assert time.monotonic() - started < 2 * STOP_TIMEOUT


def test_an_idle_master_exits_0_on_sigterm_at_once(procs):
    master = procs.master()
    started = time.monotonic()
    assert master.terminate_and_wait(timeout=3) == 0, procs.logs()
    assert time.monotonic() - started < 3


def test_a_running_job_completes_when_the_master_gets_sigterm(procs):
    # The grace period is long and the job ends only when the test says so, over
    # loopback: nothing here depends on how fast the machine is.
    master = procs.master(extra=["--grace", "30"])
    procs.worker(args=["--job-network", "on"])  # the job dials the test
    with socket.create_server(("127.0.0.1", 0)) as go:
        code = (b"import socket, sys\nprint('started', flush=True)\n"
                b"told = socket.create_connection(('127.0.0.1', %d)).recv(2)\n"
                b"print('finished' if told == b'go' else 'never told to finish')\nsys.exit(5)\n"
                % go.getsockname()[1])
        client = procs.client(f"127.0.0.1:{procs.clients_port}", procs.code_file(code))
        with gevent.Timeout(DEADLINE, AssertionError("the job never started\n" + procs.logs())):
            first = client.popen.stdout.readline()
            job, _ = go.accept()
        assert first == b"started\n", procs.logs()
        master.popen.send_signal(signal.SIGTERM)
        procs.wait_for_log(master, "stopping")
        # while it stops, the master takes no new job, however the refusal comes
        late = procs.run_job(b"print('too late')\n")
        assert late.returncode == 255 and late.stdout == b"", (late, procs.logs())
        assert client.popen.poll() is None and master.popen.poll() is None, procs.logs()
        job.sendall(b"go")
        job.close()
    result = procs.finish(client)
    assert (result.returncode, first + result.stdout, result.stderr) == (5, b"started\nfinished\n", b""), \
        procs.logs()
    assert master.popen.wait(timeout=STOP_TIMEOUT) == 0, procs.logs()


def test_a_second_sigterm_stops_the_master_at_once_with_1(procs):
    master = procs.master(extra=["--grace", "30"])
    procs.worker()
    client_address = f"127.0.0.1:{procs.clients_port}"
    code = b"import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    client = procs.client(client_address, procs.code_file(code))
    with gevent.Timeout(DEADLINE, AssertionError("the job never started\n" + procs.logs())):
        assert client.popen.stdout.readline() == b"started\n", procs.logs()
    master.popen.send_signal(signal.SIGTERM)
    procs.wait_for_log(master, "stopping")
    started = time.monotonic()
    master.popen.send_signal(signal.SIGTERM)
    assert master.popen.wait(timeout=STOP_TIMEOUT) == 1, procs.logs()
    assert time.monotonic() - started < 3
    result = procs.finish(client)
    assert result.returncode == 255 and result.stdout == b"", (result, procs.logs())
    assert result.stderr.startswith(b"sieci-client: error: "), result


def test_a_clean_sigterm_stop_logs_no_warning(procs):
    master = procs.master()
    worker = procs.worker()
    assert_hello(procs.run_job(JOB), procs)
    assert worker.terminate_and_wait() == 0, procs.logs()
    assert master.terminate_and_wait() == 0, procs.logs()
    assert "WARNING" not in worker.stderr(), procs.logs()
    assert "WARNING" not in master.stderr(), procs.logs()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_master_logs_each_job_as_lines_of_the_chosen_format(procs, log_format):
    import json

    master = procs.master(extra=["--log-format", log_format])
    procs.worker()
    assert_hello(procs.run_job(JOB), procs)
    assert master.terminate_and_wait() == 0, procs.logs()
    lines = [line for line in master.stderr().splitlines()
             if re.search(r' job [0-9a-f]{16} |"job": "[0-9a-f]{16}"', line)]
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        job_id = entries[0]["job"]
        assert [(entry["level"], entry["logger"], entry["job"], entry["event"]) for entry in entries] == [
            ("info", "sieci.master", job_id, event) for event in ("queued", "dispatched", "done")], procs.logs()
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"]) for entry in entries)
        lines = [entry["message"] for entry in entries]
    else:
        stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO sieci\.master: "
        assert all(re.match(stamp, line) for line in lines), procs.logs()
        lines = [re.sub(stamp, "", line) for line in lines]
    assert [re.sub(r"[\d.]+", "N", re.sub(r"job [0-9a-f]{16}", "job ID", line)) for line in lines] == [
        "job ID queued from client N:N (N bytes, N in queue)",
        "job ID dispatched to worker N:N as N:N#N after N s in the queue",
        "job ID done after N s (N s on a worker, N bytes of results)",
    ], procs.logs()


# --- configuration ----------------------------------------------------------------


def test_a_master_configured_by_file_alone(procs):
    config = procs.tmp_path / "master.conf"
    config.write_text("# test configuration\nworkers-addr = 127.0.0.1:0\nclients-addr = 127.0.0.1:0\ngrace = 3\n")
    procs.master(args=["-c", str(config)])
    procs.worker()
    assert_hello(procs.run_job(JOB), procs)


def test_a_worker_finds_its_master_in_sieci_worker_masters(procs):
    procs.master()
    procs.start("worker", [PYTHON, WORKER, *FAST_WORKER],
                env=clean_env(SIECI_WORKER_MASTERS=f"127.0.0.1:{procs.workers_port}"))
    assert_hello(procs.run_job(JOB), procs)


@pytest.mark.parametrize("script, names", [
    (MASTER, ["SIECI_GRACE", "SIECI_WORKERS_ADDR", "SIECI_CLIENTS_ADDR", "SIECI_LOG_LEVEL", "SIECI_MAX_UPLOAD"]),
    (WORKER, ["SIECI_GRACE", "SIECI_WORKER_MASTERS", "SIECI_JOB_TIMEOUT", "SIECI_RECONNECT_MAX", "SIECI_PYTHON"]),
])
def test_help_exits_0_and_names_the_environment_variables(procs, script, names):
    proc = procs.start(os.path.basename(script), [PYTHON, script, "--help"], capture_stdout=True,
                       env=clean_env(COLUMNS="200"))
    result = procs.finish(proc)
    assert result.returncode == 0, result
    assert result.stderr == b"", result
    for name in names:
        assert name.encode() in result.stdout, (name, result.stdout.decode())


# --- reconnection -----------------------------------------------------------------


def test_a_worker_started_before_its_master_connects_once_it_is_up(procs, reserved_port):
    workers_port = reserved_port()
    worker = procs.worker(workers_port.address)
    procs.wait_for_log(worker, "cannot reach master")  # it really did try, and failed
    procs.master(workers_port.number)
    assert_hello(procs.run_job(JOB), procs)


def test_a_worker_survives_its_master_restarting(procs, reserved_port):
    first = procs.master(reserved_port().number, reserved_port().number)
    worker = procs.worker()
    assert_hello(procs.run_job(JOB), procs)
    assert first.terminate_and_wait() == 0, procs.logs()
    procs.master(procs.workers_port, procs.clients_port)
    result = procs.run_job(b"print('after the restart')\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"after the restart\n", b""), procs.logs()
    assert not worker.exited(), procs.logs()


def test_200_unverified_16_mib_uploads_at_once_leave_the_master_small_and_others_served(procs, tmp_path):
    """Strangers without the secret forge headers that pass every check but the MAC,
    and stream 16 MiB each; an honest client from another address is served meanwhile."""
    from sieci.wire import auth, protocol

    secret = tmp_path / "secret"
    secret.write_bytes(b"a secret for this test only, 2026\n")
    secret.chmod(0o600)
    master = procs.master(extra=["--secret-file", str(secret)])
    procs.worker(args=["--secret-file", str(secret)])
    procs.wait_for_log(master, "joined")
    address = ("127.0.0.1", procs.clients_port)
    header = b"ENDSEQ T v=2 %s auth=%s.%d.%s\n"
    chunk = b"x" * 65535 + b"\n"

    def stranger():
        try:
            with socket.create_connection(address, timeout=WAIT) as sock:
                sock.sendall(header % (auth.audience(address), os.urandom(16).hex().encode(), time.time(), b"0" * 64))
                for _ in range(256):  # 16 MiB, and at most WAIT seconds a send
                    sock.sendall(chunk)
        except OSError:
            pass  # refused, and closed

    strangers = [gevent.spawn(stranger) for _ in range(200)]
    try:
        code, to = b"print('served')\n", auth.audience(address)
        answer = b""
        with socket.create_connection(address, timeout=WAIT, source_address=("127.0.0.2", 0)) as honest:
            honest.sendall(protocol.encode_block(code, [protocol.EXTENDED, to, auth.sign_upload(
                secret.read_bytes().strip(), [protocol.EXTENDED, to], code)]))
            while b"x exit 0\n" not in answer and len(answer) < 2000:
                data = honest.recv(1000)
                if not data:
                    break
                answer += data
        gevent.joinall(strangers, timeout=WAIT)
    finally:
        gevent.killall(strangers)
    assert re.match(rb"(QUEUED job=\w+\n)?RECEIVED job=[0-9a-f]{16}\n", answer), answer
    assert re.search(rb"served\ns [0-9a-f]{64}\nx exit 0\n", answer), answer  # sealed by the worker
    with open(f"/proc/{master.pid}/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    assert peak < 150 << 10, f"the master's peak RSS was {peak >> 10} MiB"
    assert "too many unverified uploads at once" in master.stderr()


def test_a_stopped_worker_loses_its_job_after_a_bounded_silence(procs):
    """SIGSTOP: its kernel still answers keepalives, but its heartbeats stop."""
    procs.master()
    worker = procs.worker(args=["--keepalive", "3"])  # a heartbeat every second: lost after 3 s of silence
    procs.wait_for_log(worker, "linked")
    code = procs.code_file(b"import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    client = procs.client(f"127.0.0.1:{procs.clients_port}", code)
    try:
        assert client.popen.stdout.readline() == b"started\n"
        worker.popen.send_signal(signal.SIGSTOP)
        result = procs.finish(client)
    finally:
        worker.popen.send_signal(signal.SIGCONT)
    assert result.returncode == 255 and b"worker lost" in result.stderr, result.stderr
    assert "said nothing for 3 s while its job ran (stopped?)" in procs.logs()


def test_a_worker_stopped_while_its_fork_server_starts_stops_cleanly(procs, tmp_path):
    """SIGTERM while the fork server starts (here: one that never answers) is a stop, exit 0, not
    'error: the fork server cannot start' (as a chaos run's worker said, stopped just after its start)."""
    started = tmp_path / "fork-server-started"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ncase "$*" in *zygote*) : > {started}; exec sleep 60;; esac\n'
                      f'exec {PYTHON} "$@"\n')
    python.chmod(0o755)
    worker = procs.worker("127.0.0.1:1", args=["--python", str(python)])
    deadline = time.monotonic() + DEADLINE
    while not started.exists():
        assert time.monotonic() < deadline and not worker.exited(), procs.logs()
        gevent.sleep(0.02)
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.popen.wait(timeout=STOP_TIMEOUT) == 0, procs.logs()
    assert "error" not in worker.stderr(), procs.logs()
