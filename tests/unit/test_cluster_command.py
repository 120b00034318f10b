"""sieci-cluster's command line: its own options, the client's, and PROG with its ARGs, told apart."""

import pytest

from sieci import defaults, options
from sieci.client.arguments import CLIENT_OPTIONS
from sieci.cluster_command import NOT_FOR_A_CLUSTER, job_arguments, split_command_line
from sieci.config import cluster_parser
from sieci.main import _parse_cluster_command_line
from sieci.options import UsageError


def split(argv):
    return split_command_line(argv, cluster_parser())


@pytest.mark.parametrize("argv, cluster, client, command", [
    (["job.py"], [], [], ["job.py"]),
    (["--workers", "2", "--with", "lib", "-eX=1", "--timeout", "5", "--fresh", "job.py", "--workers", "3"],
     ["--workers", "2", "--timeout", "5"], ["--with", "lib", "-eX=1", "--fresh"], ["job.py", "--workers", "3"]),
    (["--workers=2", "-c", "c.conf", "--return=*.csv", "-e", "Y", "-t", "-", "a"],
     ["--workers=2", "-c", "c.conf"], ["--return=*.csv", "-e", "Y", "-t"], ["-", "a"]),
    (["--jobs", "2", "job.py", "{}", ":::", "a", "b"], [], ["--jobs", "2"], ["job.py", "{}", ":::", "a", "b"]),
    (["--", "-odd.py", "--with", "x"], [], [], ["-odd.py", "--with", "x"]),
    (["--bogus", "--port", "7", "--metrics", ":9"], ["--bogus", "--port", "7", "--metrics", ":9"], [], []),
    (["--help"], ["--help"], [], []),
])
def test_split(argv, cluster, client, command):
    assert split(argv) == (cluster, client, command)


@pytest.mark.parametrize("option", CLIENT_OPTIONS, ids=lambda option: option.flag)
def test_every_client_option_is_the_clients_but_where_the_cluster_has_it(option):
    value = [] if option.kind is bool else ["1"]
    own = cluster_parser()._option_string_actions
    for flag in filter(None, (option.flag, option.short)):
        expected = ([flag, *value], [], ["job.py"]) if flag in own else ([], [flag, *value], ["job.py"])
        assert split([flag, *value, "job.py"]) == expected


def test_the_timeout_is_the_clusters():
    assert split(["--timeout", "5", "job.py"]) == (["--timeout", "5"], [], ["job.py"])


def job(argv, environ=None):
    _, client, command = split(argv)
    return job_arguments(client, command, environ or {}, cluster_parser())


def test_the_clients_reading_of_the_rest():
    args = job(["-e", "X=1", "--return", "*.csv", "--with", "lib", "--retries", "2", "job.py", "a", "--fresh"])
    assert (args.env, args.returns, args.files, args.retries, args.fresh, args.command, args.batch) == (
        {"X": "1"}, ["*.csv"], ["lib"], 2, False, ["job.py", "a", "--fresh"], False)
    batch = job(["--jobs", "3", "job.py", "{}", ":::", "a", "b"])
    assert (batch.batch, batch.jobs, batch.batch_words) == (True, 3, [":::", "a", "b"])


def test_the_clients_variables_count_but_those_it_does_not_take():
    environ = {"SIECI_RETRIES": "4", "SIECI_MASTERS": "elsewhere:1", "SIECI_TIMEOUT": "3",
               "SIECI_SECRET_FILE": "/nonexistent", "SIECI_DETACH": "1", "SIECI_LIST": "1"}
    args = job(["job.py"], environ)
    assert (args.retries, args.timeout, args.secret_file, args.detach, args.list) == (4, None, None, False, False)
    assert args.command == ["job.py"]


@pytest.mark.parametrize("flag", sorted(NOT_FOR_A_CLUSTER))
def test_what_cannot_work_on_the_clusters_master_is_refused(flag):
    value = [] if next(option for option in options.CLIENT if option.flag == flag).kind is bool else ["x"]
    with pytest.raises(UsageError) as refusal:
        job([flag, *value, "job.py"])
    assert (refusal.value.prog, refusal.value.message) == (
        "sieci-cluster", f"{flag} is not for sieci-cluster: {NOT_FOR_A_CLUSTER[flag]}")


@pytest.mark.parametrize("flag", ["--pipe", "-X", "--colsep"])
def test_gnu_parallels_options_sieci_does_not_run_are_refused_in_one_line(flag):
    with pytest.raises(UsageError) as refusal:
        split_command_line([flag, "job.py", ":::", "a"], cluster_parser())
    assert (refusal.value.prog, refusal.value.usage) == ("sieci-cluster", "")
    assert refusal.value.message.startswith(f"{flag} is GNU parallel's, and sieci-cluster does not take it: ")


def test_a_clients_mistake_is_said_as_the_clusters():
    with pytest.raises(UsageError) as refusal:
        job(["-e", "=1", "job.py"])
    assert (refusal.value.prog, refusal.value.usage) == ("sieci-cluster", cluster_parser().format_usage())


@pytest.mark.parametrize("argv, message", [
    (["--with", "lib"], "--with is for running PROG: give PROG (a file, or - for stdin)"),
    (["--port", "2001", "job.py"],
     "--port serves other clients, which a cluster running PROG does not: give it without PROG"),
])
def test_serving_and_running_prog_refuse_what_is_the_others(argv, message):
    with pytest.raises(UsageError) as refusal:
        _parse_cluster_command_line(argv)
    assert refusal.value.message == message
    assert refusal.value.exit_code == defaults.EXIT_USAGE


def test_serving_options():
    args, job_args = _parse_cluster_command_line(["--port", "2001", "--metrics", "9101"])
    assert (args.port, args.metrics, job_args) == (2001, ("127.0.0.1", 9101), None)
    args, job_args = _parse_cluster_command_line(["--metrics", "0.0.0.0:9101", "--workers", "1", "job.py", "x"])
    assert (args.metrics, args.workers, job_args.command) == (("0.0.0.0", 9101), 1, ["job.py", "x"])


def test_the_clusters_client_is_the_one_the_command_line_asks_for():
    from sieci.client.command import client_for

    args = job(["--retries", "2", "--fresh", "--return", "*.csv", "--max-return", "1K", "--shuffle",
                "--connect-timeout", "3", "job.py"])
    client = client_for(args, masters=[("127.0.0.1", 5)], secret=b"s" * 32)
    assert (client.addresses, client.secret, client.retries, client.fresh, client.max_return, client.shuffle,
            client.connect_timeout, client.timeout, client.tls) == (
        [("127.0.0.1", 5)], b"s" * 32, 2, True, 1024, True, 3.0, None, None)
