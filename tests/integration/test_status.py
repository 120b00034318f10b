"""The status request: as a person types it with nc, as JSON, through the client, and its refusals."""

import gevent

from sieci.client import client

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
        assert worker["state"] == "running" and worker["job"] in master.dispatcher.jobs_by_id and worker["running_for"] >= 0
        assert state["totals"] == {"done": 0, "failed": 0, "cancelled": 0, "average_wait": 0.0, "average_run": 0.0}
        assert state["uptime"] > 0
    finally:
        gevent.killall([running, queued] if queued else [running])


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
