"""executor.JobRun: a job's code runs as ``python FILE`` would, fenced in.

Every test starts a real Python process. Waits are bounded, never fixed
sleeps; timing checks are generous upper bounds only.
"""

import os
import sys
import posix
import signal
import time

import gevent
import gevent.socket
import pytest

from sieci import defaults
from sieci.defaults import JOB_FILENAME
from sieci.wire.protocol import STDERR, STDOUT
from sieci.wire.results import Status
from sieci.worker import executor, fork_server
from sieci.worker.executor import JobRun, JobSettings, safe_filename
from sieci.worker.limits import Limits

from tests.helpers import children_of

# A job that would sleep this long must be stopped far sooner than that.
LONG = 60
# Generous upper bound for "was stopped promptly".
PROMPT = 10.0


class Result:
    def __init__(self, events, status, elapsed):
        self.events = events
        self.status = status
        self.elapsed = elapsed
        self.stdout = b"".join(data for stream, data in events if stream == STDOUT)
        self.stderr = b"".join(data for stream, data in events if stream == STDERR)


def run(code, timeout=30.0, max_output=defaults.MAX_OUTPUT, fresh_interpreter=False, **settings):
    """Run the job of ``code`` and ``settings`` (JobSettings') to its end."""
    if isinstance(code, str):
        code = code.encode()
    started = time.monotonic()
    with JobRun(JobSettings(code, **settings), Limits(timeout=timeout, max_output=max_output),
                fresh_interpreter=fresh_interpreter) as job:
        events = list(job.output())
        status = job.status
    return Result(events, status, time.monotonic() - started)


