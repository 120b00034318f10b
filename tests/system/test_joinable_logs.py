"""Issue 30's test of the logs: a master and a worker logging JSON run jobs that succeed, fail and
time out; every line both wrote parses, is stamped with its zone, and every line about a job names
it (the master by its id; the worker by its link's count, which the master's dispatched line ties to
the id)."""

import json
import re

from tests.helpers.processes import DEADLINE, MASTER, PYTHON, clean_env

ZONED = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)")
JOB_ID = re.compile(r"[0-9a-f]{16}")
ABOUT_A_JOB = re.compile(r"(?<![-\w])job\b(?![-(])")  # "job 0123...", "job for ...": not jobs, job(s), --job-user

JOBS = {  # code: the client's exit status
    b"print('fine')\n": 0,
    b"raise SystemExit(3)\n": 3,
    b"import time\ntime.sleep(60)\n": 124,  # past the worker's --timeout
}


def entries(proc):
    lines = proc.stderr().splitlines()
    assert lines, proc.name
    return [json.loads(line) for line in lines]  # every line parses, or the test fails here


def test_every_json_line_of_a_run_has_a_zone_and_every_line_about_a_job_its_id(procs):
    master = procs.master(extra=["--log-format", "json", "--log-level", "debug"])
    worker = procs.worker(args=["--log-format", "json", "--log-level", "debug", "--timeout", "2"])
    procs.wait_for_log(master, "joined")
    clients = [procs.client(f"127.0.0.1:{procs.clients_port}", procs.code_file(code)) for code in JOBS]
    statuses = [procs.finish(client, deadline=30).returncode for client in clients]
    assert statuses == list(JOBS.values()), procs.logs()
    assert worker.terminate_and_wait() == 0 and master.terminate_and_wait() == 0, procs.logs()

    master_lines, worker_lines = entries(master), entries(worker)
    for entry in master_lines + worker_lines:
        assert ZONED.fullmatch(entry["time"]), entry
        assert {"time", "level", "logger", "message"} <= set(entry), entry
    about_jobs = [entry for entry in master_lines if ABOUT_A_JOB.search(entry["message"])]
    assert all(JOB_ID.fullmatch(entry.get("job", "")) and entry["job"] in entry["message"]
               for entry in about_jobs), about_jobs
    ids = {entry["job"] for entry in about_jobs}
    assert len(ids) == len(JOBS), about_jobs
    for job_id in ids:
        events = [entry.get("event") for entry in about_jobs if entry["job"] == job_id]
        assert events[:2] == ["queued", "dispatched"] and events[-1] in ("done", "failed"), events

    dispatched = {entry["link_job"]: entry["job"] for entry in master_lines if entry.get("event") == "dispatched"}
    worker_about_jobs = [entry for entry in worker_lines if ABOUT_A_JOB.search(entry["message"])]
    assert len(worker_about_jobs) >= len(JOBS), worker_lines
    for entry in worker_about_jobs:
        assert entry.get("link_job") in dispatched and entry["link_job"] in entry["message"], entry
    ended = [entry for entry in worker_about_jobs if " after " in entry["message"]]
    assert sorted(dispatched[entry["link_job"]] for entry in ended) == sorted(ids), ended

    for lines in (master_lines, worker_lines):
        (said,) = [entry for entry in lines if "settings" in entry]
        assert said["message"].startswith("settings not at their defaults: "), said
        assert {"option": "--log-format", "value": "json", "source": "command line", "beaten": []} in said["settings"]


def test_start_up_errors_are_one_json_line_when_json_was_asked_for(procs):
    first = procs.master()
    taken = f"127.0.0.1:{procs.workers_port}"
    second = procs.start("master", [PYTHON, MASTER, taken, "127.0.0.1:0", "--log-format", "json"])
    assert second.popen.wait(timeout=DEADLINE) == 1, procs.logs()
    lines = [json.loads(line) for line in second.stderr().splitlines()]
    assert lines[-1]["level"] == "error" and "cannot listen on" in lines[-1]["message"], lines
    assert all(ZONED.fullmatch(entry["time"]) for entry in lines)

    for argv, env in ((["--log-format", "json", "--max-queue", "many"], clean_env()),
                      (["--max-queue", "many"], clean_env(SIECI_LOG_FORMAT="json"))):
        refused = procs.start("master", [PYTHON, MASTER, "127.0.0.1:0", "127.0.0.1:0", *argv], env=env)
        assert refused.popen.wait(timeout=DEADLINE) == 2, procs.logs()
        (line,) = refused.stderr().splitlines()
        entry = json.loads(line)
        assert entry["message"] == "sieci-master: error: argument --max-queue: not a whole number: 'many'", entry
        assert entry["usage"].startswith("usage: sieci-master [-h]") and ZONED.fullmatch(entry["time"])
    assert first.terminate_and_wait() == 0
