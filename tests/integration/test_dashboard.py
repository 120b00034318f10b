"""The master's dashboard over HTTP: the page, and the JSON it polls, after real jobs through a master
and a worker. The page in a real browser is in tests/system/test_dashboard.py."""

import json
import logging
import re
import time
import urllib.request

import gevent
import gevent.event
import pytest

from sieci.client import client
from sieci.master import dashboard, dashboard_view, endings
from sieci.metrics import MasterMetrics, serve

from tests.helpers import WAIT, Awaited, Captured, JobEvents, client_address

HOSTILE_NAME = "<img/src=x/onerror=alert(1)>&amp;</script>"  # a worker's name has no whitespace
WAITS = b"import time\nprint('go', flush=True)\ntime.sleep(30)\n"


def fetch(server, path):
    """(status, headers, body) of GET ``path``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.address[1]}{path}", timeout=WAIT) as answer:
        return answer.status, answer.headers, answer.read()


def state_of(server):
    status, headers, body = fetch(server, dashboard.JSON_PATH)
    assert status == 200 and headers["Content-Type"] == "application/json"
    return json.loads(body)


@pytest.fixture
def served(cluster):
    """``served(master, peers=(), port=0)``: the HTTP server of its metrics and dashboard, stopped at the end."""
    started = []

    def start(master, peers=(), port=0):
        started.append(serve(MasterMetrics(master).registry, ("127.0.0.1", port), logging.getLogger("sieci.test"),
                             master=master, peers=peers))
        return started[-1]

    yield start
    for server in started:
        server.stop(timeout=1)


def named_workers(server, names, addresses_not=()):
    """The dashboard's state once its linked workers are named ``names`` (their READY has come), at none
    of ``addresses_not``."""
    deadline = time.monotonic() + WAIT
    while True:
        state = state_of(server)
        if sorted(worker["name"] for worker in state["workers"]) == names and not any(
                worker["address"] in addresses_not for worker in state["workers"]):
            return state
        assert time.monotonic() < deadline, f"the workers never showed as {names}: {state['workers']}"
        gevent.sleep(0.01)


def start_waiting_job(master):
    output = Awaited()
    job = gevent.spawn(client.run, client_address(master), WAITS, output=output)
    output.wait_for(b"")  # it has written something: it runs
    return job


def test_the_json_shows_workers_queue_running_and_recent_jobs(cluster, served):
    master = cluster.master()
    events = JobEvents(master)
    cluster.worker(master, name=HOSTILE_NAME)
    server = served(master)
    assert client.run(client_address(master), b"print(1)\n", output=Captured()) == 0
    assert client.run(client_address(master), b"raise SystemExit(3)\n", output=Captured()) == 3
    running = start_waiting_job(master)
    queued = gevent.spawn(client.run, client_address(master), b"print(4)\n", output=Captured())
    try:
        events.wait_for("queued", 4)
        job = dict(enumerate(events.job_ids, 1))  # the jobs' ids, by the order they came
        state = state_of(server)
        [worker] = state["workers"]
        assert worker["name"] == HOSTILE_NAME and worker["state"] == "running" and worker["job"] == job[3]
        assert worker["jobs_done"] == 2 and state["workers_linked"] == 1 and state["worker_states"] == {"running": 1}
        assert state["queue"] == 1
        [waiting] = state["queued"]
        assert waiting["job"] == job[4] and waiting["waiting_for"] >= 0 and waiting["client"].startswith("127.0.0.1:")
        [run] = state["running"]
        assert run == {"job": job[3], "program": "job.py", "worker": worker["address"], "name": HOSTILE_NAME,
                       "client": run["client"], "submitted": run["submitted"], "started": run["started"],
                       "running_for": run["running_for"]}
        assert 0 <= run["running_for"] < WAIT and run["submitted"] <= run["started"] <= time.time()
        assert [recent["job"] for recent in state["recent"]] == [job[2], job[1]]  # the newest first
        exited_3, exited_0 = state["recent"]
        assert (exited_3["ending"], exited_3["exit_status"], exited_3["status"]) == ("exited 3", 3, "failed")
        assert (exited_0["ending"], exited_0["exit_status"], exited_0["status"]) == ("exited 0", 0, "ok")
        for recent in state["recent"]:
            assert recent["outcome"] == "done" and recent["reason"] == ""
            assert recent["worker"] == worker["address"] and recent["name"] == HOSTILE_NAME
            assert 0 <= recent["waited"] < WAIT and 0 < recent["ran"] < WAIT and 0 <= recent["ended_ago"] < WAIT
            assert recent["submitted"] <= recent["started"] <= recent["ended"] <= time.time()
        assert state["totals"]["done"] == 2 and state["jobs_per_second"] > 0
        assert state["endings"] == dict.fromkeys(endings.CLASSES, 0) | {"ok": 1, "failed": 1}  # exit 3 failed
        assert state["master"] == client_address(master) and state["uptime"] > 0
        queued.kill()  # its client leaves while the job waits
        events.wait_for("cancelled")
        [cancelled, *_] = state_of(server)["recent"]
        assert cancelled["job"] == job[4] and cancelled["outcome"] == "cancelled"
        assert cancelled["reason"] == "the client left while it was queued"
        assert cancelled["worker"] is None and cancelled["ran"] is None and cancelled["started"] is None
        assert cancelled["status"] == "cancelled" and cancelled["ending"] == "cancelled: " + cancelled["reason"]
        assert state_of(server)["endings"] == dict.fromkeys(endings.CLASSES, 0) | {"ok": 1, "failed": 1,
                                                                                     "cancelled": 1}
    finally:
        gevent.killall([running, queued])


def test_a_failed_job_shows_why_and_the_name_its_worker_gave_before(cluster, served):
    master = cluster.master()
    events = JobEvents(master)
    cluster.worker(master, name="w1")
    server = served(master)
    assert client.run(client_address(master), b"print(1)\n", output=Captured()) == 0
    silent = start_waiting_job(master)  # its job has written: the worker accepted it
    try:
        [link] = master.links
        link.hang_up()
        events.wait_for("failed")
        failed, done = state_of(server)["recent"]
        assert failed["job"] == events.job_ids[1] and failed["outcome"] == "failed"
        assert failed["reason"] == "worker lost"
        assert (failed["status"], failed["ending"], failed["exit_status"]) == ("lost", "failed: worker lost", None)
        assert failed["name"] == done["name"] == "w1"  # its results never came: the name is the one given before
        assert state_of(server)["endings"] == dict.fromkeys(endings.CLASSES, 0) | {"ok": 1, "lost": 1}
    finally:
        silent.kill()


def test_recent_jobs_are_the_last_ones_only(cluster, served, monkeypatch):
    monkeypatch.setattr(dashboard_view, "RECENT_JOBS", 3)
    master = cluster.master()
    events = JobEvents(master)
    cluster.worker(master)
    server = served(master)
    for number in range(5):
        assert client.run(client_address(master), f"print({number})\n".encode(), output=Captured()) == 0
    assert [job["job"] for job in state_of(server)["recent"]] == events.job_ids[:1:-1]


def test_the_lists_are_bounded(cluster, served, monkeypatch):
    monkeypatch.setattr(dashboard_view, "MAX_ROWS", 1)
    monkeypatch.setattr(dashboard_view, "MAX_QUEUED", 1)
    master = cluster.master()
    events = JobEvents(master)
    for _ in range(2):
        cluster.worker(master)
    assert master.wait_for_workers(2, WAIT)
    server = served(master)
    jobs = [start_waiting_job(master) for _ in range(2)]
    jobs += [gevent.spawn(client.run, client_address(master), b"print(1)\n", output=Captured()) for _ in range(2)]
    try:
        events.wait_for("queued", 4)
        state = state_of(server)
        assert state["workers_linked"] == 2 and len(state["workers"]) == 1
        assert state["worker_states"] == {"running": 2} and len(state["running"]) == 1
        assert state["queue"] == 2 and len(state["queued"]) == 1
    finally:
        gevent.killall(jobs)


def test_the_page_is_whole_and_writes_only_text(cluster, served):
    master = cluster.master()
    cluster.worker(master, name=HOSTILE_NAME)
    server = served(master)
    assert client.run(client_address(master), b"print(1)\n", output=Captured()) == 0
    status, headers, page = fetch(server, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    text = page.decode()
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*//""", text), "a protocol-relative URL"
    assert not re.search(r"<(link|img|iframe|object|embed)\b", text), "something fetched beside the script"
    # Its own master's JSON, and only the peers' its master lists (the policy below allows no other origin).
    assert re.findall(r"""fetch\(([^)]*)\)""", text) == ['base + "status.json", {cache: "no-store"}']
    assert re.findall(r"""stateAt\(([^)]*)\)""", text) == ['base', '""', 'url']
    # Names from the network are shown as text: never parsed as HTML, never put in the page itself.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", text)
    assert "textContent" in text and "onerror" not in text
    # And, should that ever slip, no script but the page's own runs.
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "connect-src 'self';" in policy
    assert text.count("<script>") == 1 and text.count("<style>") == 1
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert state_of(server)["workers"][0]["name"] == HOSTILE_NAME


