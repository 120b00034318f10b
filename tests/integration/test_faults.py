"""Lost peers, late answers and hostile input, played by hand over loopback."""

import os
import socket

import gevent
import gevent.event
import gevent.server
import pytest

from sieci.client import client
from sieci.master.master import Master
from sieci.wire import protocol

from tests.helpers import WAIT, Captured, JobEvents, assert_backing_off, client_address, greeted, read_block


def spawn_job(master, code, output=None):
    output = output if output is not None else Captured()
    return gevent.spawn(client.run, client_address(master), code, output=output), output


def take_job(fake):
    """Play a worker that is asked, says READY, and gets a job: returns the job's code."""
    assert fake.line() == b"AVAILABLE\n"
    fake.send(b"READY\n")
    return read_block(fake)[1]


def linked_fake_workers(master, peers, count):
    """Fake classic workers linked to ``master``, past its first AVAILABLE (see greeted)."""
    fakes = [greeted(peers(master.workers_address)) for _ in range(count)]
    assert master.wait_for_workers(count, WAIT)
    return fakes


# --- workers that go away ---------------------------------------------------------


def test_a_worker_lost_before_received_puts_the_job_back_at_the_head(cluster, peers):
    master = cluster.master()
    events = JobEvents(master)
    [fake] = linked_fake_workers(master, peers, 1)
    job, output = spawn_job(master, b'print("ran once")\n')
    assert take_job(fake) == b'print("ran once")\n'
    fake.close()
    events.wait_for("requeued")
    cluster.worker(master)
    assert job.get(timeout=WAIT) == 0
    assert output.stdout == b"ran once\n"


def test_a_worker_lost_after_received_ends_the_job_with_an_error(cluster, peers):
    master = cluster.master()
    [fake] = linked_fake_workers(master, peers, 1)
    job, _ = spawn_job(master, b'print("maybe ran")\n')
    take_job(fake)
    fake.send(b"RECEIVED\n")
    fake.close()
    with pytest.raises(client.ClientError, match="worker lost"):
        job.get(timeout=WAIT)


def test_a_worker_lost_mid_results_ends_them_with_an_error_status(cluster, peers):
    master = cluster.master()
    [fake] = linked_fake_workers(master, peers, 1)
    job, output = spawn_job(master, b'print("partial")\n')
    take_job(fake)
    fake.send(b"RECEIVED\nENDSEQ T v=2\no partial\nO half a li")
    fake.close()
    with pytest.raises(client.ClientError, match="worker lost"):
        job.get(timeout=WAIT)
    assert output.stdout == b"partial\nhalf a li"


def test_a_late_ready_gets_rollback(cluster, peers):
    master = cluster.master()
    first, second = linked_fake_workers(master, peers, 2)
    job, output = spawn_job(master, b'print("x")\n')
    assert first.line() == b"AVAILABLE\n"
    assert second.line() == b"AVAILABLE\n"
    first.send(b"READY\n")
    header, code = read_block(first)
    second.send(b"READY\n")
    assert second.line() == b"ROLLBACK\n"
    first.send(b"RECEIVED\nENDSEQ dupa\nresult\ndupa\n")
    assert job.get(timeout=WAIT) == 0
    assert output.stdout == b"result\n"


def test_a_ready_that_finds_jobs_waiting_takes_the_next_one(cluster, peers):
    master = cluster.master()
    first, second = linked_fake_workers(master, peers, 2)
    jobs = [spawn_job(master, b"print(%d)\n" % i) for i in range(2)]
    for fake in (first, second):
        assert fake.line() == b"AVAILABLE\n"
        fake.send(b"READY\n")
    codes = sorted(read_block(fake)[1] for fake in (first, second))
    assert codes == [b"print(0)\n", b"print(1)\n"]
    for fake in (first, second):
        fake.send(b"RECEIVED\nENDSEQ t\nresult\nt\n")
    assert [job.get(timeout=WAIT) for job, _ in jobs] == [0, 0]


