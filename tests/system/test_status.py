"""sieci-client --status as a process, asking sieci and classic masters."""

import json
import os
import subprocess
import sys

from tests.helpers import REPO, WAIT, client_address


def run_command(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "bin", "client"), *args], capture_output=True,
                          text=True, timeout=WAIT)


def test_the_client_command_shows_each_masters_status(cluster, classic):
    first, second = cluster.master(), cluster.master()
    cluster.worker(first)
    done = run_command("--status", f"{client_address(first)},{client_address(second)}")
    assert done.returncode == 0
    assert f"master {client_address(first)}" in done.stdout and f"master {client_address(second)}" in done.stdout
    assert "workers 1" in done.stdout and "workers 0" in done.stdout
    classic_master = classic.master()
    classic_address = f"127.0.0.1:{classic_master.clients_address[1]}"
    done = run_command("--status", "--json", "--connect-timeout", "0.5", f"{client_address(first)},{classic_address}")
    answers = json.loads(done.stdout)
    assert done.returncode == 255
    assert answers[client_address(first)]["queue"] == 0
    assert "a classic master does not support it" in answers[classic_address]["error"]
    assert done.stderr.startswith(f"sieci-client: error: master {classic_address} did not answer")
