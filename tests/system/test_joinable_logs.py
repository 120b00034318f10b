"""Issue 30's test of the logs: a master and a worker logging JSON run jobs that succeed, fail and
time out; every line both wrote parses, is stamped with its zone, and every line about a job names
it by the master's id (which a sieci master gives its worker on RELAY), so that the two logs join by
it. Behind a classic master, which gives no id, the worker names a job by its link's count."""

import json
import re

from tests.helpers.classic import classic_client
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

    worker_about_jobs = [entry for entry in worker_lines if ABOUT_A_JOB.search(entry["message"])]
    assert len(worker_about_jobs) >= len(JOBS), worker_lines
    assert all(entry.get("job") in ids and entry["job"] in entry["message"] for entry in worker_about_jobs), \
        worker_about_jobs
    dispatched = {entry["link_job"]: entry["job"] for entry in master_lines if entry.get("event") == "dispatched"}
    assert all(dispatched[entry["link_job"]] == entry["job"] for entry in worker_about_jobs), worker_about_jobs
    for job_id in ids:  # joined by the id: each job's lines, from both logs
        joined = [entry for entry in master_lines + worker_lines if entry.get("job") == job_id]
        ended = [entry for entry in joined if entry["logger"] == "sieci.worker" and " after " in entry["message"]]
        assert len(ended) == 1 and {entry["logger"] for entry in joined} == {"sieci.master", "sieci.worker"}, joined

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


def test_behind_a_classic_master_the_worker_names_each_job_by_its_links_count(procs, classic):
    master = classic.master()
    host, port = master.workers_address[:2]
    worker = procs.worker(f"{host}:{port}", args=["--log-format", "json", "--log-level", "debug"])
    master.wait_for_workers(1)
    for code in (b"print('fine')\n", b"raise SystemExit(3)\n"):
        status, _, why = classic_client(master.clients_address, code)
        assert status is not None, why
    procs.wait_for_log(worker, r"job \S+#2 for ")
    assert worker.terminate_and_wait() == 0, procs.logs()
    about_jobs = [entry for entry in entries(worker) if ABOUT_A_JOB.search(entry["message"])]
    names = [entry["link_job"] for entry in about_jobs]
    assert [name.rpartition("#")[2] for name in names] == ["1", "2"], about_jobs
    assert all(name in entry["message"] and "job" not in entry for name, entry in zip(names, about_jobs))