def test_a_worker_that_speaks_out_of_turn_is_dropped_and_others_serve(cluster, peers):
    master = cluster.master()
    [rude] = linked_fake_workers(master, peers, 1)
    rude.send(b"RECEIVED\n")
    assert rude.rest() == b""  # the master hung up on it
    cluster.worker(master)
    job, output = spawn_job(master, b'print("fine")\n')
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"fine\n"


def test_a_worker_sending_a_bad_results_header_fails_only_that_job(cluster, peers):
    master = cluster.master()
    [fake] = linked_fake_workers(master, peers, 1)
    job, _ = spawn_job(master, b"print(1)\n")
    take_job(fake)
    fake.send(b"RECEIVED\nHELLO there\n")
    with pytest.raises(client.ClientError, match="worker lost"):
        job.get(timeout=WAIT)
    cluster.worker(master)
    job, output = spawn_job(master, b'print("next")\n')
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"next\n"


# --- clients that go away -----------------------------------------------------------


def test_a_client_that_leaves_while_queued_leaves_the_queue(cluster, peers):
    master = cluster.master()
    events = JobEvents(master)
    leaver = peers(master.clients_address)
    leaver.send(protocol.encode_block(b'print("abandoned")\n'))
    events.wait_for("queued")
    leaver.close()
    events.wait_for("cancelled")
    assert not master.dispatcher.pending_jobs and not master.dispatcher.active_jobs
    [fake] = linked_fake_workers(master, peers, 1)
    job, _ = spawn_job(master, b'print("wanted")\n')
    assert take_job(fake) == b'print("wanted")\n'
    fake.send(b"RECEIVED\nENDSEQ t\nresult\nt\n")
    assert job.get(timeout=WAIT) == 0


def test_a_client_that_leaves_while_its_job_runs_stops_the_job(cluster, peers):
    master = cluster.master()
    events = JobEvents(master)
    cluster.worker(master)
    leaver = peers(master.clients_address)
    code = b"import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n"
    leaver.send(protocol.encode_block(code, [protocol.EXTENDED]))
    assert leaver.answer() == b"RECEIVED\n"
    assert b" v=2 worker=" in leaver.line()
    assert leaver.line().startswith(b"1 ")  # raw stdout: the job's first line follows
    pid = int(leaver.line())
    leaver.close()
    events.wait_for("cancelled")
    job, output = spawn_job(master, b'print("the worker is free")\n')
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"the worker is free\n"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- big raw chunks, which the master splices from worker to client ----------------------

BIG = 3 << 20  # far above worker_link.SPLICE_AT_LEAST


def raw_chunk_header(size, stream=b"1"):
    return stream + b" %d\n" % size


def test_a_big_raw_chunk_reaches_the_client_exactly(cluster, peers):
    master = cluster.master()
    [fake] = linked_fake_workers(master, peers, 1)
    job, output = spawn_job(master, b"print('big')\n")
    take_job(fake)
    data = os.urandom(BIG)
    fake.send(b"RECEIVED\nENDSEQ T v=2\n" + raw_chunk_header(BIG) + data[:1000])
    for start in range(1000, BIG, 1 << 20):  # in several sends, as a worker streams
        fake.send(data[start:start + (1 << 20)])
    fake.send(raw_chunk_header(5, b"2") + b"oops\n" + raw_chunk_header(BIG) + data + b"x exit 3\nT\n")
    assert job.get(timeout=WAIT) == 3
    assert output.stdout == data + data and output.stderr == b"oops\n"


