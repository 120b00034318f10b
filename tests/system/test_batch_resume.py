"""Resuming a batch: Ctrl-C in the middle, then --resume and --resume-failed (GNU parallel's), with
the real client against an in-process cluster; each job counts its runs in a file of its own."""

import os
import signal
import subprocess
import sys
import time

import gevent
import pytest

from tests.helpers import WAIT, client_address, read_joblog
from tests.system.test_batch import CLIENT, sieci_client

VALUES = ("1", "2", "3", "4", "5", "6")
# Job N appends N to runs.txt as it ends. Under HOLD=1 the jobs past 2 wait to be cancelled (their client
# leaving cancels them) and, if they never are, exit 3 without counting; job 2 fails until fixed exists.
JOB = """import os, sys, time
value = sys.argv[1]
deadline = time.monotonic() + {wait}
while os.environ.get("HOLD") and int(value) > 2:
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.02)
with open({runs!r}, "a") as runs:
    runs.write(value + "\\n")
print("job", value)
sys.exit(5 if value == "2" and not os.path.exists({fixed!r}) else 0)
"""


@pytest.fixture
def master(cluster):
    """A worker for every job: the held ones must not keep jobs 1 and 2 waiting, whichever comes first."""
    master = cluster.master()
    for number in range(len(VALUES)):
        cluster.worker(master, name=f"w{number}")
    return client_address(master)


@pytest.fixture
def batch(master, tmp_path):
    """The batch's command line (before its options go ``--joblog`` and whatever the test adds)."""
    (tmp_path / "spool").mkdir()
    job = tmp_path / "job.py"
    job.write_text(JOB.format(wait=WAIT, runs=str(tmp_path / "runs.txt"), fixed=str(tmp_path / "fixed")))
    return ["--joblog", tmp_path / "joblog", master, job, ":::", *VALUES]


def runs(tmp_path):
    """How many times each job has ended."""
    path = tmp_path / "runs.txt"
    ended = path.read_text().split() if path.exists() else []
    return {value: ended.count(value) for value in VALUES}


