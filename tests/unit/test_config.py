"""Addresses and the daemons' options: command line > environment > config file > default."""

import argparse
import os
import re

import pytest

from sieci import config, defaults
from sieci.config import parse_cluster, parse_master, parse_worker
from sieci.options import seconds as positive_seconds
from sieci.options import UsageError, size
from sieci.wire.address import AddressError, format_address, parse_address

from tests.helpers import REPO
from tests.helpers.usage import refused_usage

CONF_DIR = os.path.join(REPO, "conf")


def write_config(tmp_path, text, name="sieci.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def usage_error(capsys, parse, argv, env=None):
    """Run a parser that must refuse ``argv``; return what it wrote on stderr."""
    assert refused_usage(parse, argv, env={} if env is None else env) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


# --- addresses -----------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("example.org:80", ("example.org", 80)),
    ("127.0.0.1:7000", ("127.0.0.1", 7000)),
    (":7000", ("DEFAULT", 7000)),
    ("7000", ("DEFAULT", 7000)),
    ("[::1]:7000", ("::1", 7000)),
    ("[::]:7000", ("::", 7000)),
    ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
    ("  localhost:1  ", ("localhost", 1)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
    ("h:65535", ("h", 65535)),
    ("h:007", ("h", 7)),
])
def test_parse_address(text, expected):
    assert parse_address(text, "DEFAULT") == expected


def test_parse_address_default_host_is_the_callers():
    assert parse_address(":7000", "") == ("", 7000)
    assert parse_address("7000", "127.0.0.1") == ("127.0.0.1", 7000)


@pytest.mark.parametrize("text", [
    "", "   ", "host", "host:", "host:port", "host:65536", "host:-1", "host:1.5", "host:+80", "host:80 80",
    "[::1]", "[::1]7000", "[::1]:", "[::1]:http", ":", "99999", "h:\u0661\u0662x",
])
def test_parse_address_refuses_bad_forms_clearly(text):
    with pytest.raises(AddressError) as error:
        parse_address(text, "DEFAULT")
    message = str(error.value)
    assert message.startswith("bad address ")
    assert repr(text.strip()) in message
    assert re.search(r"expected|port must be", message)


@pytest.mark.parametrize("text", ["h:\u00b2", "\u00b2"])
def test_parse_address_refuses_superscript_digits_with_an_address_error(text):
    with pytest.raises(AddressError):
        parse_address(text, "DEFAULT")


@pytest.mark.parametrize("address, text", [
    (("127.0.0.1", 80), "127.0.0.1:80"),
    (("example.org", 7000), "example.org:7000"),
    (("::1", 80), "[::1]:80"),
    (("::1", 80, 0, 0), "[::1]:80"),
    (("", 7000), ":7000"),
])
def test_format_address(address, text):
    assert format_address(address) == text
    assert parse_address(text, "") == address[:2]


# --- sizes and times -----------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("100", 100), ("65536", 65536), ("64K", 64 << 10), ("64k", 64 << 10), ("64KB", 64 << 10),
    ("16M", 16 << 20), ("16m", 16 << 20), ("1G", 1 << 30), (" 2M ", 2 << 20), ("1.5K", 1536),
])
def test_size(text, expected):
    assert size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "K", "12Q", "0", "-1", "0.1", "1 000", "nan"])
def test_size_refuses_nonsense(text):
    with pytest.raises(ValueError):
        size(text)


@pytest.mark.parametrize("text", ["inf", "1e400"])
def test_size_refuses_infinity_cleanly(text):
    with pytest.raises(ValueError):
        size(text)


def test_an_infinite_size_on_the_command_line_is_a_usage_error(capsys):
    assert "size" in usage_error(capsys, parse_worker, [":7000", "--max-upload", "inf"])


@pytest.mark.parametrize("text, expected", [("1", 1.0), ("0.5", 0.5), ("30", 30.0)])
def test_positive_seconds(text, expected):
    assert positive_seconds(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "abc", ""])
def test_positive_seconds_refuses_nonsense(text):
    with pytest.raises(ValueError):
        positive_seconds(text)


def test_positive_seconds_refuses_nan():
    with pytest.raises(ValueError):
        positive_seconds("nan")


# --- master --------------------------------------------------------------------

