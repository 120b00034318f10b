"""The dashboard of a real master, in a real headless browser, with jobs done, running and queued."""

import json
import re
import time
import urllib.request

import gevent

from tests.helpers import WAIT
from tests.helpers.browser import Page, find_browser, png_colours, run_browser
from tests.helpers.processes import DEADLINE, POLL

HOSTILE_NAME = "<img/src=x/onerror=document.title='owned'>"
WAITS = b"import time\ntime.sleep(60)\n"


def wait_for_state(url, check):
    """The dashboard's JSON once ``check`` holds for it."""
    end = time.monotonic() + DEADLINE
    while True:
        with urllib.request.urlopen(url + "status.json", timeout=WAIT) as answer:
            state = json.loads(answer.read())
        if check(state):
            return state
        assert time.monotonic() < end, f"the dashboard never showed what was awaited: {state}"
        gevent.sleep(POLL)


def test_the_dashboard_in_a_browser_shows_the_pool(procs, tmp_path):
    browser = find_browser()
    master = procs.master(extra=["--metrics", "127.0.0.1:0"])
    url = procs.wait_for_log(master, r"serving the dashboard on (http://\S+/)")[1]
    procs.worker(args=["--name", HOSTILE_NAME])
    assert procs.run_job(b"print('done')\n").stdout == b"done\n"
    address = f"127.0.0.1:{procs.clients_port}"
    procs.client(address, procs.code_file(WAITS))
    wait_for_state(url, lambda state: state["worker_states"] == {"running": 1})
    procs.client(address, procs.code_file(WAITS))
    state = wait_for_state(url, lambda state: state["queue"] == 1)
    done, running, queued = (state[table][0]["job"] for table in ("recent", "running", "queued"))

    # The page's script has filled every table from the JSON.
    page = Page(run_browser(browser, tmp_path / "profile", url, "--dump-dom").decode())
    summary = page.texts["summary"]
    assert re.fullmatch(r"up .+ · [\d.]+ jobs/s · queue 1 · exited 0 1 · failed 0 · cancelled 0 · .+", summary), summary
    assert page.texts["note"].startswith("updated ")
    [master_row] = page.tables["masters"]
    assert master_row[:2] == [address, "up"]
    [worker] = page.tables["workers"]
    assert worker[:2] == [address, HOSTILE_NAME] and worker[3:5] == ["running", running] and worker[-1] == "1"
    [queued_row] = page.tables["queued"]
    assert queued_row[:3] == [address, queued, "job3.py"] and queued_row[-1].endswith(" s")
    [running_row] = page.tables["running"]
    assert running_row[1:5] == [running, "job2.py", HOSTILE_NAME, worker[2]] and running_row[-1].endswith(" s")
    [recent] = page.tables["recent"]
    assert recent[1:5] == [done, "job1.py", "exited 0", "0"] and recent[10] == HOSTILE_NAME
    # The worker's name is shown as text: no element made of it, no script of it run.
    assert "img" not in page.tags and page.texts["title"] == f"sieci master {address}"

    screenshot = tmp_path / "dashboard.png"
    run_browser(browser, tmp_path / "profile", url, f"--screenshot={screenshot}", "--window-size=1000,700")
    assert len(png_colours(screenshot)) > 20, "the screenshot is blank"


def test_one_page_shows_two_masters_their_jobs_ended_and_a_missing_worker(procs, tmp_path, reserved_port):
    browser = find_browser()
    ports = [reserved_port(), reserved_port()]
    urls = [f"http://127.0.0.1:{port.number}/" for port in ports]
    masters = []
    for port, peer in zip(ports, reversed(urls)):
        port.close()  # the master takes it now (a race with another program only fails the test)
        procs.master(extra=["--metrics", port.address, "--peer-dashboard", peer])
        masters.append(f"127.0.0.1:{procs.workers_port}")
        masters.append(f"127.0.0.1:{procs.clients_port}")
    first_workers, first_clients, second_workers, second_clients = masters
    procs.worker(first_workers, second_workers, args=["--name", "steady"])
    leaving = procs.worker(first_workers, args=["--name", "leaving"])
    wait_for_state(urls[0], lambda state: len(state["workers"]) == 2 and all(w["name"] for w in state["workers"]))
    leaving.kill()
    wait_for_state(urls[0], lambda state: [w["name"] for w in state["missing"]] == ["leaving"])
    failing = procs.run_client(second_clients, procs.code_file(b"raise SystemExit(1)\n", name="fails.py"))
    assert failing.returncode == 1, procs.logs()
    wait_for_state(urls[1], lambda state: len(state["recent"]) == 1)
    failing_here = procs.run_client(first_clients, procs.code_file(b"raise SystemExit(2)\n", name="fails2.py"))
    assert failing_here.returncode == 2, procs.logs()
    wait_for_state(urls[0], lambda state: len(state["recent"]) == 1)

    page = Page(run_browser(browser, tmp_path / "profile", urls[0], "--dump-dom").decode())
    assert page.texts["title"] == f"sieci cluster of 2 masters, from {first_clients}"
    assert sorted(row[:2] for row in page.tables["masters"]) == sorted([[first_clients, "up"], [second_clients, "up"]])
    # A job that exited 1 or 2 counts as failed, not done: in each master's row and in this master's summary.
    assert sorted(row[7:] for row in page.tables["masters"]) == [["0", "1", "0"]] * 2
    assert " · exited 0 0 · failed 1 (non-zero exit 1) · cancelled 0 · " in page.texts["summary"]
    workers = sorted((row[0], row[1], row[3]) for row in page.tables["workers"])
    assert workers == sorted([(first_clients, "steady", "idle"), (second_clients, "steady", "idle"),
                              (first_clients, "leaving", "missing")])
    here, recent = sorted(page.tables["recent"], key=lambda row: row[0] != first_clients)
    assert here[:5] == [first_clients, here[1], "fails2.py", "exited 2", "2"]
    assert recent[:5] == [second_clients, recent[1], "fails.py", "exited 1", "1"]  # not "done"
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", time_of_day) for time_of_day in recent[5:8])
