"""executor's pure parts: the file name a job runs under, a job's status."""

import signal

import pytest

from sieci.jobs.fork_channel import Ended
from sieci.worker.executor import safe_filename
from sieci.worker.limits import Limits, job_status


@pytest.mark.parametrize("name", ["hello.py", "my_job-2.py", "Main", "a.b.c"])
def test_a_plain_file_name_is_kept(name):
    assert safe_filename(name) == name


KILLED, CPU_OVER, FILE_TOO_BIG = -signal.SIGKILL, -signal.SIGXCPU, -signal.SIGXFSZ


@pytest.mark.parametrize("stopped_for, returncode, ended, expected", [
    (None, 0, Ended(0, 0.1), (b"exit", b"0")),
    (None, 3, Ended(3 << 8, 0.1), (b"exit", b"3")),
    (None, KILLED, Ended(9, 0.1), (b"signal", b"9")),
    (None, CPU_OVER, Ended(24, 2.0), (b"limit", b"cpu")),
    (None, KILLED, Ended(9, 2.5), (b"limit", b"cpu")),  # past the soft limit's SIGXCPU, the hard one
    (None, FILE_TOO_BIG, Ended(25, 0.1), (b"limit", b"file-size")),
    (None, KILLED, Ended(9, 0.1, ["memory"]), (b"limit", b"memory")),
    (None, 0, Ended(0, 0.1, ["memory"]), (b"exit", b"0")),  # it hit the limit and coped
    ("time", KILLED, Ended(9, 0.1), (b"limit", b"time")),
    ("output", None, None, (b"limit", b"output")),
    (None, None, Ended(error="cannot start the job: no such user"), (b"error", b"start")),
    (None, None, None, (b"error", b"lost")),
])
def test_a_jobs_status_says_which_limit_stopped_it_else_how_it_ended(stopped_for, returncode, ended, expected):
    status = job_status(Limits(timeout=0.5, max_output=100, cpu=2), stopped_for, returncode, ended)
    assert (status.kind, status.value) == expected


def test_a_limits_status_message_names_the_limit_and_its_value():
    limits = Limits(timeout=0.5, max_output=100, memory=1 << 20)
    assert job_status(limits, "time", None, None).message == b"the job ran past its time limit of 0.5 s"
    assert job_status(limits, "output", None, None).message == (
        b"the job hit its output limit (100 bytes); its output was cut there")
    assert job_status(limits, None, KILLED, Ended(9, 0.1, ["memory"])).message == (
        b"the job hit its memory limit (1048576 bytes)")


def test_a_job_that_failed_on_a_write_past_its_file_size_limit_hit_that_limit():
    """Python ignores SIGXFSZ, as it does locally: the write fails with EFBIG, the job reports it."""
    limits = Limits(timeout=1, file_size=1 << 20)
    assert job_status(limits, None, 1, Ended(1 << 8, 0.1), file_too_large=True).value == b"file-size"
    assert job_status(limits, None, 0, Ended(0, 0.1), file_too_large=True).kind == b"exit"  # it coped
    assert job_status(limits, None, 1, Ended(1 << 8, 0.1)).kind == b"exit"
