"""Masters, workers and clients in one process, over real loopback sockets."""

import re

import gevent
import pytest

from sieci.client import client
from sieci.worker.limits import Limits

from tests.helpers import WAIT, Captured, JobEvents, Stdout, client_address


def run(master, code, **options):
    output = Captured()
    status = client.run(client_address(master), code, output=output, **options)
    return status, output


def test_a_job_runs_and_its_output_comes_back(cluster):
    master = cluster.master()
    cluster.worker(master)
    status, output = run(master, b'import sys\nprint("hello")\nprint("oops", file=sys.stderr)\nsys.exit(3)\n')
    assert (status, output.stdout, output.stderr) == (3, b"hello\n", b"oops\n")


def test_more_jobs_than_workers_all_get_their_own_answer(cluster):
    master = cluster.master()
    cluster.worker(master)
    cluster.worker(master)
    jobs = [gevent.spawn(run, master, b"import time\ntime.sleep(0.05)\nprint(%d * %d)\n" % (i, i)) for i in range(12)]
    gevent.joinall(jobs, timeout=WAIT, raise_error=True)
    assert [job.value for job in jobs] == [(0, Stdout(b"%d\n" % (i * i))) for i in range(12)]


def test_a_job_waits_in_the_queue_until_a_worker_joins(cluster):
    master = cluster.master()
    events = JobEvents(master)
    job = gevent.spawn(run, master, b'print("late")\n')
    events.wait_for("queued")
    assert not job.ready()
    cluster.worker(master)
    assert job.get(timeout=WAIT)[1].stdout == b"late\n"


def test_a_worker_serves_two_masters_one_job_at_a_time(cluster):
    first, second = cluster.master(), cluster.master()
    cluster.worker(first, second)
    # Each job prints when it ran, on the clock all processes share.
    code = b"import time\nstarted = time.monotonic()\ntime.sleep(0.2)\nprint(started, time.monotonic())\n"
    jobs = [gevent.spawn(run, master, code) for master in (first, second)]
    gevent.joinall(jobs, timeout=WAIT, raise_error=True)
    assert [job.value[0] for job in jobs] == [0, 0]
    (_, earlier_end), (later_start, _) = sorted(tuple(map(float, job.value[1].stdout.split())) for job in jobs)
    assert earlier_end <= later_start, "the worker ran both masters' jobs at once"