def process_gone(pid, wait=5.0):
    """Whether ``pid`` is dead (or a zombie nobody reaped) within ``wait`` s: its pidfd says so."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        gevent.socket.wait_read(pidfd, timeout=wait)
        return True
    except gevent.socket.timeout:
        return False
    finally:
        os.close(pidfd)


def kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- running as ``python FILE`` ------------------------------------------------

def test_the_job_runs_as_main():
    result = run('print(__name__)\n')
    assert result.stdout == b"__main__\n"
    assert result.status == Status(b"exit", b"0")


def test_argv0_is_the_default_file_name():
    result = run('import os, sys\nprint(sys.argv)\nprint(os.path.basename(__file__))\n')
    assert result.stdout == b"['job.py']\njob.py\n"


def test_argv0_is_the_client_given_file_name():
    result = run('import os, sys\nprint(sys.argv[0])\nprint(sorted(os.listdir(".")))\n', filename="hello.py")
    assert result.stdout == b"hello.py\n['hello.py']\n"


@pytest.mark.parametrize("name", ["a/b.py", "../evil.py", "/tmp/evil.py", ".hidden.py", "..", "", None,
                                  "with space.py", "caf\u00e9.py", "x;rm.py"])
def test_an_unsafe_file_name_falls_back_to_job_py(name):
    assert safe_filename(name) == JOB_FILENAME
    result = run('import sys\nprint(sys.argv[0])\n', filename=name)
    assert result.stdout == b"job.py\n"


# --- exit status ---------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 3, 255])
def test_sys_exit_code_is_the_status(code):
    result = run(f"import sys\nsys.exit({code})\n")
    assert result.status == Status(b"exit", str(code).encode())
    assert result.events == []


def test_sys_exit_with_a_message_exits_1_and_prints_it():
    result = run('import sys\nsys.exit("giving up")\n')
    assert result.status == Status(b"exit", b"1")
    assert result.stderr == b"giving up\n"


def test_an_uncaught_exception_exits_1_with_a_traceback_on_stderr():
    result = run('print("before")\n1 / 0\n')
    assert result.status == Status(b"exit", b"1")
    assert result.stdout == b"before\n"
    assert result.stderr.startswith(b"Traceback (most recent call last):\n")
    assert b"job.py" in result.stderr
    assert result.stderr.endswith(b"ZeroDivisionError: division by zero\n")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_a_job_killed_by_a_signal(signum):
    result = run(f"import os, sys\nprint('dying', flush=True)\nos.kill(os.getpid(), {int(signum)})\n"
                 "sys.exit(0)\n")
    assert result.status.kind == b"signal"
    assert result.status == Status(b"signal", str(int(signum)).encode())
    assert result.stdout == b"dying\n"


# --- output --------------------------------------------------------------------

def test_stdout_and_stderr_are_kept_apart_and_byte_exact():
    out = b"\xff\xfe\x00\r\nnot utf-8: \x80\x81\rno final newline"
    err = b"\x00\xc3(\r\r\n\xe2\x82"
    code = (f"import sys\nsys.stdout.buffer.write({out!r})\nsys.stdout.flush()\n"
            f"sys.stderr.buffer.write({err!r})\nsys.stderr.flush()\n")
    result = run(code)
    assert result.status == Status(b"exit", b"0")
    assert result.stdout == out
    assert result.stderr == err
    assert all(stream in (STDOUT, STDERR) and isinstance(data, bytes) for stream, data in result.events)


def test_text_output_is_utf8_and_print_goes_where_it_should():
    result = run('import sys\nprint("za\u017c\u00f3\u0142\u0107")\nprint("\u2192 err", file=sys.stderr)\n')
    assert result.stdout == "za\u017c\u00f3\u0142\u0107\n".encode()
    assert result.stderr == "\u2192 err\n".encode()


def test_no_output_gives_no_events():
    result = run("pass\n")
    assert result.events == []
    assert result.status == Status(b"exit", b"0")


def test_no_empty_chunks_are_yielded():
    result = run('import sys\nfor i in range(50):\n    sys.stdout.write("x")\n    sys.stdout.flush()\n')
    assert result.stdout == b"x" * 50
    assert all(data for stream, data in result.events)


def test_a_lot_of_output_arrives_complete():
    out_size, err_size = 5 << 20, 1 << 20
    code = (
        "import sys, threading\n"
        f"def err():\n    sys.stderr.buffer.write(bytes(reversed(range(256))) * {err_size // 256})\n"
        "    sys.stderr.flush()\n"
        "t = threading.Thread(target=err)\nt.start()\n"
        f"sys.stdout.buffer.write(bytes(range(256)) * {out_size // 256})\n"
        "sys.stdout.flush()\nt.join()\n"
    )
    result = run(code)
    assert result.status == Status(b"exit", b"0")
    assert result.stdout == bytes(range(256)) * (out_size // 256)
    assert result.stderr == bytes(reversed(range(256))) * (err_size // 256)


# --- limits --------------------------------------------------------------------

def test_the_time_limit_stops_the_job_promptly():
    result = run(f'print("started", flush=True)\nimport time\ntime.sleep({LONG})\nprint("never")\n', timeout=0.5)
    assert result.status.kind == b"limit"
    assert result.status.value == b"time"
    assert result.status == Status(b"limit", b"time", result.status.message)
    assert b"0.5" in result.status.message
    assert result.stdout == b"started\n"
    assert result.elapsed < PROMPT


def test_a_busy_job_is_stopped_by_the_time_limit():
    result = run("while True:\n    pass\n", timeout=0.5)
    assert (result.status.kind, result.status.value) == (b"limit", b"time")
    assert result.elapsed < PROMPT


def test_the_time_limit_holds_while_nobody_reads_the_output():
    """The worker's reader may be stuck sending output to a slow client: the job still ends in time."""
    code = f'print("x" * 100_000_000)\nimport time\ntime.sleep({LONG})\n'.encode()
    with JobRun(JobSettings(code), Limits(timeout=0.5)) as job:
        with gevent.Timeout(PROMPT, AssertionError("the job outlived its time limit while unread")):
            gevent.socket.wait_read(job._pidfd)  # readable once the job's process has ended
        list(job.output())
        assert (job.status.kind, job.status.value) == (b"limit", b"time")


def test_a_job_ignoring_sigterm_is_still_stopped():
    result = run(f"import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep({LONG})\n",
                 timeout=0.5)
    assert (result.status.kind, result.status.value) == (b"limit", b"time")
    assert result.elapsed < PROMPT