def test_master_addresses_as_positional_arguments():
    args = parse_master([":7000", "127.0.0.1:7001"], env={})
    assert args.workers_addr == ("", 7000)
    assert args.clients_addr == ("127.0.0.1", 7001)


def test_master_addresses_as_options():
    args = parse_master(["--workers-addr", "[::1]:7000", "--clients-addr", "7001"], env={})
    assert args.workers_addr == ("::1", 7000)
    assert args.clients_addr == ("", 7001)


def test_master_addresses_from_the_environment():
    args = parse_master([], env={"SIECI_WORKERS_ADDR": ":7000", "SIECI_CLIENTS_ADDR": "[::1]:7001"})
    assert args.workers_addr == ("", 7000)
    assert args.clients_addr == ("::1", 7001)


def test_master_addresses_from_a_config_file(tmp_path):
    path = write_config(tmp_path, "# a master\nworkers-addr = [::1]:7000\n\nclients-addr = 127.0.0.1:7001\n")
    args = parse_master(["-c", path], env={})
    assert args.workers_addr == ("::1", 7000)
    assert args.clients_addr == ("127.0.0.1", 7001)
    assert parse_master(["--config", path], env={}).clients_addr == ("127.0.0.1", 7001)


def test_master_address_precedence(tmp_path):
    path = write_config(tmp_path, "workers-addr = :1\nclients-addr = :9\n")
    env = {"SIECI_WORKERS_ADDR": ":2"}
    assert parse_master(["-c", path], env={}).workers_addr == ("", 1)
    assert parse_master(["-c", path], env=env).workers_addr == ("", 2)
    assert parse_master(["-c", path, "--workers-addr", ":3"], env=env).workers_addr == ("", 3)
    args = parse_master(["-c", path, "--workers-addr", ":3", ":4"], env=env)
    assert args.workers_addr == ("", 4)
    assert args.clients_addr == ("", 9)


def test_master_defaults():
    args = parse_master([":1", ":2"], env={})
    assert args.grace == defaults.GRACE
    assert args.max_upload == defaults.MAX_UPLOAD
    assert args.client_timeout == defaults.CLIENT_TIMEOUT
    assert args.log_level == "info"


@pytest.mark.parametrize("layers, grace, max_upload", [
    ((), defaults.GRACE, defaults.MAX_UPLOAD),
    (("file",), 5.0, 1 << 20),
    (("env",), 7.0, 2 << 20),
    (("file", "env"), 7.0, 2 << 20),
    (("cli",), 8.0, 3 << 20),
    (("file", "cli"), 8.0, 3 << 20),
    (("env", "cli"), 8.0, 3 << 20),
    (("file", "env", "cli"), 8.0, 3 << 20),
])
def test_master_option_precedence(tmp_path, layers, grace, max_upload):
    argv, env = [":1", ":2"], {}
    if "file" in layers:
        argv += ["-c", write_config(tmp_path, "grace = 5\nmax-upload = 1M\n")]
    if "env" in layers:
        env.update(SIECI_GRACE="7", SIECI_MAX_UPLOAD="2M")
    if "cli" in layers:
        argv += ["--grace", "8", "--max-upload", "3M"]
    args = parse_master(argv, env=env)
    assert (args.grace, args.max_upload) == (grace, max_upload)


def test_master_env_argument_replaces_os_environ(monkeypatch):
    monkeypatch.setenv("SIECI_GRACE", "99")
    monkeypatch.setenv("SIECI_WORKERS_ADDR", ":5")
    args = parse_master([":1", ":2"], env={})
    assert args.grace == defaults.GRACE
    assert args.workers_addr == ("", 1)


def test_master_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("SIECI_WORKERS_ADDR", ":5")
    monkeypatch.setenv("SIECI_CLIENTS_ADDR", ":6")
    monkeypatch.setenv("SIECI_GRACE", "99")
    args = parse_master([])
    assert (args.workers_addr, args.clients_addr, args.grace) == (("", 5), ("", 6), 99.0)


def test_master_without_addresses_says_what_is_missing(capsys):
    err = usage_error(capsys, parse_master, [])
    assert "WORKERS_ADDR is missing" in err
    assert "SIECI_WORKERS_ADDR" in err
    assert "--workers-addr" in err


