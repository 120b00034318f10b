"""A peer master's dashboard that answers what no master sends: numbers as text, objects where text goes, lists
past any master's bound. One not shaped as a master's status is shown unreachable; one that is has its odd
values shown blank and its lists cut; the page shows its own master either way."""

import json

import pytest

from gevent.pywsgi import WSGIServer

from tests.helpers.browser import Page, find_browser, run_browser

ROWS = [{"name": {"toString": 1}, "state": {"toString": 1}, "running_for": "5", "jobs_done": [1]}] * 100000
MISSHAPEN = {"master": "forged", "uptime": "5", "jobs_per_second": "1", "queue": 1, "workers_linked": 1,
             "worker_states": {}, "totals": {}, "workers": ROWS}
ODD_VALUES = {"master": "forged", "uptime": 5, "jobs_per_second": 1, "queue": 1, "workers_linked": 1,
              "worker_states": {"idle": 1}, "totals": {"average_wait": [1], "average_run": "2"}, "workers": ROWS}


def serving(state):
    def hostile_peer(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Access-Control-Allow-Origin", "*")])
        return [json.dumps(state).encode()]

    return hostile_peer


@pytest.mark.parametrize("state, shown", [(MISSHAPEN, "unreachable: not a sieci master's status"), (ODD_VALUES, "up")],
                         ids=["misshapen", "odd values"])
def test_a_hostile_peer_leaves_the_page_showing_its_own_master(procs, tmp_path, state, shown):
    browser = find_browser()
    peer = WSGIServer(("127.0.0.1", 0), serving(state), log=None, error_log=None)
    peer.start()
    try:
        peer_url = f"http://127.0.0.1:{peer.server_port}/"
        master = procs.master(extra=["--metrics", "127.0.0.1:0", "--peer-dashboard", peer_url])
        url = procs.wait_for_log(master, r"serving the dashboard on (http://\S+/)")[1]
        page = Page(run_browser(browser, tmp_path / "profile", url, "--dump-dom").decode())
    finally:
        peer.stop()
    address = f"127.0.0.1:{procs.clients_port}"
    assert page.texts["note"].startswith("updated "), page.texts["note"]
    assert sorted(row[:2] for row in page.tables["masters"]) == sorted(
        [[address, "up"], ["forged" if shown == "up" else peer_url, shown]])
    assert len(page.tables["workers"]) == (100 if shown == "up" else 1)  # this master's "none", or the peer's cut
