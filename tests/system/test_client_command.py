"""The sieci-client command as a process: what it loads, its help, and what it prints."""

import os
import subprocess
import sys

import pytest

from sieci import __version__, defaults

from tests.helpers import REPO, WAIT, client_address

CLIENT = os.path.join(REPO, "bin", "client")


def test_the_usual_command_line_does_not_load_argparse():
    code = ("import sys; from sieci.client.arguments import parse_args; parse_args(['--timeout', '1', 'm:1', 'f']); "
            "print(sorted(m for m in ('argparse', 'socket', 'gevent', 'signal') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, cwd=REPO)
    assert done.stdout == "[]\n"


# What one `sieci-client MASTER PROG` run imports beyond the interpreter's own start. Each module
# costs every start of the client (bench/latency.py); one more here should be a choice.
ONE_JOB_IMPORTS = {
    "_socket", "sieci", "sieci.defaults", "sieci.options", "sieci.option_values", "sieci.environment_options",
    "sieci.client", "sieci.client.arguments",
    "sieci.client.client", "sieci.client.command", "sieci.client.errors", "sieci.client.failover",
    "sieci.client.link", "sieci.client.output", "sieci.client.program", "sieci.client.result", "sieci.wire",
    "sieci.wire.address", "sieci.wire.connection", "sieci.wire.conversation", "sieci.wire.framing",
    "sieci.wire.protocol", "sieci.wire.results", "sieci.wire.upload_format",
}
# With a stdin to stream (a file, a pipe): its pump, in a bare _thread rather than threading's.
STDIN_IMPORTS = {"select", "sieci.client.stdin", "sieci.wire.stdin_stream"}


def modules_at_start():
    done = subprocess.run([sys.executable, "-c", "import sys; print(*sys.modules)"], capture_output=True,
                          text=True, timeout=WAIT, cwd=REPO, check=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("stdin, imported", [(None, ONE_JOB_IMPORTS), (b"a line\n", ONE_JOB_IMPORTS | STDIN_IMPORTS)])
def test_one_job_imports_sieci_s_modules_on_its_path_and_nothing_heavy(cluster, tmp_path, stdin, imported):
    master = cluster.master()
    cluster.worker(master)
    job = tmp_path / "hello.py"
    job.write_text("print('hello')\n")
    (tmp_path / "stdin.txt").write_bytes(stdin or b"")
    code = ("import os, sys; from sieci.client.command import main; status = main(sys.argv[1:]); "
            "sys.stderr.write(' '.join(sys.modules)); sys.stderr.flush(); os._exit(status)")
    with open(os.devnull if stdin is None else tmp_path / "stdin.txt", "rb") as source:
        done = subprocess.run([sys.executable, "-c", code, client_address(master), str(job)], stdin=source,
                              capture_output=True, timeout=WAIT, cwd=REPO)
    assert (done.returncode, done.stdout) == (0, b"hello\n")
    assert set(done.stderr.decode().split()) - modules_at_start() == imported


def test_help_lists_every_option_with_its_variable():
    done = subprocess.run([sys.executable, CLIENT, "--help"], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0
    for variable in ("SIECI_CONNECT_TIMEOUT", "SIECI_TIMEOUT", "SIECI_RETRIES", "SIECI_SHUFFLE",
                     "SIECI_SECRET_FILE", "SIECI_TLS_CA"):
        assert variable in done.stdout


def test_the_command_says_which_limit_a_job_hit(cluster, tmp_path):
    from sieci.worker.limits import Limits

    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=0.5))
    job = tmp_path / "slow.py"
    job.write_text("import time\nprint('before', flush=True)\ntime.sleep(30)\n")
    done = subprocess.run([sys.executable, CLIENT, client_address(master), str(job)],
                          capture_output=True, timeout=WAIT)
    assert (done.returncode, done.stdout) == (124, b"before\n")
    assert done.stderr == b"sieci-client: the job ran past its time limit of 0.5 s\n"


@pytest.mark.parametrize("arguments", [["JOB"], ["--status"], ["--status", "--json"]])
def test_an_output_that_cannot_be_written_is_one_line_and_exit_255(cluster, tmp_path, arguments):
    master = cluster.master()
    cluster.worker(master)
    job = tmp_path / "hello.py"
    job.write_text("print('hello')\n")
    command = [str(job) if argument == "JOB" else argument for argument in arguments]
    if "--status" in command:
        command.append(client_address(master))
    else:
        command.insert(0, client_address(master))
    with open("/dev/full", "wb") as full:
        done = subprocess.run([sys.executable, CLIENT, *command], stdout=full, stderr=subprocess.PIPE,
                              timeout=WAIT)
    assert (done.returncode, done.stderr) == (255, b"sieci-client: error: cannot write to stdout "
                                                   b"(no space left on device)\n")


def run_client(*argv, **env):
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
    return subprocess.run([sys.executable, CLIENT, *argv], capture_output=True, text=True, timeout=WAIT,
                          env={**environ, **env})


def test_the_client_tells_its_version():
    done = run_client("--version")
    assert (done.returncode, done.stdout) == (0, f"sieci-client {__version__}\n")


@pytest.mark.parametrize("argv, env, complaint", [
    (["m:port", "f.py"], {}, "bad address 'm:port'"),
    (["--timeout", "-1", "m:1", "f.py"], {}, "argument --timeout: a time must be positive"),
    (["--timeout", "0", "m:1", "f.py"], {}, "argument --timeout: a time must be positive"),
    (["--connect-timeout", "0", "m:1", "f.py"], {}, "argument --connect-timeout: a time must be positive"),
    (["--json", "m:1", "f.py"], {}, "--json goes with --status"),
    (["m:1", "f.py"], {"SIECI_SHUFFLE": "maybe"}, "SIECI_SHUFFLE (for --shuffle): not on or off: 'maybe'"),
    (["m:1", "f.py"], {"SIECI_TIMEOUT": "0"}, "SIECI_TIMEOUT (for --timeout): a time must be positive"),
])
def test_client_mistakes_exit_2_and_say_what_is_wrong(tmp_path, argv, env, complaint):
    done = run_client(*argv, **env)
    assert done.returncode == 2, done
    assert complaint in done.stderr
    assert done.stdout == ""


@pytest.fixture
def show(cluster, tmp_path):
    """A master with a worker, and a program that shows its arguments and $GREETING."""
    master = cluster.master()
    cluster.worker(master)
    program = tmp_path / "show.py"
    program.write_text("import os, sys\nprint(sys.argv[1:], os.environ.get('GREETING'))\n")
    return client_address(master), str(program)


def test_the_command_line_reads_like_python3s(show):
    master, program = show
    done = run_client("-e", "GREETING=hi there", master, program, "a b", "zażółć", "", "--timeout", "5")
    assert (done.returncode, done.stdout) == (0, "['a b', 'zażółć', '', '--timeout', '5'] hi there\n")


def test_a_batch_runs_one_program_with_each_value_in_its_arguments(show):
    master, program = show
    done = run_client("-e", "GREETING", master, program, "--n={}", ":::", "1", "two words", GREETING="from the shell")
    assert (done.returncode, done.stdout) == (0, "['--n=1'] from the shell\n['--n=two words'] from the shell\n")


TAKING_TURNS = ("import sys\n"
                "for n in range(200):\n"
                "    print('out', n, flush=True)\n"
                "    print('err', n, file=sys.stderr, flush=True)\n")


def test_stdout_and_stderr_keep_their_order_under_2_and_1_as_locally(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    job = tmp_path / "turns.py"
    job.write_text(TAKING_TURNS)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
    local = subprocess.run([sys.executable, str(job)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=WAIT)
    remote = subprocess.run([sys.executable, CLIENT, client_address(master), str(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=WAIT, env=environ)
    assert (remote.returncode, remote.stdout) == (0, local.stdout)


def test_on_a_terminal_unflushed_lines_arrive_as_they_are_printed(cluster, tmp_path):
    import pty
    import select

    master = cluster.master()
    cluster.worker(master)
    go_on = tmp_path / "go-on"
    job = tmp_path / "live.py"
    job.write_text("import os, sys, time\n"
                   "print('first', sys.stdout.isatty())\n"  # no flush: line-buffered, as on a terminal
                   f"deadline = time.monotonic() + {WAIT}\n"
                   f"while not os.path.exists({str(go_on)!r}) and time.monotonic() < deadline:\n"
                   "    time.sleep(0.01)\n"
                   "print('second')\n")
    controller, terminal = pty.openpty()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
    client = subprocess.Popen([sys.executable, CLIENT, client_address(master), str(job)], stdout=terminal,
                              stderr=terminal, env=environ)
    os.close(terminal)
    try:
        seen = b""
        while b"first" not in seen:
            assert select.select([controller], [], [], WAIT)[0], f"nothing live within {WAIT} s: {seen!r}"
            seen += os.read(controller, 4096)
        go_on.touch()
        assert client.wait(WAIT) == 0
        while select.select([controller], [], [], 0)[0]:
            try:
                seen += os.read(controller, 4096)
            except OSError:  # the terminal's other end has closed
                break
    finally:
        client.kill()
        client.wait()
        os.close(controller)
    assert seen.replace(b"\r\n", b"\n") == b"first False\nsecond\n"


def client_with(argv, **options):
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
    return subprocess.run([sys.executable, CLIENT, *argv], capture_output=True, timeout=WAIT, env=environ, **options)


def test_the_clients_own_timeout_exits_124_with_its_line(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    job = tmp_path / "slow.py"
    job.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    done = client_with(["--timeout", "1", client_address(master), str(job)])
    assert (done.returncode, done.stdout) == (124, b"started\n")
    assert done.stderr == b"sieci-client: error: no result within the --timeout of 1 s\n"


@pytest.mark.parametrize("reported, seen", [((97, 0), (97, 24)), ((0, 0), (80, 24)), ((0, 40), (80, 40))])
def test_t_on_a_terminal_that_reports_0_rows_or_columns(cluster, tmp_path, reported, seen):
    import fcntl
    import pty
    import select
    import struct
    import termios

    master = cluster.master()
    cluster.worker(master)
    job = tmp_path / "size.py"
    job.write_text("import os, shutil\nprint(tuple(os.get_terminal_size()), tuple(shutil.get_terminal_size()))\n")
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", reported[1], reported[0], 0, 0))
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
    client = subprocess.Popen([sys.executable, CLIENT, "-t", client_address(master), str(job)], stdin=terminal,
                              stdout=terminal, stderr=terminal, env=environ, start_new_session=True)
    try:
        seen_text = b""
        while b")\r\n" not in seen_text:
            assert select.select([controller], [], [], WAIT)[0], f"nothing within {WAIT} s: {seen_text!r}"
            seen_text += os.read(controller, 4096)
        assert client.wait(WAIT) == 0
    finally:
        client.kill()
        client.wait()
        os.close(controller)
        os.close(terminal)
    assert seen_text == f"{seen} {seen}\r\n".encode()


def test_detach_keeps_a_piped_stdin(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    job = tmp_path / "cat.py"
    job.write_text("import sys\nsys.stdout.buffer.write(sys.stdin.buffer.read()[::-1])\n")
    data = bytes(range(256)) * 200  # 50 KiB, within what goes with the code
    detached = client_with(["--detach", client_address(master), str(job)], input=data)
    assert detached.returncode == 0, detached.stderr
    attached = client_with(["--attach", detached.stdout.decode().strip(), client_address(master)])
    assert (attached.returncode, attached.stdout) == (0, data[::-1])
    with open(os.devnull, "rb") as nothing:
        empty = client_with(["--detach", client_address(master), str(job)], stdin=nothing)
    attached = client_with(["--attach", empty.stdout.decode().strip(), client_address(master)])
    assert (attached.returncode, attached.stdout) == (0, b"")


def test_detach_refuses_a_stdin_too_long_to_go_with_the_code(cluster, tmp_path):
    master = cluster.master()
    job = tmp_path / "cat.py"
    job.write_text("import sys\nsys.stdin.read()\n")
    done = client_with(["--detach", client_address(master), str(job)], input=b"x" * (defaults.MAX_INLINE_STDIN + 1))
    assert (done.returncode, done.stdout) == (defaults.EXIT_USAGE, b"")
    assert done.stderr == (b"sieci-client: error: --detach: stdin is longer than the 64 KiB a detached job takes with "
                           b"its code (give it a file with --with, or </dev/null for none)\n")
    listed = client_with(["--list", client_address(master)])
    assert (listed.returncode, listed.stdout.splitlines()[0].endswith(b"jobs 0")) == (0, True)


def test_client_options_after_prog_are_the_jobs_arguments(show):
    master, program = show
    done = run_client(master, program, "--return", "x", "-t", "--detach", "-e", "GREETING=no", "--jobs", "2")
    assert (done.returncode, done.stdout) == (
        0, "['--return', 'x', '-t', '--detach', '-e', 'GREETING=no', '--jobs', '2'] None\n")


def test_attach_honours_the_clients_timeout(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    job = tmp_path / "slow.py"
    job.write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    detached = client_with(["--detach", client_address(master), str(job)], stdin=subprocess.DEVNULL)
    job_id = detached.stdout.decode().strip()
    try:
        attached = client_with(["--timeout", "1", "--attach", job_id, client_address(master)])
        assert attached.returncode == defaults.EXIT_TIME_LIMIT, attached
        assert attached.stderr == b"sieci-client: error: no result within the --timeout of 1 s\n"
        assert attached.stdout in (b"", b"started\n")
    finally:
        assert client_with(["--cancel", job_id, client_address(master)]).returncode == 0


def test_a_jobs_option_with_list_is_refused_before_any_master_is_asked(cluster):
    master = cluster.master()
    done = run_client("--list", "-e", "GREETING=hi", client_address(master))
    assert (done.returncode, done.stdout) == (defaults.EXIT_USAGE, "")
    assert done.stderr.splitlines()[-1] == "sieci-client: error: --env (-e) is for running a job, and --list runs none"
    assert run_client("--list", client_address(master)).returncode == 0


def test_prog_dash_runs_the_code_from_stdin_as_python3_dash_does(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    code = (b"import os, sys\nprint(sys.argv, __file__, __spec__, repr(sys.path[0]), os.listdir('.'), "
            b"repr(sys.stdin.read()))\nraise KeyError('x')\n")
    done = client_with([client_address(master), "-", "a b"], input=code)
    local = subprocess.run([sys.executable, "-", "a b"], input=code, capture_output=True, cwd=tmp_path, timeout=WAIT)
    assert (done.returncode, done.stdout) == (1, local.stdout)
    assert done.stdout == b"['-', 'a b'] <stdin> None '' [] ''\n"
    assert done.stderr.endswith(b'  File "<stdin>", line 3, in <module>\nKeyError: \'x\'\n')
    if sys.version_info >= (3, 11):  # 3.10's traceback starts with the fork server's frame (test_fidelity)
        assert done.stderr == local.stderr