@pytest.mark.parametrize("parse, argv, message", [
    (parse_master, [":7000"], "CLIENTS_ADDR is missing: give it as an argument, with --clients-addr, or in "
                              "SIECI_CLIENTS_ADDR"),
    (parse_worker, [":1", "--credit", "33"], "--credit: at most 32, not 33"),
    (parse_cluster, ["--job-network", "off", "--job-namespaces", "off"], "--job-network off needs --job-namespaces on"),
])
def test_our_own_checks_raise_rather_than_exit(capsys, parse, argv, message):
    """Only the entry point (main.py) shows a UsageError and exits: it reads as argparse's own would."""
    with pytest.raises(UsageError) as refusal:
        parse(argv, env={})
    assert (refusal.value.message, refusal.value.exit_code) == (message, defaults.EXIT_USAGE)
    assert capsys.readouterr().err == ""
    refusal.value.show()
    shown = capsys.readouterr().err
    parser = {"sieci-master": config.master_parser, "sieci-worker": config.worker_parser,
              "sieci-cluster": config.cluster_parser}[refusal.value.prog]()
    with pytest.raises(SystemExit):
        argparse.ArgumentParser.error(parser, message)
    assert shown == capsys.readouterr().err


def test_master_without_clients_addr_says_so(capsys):
    err = usage_error(capsys, parse_master, [":7000"])
    assert "CLIENTS_ADDR is missing" in err
    assert "SIECI_CLIENTS_ADDR" in err


def test_master_with_a_bad_address_says_so(capsys):
    err = usage_error(capsys, parse_master, ["nonsense", ":7001"])
    assert "bad address 'nonsense'" in err


@pytest.mark.parametrize("argv, words", [
    ([":1", ":2", "--max-upload", "lots"], "not a size: 'lots'"),
    ([":1", ":2", "--grace", "0"], "a time must be positive"),
    ([":1", ":2", "--grace", "soon"], "not a number of seconds"),
    ([":1", ":2", "--log-level", "loud"], "invalid choice"),
    ([":1", ":2", ":3"], "unrecognized arguments"),
])
def test_master_refuses_bad_options(capsys, argv, words):
    assert words in usage_error(capsys, parse_master, argv)


def test_a_bad_value_from_the_environment_is_a_usage_error(capsys):
    assert "not a size" in usage_error(capsys, parse_master, [":1", ":2"], env={"SIECI_MAX_UPLOAD": "lots"})


def test_an_unknown_key_in_a_config_file_is_a_usage_error(tmp_path, capsys):
    path = write_config(tmp_path, "grace = 5\ngrcae = 6\n")
    assert "grcae" in usage_error(capsys, parse_master, [":1", ":2", "-c", path])


# --- worker --------------------------------------------------------------------

def test_worker_masters_as_positional_arguments():
    args = parse_worker(["a:1", "[::1]:2", "7000"], env={})
    assert args.masters == [("a", 1), ("::1", 2), ("127.0.0.1", 7000)]


def test_worker_masters_from_the_masters_option():
    assert parse_worker(["--masters", "a:1,b:2"], env={}).masters == [("a", 1), ("b", 2)]
    assert parse_worker(["--masters", " a:1 , :2 ,"], env={}).masters == [("a", 1), ("127.0.0.1", 2)]


def test_worker_masters_from_the_environment():
    args = parse_worker([], env={"SIECI_WORKER_MASTERS": "a:1,b:2"})
    assert args.masters == [("a", 1), ("b", 2)]


def test_worker_masters_from_a_config_file(tmp_path):
    path = write_config(tmp_path, "masters = a:1,[::1]:2\ntimeout = 2\nmax-output = 64K\n")
    args = parse_worker(["-c", path], env={})
    assert args.masters == [("a", 1), ("::1", 2)]
    assert (args.timeout, args.max_output) == (2.0, 64 << 10)


def test_worker_masters_precedence(tmp_path):
    path = write_config(tmp_path, "masters = file:1\n")
    env = {"SIECI_WORKER_MASTERS": "env:2"}
    assert parse_worker(["-c", path], env={}).masters == [("file", 1)]
    assert parse_worker(["-c", path], env=env).masters == [("env", 2)]
    assert parse_worker(["-c", path, "--masters", "cli:3"], env=env).masters == [("cli", 3)]
    assert parse_worker(["-c", path, "--masters", "cli:3", "pos:4"], env=env).masters == [("pos", 4)]


