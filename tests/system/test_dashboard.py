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
    assert re.fullmatch(r"up .+ · [\d.]+ jobs/s · queue 1 · done 1 · failed 0 · cancelled 0 · .+", summary), summary
    assert page.texts["note"].startswith("updated ")
    [worker] = page.tables["workers"]
    assert worker[1:4] == [HOSTILE_NAME, "running", running] and worker[-1] == "1"
    [queued_row] = page.tables["queued"]
    assert queued_row[0] == queued and queued_row[2].endswith(" s")
    [running_row] = page.tables["running"]
    assert running_row[:3] == [running, worker[0], HOSTILE_NAME] and running_row[4].endswith(" s")
    [recent] = page.tables["recent"]
    assert recent[:2] == [done, "done"] and recent[4].endswith(" s ago") and recent[6] == HOSTILE_NAME
    # The worker's name is shown as text: no element made of it, no script of it run.
    assert "img" not in page.tags and page.texts["title"] == f"sieci master {address}"

    screenshot = tmp_path / "dashboard.png"
    run_browser(browser, tmp_path / "profile", url, f"--screenshot={screenshot}", "--window-size=1000,700")
    assert len(png_colours(screenshot)) > 20, "the screenshot is blank"
