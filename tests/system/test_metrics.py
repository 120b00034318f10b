"""A master started with --metrics serves them."""

import urllib.request

import gevent
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import WAIT


def test_the_master_serves_metrics_when_asked(procs, reserved_port):
    # The master does not log its metrics port: it gets one held for it, not port 0.
    metrics = reserved_port()
    master = procs.master(extra=["--metrics", metrics.address])
    with gevent.Timeout(WAIT):
        while True:
            try:
                with urllib.request.urlopen(f"http://{metrics.address}/metrics", timeout=WAIT) as answer:
                    text = answer.read().decode()
                break
            except OSError:
                assert not master.exited(), "the master died\n" + procs.logs()
                gevent.sleep(0.05)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"sieci_jobs", "sieci_queue_length", "sieci_workers"} <= names
