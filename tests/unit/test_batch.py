"""The batch command line and the joblog, without a cluster."""

import re
import time

import pytest

from sieci.client import batch, joblog
from sieci.client.arguments import parse_args
from sieci.client.batch_job import BatchJob
from sieci.client.batch_plan import BatchPlan, JobQueue, resumed, retried
from sieci.client.batch_syntax import Combinations, Template
from sieci.client.joblog import BatchError, JobLog, JoblogMismatch

from tests.helpers import read_joblog
from tests.helpers.usage import refused_usage


@pytest.mark.parametrize("argv, environ, masters, command, batch_words, batch_mode", [
    (["m:1", "a.py"], {}, [("m", 1)], ["a.py"], None, False),
    (["m:1", "a.py", "b.py"], {}, [("m", 1)], ["a.py", "b.py"], None, False),  # b.py is a.py's argument
    (["m:1", ":::", "a.py", "b.py"], {}, [("m", 1)], [], [":::", "a.py", "b.py"], True),
    (["m:1", "p.py", "--n", "{}", ":::", "1", "2"], {}, [("m", 1)], ["p.py", "--n", "{}"], [":::", "1", "2"], True),
    (["m:1", "p.py", "::::", "f", ":::+", "1"], {}, [("m", 1)], ["p.py"], ["::::", "f", ":::+", "1"], True),
    (["-j", "3", "--dry-run", "m:1", "p.py"], {}, [("m", 1)], ["p.py"], None, True),
    (["a.py"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], ["a.py"], None, False),
    ([":::", "a.py"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], [], [":::", "a.py"], True),
    (["-a", "-", "m:1"], {}, [("m", 1)], [], None, True),
    (["-a", "-"], {"SIECI_MASTERS": "e:1"}, [("e", 1)], [], None, True),
    (["--joblog", "j", "m:1", "a.py"], {}, [("m", 1)], ["a.py"], None, True),
    (["--joblog", "j", "--retry-failed", "m:1"], {}, [("m", 1)], [], None, True),
    (["m:1", "a.py"], {"SIECI_ARG_FILE": "list"}, [("m", 1)], ["a.py"], None, True),
])
def test_which_arguments_are_masters_command_and_values(argv, environ, masters, command, batch_words, batch_mode):
    args = parse_args(argv, environ=environ)
    assert (args.masters, args.command, args.batch_words, args.batch) == (masters, command, batch_words, batch_mode)


@pytest.mark.parametrize("argv, jobs, keep_order, tag, halt", [
    (["-j", "3", "-k", "--tag", "--halt", "now,fail=1", "m:1", ":::", "a"], 3, True, True, "now,fail=1"),
    (["-j3", "--keep-order", "m:1", ":::", "a"], 3, True, False, None),
    (["--jobs", "5", "--halt", "2", "m:1", ":::", "a"], 5, False, False, "2"),
])
def test_gnu_parallels_options(argv, jobs, keep_order, tag, halt):
    args = parse_args(argv, environ={})
    assert (args.jobs, args.keep_order, args.tag) == (jobs, keep_order, tag)
    assert (args.halt.text if args.halt else None) == halt


@pytest.mark.parametrize("template, value, command", [
    ([], "a.py", ["a.py"]),
    (["p.py"], "x y", ["p.py", "x y"]),
    (["p.py", "--in={}.csv", "{}"], "d", ["p.py", "--in=d.csv", "d"]),
    (["{}"], "b.py", ["b.py"]),
])
def test_each_value_makes_a_command_as_gnu_parallel_does(template, value, command):
    assert Template(template, 1).command((value,), 1, 1) == command


@pytest.mark.parametrize("argv, complaint", [
    ([], "expected MASTER[,MASTER...] PROG"),
    (["-a", "-"], "expected MASTER[,MASTER...] PROG"),
    (["m:1", "-", ":::", "x"], "- (stdin) can only be the PROG of one job"),
    (["--retry-failed", "m:1"], "--retry-failed needs --joblog"),
    (["--jobs", "0", "m:1", ":::", "a.py", "b.py"], "argument --jobs: must be 1 or more, not '0'"),
    (["-k", "--ungroup", "m:1", ":::", "a.py"], "-k (--keep-order) and --ungroup do not go together"),
    (["--halt", "now,fail=0", "m:1", ":::", "a.py"], "fail= takes a count of 1 or more"),
    (["--halt", "later", "m:1", ":::", "a.py"], "expected never, or soon or now"),
    (["--tag", "m:1", "a.py"], "--tag is for a batch"),
    (["--pipe", "m:1", ":::", "a.py"], "--pipe is GNU parallel's, and sieci-client does not take it"),
    (["-X", "m:1", ":::", "a.py"], "-X is GNU parallel's"),
    (["--colsep", ",", "m:1", ":::", "a.py"], "--colsep is GNU parallel's"),
    (["-P", "4", "m:1", ":::", "a.py"], "give it as -j or --jobs"),
    (["-a", "f", "--arg-file=g", "m:1", "a.py"], "-a (--arg-file) once only"),
])
def test_batch_mistakes_are_usage_errors(capsys, argv, complaint):
    assert refused_usage(parse_args, argv, environ={}) == 2 and complaint in capsys.readouterr().err


