"""sieci-cluster as a process: the client's options before PROG, and serving other clients (--port, --metrics)."""

import os
import re
import socket
import urllib.request

import pytest

from sieci import defaults

from tests.helpers import REPO, WAIT
from tests.system.test_processes import cluster_command

ECHO = b"import os, sys\nprint(sys.argv[1:], os.environ.get('GREETING'))\n"
SERVING = r"run a job with: sieci-client --secret-file (?P<secret>\S+) (?P<address>\S+) FILE"


def run_cluster(procs, *argv):
    return procs.finish(procs.start("sieci-cluster", [*cluster_command(), "--workers", "2", *argv],
                                    capture_stdout=True))


def test_the_readmes_quick_start_still_runs():
    import subprocess

    done = subprocess.run([*cluster_command(), "--workers", "1", "examples/hello.py"], cwd=REPO, capture_output=True,
                          timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"hello from ")


def test_with_a_folder_the_job_imports_from(procs, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("def answer():\n    return 42\n")
    job = procs.code_file(b"from lib import answer\nprint(answer())\n")
    result = run_cluster(procs, "--with", str(tmp_path / "lib"), job)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"42\n", b""), procs.logs()


def test_return_env_and_the_jobs_own_options_after_prog(procs, tmp_path):
    job = procs.code_file(ECHO + b"open('out.txt', 'w').write('made there')\n")
    results = tmp_path / "results"
    result = run_cluster(procs, "-e", "GREETING=hi", "--return", "out.txt", "--results", str(results), job,
                         "--return", "x", "-e", "Y")
    assert (result.returncode, result.stdout) == (0, b"['--return', 'x', '-e', 'Y'] hi\n"), procs.logs()
    assert (results / "out.txt").read_text() == "made there"


def test_timeout_is_the_jobs_time_limit(procs):
    job = procs.code_file(b"import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    result = run_cluster(procs, "--timeout", "1", job)
    assert (result.returncode, result.stdout) == (defaults.EXIT_TIME_LIMIT, b"started\n"), procs.logs()
    assert result.stderr == b"sieci-cluster: the job ran past its time limit of 1 s\n"


def test_a_batch(procs):
    job = procs.code_file(ECHO)
    result = run_cluster(procs, "--jobs", "2", job, "{}", ":::", "a", "b", "c")
    assert (result.returncode, result.stdout) == (0, b"['a'] None\n['b'] None\n['c'] None\n"), procs.logs()


@pytest.mark.parametrize("option", ["--detach", "--secret-file=/x", "--list", "--tls"])
def test_options_that_cannot_work_on_the_clusters_own_master_are_refused(procs, option):
    result = run_cluster(procs, option, procs.code_file(ECHO))
    assert (result.returncode, result.stdout) == (defaults.EXIT_USAGE, b"")
    assert re.search(rb"\nsieci-cluster: error: --[a-z-]+ is not for sieci-cluster: [^\n]+\n\Z", result.stderr)


def test_port_and_metrics_serve_other_clients_and_a_scraper(procs):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    cluster = procs.start("sieci-cluster", [*cluster_command(), "--workers", "1", "--port", str(port),
                                            "--metrics", "0"], capture_stdout=True)
    said = read_lines_until(cluster, SERVING)
    assert said["address"] == f"127.0.0.1:{port}"
    client = procs.run_client("--secret-file", said["secret"], str(port), procs.code_file(ECHO), "second")
    assert (client.returncode, client.stdout) == (0, b"['second'] None\n"), procs.logs()
    dashboard = re.search(rb"dashboard on (http://\S+/)", said.string.encode()).group(1).decode()
    with urllib.request.urlopen(dashboard + "metrics", timeout=WAIT) as response:
        metrics = response.read().decode()
    assert re.search(r"^sieci_workers\{state=\"\w+\"\} 1\.0$", metrics, re.M), metrics
    assert re.search(r"^sieci_jobs_total\{outcome=\"\w+\"\} 1\.0$", metrics, re.M), metrics
    assert cluster.terminate_and_wait() == 0, procs.logs()
    assert not os.path.exists(said["secret"])


def test_port_goes_without_prog(procs):
    result = run_cluster(procs, "--port", "1", procs.code_file(ECHO))
    assert result.returncode == defaults.EXIT_USAGE
    assert result.stderr.endswith(b"sieci-cluster: error: --port serves other clients, which a cluster running PROG "
                                  b"does not: give it without PROG\n")


def read_lines_until(proc, pattern):
    """The match of ``pattern`` in what ``proc`` printed on stdout, read line by line (bounded by WAIT)."""
    import gevent

    seen = ""
    with gevent.Timeout(WAIT, AssertionError(f"{pattern!r} never printed")):
        while not (found := re.search(pattern, seen)):
            line = proc.popen.stdout.readline()
            assert line, f"it ended first: {seen!r}"
            seen += line.decode()
    return found



def test_metrics_while_prog_runs(procs):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    job = procs.code_file(b"import sys\nprint('running', flush=True)\nsys.stdin.readline()\nprint('done')\n")
    cluster = procs.start("sieci-cluster", [*cluster_command(), "--workers", "1", "--metrics", str(port), job],
                          stdin=b"", capture_stdout=True)
    read_lines_until(cluster, "running\n")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as response:
        metrics = response.read().decode()
    assert re.search(r'^sieci_workers\{state="(running|feeding|fed)"\} 1\.0$', metrics, re.M), metrics
    cluster.popen.stdin.write(b"go on\n")
    cluster.popen.stdin.close()
    assert (cluster.popen.wait(WAIT), cluster.popen.stdout.read()) == (0, b"done\n"), procs.logs()
