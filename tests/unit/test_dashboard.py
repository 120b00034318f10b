"""The dashboard's jobs/s, and the policy that lets only the page's own script and style run."""

import base64
import hashlib
import re

from sieci.master import dashboard
from sieci.master.dashboard import Throughput


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


def test_the_policy_allows_the_page_inline_script_and_style_only():
    policy = dict(dashboard.PAGE_HEADERS)["Content-Security-Policy"]
    for tag in ("script", "style"):
        [content] = re.findall(rf"<{tag}>(.*?)</{tag}>".encode(), dashboard.PAGE, re.S)
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
