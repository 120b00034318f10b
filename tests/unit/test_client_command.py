"""The sieci-client command line: its quick parser and its environment."""

import pytest

from sieci import defaults
from sieci.client.arguments import USAGE, parse_args
from sieci.options import UsageError

from tests.helpers.usage import refused_usage


@pytest.mark.parametrize("argv", [
    ["--timeout", "5", "--retries=2", "--shuffle", "a:1,b:2", "job.py"],
    ["a:1,b:2", "--retries", "2", "--timeout=5", "--shuffle", "job.py"],
    ["--shuffle", "--timeout", "5", "--retries", "2", "--", "a:1,b:2", "job.py"],
])
def test_options_go_anywhere_before_prog(argv):
    args = parse_args(argv, environ={})
    assert (args.masters, args.command, args.timeout, args.retries, args.shuffle) == (
        [("a", 1), ("b", 2)], ["job.py"], 5.0, 2, True)


@pytest.mark.parametrize("argv, command", [
    (["m:1", "job.py", "--timeout", "5", "a b", "zażółć", ""], ["job.py", "--timeout", "5", "a b", "zażółć", ""]),
    (["m:1", "job.py", "--", "-x"], ["job.py", "--", "-x"]),
    (["m:1", "-", "-v"], ["-", "-v"]),
])
def test_everything_after_prog_is_the_jobs_as_with_python3(argv, command):
    args = parse_args(argv, environ={})
    assert (args.command, args.timeout, args.batch) == (command, None, False)


def test_with_sieci_masters_prog_comes_first_when_it_is_a_file(tmp_path):
    job = tmp_path / "job.py"
    job.write_text("")
    environ = {"SIECI_MASTERS": "m:9"}
    assert parse_args([str(job), "x:1"], environ=environ).command == [str(job), "x:1"]
    assert parse_args(["x:1", str(job)], environ=environ).masters == [("x", 1)]
    assert parse_args(["missing.py"], environ=environ).command == ["missing.py"]


def test_environment_variables_for_the_job():
    args = parse_args(["-e", "A=1", "-eB=two words", "--env", "HOME", "m:1", "job.py"], environ={"HOME": "/h"})
    assert args.env == {"A": "1", "B": "two words", "HOME": "/h"}


@pytest.mark.parametrize("argv, complaint", [
    (["-e", "NOPE", "m:1", "job.py"], "-e NOPE: NOPE is not set here"),
    (["-e", "=1", "m:1", "job.py"], "expected NAME=VALUE or NAME"),
])
def test_environment_mistakes_are_usage_errors(capsys, argv, complaint):
    assert refused_usage(parse_args, argv, environ={}) == 2 and complaint in capsys.readouterr().err


def test_a_mistake_is_raised_for_main_to_show_not_exited_on(capsys):
    with pytest.raises(UsageError) as refusal:
        parse_args(["-e", "NOPE", "m:1", "job.py"], environ={})
    assert refusal.value.exit_code == defaults.EXIT_USAGE and capsys.readouterr().err == ""
    refusal.value.show()
    assert capsys.readouterr().err == (f"usage: {USAGE}\n"
                                       "sieci-client: error: -e NOPE: NOPE is not set here (give NAME=VALUE)\n")


def test_defaults_come_from_the_environment_and_the_command_line_wins():
    environ = {"SIECI_TIMEOUT": "7", "SIECI_RETRIES": "1", "SIECI_SHUFFLE": "1", "SIECI_MASTERS": "m:9"}
    args = parse_args(["-"], environ=environ)
    assert (args.masters, args.command, args.timeout, args.retries, args.shuffle) == (
        [("m", 9)], ["-"], 7.0, 1, True)
    assert parse_args(["--timeout", "3", "x:1", "f.py"], environ=environ).timeout == 3.0
    assert parse_args(["x:1", "f.py"], environ={}).connect_timeout == defaults.CONNECT_TIMEOUT


@pytest.mark.parametrize("argv, environ, complaint", [
    (["only-a-file.py"], {}, "expected MASTER[,MASTER...] PROG"),
    ([], {}, "expected MASTER[,MASTER...] PROG"),
    (["--retries", "-1", "m:1", "f"], {}, "argument --retries: must be 0 or more, not '-1'"),
    (["--timeout", "soon", "m:1", "f"], {}, "argument --timeout: not a number of seconds: 'soon'"),
    (["--bogus", "m:1", "f"], {}, "unrecognized arguments: --bogus"),
    (["m:1", "f"], {"SIECI_RETRIES": "many"}, "SIECI_RETRIES (for --retries): not a whole number: 'many'"),
])
def test_mistakes_are_usage_errors(capsys, argv, environ, complaint):
    assert refused_usage(parse_args, argv, environ=environ) == 2
    assert complaint in capsys.readouterr().err