def test_the_time_limit_ends_a_job_with_124(cluster):
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=0.5))
    result = client.Client(client_address(master)).run(b"import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    assert (result.exit_status, result.limit, result.stdout) == (124, "time", b"started\n")
    assert "time limit of 0.5 s" in result.message


def test_an_unreachable_master_is_an_error(cluster):
    master = cluster.master()
    address = client_address(master)
    master.stop(grace=0.1)
    with pytest.raises(client.ClientError, match="cannot reach master"):
        client.run(address, b"print(1)\n", output=Captured())


ODD_OUTPUTS = {
    "no final newline": b"sys.stdout.buffer.write(b'no newline')",
    "bytes that are not UTF-8": b"sys.stdout.buffer.write(b'\\xff\\xfe\\x80 latin-1: \\xe9\\n')",
    "carriage returns and NUL": b"sys.stdout.buffer.write(b'a\\r\\nb\\rc\\x00d\\n\\x00')",
    "blank and space-only lines": b"sys.stdout.buffer.write(b'\\n\\n   \\n\\t\\nx\\n\\n')",
    "a 3 MB line": b"sys.stdout.buffer.write(b'y' * 3_000_000)",
    "a line like a block header": b"sys.stdout.buffer.write(b'ENDSEQ dupa\\ndupa\\nOFFILESEQYOULLNEVERUSEITINYOURCODE\\n')",
    "nothing at all": b"pass",
}


@pytest.mark.parametrize("statement", ODD_OUTPUTS.values(), ids=ODD_OUTPUTS.keys())
def test_output_comes_back_byte_for_byte(cluster, statement):
    master = cluster.master()
    cluster.worker(master)
    code = b"import sys\n" + statement + b"\nsys.stdout.flush()\n"
    expected = _run_locally(code)
    status, output = run(master, code)
    assert status == 0
    assert output.stdout == expected.stdout
    assert output.stderr == expected.stderr


def test_stderr_and_exit_status_are_those_of_a_local_run(cluster):
    master = cluster.master()
    cluster.worker(master)
    code = b"import sys\nsys.stderr.write('warn\\n')\nprint('out')\nraise SystemExit(42)\n"
    status, output = run(master, code)
    assert (status, output.stdout, output.stderr) == (42, b"out\n", b"warn\n")


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(cluster):
    master = cluster.master()
    cluster.worker(master)
    status, output = run(master, b"def f():\n    raise ValueError('bad')\nf()\n", filename="mine.py")
    assert status == 1
    assert b'/mine.py", line 2, in f' in output.stderr
    assert output.stderr.endswith(b"ValueError: bad\n")


def test_a_job_killed_by_a_signal_exits_128_plus_its_number(cluster):
    master = cluster.master()
    cluster.worker(master)
    status, _ = run(master, b"import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    assert status == 128 + 15


def test_the_output_limit_cuts_the_output_and_says_so(cluster):
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=30, max_output=100_000))
    result = client.Client(client_address(master)).run(b"import sys\nwhile True:\n    sys.stdout.write('z' * 4096)\n")
    assert (result.exit_status, result.limit, result.stdout) == (137, "output", b"z" * 100_000)
    assert "output limit (100000 bytes)" in result.message


def test_output_arrives_while_the_job_runs(cluster, tmp_path):
    """The job waits for a file the test creates only once the first line has arrived."""
    master = cluster.master()
    cluster.worker(master)
    go = tmp_path / "go"
    code = (b"print('first', flush=True)\n" + waiting_for(go)
            + b"print('second' if os.path.exists(%r) else 'not live')\n" % str(go).encode())

    class SignalOnFirstLine(Captured):
        def write(self, stream, data):
            super().write(stream, data)
            if self.stdout.startswith(b"first\n"):
                go.touch()

    output = SignalOnFirstLine()
    status = client.run(client_address(master), code, output=output)
    assert (status, output.stdout) == (0, b"first\nsecond\n")


def test_stdout_and_stderr_keep_their_order(cluster, tmp_path):
    """Each write waits for the test to acknowledge the one before, so the order is the job's."""
    master = cluster.master()
    cluster.worker(master)
    code = (b"import os, sys, time\n"
            b"def wait_for(n):\n"
            b"    deadline = time.monotonic() + 20\n"
            b"    while not os.path.exists(os.path.join('%s', str(n))) and time.monotonic() < deadline:\n"
            b"        time.sleep(0.005)\n"
            b"for i in range(6):\n"
            b"    stream = sys.stdout if i %% 2 == 0 else sys.stderr\n"
            b"    print(i, file=stream, flush=True)\n"
            b"    wait_for(i)\n") % str(tmp_path).encode()

    class Acknowledging(Captured):
        def write(self, stream, data):
            super().write(stream, data)
            for line in data.split():
                (tmp_path / line.decode()).touch()

    output = Acknowledging()
    assert client.run(client_address(master), code, output=output) == 0
    assert output.events == [("stdout" if i % 2 == 0 else "stderr", b"%d\n" % i) for i in range(6)]


