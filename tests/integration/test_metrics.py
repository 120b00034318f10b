"""Prometheus metrics of masters and workers, read back with prometheus_client's own parser."""

import logging
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sieci.client import client
from sieci.metrics import MasterMetrics, WorkerMetrics, serve

from tests.helpers import WAIT, Captured, client_address


def scrape(server):
    host, port = server.address[:2]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT) as answer:
        text = answer.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def servers():
    started = []

    def start(registry):
        server = serve(registry, ("127.0.0.1", 0), logging.getLogger("sieci.test"))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(timeout=1)


def test_master_and_worker_metrics(cluster, servers):
    master = cluster.master()
    worker = cluster.worker(master)
    master_server = servers(MasterMetrics(master).registry)
    worker_server = servers(WorkerMetrics(worker).registry)
    for code in (b"print('x' * 9)\n", b"raise SystemExit(3)\n"):
        client.run(client_address(master), code, output=Captured())
    seen = scrape(master_server)
    assert seen[("sieci_jobs_total", (("outcome", "done"),))] == 2
    assert seen[("sieci_jobs_total", (("outcome", "failed"),))] == 0
    assert seen[("sieci_queue_length", ())] == 0
    assert seen[("sieci_workers", (("state", "idle"),))] == 1
    assert seen[("sieci_job_wait_seconds_count", ())] == 2
    assert seen[("sieci_job_run_seconds_count", ())] == 2
    assert seen[("sieci_bytes_relayed_total", ())] > 10
    seen = scrape(worker_server)
    assert seen[("sieci_worker_jobs_total", (("outcome", "exit"),))] == 2
    assert seen[("sieci_worker_job_seconds_count", ())] == 2
    assert seen[("sieci_worker_busy", ())] == 0
    assert seen[("sieci_worker_masters_linked", ())] == 1