def _as_from_a_terminal():
    """SIGINT at its default, as a shell at a terminal starts a program (a background job's would ignore it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupted_after_two(batch, tmp_path, signum=signal.SIGINT):
    """Runs the batch with the jobs past 2 held, and Ctrl-C (or ``signum``) once the joblog has jobs 1 and 2."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("SIECI_")}
    environ["TMPDIR"] = str(tmp_path / "spool")
    client = subprocess.Popen([sys.executable, CLIENT, "--jobs", "6", "-e", "HOLD=1", *map(str, batch)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ,
                              preexec_fn=_as_from_a_terminal)
    joblog, deadline = tmp_path / "joblog", time.monotonic() + WAIT
    while not (joblog.exists() and joblog.read_text().count("\n") == 3):
        assert time.monotonic() < deadline and client.poll() is None, "jobs 1 and 2 never ended"
        gevent.sleep(0.02)
    client.send_signal(signum)
    stdout, stderr = client.communicate(timeout=WAIT)
    return client.returncode, stdout, stderr


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_then_resume_runs_exactly_the_jobs_that_never_finished(batch, tmp_path, signum, status):
    ended, stdout, stderr = interrupted_after_two(batch, tmp_path, signum)
    assert (ended, stdout) == (status, b"job 1\njob 2\n"), stderr
    assert b"interrupted: 4 of 6 jobs did not finish (the same command with --resume runs them)" in stderr
    first = read_joblog(tmp_path / "joblog")
    assert sorted(row[0] for row in first) == ["1", "2"]
    assert not os.listdir(tmp_path / "spool")  # the spool folder is gone, Ctrl-C or not

    done = sieci_client("--resume", *batch)
    assert (done.returncode, done.stdout) == (0, b"job 3\njob 4\njob 5\njob 6\n"), done.stderr
    assert runs(tmp_path) == dict.fromkeys(VALUES, 1)
    rows = read_joblog(tmp_path / "joblog")
    assert sorted(row[0] for row in rows) == list(VALUES) and rows[:2] == first  # kept as they were

    done = sieci_client("--resume", *batch)  # all there: nothing runs, job 2's failure included
    assert (done.returncode, done.stdout) == (0, b"")
    assert runs(tmp_path) == dict.fromkeys(VALUES, 1) and read_joblog(tmp_path / "joblog") == rows


def test_resume_failed_reruns_the_failed_job_only(batch, tmp_path):
    interrupted_after_two(batch, tmp_path)
    (tmp_path / "fixed").touch()
    done = sieci_client("--resume-failed", *batch)  # job 2 failed; 3 to 6 never finished
    assert (done.returncode, done.stdout) == (0, b"job 2\njob 3\njob 4\njob 5\njob 6\n"), done.stderr
    assert runs(tmp_path) == {**dict.fromkeys(VALUES, 1), "2": 2}
    rows = {row[0]: row for row in read_joblog(tmp_path / "joblog")}
    assert sorted(rows) == list(VALUES) and {row[6] for row in rows.values()} == {"0"}

    done = sieci_client("--resume-failed", *batch)
    assert (done.returncode, done.stdout) == (0, b"")


def test_retry_failed_with_the_values_is_resume_failed(batch, tmp_path):
    interrupted_after_two(batch, tmp_path)
    (tmp_path / "fixed").touch()
    done = sieci_client("--retry-failed", *batch)
    assert (done.returncode, done.stdout) == (0, b"job 2\njob 3\njob 4\njob 5\njob 6\n"), done.stderr
    assert runs(tmp_path) == {**dict.fromkeys(VALUES, 1), "2": 2}


def test_resume_without_a_joblog_runs_everything_and_writes_one(batch, tmp_path):
    done = sieci_client("--resume", *batch)
    assert done.returncode == 1 and runs(tmp_path) == dict.fromkeys(VALUES, 1)
    assert sorted(row[0] for row in read_joblog(tmp_path / "joblog")) == list(VALUES)


def test_a_joblog_of_another_batch_is_refused(batch, tmp_path):
    sieci_client(*batch)
    before = (tmp_path / "joblog").read_text()
    other = [*batch[:-1], "seven"]  # job 6 is now another command
    done = sieci_client("--resume", *other)
    assert done.returncode == 2 and done.stdout == b""
    assert b"is not this batch's joblog: its Seq 6 ran" in done.stderr and b"seven" in done.stderr
    done = sieci_client("--resume-failed", *batch[:-1])  # a value fewer: Seq 6 is past them
    assert done.returncode == 2 and b"its Seq 6 is past this batch's 5 jobs" in done.stderr
    assert (tmp_path / "joblog").read_text() == before  # refused before anything is written


def test_a_cut_short_last_line_counts_as_not_run(batch, tmp_path):
    sieci_client(*batch)
    joblog = tmp_path / "joblog"
    lines = joblog.read_text().split("\n")
    six = next(line for line in lines if line.startswith("6\t"))
    joblog.write_text("\n".join([line for line in lines[:-1] if line != six] + [six[:12]]))  # no newline
    done = sieci_client("--resume", *batch)
    assert (done.returncode, done.stdout) == (0, b"job 6\n"), done.stderr
    assert b"the last line is cut short; its job counts as not run" in done.stderr
    assert runs(tmp_path)["6"] == 2


def test_resume_needs_a_joblog_and_the_values(master, tmp_path):
    done = sieci_client("--resume", master, "job.py", ":::", "1")
    assert done.returncode == 2 and b"--resume needs --joblog" in done.stderr
    done = sieci_client("--resume-failed", "--joblog", tmp_path / "joblog", master, "job.py")
    assert done.returncode == 2 and b"--resume-failed needs the batch's values" in done.stderr