def test_batch_options_come_from_the_environment():
    environ = {"SIECI_JOBS": "3", "SIECI_UNGROUP": "1", "SIECI_JOBLOG": "j", "SIECI_TAG": "1",
               "SIECI_HALT": "soon,done=2"}
    args = parse_args(["m:1", ":::", "a.py", "b.py"], environ=environ)
    assert (args.jobs, args.ungroup, args.joblog, args.retry_failed, args.tag) == (3, True, "j", False, True)
    assert (args.halt.when, args.halt.what, args.halt.count) == ("soon", "done", 2)
    assert parse_args(["m:1", ":::", "a.py", "b.py"], environ={}).jobs == 8


@pytest.mark.parametrize("failures, status", [(0, 0), (1, 1), (100, 100), (101, 101), (5000, 101)])
def test_the_exit_status_of_a_batch(failures, status):
    assert batch.exit_status(failures) == status


def test_commands_with_spaces_tabs_and_newlines_survive_the_joblog(tmp_path):
    name = "odd\tname\\with\nbreaks\r.py"
    assert joblog.unescape(joblog.escape(name)) == name and "\t" not in joblog.escape(name)
    command = [name, "an argument", "'quoted'", ""]
    failed = BatchJob(1, command)
    failed.started, failed.runtime, failed.failure = time.time(), 0.5, "could not\tread it"
    path = tmp_path / "joblog"
    log = JobLog(str(path))
    log.add(failed)
    log.close()
    kept, again = retried(joblog.read_joblog(str(path))[0])
    assert (kept, [(job.seq, job.command) for job in again]) == ([], [(1, command)])
    assert read_joblog(path)[0][8] == "could not read it"


def test_an_older_joblog_of_files_is_retried_file_by_file(tmp_path):
    path = tmp_path / "joblog"
    path.write_text("Seq\tFile\tMaster\tWorker\tStarttime\tJobRuntime\tExitval\tBytes\tReason\n"
                      "1\tmy job.py\tm:1\tw\t1.000\t0.100\t3\t0\t-\n2\tok.py\tm:1\tw\t1.000\t0.100\t0\t0\t-\n")
    kept, again = retried(joblog.read_joblog(str(path))[0])
    again = list(again)
    assert [(job.seq, job.command) for job in again] == [(1, ["my job.py"])]
    assert [line.split("\t")[1] for line in kept] == ["ok.py"]
    assert again[0].previous.split("\t")[1] == "'my job.py'"  # as the rewritten joblog will have it


def _joblog(tmp_path, *lines, end="\n"):
    path = tmp_path / "joblog"
    path.write_text("\n".join([joblog.HEADER, *lines]) + end)
    return str(path)


def _line(seq, command, exitval):
    return f"{seq}\t{command}\tm:1\tw\t1.000\t0.100\t{exitval}\t0\t-\t-"


def _plan(template=("p.py",), *columns):
    columns = columns or (["1", "2", "3"],)
    return BatchPlan(Template(list(template), len(columns)), Combinations(list(columns), [False] * len(columns)))


def test_resume_skips_what_the_joblog_lists_and_resume_failed_reruns_its_failures(tmp_path):
    runs, cut = joblog.read_joblog(_joblog(tmp_path, _line(2, "p.py 2", 0), _line(1, "p.py 1", 3)))
    kept, todo = resumed(_plan(), runs, "joblog", rerun_failed=False)
    assert (cut, [line[0] for line in kept], todo.total, [job.seq for job in todo]) == (None, ["2", "1"], 1, [3])
    kept, todo = resumed(_plan(), runs, "joblog", rerun_failed=True)
    assert todo.lines_left() == [_line(1, "p.py 1", 3)]  # put back if it never starts
    jobs = list(todo)
    assert ([line[0] for line in kept], [job.seq for job in jobs], todo.lines_left()) == (["2"], [1, 3], [])
    assert jobs[0].previous == _line(1, "p.py 1", 3)  # put back if it does not end this time either


