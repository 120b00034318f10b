"""The batch command line and the joblog, without a cluster."""

import time

import pytest

from sieci import batch
from sieci.client_command import parse_args

from tests.helpers import read_joblog


@pytest.mark.parametrize("argv, environ, masters, command, batch_values, batch_mode", [
    (["m:1", "a.py"], {}, [("m", 1)], ["a.py"], None, False),
    (["m:1", "a.py", "b.py"], {}, [("m", 1)], ["a.py", "b.py"], None, False),  # b.py is a.py's argument
    (["m:1", ":::", "a.py", "b.py"], {}, [("m", 1)], [], ["a.py", "b.py"], True),
    (["m:1", "p.py", "--n", "{}", ":::", "1", "2"], {}, [("m", 1)], ["p.py", "--n", "{}"], ["1", "2"], True),
    (["a.py"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], ["a.py"], None, False),
    ([":::", "a.py"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], [], ["a.py"], True),
    (["-a", "-", "m:1"], {}, [("m", 1)], [], None, True),
    (["-a", "-"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], [], None, True),
    (["--joblog", "j", "m:1", "a.py"], {}, [("m", 1)], ["a.py"], None, True),
    (["--joblog", "j", "--retry-failed", "m:1"], {}, [("m", 1)], [], None, True),
    (["m:1", "a.py"], {"SIECI_ARG_FILE": "list"}, [("m", 1)], ["a.py"], None, True),
])
def test_which_arguments_are_masters_command_and_values(argv, environ, masters, command, batch_values, batch_mode):
    args = parse_args(argv, environ=environ)
    assert (args.masters, args.command, args.batch_values, args.batch) == (masters, command, batch_values, batch_mode)


@pytest.mark.parametrize("template, value, command", [
    ([], "a.py", ["a.py"]),
    (["p.py"], "x y", ["p.py", "x y"]),
    (["p.py", "--in={}.csv", "{}"], "d", ["p.py", "--in=d.csv", "d"]),
    (["{}"], "b.py", ["b.py"]),
])
def test_each_value_makes_a_command_as_gnu_parallel_does(template, value, command):
    assert batch.command_for(template, value) == command


@pytest.mark.parametrize("argv, complaint", [
    ([], "expected MASTER[,MASTER...] PROG"),
    (["-a", "-"], "expected MASTER[,MASTER...] PROG"),
    (["m:1", "-", ":::", "x"], "- (stdin) can only be the PROG of one job"),
    (["--retry-failed", "m:1"], "--retry-failed needs --joblog"),
    (["--jobs", "0", "m:1", ":::", "a.py", "b.py"], "argument --jobs: must be 1 or more, not '0'"),
])
def test_batch_mistakes_are_usage_errors(capsys, argv, complaint):
    with pytest.raises(SystemExit) as exit:
        parse_args(argv, environ={})
    assert exit.value.code == 2 and complaint in capsys.readouterr().err


def test_batch_options_come_from_the_environment():
    environ = {"SIECI_JOBS": "3", "SIECI_UNGROUP": "1", "SIECI_JOBLOG": "j"}
    args = parse_args(["m:1", ":::", "a.py", "b.py"], environ=environ)
    assert (args.jobs, args.ungroup, args.joblog, args.retry_failed) == (3, True, "j", False)
    assert parse_args(["m:1", ":::", "a.py", "b.py"], environ={}).jobs == 8


@pytest.mark.parametrize("failures, status", [(0, 0), (1, 1), (100, 100), (101, 101), (5000, 101)])
def test_the_exit_status_of_a_batch(failures, status):
    assert batch.exit_status(failures) == status


def test_commands_with_spaces_tabs_and_newlines_survive_the_joblog(tmp_path):
    name = "odd\tname\\with\nbreaks\r.py"
    assert batch.unescape(batch.escape(name)) == name and "\t" not in batch.escape(name)
    command = [name, "an argument", "'quoted'", ""]
    failed = batch.Job(1, command)
    failed.started, failed.runtime, failed.failure = time.time(), 0.5, "could not\tread it"
    joblog = tmp_path / "joblog"
    log = batch.JobLog(str(joblog))
    log.add(failed)
    log.close()
    kept, again = batch.read_joblog(str(joblog))
    assert (kept, [(job.seq, job.command) for job in again]) == ([], [(1, command)])
    assert read_joblog(joblog)[0][8] == "could not read it"


def test_an_older_joblog_of_files_is_retried_file_by_file(tmp_path):
    joblog = tmp_path / "joblog"
    joblog.write_text("Seq\tFile\tMaster\tWorker\tStarttime\tJobRuntime\tExitval\tBytes\tReason\n"
                      "1\tmy job.py\tm:1\tw\t1.000\t0.100\t3\t0\t-\n2\tok.py\tm:1\tw\t1.000\t0.100\t0\t0\t-\n")
    kept, again = batch.read_joblog(str(joblog))
    assert [(job.seq, job.command) for job in again] == [(1, ["my job.py"])]
    assert [line.split("\t")[1] for line in kept] == ["ok.py"]
    assert again[0].previous.split("\t")[1] == "'my job.py'"  # as the rewritten joblog will have it


def test_a_joblog_without_job_ids_is_read_with_none(tmp_path):
    joblog = tmp_path / "joblog"
    joblog.write_text("Seq\tCommand\tMaster\tWorker\tStarttime\tJobRuntime\tExitval\tBytes\tReason\n"
                      "1\tjob.py\tm:1\tw\t1.000\t0.100\t3\t0\t-\n2\tok.py\tm:1\tw\t1.000\t0.100\t0\t0\t-\n")
    kept, again = batch.read_joblog(str(joblog))
    assert kept == ["2\tok.py\tm:1\tw\t1.000\t0.100\t0\t0\t-\t-"]
    assert again[0].previous.split("\t")[9] == "-"
