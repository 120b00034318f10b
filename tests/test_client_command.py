"""The sieci-client command line: its quick parser, its environment, its help, and what it prints."""

import os
import subprocess
import sys

import pytest

from sieci import client, defaults
from sieci.client_command import parse_args

from conftest import REPO, WAIT, client_address

CLIENT = os.path.join(REPO, "bin", "client")


@pytest.mark.parametrize("argv", [
    ["--timeout", "5", "--retries=2", "--shuffle", "a:1,b:2", "job.py"],
    ["a:1,b:2", "--retries", "2", "job.py", "--timeout=5", "--shuffle"],
    ["--shuffle", "--timeout", "5", "--retries", "2", "--", "a:1,b:2", "job.py"],
])
def test_options_and_arguments_in_any_order(argv):
    args = parse_args(argv, environ={})
    assert (args.masters, args.file, args.timeout, args.retries, args.shuffle) == ("a:1,b:2", "job.py", 5.0, 2, True)


def test_defaults_come_from_the_environment_and_the_command_line_wins():
    environ = {"SIECI_TIMEOUT": "7", "SIECI_RETRIES": "1", "SIECI_SHUFFLE": "1", "SIECI_MASTERS": "m:9"}
    args = parse_args(["-"], environ=environ)
    assert (args.masters, args.file, args.timeout, args.retries, args.shuffle) == ("m:9", "-", 7.0, 1, True)
    assert parse_args(["--timeout", "3", "x:1", "f.py"], environ=environ).timeout == 3.0
    assert parse_args(["x:1", "f.py"], environ={}).connect_timeout == defaults.CONNECT_TIMEOUT


@pytest.mark.parametrize("argv, environ, complaint", [
    (["only-a-file.py"], {}, "expected MASTER[,MASTER...] FILE"),
    ([], {}, "expected MASTER[,MASTER...] FILE"),
    (["--retries", "-1", "m", "f"], {}, "argument --retries: invalid whole number (0 or more) value: '-1'"),
    (["--timeout", "soon", "m", "f"], {}, "argument --timeout: invalid float value: 'soon'"),
    (["--bogus", "m", "f"], {}, "unrecognized arguments: --bogus"),
    (["m", "f"], {"SIECI_RETRIES": "many"}, "SIECI_RETRIES='many' is not a valid value for --retries"),
])
def test_mistakes_are_usage_errors(capsys, argv, environ, complaint):
    with pytest.raises(SystemExit) as exit:
        parse_args(argv, environ=environ)
    assert exit.value.code == 2
    assert complaint in capsys.readouterr().err


def test_the_usual_command_line_does_not_load_argparse():
    code = ("import sys; from sieci.client_command import parse_args; parse_args(['--timeout', '1', 'm:1', 'f']); "
            "print(sorted(m for m in ('argparse', 'socket', 'gevent', 'signal') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, cwd=REPO)
    assert done.stdout == "[]\n"


def test_help_lists_every_option_with_its_variable():
    done = subprocess.run([sys.executable, CLIENT, "--help"], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0
    for variable in ("SIECI_CONNECT_TIMEOUT", "SIECI_TIMEOUT", "SIECI_RETRIES", "SIECI_SHUFFLE",
                     "SIECI_SECRET_FILE", "SIECI_TLS_CA"):
        assert variable in done.stdout


def test_the_command_says_which_limit_a_job_hit(cluster, tmp_path):
    from sieci.limits import Limits

    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=0.5))
    job = tmp_path / "slow.py"
    job.write_text("import time\nprint('before', flush=True)\ntime.sleep(30)\n")
    done = subprocess.run([sys.executable, CLIENT, client_address(master), str(job)],
                          capture_output=True, timeout=WAIT)
    assert (done.returncode, done.stdout) == (124, b"before\n")
    assert done.stderr == b"sieci-client: the job ran past its time limit of 0.5 s\n"


def test_results_name_the_worker_that_ran_the_job(cluster):
    master = cluster.master()
    cluster.worker(master, name="blue")
    result = client.Client(client_address(master)).run("print('hi')")
    assert (result.exit_status, result.stdout, result.worker) == (0, b"hi\n", "blue")
    assert result.master == client_address(master) and result.seconds > 0


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