def test_output_before_the_pipes_close_arrives_while_the_job_still_runs(cluster, tmp_path):
    """A job that writes, closes its stdout and stderr, then waits: its output must not wait with it."""
    master = cluster.master()
    cluster.worker(master)
    go = tmp_path / "go"
    code = (b"import os\nos.write(1, b'early\\n')\nos.close(1)\nos.close(2)\n" + waiting_for(go)
            + b"raise SystemExit(0 if os.path.exists(%r) else 3)\n" % str(go).encode())

    class SignalOnOutput(Captured):
        def write(self, stream, data):
            super().write(stream, data)
            go.touch()

    output = SignalOnOutput()
    assert client.run(client_address(master), code, output=output) == 0
    assert output.stdout == b"early\n"


def _run_locally(code):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=WAIT)


def waiting_for(path):
    """Job code that waits, at most 20 s, until the test creates ``path``."""
    return (b"import os, time\ndeadline = time.monotonic() + 20\n"
            b"while not os.path.exists(%r) and time.monotonic() < deadline:\n    time.sleep(0.01)\n") % str(path).encode()


def test_the_workers_log_says_how_a_job_ended_in_words(cluster, log_lines):
    lines = log_lines("sieci.worker")
    master = cluster.master()
    cluster.worker(master)
    assert run(master, b"raise SystemExit(3)\n")[0] == 3
    (line,) = lines.wait_for(" after ")
    assert re.match(r"job [0-9a-f]{16} for 127\.0\.0\.1:\d+ exited 3 after ", line), line  # the master's id


ARGV_AND_ENV = b"import os, sys\nprint(sys.argv)\nprint(os.environ.get('GREETING'))\n"


@pytest.mark.parametrize("fresh_interpreter", [False, True], ids=["forked", "fresh interpreter"])
def test_a_jobs_arguments_and_environment_reach_it_as_python3_gives_them(cluster, fresh_interpreter):
    master = cluster.master()
    cluster.worker(master, fresh_interpreter=fresh_interpreter)
    status, output = run(master, ARGV_AND_ENV, filename="show.py", args=["a b", "zażółć", "", "--flag=1"],
                         env={"GREETING": "hi there"})
    assert (status, output.stdout) == (0, "['show.py', 'a b', 'zażółć', '', '--flag=1']\nhi there\n".encode())


def test_a_job_with_a_broken_environment_field_is_refused_by_its_worker(cluster, peers):
    master = cluster.master()
    cluster.worker(master)
    client = peers(master.clients_address)
    client.send(b"ENDSEQ T v=2 env=A%3D%00 \nprint(1)\nT\n")
    assert client.answer() == b"ERROR the worker refused the job: bad arguments or environment\n"
    assert run(master, b"print('the worker goes on')\n") == (0, Stdout(b"the worker goes on\n"))


def test_arguments_too_long_for_one_header_are_refused_before_anything_is_sent(cluster):
    master = cluster.master()
    with pytest.raises(client.ClientError, match="the arguments and environment are too long"):
        run(master, b"pass\n", args=["é" * 20_000])


def zipapp(tmp_path):
    """A zipapp with a shebang line, as `python3 -m zipapp -p` makes it: a __main__ that imports a module beside it."""
    import zipapp as make

    source = tmp_path / "app"
    source.mkdir()
    main = "import sys, helper\nprint(sys.argv, helper.VALUE, sys.path[0] == __file__[:-12])\nraise SystemExit(4)\n"
    (source / "__main__.py").write_text(main)
    (source / "helper.py").write_text("VALUE = 42\n")
    target = tmp_path / "app.pyz"
    make.create_archive(source, target, interpreter="/usr/bin/env python3")
    return target.read_bytes()


@pytest.mark.parametrize("fresh_interpreter", [False, True], ids=["forked", "fresh interpreter"])
def test_a_zipapp_runs_as_python3_runs_it(cluster, tmp_path, fresh_interpreter):
    master = cluster.master()
    cluster.worker(master, fresh_interpreter=fresh_interpreter)
    status, output = run(master, zipapp(tmp_path), filename="app.pyz", args=["x"])
    assert (status, output.stdout, output.stderr) == (4, b"['app.pyz', 'x'] 42 True\n", b"")