def test_a_job_that_closes_its_stdout_and_keeps_running_hits_the_time_limit():
    result = run(f'import os, sys, time\nprint("bye", flush=True)\nos.close(1)\ntime.sleep({LONG})\n', timeout=0.5)
    assert (result.status.kind, result.status.value) == (b"limit", b"time")
    assert result.stdout == b"bye\n"
    assert result.elapsed < PROMPT


def test_a_job_that_closes_both_pipes_and_keeps_running_hits_the_time_limit():
    result = run(f"import os, time\nos.close(1)\nos.close(2)\ntime.sleep({LONG})\n", timeout=0.5)
    assert (result.status.kind, result.status.value) == (b"limit", b"time")
    assert result.elapsed < PROMPT


def test_the_output_limit_cuts_at_exactly_max_output_bytes_and_stops_the_job():
    code = f'import sys, time\nsys.stdout.write("x" * 10000)\nsys.stdout.flush()\ntime.sleep({LONG})\n'
    result = run(code, max_output=1000)
    assert result.stdout == b"x" * 1000
    assert result.stderr == b""
    assert result.status.kind == b"limit"
    assert result.status.value == b"output"
    assert b"1000" in result.status.message
    assert result.elapsed < PROMPT


def test_the_output_limit_counts_stdout_and_stderr_together():
    code = ('import sys\nsys.stdout.write("o" * 600)\nsys.stdout.flush()\n'
            'sys.stderr.write("e" * 600)\nsys.stderr.flush()\n')
    result = run(code, max_output=1000)
    assert (result.status.kind, result.status.value) == (b"limit", b"output")
    assert len(result.stdout) + len(result.stderr) == 1000
    assert result.stdout == b"o" * len(result.stdout)
    assert result.stderr == b"e" * len(result.stderr)


def test_the_output_limit_cuts_a_big_burst_exactly():
    result = run("import sys\nsys.stdout.buffer.write(bytes(range(256)) * 4096)\n", max_output=100_001)
    assert result.stdout == (bytes(range(256)) * 4096)[:100_001]
    assert (result.status.kind, result.status.value) == (b"limit", b"output")


def test_output_of_exactly_max_output_bytes_is_not_a_limit():
    result = run('import sys\nsys.stdout.write("y" * 1000)\n', max_output=1000)
    assert result.stdout == b"y" * 1000
    assert result.status == Status(b"exit", b"0")


def test_the_output_limit_stops_promptly_even_if_a_stray_process_holds_the_pipe(monkeypatch):
    monkeypatch.setattr(executor, "DRAIN_AFTER_KILL", 0.5)
    code = ('import subprocess, sys, time\n'
            'stray = subprocess.Popen(["sleep", "60"], start_new_session=True)\n'
            'print(stray.pid, flush=True)\n'
            'sys.stdout.write("x" * 10000)\nsys.stdout.flush()\n'
            f'time.sleep({LONG})\n')
    started = time.monotonic()
    stray = None
    try:
        with JobRun(JobSettings(code.encode()), Limits(timeout=4, max_output=100)) as job:
            for stream, data in job.output():
                if stray is None:
                    stray = int(data.split(b"\n")[0])
            status = job.status
        elapsed = time.monotonic() - started
    finally:
        if stray is not None:
            kill_quietly(stray)
    assert (status.kind, status.value) == (b"limit", b"output")
    assert elapsed < 3.5


# --- what the job leaves behind ----------------------------------------------

@pytest.mark.parametrize("stdio", ["inherited", "devnull"])
def test_a_background_process_started_by_the_job_is_gone_after_the_run(stdio):
    options = "" if stdio == "inherited" else ", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"
    code = f'import subprocess\np = subprocess.Popen(["sleep", "{LONG}"]{options})\nprint(p.pid, flush=True)\n'
    result = run(code)
    pid = int(result.stdout)
    try:
        assert result.status == Status(b"exit", b"0")
        assert result.elapsed < PROMPT
        assert process_gone(pid)
    finally:
        kill_quietly(pid)


