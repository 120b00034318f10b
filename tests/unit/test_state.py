"""A master's state folder without sockets: the records of kept jobs, what a restart does with each,
the lock, and the databases it refuses."""

import os
import sqlite3

import pytest

from sieci.master import job_record
from sieci.master.job import Job, JobState
from sieci.master.kept_jobs import KeptJobs
from sieci.master.state import Recorder, StateDir, StateRefused
from sieci.wire import protocol

RESULTS = b"ENDSEQ T v=2\n1 3\nabcx exit 3\nT\n"


def record(**changes):
    fields = {column: None for column in job_record.COLUMNS}
    fields.update(id="a" * 16, state="queued", detached=1, keep=0, stdin=0, arguments=0, submitted=1.0)
    fields.update(changes)
    return fields


@pytest.mark.parametrize("state, detached, upload, files, begun, stdin, expected", [
    ("done", 1, False, True, True, 0, job_record.KEEP_ENDED),
    ("failed", 0, False, False, False, 0, job_record.KEEP_ENDED),
    ("queued", 1, True, True, False, 0, job_record.REQUEUE),
    ("sent", 1, True, True, False, 0, job_record.REQUEUE),  # its worker never said RECEIVED
    ("running", 1, True, True, False, 0, job_record.LOST),  # detached: never run twice
    ("running", 0, True, True, False, 0, job_record.RERUN),  # --retries, and nothing of it came back yet
    ("running", 0, True, True, True, 0, job_record.LOST),  # --retries, but its results had begun
    ("queued", 1, False, True, False, 0, job_record.LOST),  # its upload went: a worker took it (its record lags)
    ("sent", 1, False, True, False, 0, job_record.LOST),
    ("queued", 0, False, True, False, 0, job_record.LOST),  # a --retries job's upload is gone
    ("sent", 0, True, True, True, 0, job_record.LOST),  # its results had begun: it ran
    ("queued", 0, True, True, False, 1, job_record.LOST),  # its stdin streamed from a client now gone
    ("queued", 1, True, False, False, 0, job_record.LOST),  # its files bundle is gone
])
def test_what_a_restart_does_with_each_recorded_job(state, detached, upload, files, begun, stdin, expected):
    action, reason = job_record.restart_action(record(state=state, detached=detached, keep=1 - detached,
                                                      stdin=stdin), upload, files, begun)
    assert action == expected
    if detached and not upload and state != "done":
        assert reason == job_record.LOST_RUNNING
    assert (reason is not None) == (action == job_record.LOST)
    assert reason is None or reason.startswith("lost: ")


def test_complete_results_end_a_job_whose_record_lags():
    lagging = record(state="sent", detached=1)
    assert job_record.restart_action(lagging, False, True, True, results_complete=True) == (job_record.KEEP_ENDED,
                                                                                             None)
    assert job_record.restart_action(lagging, False, True, True)[0] == job_record.LOST


def test_a_preamble_alone_says_a_worker_took_the_job():
    job = Job("d" * 16, b"", None, "127.0.0.1:5", protocol.parse_header(b"ENDSEQ T v=2 detach"))
    found = job_record.record_from_upload(job_record.preamble(job, "e" * 16), None, "upload", 0)
    assert (found["state"], found["detached"], found["spool_file"], found["program"]) == (
        "running", 1, "e" * 16, None)
    assert job_record.restart_action(found, False, True, False) == (job_record.LOST, job_record.LOST_RUNNING)


def test_a_record_in_an_unknown_state_is_refused():
    with pytest.raises(ValueError, match="unknown state 'lost'"):
        job_record.restart_action(record(state="lost"), True, True, False)


def test_the_exit_status_is_read_off_the_end_of_complete_results():
    assert job_record.exit_status_of(RESULTS, b"T") == 3
    assert job_record.exit_status_of(b"ENDSEQ T v=2\nx signal 9\nT\n", b"T") == 137
    assert job_record.exit_status_of(b"ENDSEQ T\nresult\nT\n", b"T") is None  # a classic worker's: no status
    assert job_record.exit_status_of(RESULTS[:-2], b"T") is None  # cut short


def test_a_program_and_its_arguments_are_read_off_the_upload_header():
    fields = protocol.parse_header(b"ENDSEQ T v=2 name=my%20job.py arg=a arg=b%20c env=X%3D1").fields
    assert (job_record.program_of(fields), job_record.arguments_of(fields)) == ("my job.py", 2)
    assert job_record.program_of(protocol.parse_header(b"ENDSEQ T").fields) is None
    assert job_record.program_of(protocol.parse_header(b"ENDSEQ T name=%zz").fields) is None
    odd = job_record.program_of(protocol.parse_header(b"ENDSEQ T name=%FF" + b"x" * 400).fields)
    assert odd.startswith("\ufffd") and len(odd) == job_record.MAX_PROGRAM_NAME


