"""Client failover, time limits and keepalive, worker redialling: over loopback."""

import os
import socket

import gevent
import gevent.event
import gevent.queue
import gevent.server
import pytest

from sieci.client import client
from sieci.master.master import Master
from sieci.wire import protocol
from sieci.wire.address import format_address
from sieci.wire.connection import tune_socket

from tests.helpers import WAIT, Captured, JobEvents, client_address, greeted


class FakeMaster:
    """A client port that reads one upload, then answers as ``answer(sock)`` says."""

    def __init__(self, answer):
        self.uploads = 0
        self._answer = answer
        self.server = gevent.server.StreamServer(("127.0.0.1", 0), self._handle)
        self.server.start()

    @property
    def address(self):
        return format_address(self.server.address)

    def _handle(self, sock, _):
        reader = sock.makefile("rb")
        terminator = reader.readline().split()[1]
        while reader.readline().strip() != terminator:
            pass
        self.uploads += 1
        self._answer(sock)
        sock.close()

    def stop(self):
        self.server.stop(timeout=1)


@pytest.fixture
def fake_masters():
    started = []

    def start(answer):
        fake = FakeMaster(answer)
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


def hang_up(sock):
    pass


def accept_then_hang_up(sock):
    sock.sendall(b"RECEIVED\n")


def run(masters, code=b'print("ok")\n', **options):
    output = Captured()
    return client.run(masters, code, output=output, **options), output


def test_an_unreachable_master_is_passed_over(cluster, reserved_port):
    master = cluster.master()
    cluster.worker(master)
    status, output = run(f"{reserved_port().address},{client_address(master)}")
    assert (status, output.stdout) == (0, b"ok\n")


def test_a_refusing_master_is_passed_over(cluster):
    full = cluster.master(max_queue=0)
    master = cluster.master()
    cluster.worker(master)
    status, output = run([client_address(full), client_address(master)])
    assert (status, output.stdout) == (0, b"ok\n")


def test_a_master_lost_before_acceptance_is_passed_over(cluster, fake_masters):
    lost = fake_masters(hang_up)
    master = cluster.master()
    cluster.worker(master)
    status, output = run(f"{lost.address},{client_address(master)}")
    assert (status, output.stdout, lost.uploads) == (0, b"ok\n", 1)


def test_every_master_failing_names_each_reason(fake_masters):
    first, second = fake_masters(hang_up), fake_masters(lambda sock: sock.sendall(b"ERROR queue full\n"))
    with pytest.raises(client.NotAccepted) as failure:
        run(f"{first.address},{second.address}")
    message = str(failure.value)
    assert message.startswith("no master took the job: ")
    assert "closed the connection" in message and "refused the job: queue full" in message


def test_a_job_lost_after_acceptance_is_not_run_again_by_default(cluster, fake_masters):
    lost = fake_masters(accept_then_hang_up)
    master = cluster.master()
    cluster.worker(master)
    with pytest.raises(client.JobLost, match="closed the connection before the job's results came"):
        run(f"{lost.address},{client_address(master)}")
    assert not master.dispatcher.active_jobs and lost.uploads == 1


def test_retries_run_a_lost_job_again_on_the_next_master_and_show_its_output_once(cluster, fake_masters):
    def half_results(sock):
        sock.sendall(b"RECEIVED\nENDSEQ t v=2\no partial output\n")

    lost = fake_masters(half_results)
    master = cluster.master()
    cluster.worker(master)
    status, output = run(f"{lost.address},{client_address(master)}", retries=1)
    assert (status, output.stdout) == (0, b"ok\n")


def test_retries_are_bounded(fake_masters):
    lost = fake_masters(accept_then_hang_up)
    with pytest.raises(client.JobLost):
        run(lost.address, retries=2)
    assert lost.uploads == 3


def say_nothing(sock):
    """A master that has stopped (SIGSTOP, a wedged process): the kernel still takes the upload."""
    gevent.sleep(WAIT)


def test_a_silent_master_is_passed_over_after_the_connect_timeout(cluster, fake_masters):
    silent = fake_masters(say_nothing)
    master = cluster.master()
    cluster.worker(master)
    status, output = run(f"{silent.address},{client_address(master)}", connect_timeout=0.5)
    assert (status, output.stdout, silent.uploads) == (0, b"ok\n", 1)
    with pytest.raises(client.NotAccepted, match=f"master {silent.address} did not answer within the "
                                                 "--connect-timeout of 0.5 s"):
        run(silent.address, connect_timeout=0.5)


def test_a_job_that_waits_for_a_busy_worker_is_no_silent_master(cluster):
    """The master says QUEUED: the client then waits past its --connect-timeout."""
    master = cluster.master()
    cluster.worker(master)
    events = JobEvents(master)
    busy = gevent.spawn(run, client_address(master), b"import time\ntime.sleep(2)\nprint('first')\n")
    events.wait_for("dispatched")
    status, output = run(client_address(master), connect_timeout=1)
    assert (status, output.stdout) == (0, b"ok\n")
    assert busy.get(timeout=WAIT)[1].stdout == b"first\n"


