"""A master's --state-dir over real sockets: kept jobs and queued detached ones outlive a stop and start,
listed with their program and exit status; the kept-output bound bounds the records too."""

import os
import sqlite3

import pytest

from sieci.client import client
from sieci.master.state import StateRefused

from tests.helpers import LOOPBACK, JobEvents, client_address


def program(code, name="job.py"):
    return client.Program(code, name)


def test_queued_detached_and_ended_kept_jobs_outlive_a_stop_and_start(cluster, tmp_path):
    state = tmp_path / "state"
    first = cluster.master(state_dir=str(state))
    worker = cluster.worker(first)
    events = JobEvents(first)
    api = client.Client(client_address(first))
    ended = api.detach(program(b"import sys\nprint('ended', sys.argv[1:])\nsys.exit(4)\n", "ended.py"), ["a", "b"])
    events.wait_for("done")
    worker.stop(grace=1)
    queued = [api.detach(program(b"import sys\nprint('queued', sys.argv[1])\n"), [str(n)]) for n in range(3)]
    first.stop(grace=1)
    cluster.masters.remove(first)

    second = cluster.master(state_dir=str(state))
    again = client.Client(client_address(second))
    [(_, listing)] = again.jobs()
    listed = {job["id"]: job for job in listing["jobs"]}
    assert [listed[job_id]["state"] for job_id in [ended, *queued]] == ["done", "queued", "queued", "queued"]
    assert (listed[ended]["program"], listed[ended]["arguments"], listed[ended]["exit_status"]) == ("ended.py", 2, 4)
    assert listed[ended]["submitted"] <= listed[ended]["started"] <= listed[ended]["ended"]
    assert listed[queued[0]]["started"] is None and listed[queued[0]]["exit_status"] is None
    cluster.worker(second)
    for number, job_id in enumerate(queued):
        result = again.attach(job_id)
        assert (result.exit_status, result.stdout) == (0, f"queued {number}\n".encode())
    result = again.attach(ended)
    assert (result.exit_status, result.stdout) == (4, b"ended ['a', 'b']\n")


def test_a_second_master_on_the_same_folder_is_refused(cluster, tmp_path):
    cluster.master(state_dir=str(tmp_path / "state"))
    from sieci.master.master import Master

    with pytest.raises(StateRefused, match="in use by another master"):
        Master(LOOPBACK, LOOPBACK, state_dir=str(tmp_path / "state"))


def test_the_kept_output_bound_bounds_the_records_too(cluster, tmp_path):
    state = tmp_path / "state"
    master = cluster.master(state_dir=str(state), max_kept_output=6 * 4096)
    cluster.worker(master)
    events = JobEvents(master)
    api = client.Client(client_address(master))
    job_ids = []
    for number in range(12):
        job_ids.append(api.detach(program(b"print('x' * 1000)\n")))
        events.wait_for("done", number + 1)
    master.stop(grace=1)
    cluster.masters.remove(master)
    again = cluster.master(state_dir=str(state))
    [(_, listing)] = client.Client(client_address(again)).jobs()
    kept = [job["id"] for job in listing["jobs"]]
    assert 1 <= len(kept) < 6 and kept == job_ids[-len(kept):]  # the newest, the oldest evicted
    assert len(again.state.records()) == len(kept)
    assert len(list((state / "kept").iterdir())) == 2 * len(kept)  # each its results and its preamble


def test_a_record_that_cannot_be_restored_is_forgotten_loudly_and_the_rest_served(cluster, tmp_path, log_lines):
    state = tmp_path / "state"
    first = cluster.master(state_dir=str(state))
    api = client.Client(client_address(first))
    good, bad = (api.detach(program(b"print('fine')\n")) for _ in range(2))
    first.stop(grace=1)
    cluster.masters.remove(first)
    with sqlite3.connect(state / "jobs.db") as db:
        db.execute("UPDATE jobs SET state = 'no such state' WHERE id = ?", (bad,))
    db.close()
    lines = log_lines("sieci.master")
    second = cluster.master(state_dir=str(state))
    assert lines.wait_for(f"job {bad} cannot be restored from {state}")
    cluster.worker(second)
    assert client.Client(client_address(second)).attach(good).stdout == b"fine\n"
    [(_, listing)] = client.Client(client_address(second)).jobs()
    assert [job["id"] for job in listing["jobs"]] == [good]


def test_a_queued_detached_jobs_files_bundle_outlives_the_restart_with_it(cluster, tmp_path):
    from sieci.client.program import load_program

    state, job, data = tmp_path / "state", tmp_path / "job.py", tmp_path / "data.txt"
    job.write_text("print(open('data.txt').read().strip())\n")
    data.write_text("beside the job\n")
    first = cluster.master(state_dir=str(state))
    job_id = client.Client(client_address(first)).detach(load_program(str(job), [str(data)]))
    first.stop(grace=1)
    cluster.masters.remove(first)
    assert len(list((state / "files").iterdir())) == 1
    second = cluster.master(state_dir=str(state))
    cluster.worker(second)
    result = client.Client(client_address(second)).attach(job_id)
    assert (result.exit_status, result.stdout) == (0, b"beside the job\n")


def test_a_fifo_in_the_kept_folder_does_not_wedge_the_start(cluster, tmp_path):
    """A named pipe where a kept file would be (put there by hand): the restarted master reads past it,
    where opening it to read waited for a writer that never came, before the master listened."""
    state = tmp_path / "state"
    first = cluster.master(state_dir=str(state))
    queued = client.Client(client_address(first)).detach(program(b"print('fine')\n"))
    first.stop(grace=1)
    cluster.masters.remove(first)
    os.mkfifo(state / "kept" / "0123456789abcdef")
    second = cluster.master(state_dir=str(state))
    cluster.worker(second)
    assert client.Client(client_address(second)).attach(queued).stdout == b"fine\n"