def test_a_background_process_of_a_job_stopped_by_the_time_limit_is_gone():
    code = (f'import subprocess, time\np = subprocess.Popen(["sleep", "{LONG}"])\nprint(p.pid, flush=True)\n'
            f'time.sleep({LONG})\n')
    result = run(code, timeout=0.5)
    pid = int(result.stdout)
    try:
        assert (result.status.kind, result.status.value) == (b"limit", b"time")
        assert process_gone(pid)
    finally:
        kill_quietly(pid)


def test_the_working_directory_is_a_fresh_temp_dir_removed_afterwards(tmp_path):
    code = ('import os\nprint(os.getcwd())\nprint(sorted(os.listdir(".")))\n'
            'open("made-by-job.txt", "w").write("x")\nos.makedirs("sub/dir")\n'
            'open("sub/dir/f", "w").write("y")\n')
    first, second = run(code), run(code)
    first_dir, first_listing = first.stdout.decode().splitlines()
    second_dir, second_listing = second.stdout.decode().splitlines()
    assert first.status == second.status == Status(b"exit", b"0")
    assert first_listing == second_listing == "['job.py']"
    assert first_dir != second_dir
    assert first_dir != os.getcwd()
    for path in (first_dir, second_dir):
        assert os.path.isabs(path)
        assert not os.path.exists(path)


def test_home_and_tmpdir_point_to_the_working_directory():
    code = ('import os, tempfile\nprint(os.getcwd())\nprint(os.environ["HOME"])\nprint(os.environ["TMPDIR"])\n'
            'print(os.path.expanduser("~"))\nprint(tempfile.gettempdir())\n')
    result = run(code)
    cwd, home, tmpdir, tilde, gettempdir = result.stdout.decode().splitlines()
    real = os.path.realpath
    assert real(home) == real(cwd)
    assert real(tmpdir) == real(cwd)
    assert real(tilde) == real(cwd)
    assert real(gettempdir) == real(cwd)


def test_the_environment_is_minimal(monkeypatch):
    monkeypatch.setenv("SIECI_TEST_SECRET", "hunter2")
    monkeypatch.setenv("PYTHONPATH", "/nonexistent/sieci-test")
    result = run('import os, json\nprint(json.dumps(dict(os.environ)))\n')
    import json
    env = json.loads(result.stdout)
    assert "SIECI_TEST_SECRET" not in env
    assert b"hunter2" not in result.stdout
    assert "PYTHONPATH" not in env
    assert "PYTEST_CURRENT_TEST" not in env
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE"}
    assert env["PATH"] == f"{os.path.dirname(sys.executable)}:{fork_server.JOB_PATH}"  # its python3 comes first


def test_a_jobs_arguments_and_environment_reach_it():
    code = "import os, sys\nprint(sys.argv, os.environ['GREETING'], os.environ['HOME'])\n"
    result = run(code, args=["a b", "zażółć", ""], env={"GREETING": "hi there", "HOME": "/elsewhere"})
    assert result.stdout == "['job.py', 'a b', 'zażółć', ''] hi there /elsewhere\n".encode()


def test_stdin_is_empty():
    result = run('import sys\nprint(repr(sys.stdin.read()))\nprint(repr(sys.stdin.buffer.read()))\n')
    assert result.stdout == b"''\nb''\n"
    assert result.status == Status(b"exit", b"0")


def test_leaving_the_with_block_early_kills_the_job_and_cleans_up():
    code = f'import os, time\nprint(os.getpid(), os.getcwd(), flush=True)\ntime.sleep({LONG})\n'
    started = time.monotonic()
    with JobRun(JobSettings(code.encode()), Limits(timeout=30)) as job:
        for stream, data in job.output():
            pid, workdir = data.decode().split(maxsplit=1)
            break
    pid, workdir = int(pid), workdir.strip()
    assert time.monotonic() - started < PROMPT
    assert not os.path.exists(workdir)
    assert process_gone(pid)