def test_worker_defaults():
    args = parse_worker([":7000"], env={})
    assert args.python is None
    assert args.timeout == defaults.JOB_TIMEOUT
    assert args.max_output == defaults.MAX_OUTPUT
    assert args.max_upload == defaults.MAX_UPLOAD
    assert args.reconnect_max == defaults.RECONNECT_MAX
    assert args.grace == defaults.GRACE
    assert args.credit is defaults.CREDIT is None  # auto


def test_a_workers_credit_comes_from_any_layer_and_is_capped(capsys):
    assert parse_worker([":1", "--credit", "8"], env={}).credit == 8
    assert parse_worker([":1"], env={"SIECI_CREDIT": "4"}).credit == 4
    assert parse_worker([":1", "--credit", str(defaults.MAX_CREDIT)], env={}).credit == defaults.MAX_CREDIT
    assert parse_worker([":1", "--credit", "auto"], env={"SIECI_CREDIT": "4"}).credit is None
    assert parse_worker([":1"], env={"SIECI_CREDIT": "Auto"}).credit is None
    assert "at most 32" in usage_error(capsys, parse_worker, [":1", "--credit", "33"])
    assert "(or auto)" in usage_error(capsys, parse_worker, [":1", "--credit", "some"])
    assert "1 or more" in usage_error(capsys, parse_worker, [":1", "--credit", "0"])


def test_a_master_dispatches_pipelined_unless_told_classic():
    assert parse_master([":1", ":2"], env={}).classic_dispatch is False
    assert parse_master([":1", ":2", "--classic-dispatch"], env={}).classic_dispatch is True
    assert parse_master([":1", ":2"], env={"SIECI_CLASSIC_DISPATCH": "yes"}).classic_dispatch is True


@pytest.mark.parametrize("layers, grace, max_upload, timeout", [
    ((), defaults.GRACE, defaults.MAX_UPLOAD, defaults.JOB_TIMEOUT),
    (("file",), 5.0, 1 << 20, 50.0),
    (("file", "env"), 7.0, 2 << 20, 70.0),
    (("env", "cli"), 8.0, 3 << 20, 80.0),
    (("file", "env", "cli"), 8.0, 3 << 20, 80.0),
])
def test_worker_option_precedence(tmp_path, layers, grace, max_upload, timeout):
    argv, env = [":1"], {}
    if "file" in layers:
        argv += ["-c", write_config(tmp_path, "grace = 5\nmax-upload = 1M\ntimeout = 50\n")]
    if "env" in layers:
        env.update(SIECI_GRACE="7", SIECI_MAX_UPLOAD="2M", SIECI_JOB_TIMEOUT="70")
    if "cli" in layers:
        argv += ["--grace", "8", "--max-upload", "3M", "--timeout", "80"]
    args = parse_worker(argv, env=env)
    assert (args.grace, args.max_upload, args.timeout) == (grace, max_upload, timeout)


@pytest.mark.parametrize("argv, env", [
    ([], {}),
    (["--masters", ""], {}),
    (["--masters", " , ,"], {}),
    ([], {"SIECI_WORKER_MASTERS": ","}),
])
def test_worker_without_masters_says_what_is_missing(capsys, argv, env):
    err = usage_error(capsys, parse_worker, argv, env)
    assert "no master given" in err
    assert "MASTER_ADDR" in err
    assert "SIECI_WORKER_MASTERS" in err


def test_worker_with_a_bad_master_says_so(capsys):
    assert "bad address 'a:b'" in usage_error(capsys, parse_worker, ["--masters", "x:1,a:b"])


# --- cluster -------------------------------------------------------------------

def test_cluster_defaults():
    args = parse_cluster([], env={})
    assert args.command == []
    assert args.workers == (os.cpu_count() or 1)
    assert args.timeout == defaults.JOB_TIMEOUT
    assert args.max_output == defaults.MAX_OUTPUT
    assert args.log_level == "warning"