def test_a_worker_lost_in_the_middle_of_a_big_raw_chunk_fails_only_that_job(cluster, peers):
    master = cluster.master()
    [fake] = linked_fake_workers(master, peers, 1)
    job, output = spawn_job(master, b"print('big')\n")
    take_job(fake)
    fake.send(b"RECEIVED\nENDSEQ T v=2\n" + raw_chunk_header(BIG) + b"y" * (BIG // 2))
    fake.close()
    with pytest.raises(client.JobLost):
        job.get(timeout=WAIT)
    assert output.stdout == b"y" * len(output.stdout) and len(output.stdout) <= BIG // 2
    cluster.worker(master)
    job, output = spawn_job(master, b"import sys\nsys.stdout.buffer.write(b'z' * %d)\n" % BIG)
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"z" * BIG


@pytest.mark.parametrize("ready, stops", [(b"READY v=2\n", True), (b"READY\n", False)])
def test_a_client_that_leaves_in_the_middle_of_a_big_raw_chunk(cluster, peers, ready, stops):
    """A worker that can stop its job loses its link; one that cannot has the rest read and dropped."""
    master = cluster.master()
    events = JobEvents(master)
    [fake] = linked_fake_workers(master, peers, 1)
    leaver = peers(master.clients_address)
    leaver.send(protocol.encode_block(b"print('big')\n", [protocol.EXTENDED]))
    assert fake.line() == b"AVAILABLE\n"
    fake.send(ready)
    read_block(fake)
    fake.send(b"RECEIVED\nENDSEQ T v=2\n" + raw_chunk_header(BIG) + b"y" * (1 << 20))
    assert leaver.answer() == b"RECEIVED\n"
    assert leaver.line() == b"ENDSEQ T v=2\n"
    leaver.close()
    if stops:
        events.wait_for("cancelled")
        with pytest.raises(OSError):
            for _ in range(BIG >> 16):  # the master hangs up: a send fails before the chunk is done
                fake.send(b"y" * (1 << 16))
            assert fake.rest() == b""
        assert master.wait_for_workers(0, WAIT, exactly=True)
        return
    fake.send(b"y" * (BIG - (1 << 20)) + b"x exit 0\nT\n")
    events.wait_for("cancelled")
    job, output = spawn_job(master, b"print('next')\n")
    assert take_job(fake) == b"print('next')\n"  # the same link serves on
    fake.send(b"RECEIVED\nENDSEQ T v=2\n" + raw_chunk_header(BIG) + b"n" * BIG + b"x exit 0\nT\n")
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"n" * BIG


def test_a_client_that_leaves_while_its_job_floods_output_leaves_the_worker_free(cluster, peers):
    """The worker stops sending mid-flood: its pipe readers, blocked on a full queue, must not wedge it."""
    master = cluster.master()
    events = JobEvents(master)
    cluster.worker(master)
    flood = b"import sys\nchunk = bytes(range(256)) * 4096\nfor _ in range(40):\n    sys.stdout.buffer.write(chunk)\n"
    for round_number in range(1, 6):
        leaver = peers(master.clients_address)
        leaver.send(protocol.encode_block(flood, [protocol.EXTENDED]))
        assert leaver.answer() == b"RECEIVED\n"
        leaver.file.read(100_000 * round_number)
        leaver.close()
        events.wait_for("cancelled", round_number)
        output = Captured()
        assert client.run(client_address(master), b"print('next')\n", output=output, timeout=WAIT) == 0
        assert output.stdout == b"next\n"


# --- masters that go away -----------------------------------------------------------


def test_workers_relink_to_a_restarted_master(cluster):
    master = cluster.master()
    cluster.worker(master)
    assert master.wait_for_workers(1, WAIT)
    workers_address, clients_address = master.workers_address, master.clients_address
    master.stop(grace=0.1)
    restarted = Master(workers_address, clients_address)
    restarted.start()
    cluster.masters.append(restarted)
    assert restarted.wait_for_workers(1, WAIT)
    job, output = spawn_job(restarted, b'print("again")\n')
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"again\n"


@pytest.fixture
def fake_master():
    """A listener that records each connection a worker makes to it."""
    connections = gevent.queue.Queue()
    server = gevent.server.StreamServer(("127.0.0.1", 0), lambda sock, _: _hold(sock, connections))
    server.start()
    try:
        yield server, connections
    finally:
        server.stop(timeout=1)


def _hold(sock, connections):
    done = gevent.event.Event()
    connections.put((sock, done))
    done.wait()


def test_a_worker_drops_a_master_that_talks_nonsense_and_redials(cluster, fake_master):
    server, connections = fake_master
    cluster.worker(server.address, name="w1")
    sock, done = connections.get(timeout=WAIT)
    sock.sendall(b"HELLO\n")
    assert sock.recv(100) == b""  # the worker hung up
    done.set()
    again, done_again = connections.get(timeout=WAIT)  # and dialled again
    again.sendall(b"AVAILABLE\n")
    assert again.recv(100) == b"READY v=2 free worker=w1\n"
    again.sendall(b"ROLLBACK\n")
    done_again.set()


def test_a_master_that_drops_every_link_at_once_is_redialled_with_growing_pauses(cluster, log_lines):
    """A link lost as soon as it is made counts as a failed dial: no tight loop of redials."""
    server = gevent.server.StreamServer(("127.0.0.1", 0), lambda sock, _: sock.close())
    server.start()
    try:
        worker_log = log_lines("sieci.worker")
        cluster.worker(server.address, reconnect_min=0.01, reconnect_max=0.16)
        losses = worker_log.wait_for("lost master", count=5)
    finally:
        server.stop(timeout=1)
    assert_backing_off(losses)


# --- hostile clients ----------------------------------------------------------------

HOSTILE_UPLOADS = {
    "garbage": (b"garbage\n", b"expected a block header"),
    "an empty line": (b"\n", b"expected a block header"),
    "a bare ENDSEQ": (b"ENDSEQ\n", b"no terminator"),
    "EOF mid-block": (b"ENDSEQ T\nprint(1)\n", b"ended before its terminator"),
    "binary noise": (bytes(range(256)) * 4 + b"\n", b"expected a block header"),
    "an oversized upload": (b"ENDSEQ T\n" + b"x = 1\n" * 50_000 + b"T\n", b"larger than"),
    "a long line with no newline": (b"ENDSEQ T\n" + b"x" * 400_000, b"larger than the limit of 200000 bytes"),
    "a long header with no newline": (b"x" * 400_000, b"longer than"),
}


@pytest.mark.parametrize("upload, reason", HOSTILE_UPLOADS.values(), ids=HOSTILE_UPLOADS.keys())
def test_a_bad_upload_gets_an_error_and_the_master_serves_on(cluster, peers, upload, reason):
    master = cluster.master(max_upload=200_000)
    cluster.worker(master)
    peer = peers(master.clients_address)
    sender = gevent.spawn(_send_and_half_close, peer.sock, upload)
    answer = peer.rest()
    sender.join(timeout=WAIT)
    assert answer.startswith(b"ERROR ") and reason in answer and answer.endswith(b"\n"), answer
    job, output = spawn_job(master, b'print("still serving")\n')
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"still serving\n"


def _send_and_half_close(sock, data):
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the master may close first; its answer is what the test checks


def test_a_client_that_sends_nothing_is_dropped_after_the_idle_timeout(cluster, peers):
    master = cluster.master(client_timeout=0.2)
    peer = peers(master.clients_address)
    assert peer.rest() == b"ERROR nothing received for 0.2 s\n"


def test_a_huge_line_does_not_make_the_master_buffer_it(cluster, peers):
    master = cluster.master(max_upload=1 << 20)
    peer = peers(master.clients_address)
    sender = gevent.spawn(_send_and_half_close, peer.sock, b"ENDSEQ T\n" + b"y" * (100 << 20))
    answer = peer.rest()
    sender.kill()
    assert answer.startswith(b"ERROR ")