def test_a_sandbox_command_prefixes_the_job():
    """``env NAME=VALUE`` stands in for bwrap or nsjail: it runs the rest of the command line."""
    code = b"import os, sys\nprint(os.environ.get('SANDBOXED'), sys.argv[0])\n"
    with JobRun(JobSettings(code), Limits(timeout=20), command_prefix=["env", "SANDBOXED=yes"]) as run:
        out = b"".join(data for stream, data in run.output() if stream == "stdout")
    assert (out, run.status.kind) == (b"yes job.py\n", b"exit")


def test_a_job_has_only_the_modules_python3_has_at_its_start_forked_or_fresh():
    """The fork server imported these for itself; its jobs import their own (a json.py of theirs, say)."""
    code = b"import sys\nprint(sorted(m for m in ('ctypes', 'json', 'socket') if m in sys.modules))\n"
    for fresh in (True, False):
        with JobRun(JobSettings(code), Limits(timeout=20), fresh_interpreter=fresh) as run:
            out = b"".join(data for stream, data in run.output() if stream == "stdout")
        assert out == b"[]\n"


def test_the_jobs_of_a_fork_server_share_its_hash_seed_and_fresh_ones_do_not():
    """The one difference a fork cannot help (the README lists it): the seed is drawn as Python starts."""
    runner = executor.JobRunner(Limits(timeout=20))
    try:
        seeds = {}
        for fresh in (False, False, True, True):
            with runner.run(JobSettings(b"print(hash('sieci'))\n", fresh=fresh)) as run:
                seeds.setdefault(fresh, set()).add(b"".join(data for _, data in run.output()))
    finally:
        runner.close()
    assert (len(seeds[False]), len(seeds[True])) == (1, 2)


def run_after_pauses(code, pauses):
    """Run ``code`` through one fork server once after each pause; each run's (stdout, status).

    The pauses are idle time, not waits for anything: after one, the zygote
    has been quiet and forks its standby; with none, it forks on demand,
    then straight after each job.
    """
    runner = executor.JobRunner(Limits(timeout=20))
    try:
        results = []
        for pause in pauses:
            gevent.sleep(pause)
            with runner.run(JobSettings(code)) as run:
                out = b"".join(data for stream, data in run.output() if stream == STDOUT)
            results.append((out, run.status))
        return results
    finally:
        runner.close()


def test_jobs_through_one_fork_server_carry_nothing_over():
    """Whichever way the zygote forked a job's process, no job sees what one before it did."""
    code = (b"import os, sys\n"
            b"print(os.environ.get('LEFT'), 'leftover' in sys.modules, hasattr(sys, 'left'), os.listdir('.'))\n"
            b"os.environ['LEFT'] = '1'\nsys.left = True\nsys.modules['leftover'] = sys\nopen('mark', 'w').close()\n")
    pauses = (0, 0, 0, 0.05, 0, 0.05, 0.05)
    assert run_after_pauses(code, pauses) == [(b"None False False ['job.py']\n", Status(b"exit", b"0"))] * len(pauses)


def test_the_fork_server_starts_without_forking_the_threaded_worker(monkeypatch):
    """A worker has native threads (gevent resolves names on them), and a fork that runs
    Python before exec could deadlock on a lock one of them held: the zygote is spawned."""
    import gevent.subprocess

    def fork(*args, **kwargs):
        raise AssertionError("the worker forked")

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(gevent.subprocess, "fork_and_watch", fork)
    runner = executor.JobRunner(Limits(timeout=20))
    try:
        with runner.run(JobSettings(b"print('spawned')\n")) as run:
            assert list(run.output()) == [(STDOUT, b"spawned\n")]
        zygote = runner.fork_server._process.pid
    finally:
        runner.close()
    assert not os.path.exists(f"/proc/{zygote}")  # killed and reaped