def test_a_kept_jobs_record_survives_and_lists_as_it_ran(tmp_path):
    state = StateDir(tmp_path / "state")
    recorder = Recorder(state)
    kept = KeptJobs(1 << 20, 60, folder=state.kept_folder, recorder=recorder)
    job = Job("b" * 16, b"ENDSEQ T v=2 detach name=job.py arg=1\nprint(1)\nT\n", None, "127.0.0.1:5",
              protocol.parse_header(b"ENDSEQ T v=2 detach name=job.py arg=1"))
    kept.keep(job)
    job.detach()
    recorder.commit()
    assert [row["state"] for row in state.records()] == ["queued"]
    job.move_to(JobState.SENT)
    job.move_to(JobState.RUNNING)
    job.spool.write(RESULTS, last=True)
    job.spool.end("done", "")
    job.move_to(JobState.DONE)
    recorder.close()
    kept.close()
    again = StateDir(tmp_path / "state")
    [row] = again.records()
    assert (row["state"], row["exit_status"], row["program"], row["arguments"], row["complete"]) == (
        "done", 3, "job.py", 1, 1)
    assert row["submitted"] <= row["started"] <= row["ended"]
    listed = job_record.described(row, 1.5, False)
    assert (listed["state"], listed["exit_status"], listed["detached"], listed["client"]) == (
        "done", 3, True, "127.0.0.1:5")
    again.close()


def test_a_kept_jobs_upload_file_holds_its_first_record_before_any_commit(tmp_path):
    state = StateDir(tmp_path / "state")
    recorder = Recorder(state)
    kept = KeptJobs(1 << 20, 60, folder=state.kept_folder, recorder=recorder)
    upload = b"ENDSEQ T v=2 detach name=job.py arg=1 arg=2\nprint(1)\nT\n"
    job = Job("c" * 16, upload, None, "127.0.0.1:5", protocol.parse_header(upload.partition(b"\n")[0]))
    kept.keep(job)
    assert job.upload == upload  # read back past its preamble
    with open(os.path.join(state.kept_folder, job.upload_file_name), "rb") as file:
        preamble, header = file.readline(), file.readline()
    found = job_record.record_from_upload(preamble, protocol.parse_header(header), job.upload_file_name,
                                          len(upload))
    assert found == job_record.record_of(job)  # what the first commit would write
    with pytest.raises(ValueError):
        job_record.record_from_upload(b"ENDSEQ T v=2\n", protocol.parse_header(header), "x", 1)
    recorder.close()


def test_a_second_master_is_kept_out_of_the_folder(tmp_path):
    first = StateDir(tmp_path / "state")
    with pytest.raises(StateRefused, match=f"in use by another master \\(pid {os.getpid()}\\)"):
        StateDir(tmp_path / "state")
    first.close()
    StateDir(tmp_path / "state").close()  # free once the first has gone


def test_a_damaged_database_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    garbage = b"this is no database at all\n" * 200
    (folder / "jobs.db").write_bytes(garbage)
    with pytest.raises(StateRefused, match="damaged or not a database"):
        StateDir(folder)
    assert (folder / "jobs.db").read_bytes() == garbage
    StateDir(tmp_path / "other").close()  # the lock went with the refusal: nothing stays held


def test_another_programs_database_is_refused(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    with sqlite3.connect(folder / "jobs.db") as db:
        db.execute("CREATE TABLE jobs (name TEXT)")
        db.execute("INSERT INTO jobs VALUES ('precious')")
    db.close()
    with pytest.raises(StateRefused, match="not a sieci master's state"):
        StateDir(folder)
    with sqlite3.connect(folder / "jobs.db") as db:
        assert db.execute("SELECT name FROM jobs").fetchall() == [("precious",)]
    db.close()


def test_a_symbolic_link_is_no_state_folder_and_a_loose_one_is_made_private(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(StateRefused, match="symbolic link"):
        StateDir(tmp_path / "link")
    (tmp_path / "loose").mkdir(mode=0o755)
    StateDir(tmp_path / "loose").close()
    assert (tmp_path / "loose").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "loose" / "jobs.db").stat().st_mode & 0o777 == 0o600


def test_a_link_in_place_of_the_database_is_refused(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    os.symlink(tmp_path / "target.db", folder / "jobs.db")
    with pytest.raises(StateRefused, match="not a regular file"):
        StateDir(folder)
    assert not (tmp_path / "target.db").exists()


@pytest.mark.parametrize("make", [lambda path: os.symlink("/etc/passwd", path), os.mkdir])
def test_a_lock_that_is_a_link_or_a_folder_is_refused_in_one_line(tmp_path, make):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    make(folder / "lock")
    with pytest.raises(StateRefused, match=f"cannot use {folder / 'lock'} as the lock"):
        StateDir(folder)