def test_a_joblog_of_a_batch_with_job_slots_matches_whichever_slot_ran_each_job(tmp_path):
    runs, _ = joblog.read_joblog(_joblog(tmp_path, _line(1, "p.py 1 --slot=3", 0), _line(2, "p.py 2 --slot=12", 0)))
    kept, todo = resumed(_plan(("p.py", "{}", "--slot={%}")), runs, "joblog", rerun_failed=False)
    assert (len(kept), [job.seq for job in todo]) == (2, [3])
    runs, _ = joblog.read_joblog(_joblog(tmp_path, _line(1, "p.py 1 --slot=x", 0)))
    with pytest.raises(JoblogMismatch):
        resumed(_plan(("p.py", "{}", "--slot={%}")), runs, "joblog", rerun_failed=False)


@pytest.mark.parametrize("lines, message", [
    ([_line(1, "p.py 1", 0), _line(1, "p.py 1", 0)], "Seq 1 is on two lines (2 and 3)"),
    ([_line(4, "p.py 4", 0)], "its Seq 4 is past this batch's 3 jobs"),
    ([_line(2, "p.py 3", 0)], "its Seq 2 ran 'p.py 3', where this batch's job 2 is 'p.py 2'"),
])
def test_a_joblog_that_is_not_the_batchs_is_refused_as_a_usage_error(tmp_path, lines, message):
    with pytest.raises(JoblogMismatch, match=re.escape(message)) as refused:
        resumed(_plan(), joblog.read_joblog(_joblog(tmp_path, *lines))[0], "joblog", rerun_failed=False)
    assert refused.value.exit_code == 2


def test_only_a_last_line_with_no_newline_may_be_cut_short(tmp_path):
    runs, cut = joblog.read_joblog(_joblog(tmp_path, _line(1, "p.py 1", 0), "2\tp.py 2\tm:1", end=""))
    assert ([run.seq for run in runs], cut) == ([1], 3)
    with pytest.raises(BatchError, match=r"joblog:2: not a joblog line") as refused:
        joblog.read_joblog(_joblog(tmp_path, "2\tp.py 2\tm:1", _line(1, "p.py 1", 0)))
    assert refused.value.exit_code == 255


def test_a_missing_joblog_is_empty_only_for_resume(tmp_path):
    assert joblog.read_joblog(str(tmp_path / "none"), missing_ok=True) == ([], None)
    with pytest.raises(BatchError, match="cannot read the joblog"):
        joblog.read_joblog(str(tmp_path / "none"))


def test_no_temp_folder_for_the_spool_runs_nothing(monkeypatch):
    def refused(prefix):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(batch.tempfile, "mkdtemp", refused)
    with pytest.raises(BatchError, match=r"cannot make a folder for the jobs' output .*Permission denied"):
        batch.Batch(None, JobQueue([BatchJob(1, ["a.py"])], 1)).run()


def test_a_process_that_may_start_no_thread_runs_nothing_and_says_so(monkeypatch):
    def refused(thread):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(batch.threading.Thread, "start", refused)
    with pytest.raises(BatchError, match="cannot start a job slot's thread: this process may start no more"):
        batch.Batch(None, JobQueue([BatchJob(1, ["a.py"])], 1)).run()


def test_job_slots_start_as_many_as_the_process_may():
    class Thread:
        started = 0

        def start(self):
            if Thread.started == 2:
                raise RuntimeError("can't start new thread")
            Thread.started += 1

    assert batch._start_slots(8, lambda slot: Thread()) == 2


def test_a_joblog_without_job_ids_is_read_with_none(tmp_path):
    path = tmp_path / "joblog"
    path.write_text("Seq\tCommand\tMaster\tWorker\tStarttime\tJobRuntime\tExitval\tBytes\tReason\n"
                    "1\tjob.py\tm:1\tw\t1.000\t0.100\t3\t0\t-\n2\tok.py\tm:1\tw\t1.000\t0.100\t0\t0\t-\n")
    runs, cut = joblog.read_joblog(str(path))
    assert (cut, [run.line.split("\t")[9] for run in runs]) == (None, ["-", "-"])