def test_the_timeout_bounds_the_queue_wait(cluster):
    master = cluster.master()  # no worker: the job would wait for ever
    events = JobEvents(master)
    with pytest.raises(client.ClientError, match="no result within the --timeout of 0.3 s"):
        run(client_address(master), timeout=0.3)
    events.wait_for("cancelled")  # the master noticed the client leave
    assert not master.dispatcher.active_jobs


def test_shuffled_masters_still_find_the_live_one(cluster, reserved_port):
    master = cluster.master()
    cluster.worker(master)
    dead = [reserved_port().address for _ in range(3)]
    for _ in range(5):
        assert run(",".join(dead + [client_address(master)]), shuffle=True)[0] == 0


def test_a_full_queue_is_refused(cluster, peers):
    master = cluster.master(max_queue=1)
    events = JobEvents(master)
    waiting = peers(master.clients_address)
    waiting.send(protocol.encode_block(b"print(1)\n"))
    events.wait_for("queued")
    with pytest.raises(client.NotAccepted, match="queue full"):
        run(client_address(master))


def test_links_have_keepalive_on_and_nagle_off():
    with socket.socket() as sock:
        tune_socket(sock, 9)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 9000


def test_a_worker_started_before_its_master_links_once_it_is_up(cluster, reserved_port):
    port = reserved_port().number
    cluster.worker(("127.0.0.1", port))
    master = Master(("127.0.0.1", port), ("127.0.0.1", 0))
    master.start()
    cluster.masters.append(master)
    assert master.wait_for_workers(1, WAIT)
    assert run(client_address(master))[0] == 0


def test_a_worker_stops_the_job_of_a_master_that_died_and_redials(cluster):
    connections, released = gevent.queue.Queue(), gevent.event.Event()
    server = gevent.server.StreamServer(("127.0.0.1", 0), lambda sock, _: connections.put(sock) or released.wait(WAIT))
    server.start()
    try:
        cluster.worker(server.address, name="w1")
        link = connections.get(timeout=WAIT)
        reader = link.makefile("rb")
        link.sendall(b"AVAILABLE\n")
        assert reader.readline() == b"READY v=2 free worker=w1\n"
        code = b"import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n"
        link.sendall(protocol.encode_block(code, [protocol.EXTENDED]))
        assert reader.readline() == b"RECEIVED\n"
        assert b" v=2 worker=" in reader.readline()
        assert reader.readline().startswith(b"1 ")  # raw stdout: the job's first line follows
        pid = int(reader.readline())
        reader.close()
        link.close()  # the master dies mid-job
        connections.get(timeout=WAIT).close()  # the worker dialled again...
        with pytest.raises(ProcessLookupError):  # ...having killed the job first
            os.kill(pid, 0)
    finally:
        released.set()
        server.stop(timeout=1)


def test_retries_also_make_another_pass_when_no_master_took_the_job(fake_masters):
    refusing = fake_masters(lambda sock: sock.sendall(b"ERROR busy\n"))
    with pytest.raises(client.NotAccepted, match="refused the job: busy"):
        run(refusing.address, retries=1)
    assert refusing.uploads == 2


def test_a_worker_silent_after_ready_loses_the_job_to_another(cluster, peers):
    master = cluster.master(client_timeout=0.5)
    silent = greeted(peers(master.workers_address))
    events = JobEvents(master)
    job = gevent.spawn(run, client_address(master))
    assert silent.line() == b"AVAILABLE\n"
    silent.send(b"READY\n")
    events.wait_for("dispatched")
    cluster.worker(master)  # the job comes back to the queue, and this one takes it
    status, output = job.get(timeout=WAIT)
    assert (status, output.stdout) == (0, b"ok\n")
    assert events.seen.count("dispatched") == 2 and "requeued" in events.seen


def test_a_reader_that_pauses_is_backpressure_not_death(cluster):
    """It stops reading for three keepalive periods, then gets every byte and the status."""
    master = cluster.master(keepalive=2)
    cluster.worker(master, keepalive=2)
    assert master.wait_for_workers(1, WAIT)
    size = 20 << 20
    upload = protocol.encode_block(b"import sys\nsys.stdout.buffer.write(b'y' * %d)\n" % size, [protocol.EXTENDED])
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # a zero window soon
    reader.settimeout(WAIT)
    reader.connect(master.clients_address)
    try:
        reader.sendall(upload)
        received = reader.recv(1 << 10)
        gevent.sleep(6)  # the pause under test: longer than the keepalive of master and worker
        while b"x exit 0\n" not in received[-200:]:
            data = reader.recv(1 << 20)
            assert data, f"the master hung up after {len(received)} bytes"
            received += data
    finally:
        reader.close()
    assert received.count(b"y") == size
