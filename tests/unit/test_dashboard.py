"""The dashboard's jobs/s, its missing workers, and the policy that lets only the page's own script and style
run and the page reach only its master and the peers it was given."""

import base64
import hashlib
import re

import pytest

from sieci.master import dashboard, dashboard_view
from sieci.master.dashboard_view import MissingWorkers, Throughput


def test_jobs_per_second_is_averaged_over_the_window():
    throughput = Throughput(window=10)
    assert throughput.per_second(1000.0) == 0
    for now in (1000.1, 1000.2, 1000.9, 1003.5):
        throughput.count(now)
    assert throughput.per_second(1003.6) == 0.4
    assert throughput.per_second(1010.5) == 0.1  # the second 1000 has left the window
    assert throughput.per_second(1013.5) == 0


def test_its_memory_is_the_window_whatever_the_jobs():
    throughput = Throughput(window=3)
    for job in range(1000):
        throughput.count(2000 + job / 100)
    assert len(throughput._seconds) == 3
    assert throughput.per_second(2009.99) == 300 / 3


def test_a_worker_gone_is_missing_for_a_while_unless_one_of_its_name_is_back():
    missing = MissingWorkers()
    missing.went("w1", "127.0.0.1:5000", 100.0, 7)
    missing.went("w2", "127.0.0.1:5001", 200.0, 0)
    assert missing.listed({"w2"}, 300.0) == [
        {"name": "w1", "address": "127.0.0.1:5000", "state": "missing", "gone_for": 200.0, "jobs_done": 7}]
    assert [worker["name"] for worker in missing.listed(set(), 300.0)] == ["w2", "w1"]  # the latest gone first
    assert [worker["name"] for worker in missing.listed(set(), 100.0 + dashboard_view.MISSING_FOR + 1)] == ["w2"]


def test_missing_workers_are_bounded(monkeypatch):
    monkeypatch.setattr(dashboard_view, "MAX_ROWS", 3)
    missing = MissingWorkers()
    for number in range(10):
        missing.went(f"w{number}", "127.0.0.1:1", float(number), 0)
    assert [worker["name"] for worker in missing.listed(set(), 10.0)] == ["w9", "w8", "w7"]


@pytest.mark.parametrize("peers, connect", [
    ([], "connect-src 'self';"),
    (["http://10.0.0.2:9101/", "https://m3.example:443/x/"],
     "connect-src 'self' http://10.0.0.2:9101 https://m3.example;"),
])
def test_the_policy_allows_the_page_inline_script_and_style_only(peers, connect):
    policy = dict(dashboard.page_headers(dashboard.Dashboard.origins(peers)))["Content-Security-Policy"]
    for tag in ("script", "style"):
        [content] = re.findall(rf"<{tag}>(.*?)</{tag}>".encode(), dashboard.PAGE, re.S)
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy and connect in policy
