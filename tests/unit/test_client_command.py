"""The sieci-client command line: its quick parser and its environment."""

import pytest

from sieci import defaults
from sieci.client.arguments import CLIENT_OPTIONS, USAGE, option_width, parse_args
from sieci.client.stdin import JobStdin, known_size
from sieci.wire.protocol import BlockHeader
from sieci.wire.stdin_stream import encode_resize, terminal_size, tty_field
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


def _spelled(option):
    """Each way ``option`` is spelled on a command line, with a value where it takes one."""
    value = [] if option.kind is bool else ["1"]
    return [[flag, *value] for flag in (option.flag, option.short) if flag]


@pytest.mark.parametrize("spelled", [spelled for option in CLIENT_OPTIONS for spelled in _spelled(option)],
                         ids=lambda spelled: spelled[0])
def test_every_client_option_after_prog_is_the_jobs(tmp_path, spelled):
    job = tmp_path / "job.py"
    job.write_text("")
    for argv, environ in (["m:1", "job.py", *spelled], {}), ([str(job), *spelled], {"SIECI_MASTERS": "m:9"}):
        args = parse_args(argv, environ=environ)
        assert args.command == argv[-1 - len(spelled):]
        assert all(getattr(args, option.dest) in (option.default, []) for option in CLIENT_OPTIONS
                   if option.dest != "env")


@pytest.mark.parametrize("spelled", [spelled for option in CLIENT_OPTIONS for spelled in _spelled(option)],
                         ids=lambda spelled: spelled[0])
def test_option_width_reads_every_option_as_the_parser_does(spelled):
    assert option_width(spelled[0]) == len(spelled)
    if len(spelled) == 2:
        joined = f"{spelled[0]}={spelled[1]}" if spelled[0].startswith("--") else spelled[0] + spelled[1]
        assert option_width(joined) == 1


@pytest.mark.parametrize("token", ["job.py", "-", "--", "--no-such-option", "-Z", "--workers"])
def test_option_width_of_what_is_not_a_client_option(token):
    assert option_width(token) == 0


@pytest.mark.parametrize("argv", [["--jobs", "4", "m:1", "job.py", "a", "b"], ["--ungroup", "m:1", "job.py"]])
def test_a_batchs_option_on_one_jobs_command_line_is_refused(capsys, argv):
    assert refused_usage(parse_args, argv, {}) == defaults.EXIT_USAGE
    assert capsys.readouterr().err.endswith(f"error: {argv[0]} is for a batch (':::' VALUE... or -a FILE), and "
                                            "this command line runs one job\n")


def test_a_batchs_option_from_the_environment_is_no_mistake():
    assert parse_args(["m:1", "job.py"], {"SIECI_JOBS": "4"}).command == ["job.py"]


@pytest.mark.parametrize("reported, sent", [((97, 0), (97, 24)), ((0, 50), (80, 50)), ((0, 0), (80, 24)),
                                            ((120, 40), (120, 40))])
def test_a_terminal_of_0_rows_or_columns_is_sized_as_shutil_sizes_it(reported, sent):
    assert known_size(*reported) == sent
    stdin = JobStdin(b"", reported)
    stdin.resized(*reported)
    try:
        assert (stdin.terminal, stdin.take_resizes()) == (sent, [encode_resize(*sent)])
        assert terminal_size(BlockHeader(b"", b"", [tty_field(*sent)])) == sent
    finally:
        stdin.close()


@pytest.mark.parametrize("argv, complaint", [
    (["--results", "out", "m:1", "job.py"], "--results goes with --return (the files to bring back)"),
    (["--max-return", "1K", "m:1", "job.py"], "--max-return goes with --return (the files to bring back)"),
    (["--timeout", "5", "--detach", "m:1", "job.py"],
     "--timeout bounds the wait for a result, which --detach does not wait for (the worker's own --timeout limits "
     "the job)"),
])
def test_options_that_would_do_nothing_are_refused(capsys, argv, complaint):
    assert refused_usage(parse_args, argv, {}) == defaults.EXIT_USAGE
    assert capsys.readouterr().err.endswith(f"error: {complaint}\n")


def test_from_the_environment_they_are_no_mistake():
    environ = {"SIECI_RESULTS": "out", "SIECI_MAX_RETURN": "1K", "SIECI_TIMEOUT": "5"}
    assert parse_args(["--detach", "m:1", "job.py"], environ).command == ["job.py"]


JOB_ID = "0123456789abcdef"


@pytest.mark.parametrize("argv, complaint", [
    (["--list", "-e", "A=1", "m:1"], "--env (-e) is for running a job, and --list runs none"),
    (["--status", "--with", "lib", "m:1"], "--with is for running a job, and --status runs none"),
    (["--cancel", JOB_ID, "--return", "*.csv", "m:1"], "--return is for running a job, and --cancel runs none"),
    (["--attach", JOB_ID, "-j", "2", "m:1"], "--jobs (-j) is for running a job, and --attach runs none"),
    (["--list", "--retries", "3", "--fresh", "m:1"], "--retries is for running a job, and --list runs none"),
    (["--list", "--timeout", "3", "m:1"],
     "--timeout bounds the wait for a job's result (with --attach), and --list waits for none"),
])
def test_a_jobs_options_with_a_request_that_runs_none_are_refused(capsys, argv, complaint):
    assert refused_usage(parse_args, argv, {}) == defaults.EXIT_USAGE
    assert capsys.readouterr().err.endswith(f"error: {complaint}\n")


@pytest.mark.parametrize("argv", [
    ["--attach", JOB_ID, "--timeout", "3", "m:1"],
    ["--list", "--json", "--connect-timeout", "2", "--secret-file", "s", "m:1"],
    ["--status", "--tls", "m:1"],
])
def test_a_request_that_runs_no_job_takes_how_to_reach_the_masters(argv):
    assert parse_args(argv, {}).command == []


def test_a_jobs_options_from_the_environment_are_let_be_with_list():
    environ = {"SIECI_RETRIES": "3", "SIECI_TIMEOUT": "5", "SIECI_FRESH": "on"}
    assert parse_args(["--list", "m:1"], environ).list
