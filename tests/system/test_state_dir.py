"""A master with --state-dir SIGKILLed and started again on the same folder: every queued detached job
runs once, every kept job is attached to and listed; a job that ran when it died is reported lost; a
second master on the folder and a damaged database are refused."""

import json
import time

import gevent

from sieci.client import client
from sieci.master.state import COMMIT_DELAY

from tests.helpers import PYTHON, WAIT
from tests.helpers.processes import MASTER

# Each run appends its label to the file the test gives: the test counts every job's runs.
JOB = """import sys
with open({runs!r}, "a") as runs:
    runs.write(sys.argv[1] + "\\n")
print("ran", sys.argv[1])
"""


def wait_until(condition, what):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        gevent.sleep(0.02)


def lines_of(path):
    return path.read_text().split() if path.exists() else []


def test_a_sigkilled_master_runs_its_queued_detached_jobs_once_and_keeps_every_job(procs, cluster, tmp_path):
    runs, state = tmp_path / "runs.txt", tmp_path / "state"
    master = procs.master(extra=["--state-dir", str(state)])
    api = client.Client(f"127.0.0.1:{procs.clients_port}", timeout=WAIT)
    worker = cluster.worker(("127.0.0.1", procs.workers_port))
    job = client.Program(JOB.format(runs=str(runs)).encode(), "count.py")
    finished = {api.detach(job, [f"finished-{n}"]): f"finished-{n}" for n in range(10)}
    wait_until(lambda: len(lines_of(runs)) == 10, "10 runs")
    wait_until(lambda: all(job["state"] == "done" for job in api.jobs()[0][1]["jobs"]), "10 jobs done")
    worker.stop(grace=1)
    queued = {api.detach(job, [f"queued-{n}"]): f"queued-{n}" for n in range(50)}
    [(_, listing)] = api.jobs()
    assert sorted(job["state"] for job in listing["jobs"]) == ["done"] * 10 + ["queued"] * 50
    master.kill()

    procs.master(extra=["--state-dir", str(state)])
    address = f"127.0.0.1:{procs.clients_port}"
    listed = json.loads(procs.run_client("--list", "--json", address).stdout)[address]["jobs"]
    assert {job["id"] for job in listed} == set(finished) | set(queued)
    cluster.worker(("127.0.0.1", procs.workers_port))
    again = client.Client(address, timeout=WAIT)
    for job_id, label in {**finished, **queued}.items():
        result = again.attach(job_id)
        assert (result.exit_status, result.stdout) == (0, f"ran {label}\n".encode()), procs.logs()
    assert sorted(lines_of(runs)) == sorted([*finished.values(), *queued.values()])  # each ran exactly once
    attached = procs.run_client("--attach", next(iter(queued)), address)
    assert (attached.returncode, attached.stdout) == (0, f"ran {queued[next(iter(queued))]}\n".encode())
    listed = json.loads(procs.run_client("--list", "--json", address).stdout)[address]["jobs"]
    assert {(job["state"], job["program"], job["arguments"], job["exit_status"]) for job in listed} == {
        ("done", "count.py", 1, 0)}
    # (a job that ended in the last batch before the kill, its record lagging, has no start time known)
    assert len(listed) == 60 and all(job["submitted"] <= (job["started"] or job["submitted"]) <= job["ended"]
                                     for job in listed)


def test_a_job_running_when_its_master_died_is_reported_lost_never_run_again(procs, cluster, tmp_path):
    runs, state, release = tmp_path / "runs.txt", tmp_path / "state", tmp_path / "release"
    master = procs.master(extra=["--state-dir", str(state)])
    api = client.Client(f"127.0.0.1:{procs.clients_port}", timeout=WAIT)
    cluster.worker(("127.0.0.1", procs.workers_port))
    code = (f"import os, time\nopen({str(runs)!r}, 'a').write('run\\n')\nprint('started', flush=True)\n"
            f"deadline = time.monotonic() + {WAIT}\n"
            f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n    time.sleep(0.02)\n")
    job_id = api.detach(client.Program(code.encode(), "slow.py"))
    wait_until(lambda: lines_of(runs) == ["run"], "the job started")
    wait_until(lambda: api.jobs()[0][1]["jobs"][0]["state"] == "running", "the master saw it run")
    master.kill()
    release.touch()
    procs.master(extra=["--state-dir", str(state)])
    address = f"127.0.0.1:{procs.clients_port}"
    cluster.worker(("127.0.0.1", procs.workers_port))
    attached = procs.run_client("--attach", job_id, address)
    assert attached.returncode == 255 and b"lost: the master stopped while the job ran" in attached.stderr
    [listed] = json.loads(procs.run_client("--list", "--json", address).stdout)[address]["jobs"]
    assert (listed["id"], listed["state"], listed["reason"][:5]) == (job_id, "failed", "lost:")
    assert lines_of(runs) == ["run"]


def test_a_second_master_and_a_damaged_database_are_refused_in_one_line(procs, tmp_path):
    state = tmp_path / "state"
    procs.master(extra=["--state-dir", str(state)])
    second = procs.start("master", [PYTHON, MASTER, "127.0.0.1:0", "127.0.0.1:0", "--state-dir", str(state)])
    assert procs.finish(second).returncode == 1
    assert second.stderr().strip().endswith("is in use by another master (pid "
                                            f"{procs.procs[0].pid}): each master needs a state folder of its own")
    damaged = tmp_path / "damaged"
    damaged.mkdir(mode=0o700)
    (damaged / "jobs.db").write_bytes(b"\0garbage" * 1000)
    third = procs.start("master", [PYTHON, MASTER, "127.0.0.1:0", "127.0.0.1:0", "--state-dir", str(damaged)])
    assert procs.finish(third).returncode == 1
    assert "is damaged or not a database" in third.stderr() and "Traceback" not in third.stderr()
    assert (damaged / "jobs.db").read_bytes() == b"\0garbage" * 1000


def test_a_retries_job_queued_at_the_kill_runs_once_for_its_client_never_again_behind_its_back(procs, cluster,
                                                                                               tmp_path):
    runs, state = tmp_path / "runs.txt", tmp_path / "state"
    master = procs.master(extra=["--state-dir", str(state)])
    ports = procs.workers_port, procs.clients_port
    address = f"127.0.0.1:{ports[1]}"
    job = procs.code_file(JOB.format(runs=str(runs)).encode())
    waiting = procs.client("--retries", "6", "--connect-timeout", "2", address, job, "once")
    api = client.Client(address, timeout=WAIT)
    # Queued, and long enough for its record's batch to be written (the master's clock, not a sleep).
    wait_until(lambda: [(job["state"], job["age"] > 4 * COMMIT_DELAY) for job in api.jobs()[0][1]["jobs"]] == [
        ("queued", True)], "the job queued and recorded")
    [first_id] = [job["id"] for job in api.jobs()[0][1]["jobs"]]
    master.kill()
    procs.master(workers_port=ports[0], clients_port=ports[1],
                 extra=["--state-dir", str(state), "--client-timeout", "1"])
    cluster.worker(("127.0.0.1", ports[0]))
    done = procs.finish(waiting)
    assert (done.returncode, done.stdout) == (0, b"ran once\n"), procs.logs()
    # The job the master found queued waited for its client, which ran it anew: it ends unrun.
    wait_until(lambda: {job["id"]: job["state"] for job in api.jobs()[0][1]["jobs"]}.get(first_id) == "cancelled",
               "the unclaimed job cancelled")
    assert lines_of(runs) == ["once"]
