"""--retries across a lost master: the job's master is SIGKILLed while its client waits, and the client
runs the job again on its other master (at least once: the job ran twice), its output shown once."""

import time

import gevent

from tests.helpers import WAIT

# The first run waits until the test lets it go (after its master died); every later run answers.
JOB = """import os, time
with open({runs!r}, "a+") as runs:
    runs.seek(0)
    earlier = len(runs.read().split())
    runs.write("run\\n")
deadline = time.monotonic() + {wait}
while not earlier and not os.path.exists({released!r}) and time.monotonic() < deadline:
    time.sleep(0.02)
print("answer from run", earlier + 1)
"""


def test_a_retries_client_runs_the_job_again_on_its_other_master_when_its_master_is_killed(procs, cluster, tmp_path):
    runs, released = tmp_path / "runs.txt", tmp_path / "released"
    first = procs.master()
    first_ports = procs.workers_port, procs.clients_port
    procs.master()
    second_ports = procs.workers_port, procs.clients_port
    cluster.worker(("127.0.0.1", first_ports[0]), ("127.0.0.1", second_ports[0]))
    job = procs.code_file(JOB.format(runs=str(runs), released=str(released), wait=WAIT).encode())
    client = procs.client("--retries", "3", "--connect-timeout", "2",
                          f"127.0.0.1:{first_ports[1]},127.0.0.1:{second_ports[1]}", job)
    deadline = time.monotonic() + WAIT
    while not runs.exists() and time.monotonic() < deadline:
        gevent.sleep(0.02)
    assert runs.exists(), procs.logs()
    first.kill()
    released.touch()
    done = procs.finish(client)
    assert done.returncode == 0, procs.logs()
    assert done.stdout == b"answer from run 2\n", procs.logs()  # the first run's output never shows
    assert runs.read_text() == "run\nrun\n"  # at least once: the lost master's run, then the second's
