"""A job's stdin (issue 15): streamed through a sieci master, inline through a classic one."""

import io

import gevent
import gevent.event
import pytest

from sieci import defaults
from sieci.client import client
from sieci.client.futures import Executor
from sieci.wire import protocol, upload_format
from sieci.wire.address import format_address

from tests.helpers import WAIT, Awaited, Captured, JobEvents

FILTER = b"import sys\nfor line in sys.stdin.buffer:\n    sys.stdout.buffer.write(line.upper())\n"


def run(master, code, stdin, **options):
    """The sieci client's exit status and output, bounded by WAIT."""
    address = master.clients_address
    output = Captured()
    with gevent.Timeout(WAIT, AssertionError(f"the sieci client got no result within {WAIT} s")):
        status = client.run(format_address(address), code, output=output, stdin=stdin, **options)
    return status, output


@pytest.fixture
def sieci(master_with_a_worker):
    return master_with_a_worker


def test_a_filter_gets_its_stdin_byte_for_byte(sieci):
    data = b"first\n" + "zażółć".encode() + b" \xff\xfe\x00 bytes\r\nno newline at the end"
    status, output = run(sieci, FILTER, data)
    assert (status, output.stdout, output.stderr) == (0, data.upper(), b"")


def test_a_file_object_streams(sieci):
    data = b"".join(b"line %d\n" % n for n in range(200_000))
    status, output = run(sieci, FILTER, io.BytesIO(data))
    assert (status, output.stdout) == (0, data.upper())


def test_a_job_that_does_not_read_its_stdin_ends(sieci):
    status, output = run(sieci, b"print('done')\n", io.BytesIO(b"x" * (8 << 20)))
    assert (status, output.stdout) == (0, b"done\n")


