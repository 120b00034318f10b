"""A master started with --metrics serves them."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import WAIT


def test_the_master_serves_metrics_when_asked(procs):
    master = procs.master(extra=["--metrics", "127.0.0.1:0"])
    url = procs.wait_for_log(master, r"serving metrics on (http://\S+/metrics)")[1]
    with urllib.request.urlopen(url, timeout=WAIT) as answer:
        text = answer.read().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"sieci_jobs", "sieci_queue_length", "sieci_workers"} <= names
