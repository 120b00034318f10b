"""fork_channel: every message between a worker and its fork server reads back as it was made.

Pure: no sockets, no processes.
"""

import importlib.util
import json
import os
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci.jobs import fork_channel
from sieci.jobs.fork_channel import MalformedMessage, Request

text = st.text(max_size=40)
pids = st.integers(min_value=1, max_value=2 ** 22)
wait_statuses = st.integers(min_value=0, max_value=0xFFFF)
cpu_seconds = st.one_of(st.integers(min_value=0, max_value=10 ** 6),
                        st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
limit_names = st.lists(st.sampled_from(["memory", "processes", "disk"]), unique=True)
users = st.one_of(st.none(), st.tuples(st.integers(0, 2 ** 31), st.integers(0, 2 ** 31)))
rlimits = st.dictionaries(st.sampled_from(["cpu", "memory", "file_size", "open_files", "processes"]),
                          st.one_of(st.none(), st.integers(0, 2 ** 40)))
requests = st.builds(Request, filename=text, env=st.dictionaries(text, text, max_size=8), limits=rlimits,
                     user=users, command=st.one_of(st.none(), st.lists(text, min_size=1, max_size=4)),
                     workdir=st.one_of(st.none(), text))


@given(requests)
def test_a_request_reads_back_as_it_was_made(request):
    decoded = fork_channel.decode_request(fork_channel.encode_request(request))
    expected = dict(vars(request), user=request.user and list(request.user))  # JSON has no tuples
    assert vars(decoded) == expected


def test_a_request_without_the_optional_fields_reads_back_with_their_defaults():
    decoded = fork_channel.decode_request(fork_channel.encode_request(Request("job.py", {"PATH": "/bin"})))
    assert (decoded.filename, decoded.env) == ("job.py", {"PATH": "/bin"})
    assert (decoded.limits, decoded.user, decoded.command, decoded.workdir) == ({}, None, None, None)


@given(pids)
def test_started_reads_back_as_the_jobs_pid(pid):
    assert fork_channel.decode_started(fork_channel.encode_started(pid)) == pid


@given(pids, wait_statuses, cpu_seconds, limit_names)
def test_ended_reads_back_as_it_was_made(pid, status, cpu, hit):
    message = fork_channel.encode_ended(pid, status, cpu, hit)
    assert json.loads(message)["pid"] == pid  # formatted by hand, and still JSON
    ended = fork_channel.decode_ended(message)
    assert (ended.status, ended.cpu, ended.hit, ended.error) == (status, cpu, hit, None)


@given(pids, text)
def test_a_job_that_could_not_start_reads_back_as_its_error(pid, error):
    ended = fork_channel.decode_ended(fork_channel.encode_failed(pid, error))
    assert (ended.status, ended.cpu, tuple(ended.hit), ended.error) == (None, None, (), error)


@given(wait_statuses, st.booleans())
def test_an_inits_report_reads_back_as_it_was_made(status, disk_full):
    report = fork_channel.decode_report(fork_channel.encode_report_ended(status, disk_full))
    assert report == {"status": status, "disk_full": disk_full}


@given(text)
def test_a_failed_start_report_reads_back_as_its_error(error):
    assert fork_channel.decode_report(fork_channel.encode_report_failed(error)) == {"error": error}


@given(st.fixed_dictionaries({}, optional={
    "sandbox": st.fixed_dictionaries({"disk": st.one_of(st.none(), st.integers(0)), "network": st.booleans(),
                                      "hide": st.lists(text), "user": st.one_of(st.none(), st.lists(st.integers()))}),
    "cgroup": st.fixed_dictionaries({"memory": st.one_of(st.none(), st.integers(0)),
                                     "processes": st.one_of(st.none(), st.integers(0))})}))
def test_walls_read_back_as_they_were_given(walls):
    argument = fork_channel.encode_walls(walls)
    assert isinstance(argument, str)  # a command-line argument
    assert fork_channel.decode_walls(argument) == walls


@pytest.mark.parametrize("decode, message", [
    (fork_channel.decode_request, b'{"filename": "job.py"}'),  # no environment
    (fork_channel.decode_request, b'{"filename": "job.py", "env": {}, "shell": true}'),
    (fork_channel.decode_started, b'{"status": 0}'),
    (fork_channel.decode_started, b"[1]"),
    (fork_channel.decode_ended, b"7"),
    (fork_channel.decode_report, b'"full"'),
])
def test_json_that_is_no_message_of_the_kind_is_a_malformed_message(decode, message):
    with pytest.raises(MalformedMessage):
        decode(message)


@pytest.mark.parametrize("decode", [fork_channel.decode_request, fork_channel.decode_started,
                                    fork_channel.decode_ended, fork_channel.decode_report])
def test_a_message_cut_short_is_a_value_error_as_the_worker_expects(decode):
    with pytest.raises(ValueError):
        decode(b'{"pid": 1, "status": ')


def test_the_format_loads_by_path_alone_as_the_fork_server_loads_it():
    """The fork server imports nothing of sieci's as a package: the format must stand alone."""
    path = os.path.join(os.path.dirname(fork_channel.__file__), "fork_channel.py")
    spec = importlib.util.spec_from_file_location("_standalone_fork_channel", path)
    standalone = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(standalone)
    assert "_standalone_fork_channel" not in sys.modules
    ended = standalone.decode_ended(fork_channel.encode_ended(5, 0, 0.25, ["memory"]))
    assert (ended.status, ended.cpu, ended.hit) == (0, 0.25, ["memory"])