def test_metrics_are_still_served_beside_it(cluster, served):
    master = cluster.master()
    server = served(master)
    for path in ("/metrics", "/any/other/path"):
        status, headers, body = fetch(server, path)
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        assert b"sieci_queue_length 0.0" in body


def test_a_worker_is_named_from_its_link_s_start_and_listed_as_missing_once_gone(cluster, served):
    master = cluster.master()
    cluster.worker(master, name="w1")
    leaving = cluster.worker(master, name="w2")
    assert master.wait_for_workers(2, WAIT)
    server = served(master)
    assert all(worker["jobs_done"] == 0 for worker in named_workers(server, ["w1", "w2"])["workers"])
    link_of_w1 = next(link for link in master.links if link.worker_name == "w1")
    link_of_w1.hang_up()  # w1 redials at once: a new link, named from its greeting again, before any job
    leaving.stop(grace=1)
    state = named_workers(server, ["w1"], addresses_not=[link_of_w1.name])
    [present] = state["workers"]
    assert present["name"] == "w1" and present["jobs_done"] == 0
    [missing] = state["missing"]  # w1 came back: only w2 is missing
    assert missing["name"] == "w2" and missing["state"] == "missing" and 0 <= missing["gone_for"] < WAIT


def test_a_master_lists_its_peers_and_only_their_pages_read_its_json(cluster, served, reserved_port):
    first_port = reserved_port()
    first_url = f"http://127.0.0.1:{first_port.number}/"
    second = served(cluster.master(), peers=[first_url])
    second_url = f"http://127.0.0.1:{second.address[1]}/"
    first_port.close()
    first = served(cluster.master(), peers=[second_url], port=first_port.number)
    assert state_of(first)["peers"] == [second_url] and state_of(second)["peers"] == [first_url]
    _, headers, _ = fetch(first, "/")
    assert f"connect-src 'self' {second_url.rstrip('/')};" in headers["Content-Security-Policy"]
    read_by_peer = urllib.request.Request(second_url + "status.json", headers={"Origin": first_url.rstrip("/")})
    with urllib.request.urlopen(read_by_peer, timeout=WAIT) as answer:
        assert answer.headers["Access-Control-Allow-Origin"] == first_url.rstrip("/")
        assert json.loads(answer.read())["master"] == state_of(second)["master"]
    for stranger in ("http://127.0.0.1:1", "null", "http://evil.example"):
        request = urllib.request.Request(second_url + "status.json", headers={"Origin": stranger})
        with urllib.request.urlopen(request, timeout=WAIT) as answer:
            assert "Access-Control-Allow-Origin" not in answer.headers and answer.headers["Vary"] == "Origin"
