"""The sieci-client command line: its quick parser and its environment."""

import pytest

from sieci import defaults
from sieci.client_command import parse_args


@pytest.mark.parametrize("argv", [
    ["--timeout", "5", "--retries=2", "--shuffle", "a:1,b:2", "job.py"],
    ["a:1,b:2", "--retries", "2", "job.py", "--timeout=5", "--shuffle"],
    ["--shuffle", "--timeout", "5", "--retries", "2", "--", "a:1,b:2", "job.py"],
])
def test_options_and_arguments_in_any_order(argv):
    args = parse_args(argv, environ={})
    assert (args.masters, args.file, args.timeout, args.retries, args.shuffle) == (
        [("a", 1), ("b", 2)], "job.py", 5.0, 2, True)


def test_defaults_come_from_the_environment_and_the_command_line_wins():
    environ = {"SIECI_TIMEOUT": "7", "SIECI_RETRIES": "1", "SIECI_SHUFFLE": "1", "SIECI_MASTERS": "m:9"}
    args = parse_args(["-"], environ=environ)
    assert (args.masters, args.file, args.timeout, args.retries, args.shuffle) == ([("m", 9)], "-", 7.0, 1, True)
    assert parse_args(["--timeout", "3", "x:1", "f.py"], environ=environ).timeout == 3.0
    assert parse_args(["x:1", "f.py"], environ={}).connect_timeout == defaults.CONNECT_TIMEOUT


@pytest.mark.parametrize("argv, environ, complaint", [
    (["only-a-file.py"], {}, "expected MASTER[,MASTER...] FILE"),
    ([], {}, "expected MASTER[,MASTER...] FILE"),
    (["--retries", "-1", "m:1", "f"], {}, "argument --retries: must be 0 or more, not '-1'"),
    (["--timeout", "soon", "m:1", "f"], {}, "argument --timeout: not a number of seconds: 'soon'"),
    (["--bogus", "m:1", "f"], {}, "unrecognized arguments: --bogus"),
    (["m:1", "f"], {"SIECI_RETRIES": "many"}, "SIECI_RETRIES (for --retries): not a whole number: 'many'"),
])
def test_mistakes_are_usage_errors(capsys, argv, environ, complaint):
    with pytest.raises(SystemExit) as exit:
        parse_args(argv, environ=environ)
    assert exit.value.code == 2
    assert complaint in capsys.readouterr().err
