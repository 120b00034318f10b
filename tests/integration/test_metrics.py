"""Prometheus metrics of masters and workers, read back with prometheus_client's own parser."""

import logging
import platform
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import sieci
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


def test_process_platform_and_build_series_on_both_daemons(cluster, servers):
    master = cluster.master()
    worker = cluster.worker(master, name="w1")
    for daemon, registry in (("master", MasterMetrics(master).registry), ("worker", WorkerMetrics(worker).registry)):
        seen = scrape(servers(registry))
        assert seen[("sieci_build_info", (("daemon", daemon), ("version", sieci.__version__)))] == 1
        assert seen[("process_resident_memory_bytes", ())] > 0 and seen[("process_open_fds", ())] > 0
        assert seen[("process_cpu_seconds_total", ())] >= 0
        [(labels, value)] = [(labels, value) for (name, labels), value in seen.items() if name == "python_info"]
        assert value == 1 and dict(labels)["implementation"] == platform.python_implementation()


def test_endings_by_exit_status_class_and_workers_by_name(cluster, servers):
    master = cluster.master()
    worker = cluster.worker(master, name="w1")
    master_server = servers(MasterMetrics(master).registry)
    worker_server = servers(WorkerMetrics(worker).registry)
    assert master.wait_for_workers(1, WAIT)
    codes = (b"print(1)\n", b"raise SystemExit(1)\n", b"raise SystemExit(2)\n",
             b"import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    for code in codes:
        client.run(client_address(master), code, output=Captured())
    seen = scrape(master_server)
    endings = {dict(labels)["status"]: value for (name, labels), value in seen.items()
               if name == "sieci_job_endings_total"}
    assert endings == {"ok": 1, "failed": 2, "signal": 1, "timeout": 0, "limit": 0, "lost": 0, "error": 0,
                       "cancelled": 0, "no_status": 0}
    assert seen[("sieci_worker_job_endings_total", (("status", "failed"), ("worker", "w1")))] == 2
    assert seen[("sieci_worker_job_endings_total", (("status", "ok"), ("worker", "w1")))] == 1
    [linked] = [dict(labels) for (name, labels), value in seen.items() if name == "sieci_worker_linked" and value]
    assert linked == {"worker": "w1", "state": "idle"}  # by the name it gave, not its address
    seen = scrape(worker_server)
    assert seen[("sieci_worker_endings_total", (("status", "failed"),))] == 2
    assert seen[("sieci_worker_endings_total", (("status", "signal"),))] == 1


def test_workers_named_past_the_bound_share_one_label(cluster, monkeypatch):
    """Workers name themselves: each name is a series kept for the master's life, so past
    MAX_WORKER_LABELS names the endings of the rest count under "other"."""
    from sieci import metrics

    monkeypatch.setattr(metrics, "MAX_WORKER_LABELS", 2)
    master_metrics = MasterMetrics(cluster.master())
    labels = [master_metrics._worker_label(name) for name in ("w1", "w2", "w3", "w1", "w4")]
    assert labels == ["w1", "w2", "other", "w1", "other"]