class Endless(io.RawIOBase):
    """``yes``: a stdin that never ends. ``given`` counts the bytes read from it."""

    def __init__(self):
        self.given = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = b"y\n" * (len(buffer) // 2) + b"y" * (len(buffer) % 2)
        self.given += len(buffer)
        return len(buffer)


def test_an_endless_stdin_ends_with_the_job(sieci):
    endless = Endless()
    status, output = run(sieci, b"import sys\nfor _ in range(3):\n    print(sys.stdin.readline(), end='')\n",
                         endless)
    assert (status, output.stdout) == (0, b"y\ny\ny\n")
    assert endless.given < 64 << 20  # bounded by the pipes and sockets on the way, not by the stdin


def test_an_endless_stdin_into_a_job_that_closes_it(sieci):
    code = b"import sys, os\nsys.stdin.buffer.read(10)\nos.close(0)\nprint('closed')\n"
    status, output = run(sieci, code, Endless())
    assert (status, output.stdout) == (0, b"closed\n")


def test_the_worker_serves_on_after_a_job_whose_stdin_was_cut_off(sieci):
    for _ in range(3):
        assert run(sieci, b"print('next')\n", Endless())[1].stdout == b"next\n"
    assert run(sieci, FILTER, b"a\nb\n")[1].stdout == b"A\nB\n"


def test_stdin_inline_through_a_classic_master(cluster, classic):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    data = b"small \xff stdin\n" * 1000
    status, output = run(master, FILTER, data)
    assert (status, output.stdout) == (0, data.upper())


def test_a_long_stdin_through_a_classic_master_is_refused(cluster, classic):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    with pytest.raises(client.ClientError, match="stdin is longer than the 64 KiB") as refused:
        run(master, FILTER, b"x" * (defaults.MAX_INLINE_STDIN + 1))
    assert refused.value.exit_code == defaults.EXIT_USAGE


def test_a_classic_worker_ignores_stdin(cluster, classic):
    master = cluster.master()
    classic.worker(master.workers_address)
    assert master.wait_for_workers(1, WAIT)
    status, output = run(master, FILTER, Endless())
    assert (status, output.stdout) == (0, b"result\n")


def test_stdin_through_classic_master_and_classic_worker(classic):
    master = classic.master()
    classic.worker(master)
    master.wait_for_workers(1)
    status, output = run(master, FILTER, b"ignored\n")
    assert (status, output.stdout) == (0, b"result\n")


# --- forged stdin: nothing hangs, nothing is held -----------------------------------------------------

WAITS_FOR_STDIN = b"import sys\nprint(len(sys.stdin.buffer.read()))\n"


def upload(peers, master, code=WAITS_FOR_STDIN):
    """A raw client whose job (reading all its stdin) has been accepted."""
    peer = peers(master.clients_address)
    peer.send(protocol.encode_block(code, [protocol.EXTENDED, upload_format.STDIN_STREAM]))
    assert peer.answer() == b"RECEIVED\n"
    return peer


@pytest.mark.parametrize("garbage", [b"garbage\n", b"2 5\nhello", b"1 x\n", b"w 0 0\n", b"O 1\n"])
def test_a_malformed_stdin_block_stops_the_job(sieci, peers, garbage):
    events = JobEvents(sieci)
    peer = upload(peers, sieci)
    peer.send(b"ENDSEQ T stdin\n" + garbage)
    events.wait_for("cancelled")
    assert b"x exit" not in peer.rest()
    assert run(sieci, FILTER, b"next\n")[1].stdout == b"NEXT\n"  # the worker serves on


def test_stdin_before_received_is_a_protocol_error(sieci, peers):
    events = JobEvents(sieci)
    peer = peers(sieci.clients_address)
    peer.send(protocol.encode_block(b"import time\ntime.sleep(60)\n", [protocol.EXTENDED, upload_format.STDIN_STREAM])
              + b"ENDSEQ T stdin\n1 1\nx")
    events.wait_for("cancelled")
    peer.close()


def test_a_forged_huge_item_streams_what_comes(sieci, peers):
    peer = upload(peers, sieci)
    peer.send(b"ENDSEQ T stdin\n1 99999999999999\n" + b"x" * (4 << 20))
    peer.close()  # the client leaves in the middle of its item: the job is stopped
    assert run(sieci, FILTER, b"next\n")[1].stdout == b"NEXT\n"


def test_the_master_ends_the_stdin_of_a_job_that_has_ended(sieci, peers):
    peer = upload(peers, sieci, b"print('early')\n")
    peer.send(b"ENDSEQ T stdin\n1 3\nabc")  # and nothing more: the results end first
    results = peer.rest()
    assert b"early" in results and b"x exit 0\n" in results
    assert run(sieci, FILTER, b"next\n")[1].stdout == b"NEXT\n"


# --- a job stopped while its stdin is full: its worker is free at once ------------------------------

FILLS_ITS_STDIN = (b"import fcntl, struct, termios, time\n"
                   b"def held():\n    return struct.unpack('i', fcntl.ioctl(0, termios.FIONREAD, bytes(4)))[0]\n"
                   b"while held() < fcntl.fcntl(0, 1032) // 2:  # F_GETPIPE_SZ\n    time.sleep(0.01)\n"
                   b"print('full', flush=True)\ntime.sleep(60)\n")
PROMPTLY = 1.0  # seconds: the next job takes milliseconds; a worker that noticed late took two 5 s heartbeats


def flood(peer):
    """Stream the stdin of ``peer``'s job without end, until the connection fails: more than every buffer
    on the way holds, once the job has stopped reading it."""
    try:
        peer.send(b"ENDSEQ T stdin\n1 99999999999999\n")
        while True:
            peer.send(b"x" * (1 << 20))
    except OSError:
        pass


def assert_the_next_job_runs_promptly(master):
    output = Captured()
    with gevent.Timeout(PROMPTLY, AssertionError(f"the next job gave no result within {PROMPTLY} s")):
        status = client.run(format_address(master.clients_address), b"print('next')\n", output=output)
    assert (status, output.stdout) == (0, b"next\n")


def test_a_job_cancelled_while_its_stdin_is_full_frees_its_worker_at_once(sieci, peers):
    peer = upload(peers, sieci, FILLS_ITS_STDIN)
    [job] = sieci.dispatcher.active_jobs
    flooding = gevent.spawn(flood, peer)
    try:
        while b"full" not in peer.line():  # the worker holds stdin that the job does not take
            pass
        client.Client(format_address(sieci.clients_address)).cancel(job.id)
        assert_the_next_job_runs_promptly(sieci)
    finally:
        flooding.kill()


def test_a_client_that_leaves_while_its_jobs_stdin_is_full_frees_the_worker_at_once(sieci):
    output = Awaited()
    leaving = gevent.spawn(client.run, format_address(sieci.clients_address), FILLS_ITS_STDIN, output=output,
                           stdin=Endless())
    try:
        output.wait_for(b"full")
    finally:
        leaving.kill()  # as Ctrl-C would: the client leaves while its stdin streams
    assert_the_next_job_runs_promptly(sieci)


def test_the_executor_takes_stdin(sieci):
    with Executor(format_address(sieci.clients_address)) as pool:
        futures = [pool.submit(FILTER, stdin=b"job %d\n" % n) for n in range(4)]
        assert [future.result(WAIT).stdout for future in futures] == [b"JOB %d\n" % n for n in range(4)]
