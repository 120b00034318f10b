"""The status request: as a person types it with nc, as JSON, through the client, and its refusals."""

import gevent

from sieci import client, status

from tests.helpers import WAIT, Captured, JobEvents, client_address

SECRET = b"a secret long enough for the test"


def test_a_person_can_ask_with_a_typed_line(cluster, peers):
    master = cluster.master()
    cluster.worker(master, name="w1")
    assert client.run(client_address(master), b"print(1)\n", output=Captured()) == 0
    asker = peers(master.clients_address)
    asker.send(b"STATUS\n")
    text = asker.rest().decode()
    assert text.startswith(f"master {client_address(master)}  up ")
    assert "queue 0" in text and "workers 1" in text and "jobs done 1  failed 0" in text
    assert text.endswith("\n.\n")


def test_the_json_status_shows_queue_workers_and_totals(cluster):
    master = cluster.master()
    events = JobEvents(master)
    cluster.worker(master)
    gate = gevent.event.Event()

    class Waiting(Captured):
        def write(self, stream, data):
            super().write(stream, data)
            gate.set()

    running = gevent.spawn(client.run, client_address(master),
                           b"import sys\nprint('go', flush=True)\nsys.stdin.read()\nimport time\ntime.sleep(30)\n",
                           output=Waiting())
    queued = None
    try:
        assert gate.wait(WAIT)
        queued = gevent.spawn(client.run, client_address(master), b"print(2)\n", output=Captured())
        events.wait_for("queued", 2)
        [(address, state)] = client.Client(client_address(master)).status()
        assert address == client_address(master)
        assert state["queue"] == 1
        [worker] = state["workers"]
        assert worker["state"] == "running" and worker["job"] == 1 and worker["running_for"] >= 0
        assert state["totals"] == {"done": 0, "failed": 0, "cancelled": 0, "average_wait": 0.0, "average_run": 0.0}
        assert state["uptime"] > 0
    finally:
        gevent.killall([running, queued] if queued else [running])


def test_the_text_table_is_built_from_the_json():
    state = {"master": "m:1", "uptime": 3725.0, "queue": 2,
             "workers": [{"address": "10.0.0.2:5", "state": "running", "job": 7, "running_for": 1.25, "jobs_done": 3}],
             "totals": {"done": 3, "failed": 1, "cancelled": 0, "average_wait": 0.5, "average_run": 2.0}}
    assert status.format_text(state) == (
        "master m:1  up 1h02m  queue 2\n"
        "workers 1\n"
        "  10.0.0.2:5               running    job 7 for 1.2 s          done 3\n"
        "jobs done 3  failed 1  cancelled 0  average wait 0.500 s  average run 2.000 s\n")


def test_a_classic_master_does_not_answer_and_the_client_says_so(classic):
    classic_master = classic.master()
    [(_, error)] = client.Client(f"127.0.0.1:{classic_master.clients_address[1]}", connect_timeout=0.5).status()
    assert isinstance(error, client.ClientError)
    assert "did not answer the status request (a classic master does not support it)" in str(error)


def test_with_a_secret_the_request_must_be_signed(cluster, peers):
    master = cluster.master(secret=SECRET)
    stranger = peers(master.clients_address)
    stranger.send(b"STATUS json\n")
    assert stranger.rest() == b"ERROR unauthorized\n"
    [(_, state)] = client.Client(client_address(master), secret=SECRET).status()
    assert state["queue"] == 0
    [(_, error)] = client.Client(client_address(master)).status()
    assert "refused the status request: unauthorized" in str(error)


def run_command(*args):
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    return subprocess.run([sys.executable, os.path.join(REPO, "bin", "client"), *args], capture_output=True,
                          text=True, timeout=WAIT)


def test_the_client_command_shows_each_masters_status(cluster, classic):
    first, second = cluster.master(), cluster.master()
    cluster.worker(first)
    done = run_command("--status", f"{client_address(first)},{client_address(second)}")
    assert done.returncode == 0
    assert f"master {client_address(first)}" in done.stdout and f"master {client_address(second)}" in done.stdout
    assert "workers 1" in done.stdout and "workers 0" in done.stdout
    classic_master = classic.master()
    classic_address = f"127.0.0.1:{classic_master.clients_address[1]}"
    done = run_command("--status", "--json", "--connect-timeout", "0.5", f"{client_address(first)},{classic_address}")
    import json

    answers = json.loads(done.stdout)
    assert done.returncode == 255
    assert answers[client_address(first)]["queue"] == 0
    assert "a classic master does not support it" in answers[classic_address]["error"]
    assert done.stderr.startswith(f"sieci-client: error: master {classic_address} did not answer")
