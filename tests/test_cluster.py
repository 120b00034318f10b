"""Masters, workers and clients in one process, over real loopback sockets."""

import gevent
import pytest

from sieci import client
from sieci.executor import Limits

from conftest import WAIT, Captured, client_address


def run(master, code, **options):
    output = Captured()
    status = client.run(client_address(master), code, output=output, **options)
    return status, output


def test_a_job_runs_and_its_output_comes_back(cluster):
    master = cluster.master()
    cluster.worker(master)
    status, output = run(master, b'import sys\nprint("hello")\nprint("oops", file=sys.stderr)\nsys.exit(3)\n')
    assert (status, output.stdout, output.stderr) == (3, b"hello\n", b"oops\n")


def test_more_jobs_than_workers_all_get_their_own_answer(cluster):
    master = cluster.master()
    cluster.worker(master)
    cluster.worker(master)
    jobs = [gevent.spawn(run, master, b"import time\ntime.sleep(0.05)\nprint(%d * %d)\n" % (i, i)) for i in range(12)]
    gevent.joinall(jobs, timeout=WAIT, raise_error=True)
    assert [job.value for job in jobs] == [(0, _Out(b"%d\n" % (i * i))) for i in range(12)]


class _Out:
    def __init__(self, stdout):
        self.stdout = stdout

    def __eq__(self, other):
        return other.stdout == self.stdout


def test_a_job_waits_in_the_queue_until_a_worker_joins(cluster):
    master = cluster.master()
    job = gevent.spawn(run, master, b'print("late")\n')
    with gevent.Timeout(WAIT):
        while not master.pending_jobs:
            gevent.sleep(0)
    assert not job.ready()
    cluster.worker(master)
    assert job.get(timeout=WAIT)[1].stdout == b"late\n"


def test_a_worker_serves_two_masters_one_job_at_a_time(cluster):
    first, second = cluster.master(), cluster.master()
    cluster.worker(first, second)
    code = b"import time\ntime.sleep(0.2)\nprint('done')\n"
    jobs = [gevent.spawn(run, master, code) for master in (first, second)]
    gevent.joinall(jobs, timeout=WAIT, raise_error=True)
    assert [job.value[1].stdout for job in jobs] == [b"done\n", b"done\n"]


def test_the_time_limit_ends_a_job_with_124(cluster):
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=0.5))
    status, output = run(master, b"import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    assert status == 124
    assert output.stdout == b"started\n"
    assert b"time limit" in output.stderr


def test_an_unreachable_master_is_an_error(cluster):
    master = cluster.master()
    address = client_address(master)
    master.stop(grace=0.1)
    with pytest.raises(client.ClientError, match="cannot reach master"):
        client.run(address, b"print(1)\n", output=Captured())
