"""The options of every program: one declaration each, one meaning per environment variable, honest help."""

import os

import pytest

from sieci import __version__, config, defaults, options
from sieci.client.arguments import parse_args
from sieci.wire.results import Status

from tests.helpers import REPO
from tests.helpers.usage import refused_usage

PARSERS = {"sieci-master": config.master_parser, "sieci-worker": config.worker_parser,
           "sieci-cluster": config.cluster_parser}
PARSE = {"sieci-master": config.parse_master, "sieci-worker": config.parse_worker,
         "sieci-cluster": config.parse_cluster}


def usage_error(capsys, parse, argv, env):
    assert refused_usage(parse, argv, env) == 2
    return capsys.readouterr().err


# --- one meaning per environment variable -------------------------------------

def test_no_environment_variable_means_two_things():
    meanings = {}
    for program, declared in options.PROGRAMS.items():
        for option in filter(lambda option: option.env, declared()):
            meaning = (option.flag, option.kind, option.help)
            assert meanings.setdefault(option.env, meaning) == meaning, (program, option.env)
    assert len(set(options.CONFIG_ENV.values()) | set(meanings)) == len(options.CONFIG_ENV) + len(meanings)


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_each_daemon_reads_exactly_the_variables_declared_for_it(program):
    parser = PARSERS[program]()
    read = {action.env_var for action in parser._actions if getattr(action, "env_var", None)}
    assert read == {option.env for option in options.PROGRAMS[program]()}


def test_a_worker_does_not_take_the_clients_masters(capsys):
    assert "no master given" in usage_error(capsys, config.parse_worker, [], {"SIECI_MASTERS": "127.0.0.1:2001"})
    assert config.parse_worker([], {"SIECI_WORKER_MASTERS": "h:2000"}).masters == [("h", 2000)]


def test_a_client_does_not_take_the_workers_masters(capsys):
    err = usage_error(capsys, lambda argv, env: parse_args(argv, env), ["job.py"], {"SIECI_WORKER_MASTERS": "h:1"})
    assert "expected MASTER" in err


def test_the_job_time_limit_and_the_clients_timeout_have_their_own_variables():
    assert config.parse_worker([":1"], {"SIECI_TIMEOUT": "5"}).timeout == options.defaults.JOB_TIMEOUT
    assert config.parse_worker([":1"], {"SIECI_JOB_TIMEOUT": "5"}).timeout == 5.0
    assert parse_args(["m:1", "f.py"], {"SIECI_JOB_TIMEOUT": "5"}).timeout is None
    assert parse_args(["m:1", "f.py"], {"SIECI_TIMEOUT": "5"}).timeout == 5.0


def test_the_masters_tls_files_are_not_the_workers():
    assert config.parse_worker([":1"], {"SIECI_MASTER_TLS_CERT": "/nonexistent"}).security["tls"] is None
    assert config.parse_master([":1", ":2"], {"SIECI_TLS_CA": "/nonexistent"}).security["tls"] is None


# --- config files ---------------------------------------------------------------

@pytest.mark.parametrize("program", sorted(PARSERS))
def test_each_daemon_reads_the_config_file_its_variable_names(tmp_path, program):
    path = tmp_path / "settings.conf"
    path.write_text("log-level = debug\n")
    argv = {"sieci-master": [":1", ":2"], "sieci-worker": [":1"], "sieci-cluster": []}[program]
    assert PARSE[program](argv, {options.CONFIG_ENV[program]: str(path)}).log_level == "debug"
    other = tmp_path / "other.conf"
    other.write_text("log-level = error\n")
    assert PARSE[program](["-c", str(other), *argv], {options.CONFIG_ENV[program]: str(path)}).log_level == "error"


def test_a_config_file_typo_is_named_as_such(capsys, tmp_path):
    path = tmp_path / "worker.conf"
    path.write_text("masters = a:1\nbogus-key = 1\n")
    err = usage_error(capsys, config.parse_worker, ["-c", str(path)], {})
    assert f"{path}: unknown setting bogus-key" in err
    assert "unrecognized arguments" not in err


def test_a_missing_config_file_is_a_usage_error(capsys, tmp_path):
    err = usage_error(capsys, config.parse_master, [":1", ":2"], {"SIECI_MASTER_CONFIG": str(tmp_path / "nope")})
    assert "cannot read the config file" in err


# --- the command lines' rough edges -------------------------------------------

@pytest.mark.parametrize("program", sorted(PARSE))
def test_every_daemon_tells_its_version(capsys, program):
    with pytest.raises(SystemExit) as exit_info:
        PARSE[program](["--version"], {})
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"{program} {__version__}\n"


@pytest.mark.parametrize("program", sorted(PARSERS))
def test_help_shows_sizes_and_defaults_as_people_write_them(monkeypatch, capsys, program):
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit):
        PARSE[program](["--help"], {})
    out = capsys.readouterr().out
    assert "1073741824" not in out and "16777216" not in out
    assert "(default: 16M)" in out if program == "sieci-master" else "(default: 1G)" in out
    assert "goo.gl" not in out and "http" not in out
    for line in out.splitlines():
        assert line.count("default:") <= 1, line


def test_the_clusters_help_says_who_runs_jobs_and_how_many_workers(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit):
        config.parse_cluster(["--help"], {})
    out = capsys.readouterr().out
    assert "(default: the number of CPUs)" in out
    assert "(default: nobody when running as root, else your own user)" in out


@pytest.mark.parametrize("status, words", [
    (Status(b"exit", b"0"), "exited 0"),
    (Status(b"signal", b"9"), "killed by signal 9"),
    (Status(b"limit", b"time"), "hit its time limit"),
    (Status(b"error", b"busy"), "could not run (busy)"),
])
def test_a_status_in_words_for_logs(status, words):
    assert status.describe() == words


def test_the_readmes_exit_statuses_are_the_programs():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as readme:
        rows = {line.split("|")[2].strip(): line for line in readme if line.startswith("| ") and line.count("|") >= 4}
    assert "other than time" in rows[str(defaults.EXIT_OTHER_LIMIT)]
    assert "time limit" in rows[str(defaults.EXIT_TIME_LIMIT)]
    assert "could not get a result" in rows[str(defaults.EXIT_FAILED)]
    assert "bad command line" in rows[str(defaults.EXIT_USAGE)]
