"""A master started with --metrics serves them."""

import os
import socket
import subprocess
import sys
import urllib.request

import gevent
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import REPO, WAIT


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_master_serves_metrics_when_asked(tmp_path):
    workers, clients, metrics = free_port(), free_port(), free_port()
    master = subprocess.Popen([sys.executable, os.path.join(REPO, "bin", "master"), f"127.0.0.1:{workers}",
                               f"127.0.0.1:{clients}", "--metrics", f"127.0.0.1:{metrics}"],
                              stderr=subprocess.DEVNULL)
    try:
        with gevent.Timeout(WAIT):
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=WAIT) as answer:
                        text = answer.read().decode()
                    break
                except OSError:
                    assert master.poll() is None, "the master died"
                    gevent.sleep(0.05)
        names = {family.name for family in text_string_to_metric_families(text)}
        assert {"sieci_jobs", "sieci_queue_length", "sieci_workers"} <= names
    finally:
        master.terminate()
        master.wait(WAIT)