@pytest.mark.parametrize("argv, command", [
    (["job.py"], ["job.py"]),
    (["-"], ["-"]),
    (["--", "-x.py"], ["-x.py"]),
    (["--workers", "2", "job.py", "--workers", "a b"], ["job.py", "--workers", "a b"]),
])
def test_cluster_program_and_its_arguments(argv, command):
    assert parse_cluster(argv, env={}).command == command


@pytest.mark.parametrize("layers, workers, max_output", [
    ((), os.cpu_count() or 1, defaults.MAX_OUTPUT),
    (("file",), 3, 1 << 20),
    (("file", "env"), 5, 2 << 20),
    (("file", "env", "cli"), 7, 3 << 20),
])
def test_cluster_option_precedence(tmp_path, layers, workers, max_output):
    argv, env = [], {}
    if "file" in layers:
        argv += ["-c", write_config(tmp_path, "workers = 3\nmax-output = 1M\n")]
    if "env" in layers:
        env.update(SIECI_WORKERS="5", SIECI_MAX_OUTPUT="2M")
    if "cli" in layers:
        argv += ["--workers", "7", "--max-output", "3M"]
    args = parse_cluster(argv, env=env)
    assert (args.workers, args.max_output) == (workers, max_output)


@pytest.mark.parametrize("count", ["0", "-2"])
def test_cluster_needs_a_worker(capsys, count):
    assert "argument --workers: must be 1 or more" in usage_error(capsys, parse_cluster, ["--workers", count])


# --- help ----------------------------------------------------------------------

@pytest.mark.parametrize("parse, names", [
    (parse_master, ["SIECI_WORKERS_ADDR", "SIECI_CLIENTS_ADDR", "SIECI_MAX_UPLOAD", "SIECI_CLIENT_TIMEOUT",
                    "SIECI_GRACE", "SIECI_KEEPALIVE", "SIECI_MAX_QUEUE", "SIECI_LOG_LEVEL"]),
    (parse_worker, ["SIECI_WORKER_MASTERS", "SIECI_PYTHON", "SIECI_JOB_TIMEOUT", "SIECI_MAX_OUTPUT", "SIECI_MAX_UPLOAD",
                    "SIECI_RECONNECT_MAX", "SIECI_GRACE", "SIECI_KEEPALIVE", "SIECI_LOG_LEVEL"]),
    (parse_cluster, ["SIECI_WORKERS", "SIECI_JOB_TIMEOUT", "SIECI_MAX_OUTPUT", "SIECI_LOG_LEVEL"]),
], ids=["master", "worker", "cluster"])
def test_help_names_the_environment_variables(monkeypatch, capsys, parse, names):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        parse(["--help"], env={})
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith("usage: sieci-")
    assert "-c CONFIG_FILE" in out
    for name in names:
        assert name in out, name


# --- example config files ------------------------------------------------------

def example_configs():
    if not os.path.isdir(CONF_DIR):
        return []
    return sorted(name for name in os.listdir(CONF_DIR)
                  if os.path.isfile(os.path.join(CONF_DIR, name)) and name.endswith(".conf"))


PARSERS = {"master": config.master_parser, "worker": config.worker_parser, "cluster": config.cluster_parser}


def check_addresses(kind, args):
    if kind == "master":
        for text in (args.workers_addr_option, args.clients_addr_option):
            if text:
                parse_address(text, "")
    elif kind == "worker" and args.masters_option:
        for text in args.masters_option.split(","):
            if text.strip():
                parse_address(text, "127.0.0.1")


@pytest.mark.skipif(not example_configs(), reason="conf/ has no example config files yet")
@pytest.mark.parametrize("name", example_configs() or ["(none)"])
def test_example_config_file_parses(name):
    """Each conf/ file is read by the parser its name points to (or, failing that, by one of them)."""
    path = os.path.join(CONF_DIR, name)
    kinds = [kind for kind in PARSERS if kind in name.lower()] or list(PARSERS)
    failures = []
    for kind in kinds:
        try:
            args = PARSERS[kind]().parse_args(["-c", path], env_vars={})
            check_addresses(kind, args)
        except (SystemExit, AddressError) as error:
            failures.append(f"{kind}: {error!r}")
        else:
            assert args.config_file == path
            return
    pytest.fail(f"conf/{name} is not a valid config file for {' or '.join(kinds)}: {failures}")