def test_the_fork_server_works_with_its_channel_past_fd_1024():
    """A busy worker may hold over a thousand fds: the zygote's waits must not use select()."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("RLIMIT_NOFILE hard limit below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        pauses = (0, 0.05, 0)
        assert run_after_pauses(b"print('fine')\n", pauses) == [(b"fine\n", Status(b"exit", b"0"))] * len(pauses)
    finally:
        for fd in fillers:
            posix.close(fd)  # gevent's os.close defers the close, past the lowered limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("fresh_interpreter", [False, True], ids=["forked", "fresh interpreter"])
def test_a_job_shown_on_a_terminal_flushes_each_line(fresh_interpreter):
    code = "import sys\nprint(sys.stdout.line_buffering or sys.stdout.write_through)\n"
    assert run(code, fresh_interpreter=fresh_interpreter).stdout == b"False\n"
    assert run(code, fresh_interpreter=fresh_interpreter, line_buffered=True).stdout == b"True\n"


def test_merged_streams_are_one_pipe_whose_writes_keep_their_order():
    code = "import sys\nfor n in range(50):\n    print(n, flush=True)\n    print(-n, file=sys.stderr, flush=True)\n"
    result = run(code, merged=True)
    expected = "".join(f"{n}\n{-n}\n" for n in range(50)).encode()
    assert (result.stdout, result.stderr) == (expected, b"")


def test_a_job_does_not_inherit_the_signals_its_worker_ignores():
    """A worker started from a script in the background ignores SIGINT, as shells leave it: its jobs
    must still get Python's KeyboardInterrupt (Ctrl-C under -t), forked or fresh."""
    code = b"import signal\nprint(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for fresh in (False, True):
            with JobRun(JobSettings(code), Limits(timeout=20), fresh_interpreter=fresh) as run:
                assert b"".join(data for _, data in run.output()) == b"True\n"
    finally:
        signal.signal(signal.SIGINT, ignored)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a new process a chosen pid (ns_last_pid)")
def test_a_job_is_never_killed_through_a_pid_another_process_has_taken_since():
    with JobRun(JobSettings(b"print('done')\n"), Limits(timeout=30)) as job:
        list(job.output())  # the fork server has reaped the job's first process
        fork_server = job._fork_server._process.pid
        with gevent.Timeout(PROMPT):  # its standby for the next job comes first: it would take the pid
            while not children_of(fork_server):
                gevent.sleep(0.01)
        victim = process_with_pid(job.pid)
        ended = os.pidfd_open(victim.pid)
        try:
            job.kill()  # as the worker does once the results are sent, however late that is
            with pytest.raises(gevent.Timeout):  # a kill would end it at once: a second is ample
                with gevent.Timeout(1.0):
                    gevent.socket.wait_read(ended)
        finally:
            os.close(ended)
            victim.kill()
            victim.wait()


def process_with_pid(pid, tries=20):
    """A new process (leading a session of its own, as a job does) with ``pid``, now free."""
    import subprocess

    for _ in range(tries):
        with open("/proc/sys/kernel/ns_last_pid", "w") as last_pid:
            last_pid.write(str(pid - 1))
        victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
        if victim.pid == pid:
            return victim
        victim.kill()
        victim.wait()
    pytest.skip(f"no new process could be given pid {pid}: other processes took it first")


# --- what a run costs the worker ----------------------------------------------

def test_a_run_spawns_a_greenlet_for_its_end_and_one_per_pipe_and_none_for_its_time_limit(monkeypatch):
    spawned, later = [], []
    spawn, spawn_later = gevent.spawn, gevent.spawn_later
    monkeypatch.setattr(executor.gevent, "spawn", lambda *args: spawned.append(args[0]) or spawn(*args))
    monkeypatch.setattr(executor.gevent, "spawn_later",
                        lambda *args: later.append(args[1].__name__) or spawn_later(*args))
    result = run('print("hello")\n', timeout=30)
    assert result.stdout == b"hello\n"
    assert len(spawned) == 3  # the job's end, its stdout and its stderr
    assert later in ([], ["_watch_disk"])  # its folder's size is watched where it has no namespaces


def test_output_past_a_pipes_size_comes_whole_and_in_order():
    result = run("import sys\nfor n in range(300000):\n    sys.stdout.write('%07d\\n' % n)\n")
    assert result.stdout == b"".join(b"%07d\n" % n for n in range(300000))
