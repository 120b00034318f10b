"""The batch command line and the joblog, without a cluster."""

import time

import pytest

from sieci import batch
from sieci.client_command import parse_args

from tests.helpers import read_joblog


@pytest.mark.parametrize("argv, environ, masters, files, batch_mode", [
    (["m:1", "a.py"], {}, [("m", 1)], ["a.py"], False),
    (["m:1", "a.py", "b.py"], {}, [("m", 1)], ["a.py", "b.py"], True),
    (["a.py"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], ["a.py"], False),
    (["--files-from", "-", "m:1"], {}, [("m", 1)], [], True),
    (["--files-from", "-"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], [], True),
    (["--joblog", "j", "m:1", "a.py"], {}, [("m", 1)], ["a.py"], True),
    (["--joblog", "j", "--retry-failed", "m:1"], {}, [("m", 1)], [], True),
    (["m:1", "a.py"], {"SIECI_FILES_FROM": "list"}, [("m", 1)], ["a.py"], True),
])
def test_which_arguments_are_masters_and_files(argv, environ, masters, files, batch_mode):
    args = parse_args(argv, environ=environ)
    assert (args.masters, args.files, args.batch) == (masters, files, batch_mode)
    assert args.file == (None if batch_mode else files[0])


@pytest.mark.parametrize("argv, complaint", [
    ([], "expected MASTER[,MASTER...] FILE"),
    (["--files-from", "-"], "expected MASTER[,MASTER...] FILE"),
    (["m:1", "a.py", "-"], "- (stdin) can only be the one FILE"),
    (["--retry-failed", "m:1"], "--retry-failed needs --joblog"),
    (["--jobs", "0", "m:1", "a.py", "b.py"], "argument --jobs: must be 1 or more, not '0'"),
])
def test_batch_mistakes_are_usage_errors(capsys, argv, complaint):
    with pytest.raises(SystemExit) as exit:
        parse_args(argv, environ={})
    assert exit.value.code == 2 and complaint in capsys.readouterr().err


def test_batch_options_come_from_the_environment():
    environ = {"SIECI_JOBS": "3", "SIECI_UNGROUP": "1", "SIECI_JOBLOG": "j"}
    args = parse_args(["m:1", "a.py", "b.py"], environ=environ)
    assert (args.jobs, args.ungroup, args.joblog, args.retry_failed) == (3, True, "j", False)
    assert parse_args(["m:1", "a.py", "b.py"], environ={}).jobs == 8


@pytest.mark.parametrize("failures, status", [(0, 0), (1, 1), (100, 100), (101, 101), (5000, 101)])
def test_the_exit_status_of_a_batch(failures, status):
    assert batch.exit_status(failures) == status


def test_file_names_with_tabs_and_newlines_survive_the_joblog(tmp_path):
    name = "odd\tname\\with\nbreaks\r.py"
    assert batch.unescape(batch.escape(name)) == name and "\t" not in batch.escape(name)
    failed = batch.Job(1, name)
    failed.started, failed.runtime, failed.failure = time.time(), 0.5, "could not\tread it"
    joblog = tmp_path / "joblog"
    log = batch.JobLog(str(joblog))
    log.add(failed)
    log.close()
    kept, again = batch.read_joblog(str(joblog))
    assert (kept, [(job.seq, job.path) for job in again]) == ([], [(1, name)])
    assert read_joblog(joblog)[0][8] == "could not read it"
