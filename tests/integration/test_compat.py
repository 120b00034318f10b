"""The compatibility matrix, end to end over real loopback TCP.

Each test puts sieci peers and classic peers (tests/helpers/classic.py, doubles
of the Go implementation) in the client, master and worker positions of a job
and checks what the client gets, and where it matters the bytes each peer
saw on the wire.
"""

import os
import re
import socket

import gevent
import gevent.event
import pytest
from gevent.server import StreamServer

from sieci.client import client
from sieci.wire import protocol
from sieci.wire.address import format_address

from tests.helpers.classic import CLASSIC_RESULTS, CLASSIC_TERMINATOR, classic_client
from tests.helpers import WAIT, Captured, JobEvents, client_address

# A job that tells its streams apart, ends in a line without "\n", writes
# bytes that are not UTF-8, and exits with a status of its own.
RICH_CODE = (
    b"import sys\n"
    b"sys.stdout.write('out 1\\n')\n"
    b"sys.stdout.flush()\n"
    b"sys.stderr.buffer.write(b'err \\xff\\n')\n"
    b"sys.stderr.flush()\n"
    b"sys.stdout.buffer.write(b'tail \\xfe')\n"
    b"sys.exit(7)\n"
)
RICH_STDOUT = b"out 1\ntail \xfe"
RICH_STDERR = b"err \xff\n"
RICH_STATUS = 7


def sieci_client(address, code, **options):
    """The sieci client against ``address`` (a master or a (host, port)); bounded by WAIT."""
    if hasattr(address, "clients_address"):
        address = address.clients_address
    output = Captured()
    with gevent.Timeout(WAIT, AssertionError(f"the sieci client got no result within {WAIT} s")):
        status = client.run(format_address(address), code, output=output, **options)
    return status, output


def classic_job(master, file_bytes, timeout=WAIT):
    address = master.clients_address
    return classic_client(address, file_bytes, timeout=timeout)


# --- the matrix ------------------------------------------------------------------


def test_sieci_client_sieci_master_sieci_worker(cluster):
    master = cluster.master()
    cluster.worker(master)
    status, output = sieci_client(master, RICH_CODE)
    assert (output.stdout, output.stderr, status) == (RICH_STDOUT, RICH_STDERR, RICH_STATUS)


def test_classic_client_sieci_master_sieci_worker(cluster):
    master = cluster.master()
    cluster.worker(master)
    code = b"import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nprint('  indented  ')\nprint()\nsys.exit(3)\n"
    assert classic_client(client_address(master), code) == (0, b"hello\n  indented  \n\n", "")


def test_sieci_client_classic_master_sieci_worker(cluster, classic):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    status, output = sieci_client(master, RICH_CODE)
    assert (output.stdout, output.stderr, status) == (RICH_STDOUT, RICH_STDERR, RICH_STATUS)
    # The classic master relayed exactly one block and kept the link.
    assert master.jobs_done == 1


def test_a_jobs_arguments_and_environment_pass_a_classic_master_untouched(cluster, classic):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    code = b"import os, sys\nprint(sys.argv[1:], os.environ['GREETING'])\n"
    status, output = sieci_client(master, code, args=["a b", "zażółć"], env={"GREETING": "hi"})
    assert (status, output.stdout) == (0, "['a b', 'zażółć'] hi\n".encode())


def test_code_from_stdin_runs_as_python3_dash_through_a_classic_master(cluster, classic):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    status, output = sieci_client(master, b"import sys\nprint(sys.argv, __file__)\n", filename="-", args=["a"])
    assert (status, output.stdout) == (0, b"['-', 'a'] <stdin>\n")


def test_code_from_stdin_reaches_a_classic_worker_as_the_file_stdin_py(cluster, classic):
    master = cluster.master()
    worker = classic.worker(master.workers_address)
    assert master.wait_for_workers(1, WAIT)
    status, output = sieci_client(master, b"print('never run')\n", filename="-")
    assert (output.stdout, status) == (b"result\n", 0)
    [upload] = worker.uploads
    assert b" name=stdin.py" in upload.split(b"\n", 1)[0]


def test_sieci_client_sieci_master_classic_worker(cluster, classic):
    master = cluster.master()
    worker = classic.worker(master.workers_address)
    worker.wait_until(lambda: worker.rollbacks == 1, what="the ROLLBACK that ends its link's greeting")
    status, output = sieci_client(master, b"print('never run')\n")
    assert (output.stdout, output.stderr, status) == (b"result\n", b"", 0)
    assert worker.sent == [b"READY\n", b"READY\n", b"RECEIVED\n", CLASSIC_RESULTS]


def test_classic_client_sieci_master_classic_worker(cluster, classic):
    master = cluster.master()
    worker = classic.worker(master.workers_address)
    assert master.wait_for_workers(1, WAIT)
    code = b'print("hello")\nx = 1\n'
    assert classic_client(client_address(master), code) == (0, b"result\n", "")
    # The sieci master forwarded the classic client's upload unchanged.
    assert worker.uploads == [b"ENDSEQ " + CLASSIC_TERMINATOR + b"\n" + code + CLASSIC_TERMINATOR + b"\n"]


def test_sieci_client_classic_master_classic_worker(classic):
    master = classic.master()
    classic.worker(master)
    master.wait_for_workers(1)
    status, output = sieci_client(master, b"print('never run')\n")
    assert (output.stdout, output.stderr, status) == (b"result\n", b"", 0)


# --- the classic quirks a sieci peer has to live with --------------------------------


@pytest.mark.parametrize("last_line", [b'print("no newline")', b'print("no newline")   '])
def test_a_classic_file_without_a_final_newline_runs_through_a_sieci_master(cluster, last_line):
    master = cluster.master()
    cluster.worker(master)
    # The classic client glues its terminator to the last line:
    # ...print("no newline")OFFILESEQYOULLNEVERUSEITINYOURCODE\n
    code = b"print('first')\n" + last_line
    assert classic_client(client_address(master), code) == (0, b"first\nno newline\n", "")


def test_a_glued_terminator_reaches_a_classic_worker_as_a_well_formed_block(cluster, classic):
    master = cluster.master()
    worker = classic.worker(master.workers_address)
    assert master.wait_for_workers(1, WAIT)
    assert classic_client(client_address(master), b"print(1)") == (0, b"result\n", "")
    terminator_line = CLASSIC_TERMINATOR + b"\n"
    assert worker.uploads == [b"ENDSEQ " + terminator_line + b"print(1)\n" + terminator_line]


def test_a_classic_file_with_a_line_equal_to_a_random_hex_token_works(cluster):
    master = cluster.master()
    cluster.worker(master)
    token = os.urandom(16).hex().encode()
    # The file holds the token as a line of its own, and the job prints it.
    code = b'data = """\n' + token + b'\n"""\nprint(data.strip())\nprint(' + repr(token.decode()).encode() + b')\n'
    assert classic_client(client_address(master), code) == (0, token + b"\n" + token + b"\n", "")


def test_two_classic_workers_on_a_sieci_master_one_runs_the_job_the_other_is_rolled_back(cluster, classic):
    master = cluster.master()
    workers = [classic.worker(master.workers_address), classic.worker(master.workers_address)]
    for worker in workers:  # a sieci master asks a new link at once, jobs waiting or not
        worker.wait_until(lambda w=worker: w.rollbacks == 1, what="the ROLLBACK that ends its link's greeting")
    code = b"print('once')\n"
    assert classic_client(client_address(master), code) == (0, b"result\n", "")
    for worker in workers:
        worker.wait_until(lambda w=worker: len(w.received) == 4, what="an answer to its READY")
    winners = [w for w in workers if w.uploads]
    losers = [w for w in workers if not w.uploads]
    assert (len(winners), len(losers)) == (1, 1)
    upload = b"ENDSEQ " + CLASSIC_TERMINATOR + b"\n" + code + CLASSIC_TERMINATOR + b"\n"
    greeting = [b"AVAILABLE\n", b"ROLLBACK\n"]
    assert winners[0].received == greeting + [b"AVAILABLE\n", upload]
    assert winners[0].sent == [b"READY\n", b"READY\n", b"RECEIVED\n", CLASSIC_RESULTS]
    assert losers[0].received == greeting + [b"AVAILABLE\n", b"ROLLBACK\n"]
    assert losers[0].sent == [b"READY\n", b"READY\n"]
    assert (winners[0].rollbacks, losers[0].rollbacks) == (1, 2)


def test_a_sieci_worker_behind_a_classic_master_is_rolled_back_then_serves_the_next_job(cluster, classic):
    classic_master = classic.master()
    other_master = cluster.master()
    classic_worker = classic.worker(classic_master)
    classic_master.wait_for_workers(1)
    cluster.worker(classic_master.workers_address, other_master, name="w1")
    classic_master.wait_for_workers(2)
    assert other_master.wait_for_workers(1, WAIT)
    classic_link, sieci_link = classic_master.links

    # Keep the sieci worker busy with a job of the other master: that job
    # blocks until the test writes to the socket it dials.
    gate = socket.socket()
    gate.bind(("127.0.0.1", 0))
    gate.listen(1)
    gate.settimeout(WAIT)
    held_job = gevent.spawn(sieci_client, other_master,
                            b"import socket\ns = socket.create_connection(%r)\ns.recv(1)\nprint('held')\n"
                            % (gate.getsockname(),))
    try:
        job_side, _ = gate.accept()
        with job_side:
            # Job 1: the classic worker answers READY at once and wins; the
            # sieci worker's READY waits for its running job.
            status, output = sieci_client(classic_master, b"print('job 1')\n")
            assert (output.stdout, status) == (b"result\n", 0)
            job_side.sendall(b"x")
        status, output = held_job.get(timeout=WAIT)
        assert (output.stdout, status) == (b"held\n", 0)
    finally:
        held_job.kill()
        gate.close()
    # Its late READY for job 1 got ROLLBACK.
    classic_master.wait_until(lambda: len(sieci_link.sent) == 2, what="the answer to the late READY")
    assert sieci_link.received == [b"READY v=2 free worker=w1\n"]  # a classic master reads the first word
    assert sieci_link.sent == [b"AVAILABLE\n", b"ROLLBACK\n"]

    # Job 2: the classic worker is busy elsewhere (its lock is held), so the
    # sieci worker wins and really runs the code.
    classic_worker.lock.acquire()
    try:
        status, output = sieci_client(classic_master, b"import sys\nprint('job 2')\nsys.exit(5)\n")
        assert (output.stdout, output.stderr, status) == (b"job 2\n", b"", 5)
    finally:
        classic_worker.lock.release()
    classic_worker.wait_until(lambda: classic_worker.rollbacks == 1, what="ROLLBACK for the late READY")
    assert classic_worker.received[-2:] == [b"AVAILABLE\n", b"ROLLBACK\n"]
    assert sieci_link.sent[2] == b"AVAILABLE\n"
    assert sieci_link.sent[3].startswith(b"ENDSEQ ") and b" v=2" in sieci_link.sent[3]
    assert classic_link.sent[-1] == b"ROLLBACK\n"
    assert classic_master.jobs_done == 2


def test_a_sieci_clients_header_reaches_a_classic_worker_byte_for_byte(cluster, classic, monkeypatch):
    sent_blocks = []
    real_encode_block = protocol.encode_block

    def recording_encode_block(payload, fields=()):
        block = real_encode_block(payload, fields)
        sent_blocks.append(block)
        return block

    monkeypatch.setattr(protocol, "encode_block", recording_encode_block)
    master = cluster.master()
    worker = classic.worker(master.workers_address)
    assert master.wait_for_workers(1, WAIT)
    code = b"print('header')\n"
    status, output = sieci_client(master, code, filename="my_job.py")
    assert (output.stdout, status) == (b"result\n", 0)
    assert len(sent_blocks) == 1
    header = sent_blocks[0].split(b"\n", 1)[0] + b"\n"
    assert re.fullmatch(rb"ENDSEQ [G-V]{32} v=2 name=my_job\.py\n", header)
    assert worker.uploads == sent_blocks
    assert worker.uploads[0].startswith(header)


# --- more pairings and quirks ------------------------------------------------------


def test_classic_client_classic_master_sieci_worker(cluster, classic):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    code = b"import sys\nprint('hi')\nprint('not shown', file=sys.stderr)\nsys.exit(4)\n"
    assert classic_job(master, code) == (0, b"hi\n", "")


def test_a_sieci_worker_behind_a_classic_master_survives_its_misdirected_error(cluster, classic):
    master = classic.master()
    cluster.worker(master.workers_address, name="w1")
    master.wait_for_workers(1)
    (link,) = master.links
    # A bad upload: the classic master sends its ERROR to the worker, not the client.
    garbage = socket.create_connection(master.clients_address, timeout=WAIT)
    try:
        garbage.sendall(b"HELLO there\n")
        master.wait_until(lambda: len(link.sent) == 2, what="the ERROR to the worker")
        assert link.sent == [b"AVAILABLE\n", b"ERROR\n"]
        assert link.received == [b"READY v=2 free worker=w1\n"]
    finally:
        garbage.close()
    status, output = sieci_client(master, b"print('still here')\n")
    assert (output.stdout, status) == (b"still here\n", 0)
    assert link.sent[2] == b"AVAILABLE\n"


def test_a_sieci_master_does_not_stall_while_a_busy_classic_worker_holds_an_available(cluster, classic):
    master = cluster.master()
    classic_worker = classic.worker(master.workers_address)
    assert master.wait_for_workers(1, WAIT)
    classic_worker.lock.acquire()  # busy with some other master's job
    try:
        cluster.worker(master)
        assert master.wait_for_workers(2, WAIT)
        results = [sieci_client(master, b"print(%d)\n" % i) for i in range(3)]
        assert [(status, output.stdout) for status, output in results] == [(0, b"%d\n" % i) for i in range(3)]
        assert classic_worker.received == [b"AVAILABLE\n"]
    finally:
        classic_worker.lock.release()
    # Its late READY finds no job: ROLLBACK.
    classic_worker.wait_until(lambda: classic_worker.rollbacks == 1, what="ROLLBACK for the late READY")
    assert classic_worker.received[:2] == [b"AVAILABLE\n", b"ROLLBACK\n"]
    assert classic_worker.uploads == []


def test_a_client_hanging_up_mid_job_does_not_cost_a_classic_worker_its_link(cluster, classic):
    master = cluster.master()
    events = JobEvents(master)
    release = gevent.event.Event()
    worker = classic.worker(master.workers_address, hold_results=release)
    assert master.wait_for_workers(1, WAIT)
    impatient = socket.create_connection(master.clients_address, timeout=WAIT)
    try:
        impatient.sendall(b"ENDSEQ " + CLASSIC_TERMINATOR + b"\nprint(1)\n" + CLASSIC_TERMINATOR + b"\n")
        with impatient.makefile("rb") as answers:
            assert answers.readline() == b"RECEIVED\n"
    finally:
        impatient.close()  # the user gives up (Ctrl-C) while the job runs
    events.wait_for("abandoned")  # the master noticed the client leave, and lets the classic worker run the job out
    release.set()
    worker.wait_until(lambda: worker.exited.is_set() or len(worker.sent) == 3, what="the job's end")
    assert not worker.exited.is_set(), "the classic worker lost its only link and exited"
    assert classic_client(client_address(master), b"print(2)\n") == (0, b"result\n", "")


def test_a_sieci_master_relays_a_classic_workers_results_byte_for_byte(cluster, classic):
    results = b"ENDSEQ   dupa  extra\nresult\n  indented  \n\n\t dupa \n"
    master = cluster.master()
    classic.worker(master.workers_address, results=results)
    assert master.wait_for_workers(1, WAIT)
    raw = socket.create_connection(master.clients_address, timeout=WAIT)
    try:
        raw.sendall(b"ENDSEQ " + CLASSIC_TERMINATOR + b"\nprint(1)\n" + CLASSIC_TERMINATOR + b"\n")
        received = b""
        while not received.endswith(b"\t dupa \n"):
            chunk = raw.recv(65536)
            assert chunk, f"the master closed after {received!r}"
            received += chunk
    finally:
        raw.close()
    assert received == b"RECEIVED\n" + results
    # And the classic client makes of it what the classic one would.
    assert classic_client(client_address(master), b"print(1)\n") == (0, b"result\n  indented  \n\n", "")


BLANK_LINE = b" " * (1 << 20)  # one line of 1 MiB of spaces: longer than any one read


def test_code_with_a_long_blank_line_runs_sieci_sieci_sieci(cluster):
    master = cluster.master()
    cluster.worker(master)
    code = b's = """\n' + BLANK_LINE + b'\n"""\nprint(len(s))\n'
    status, output = sieci_client(master, code)
    assert (output.stdout, status) == (b"%d\n" % (len(BLANK_LINE) + 2), 0)


def test_a_long_blank_output_line_reaches_a_classic_client_through_sieci(cluster):
    master = cluster.master()
    cluster.worker(master)
    code = b'print(" " * %d)\nprint("end")\n' % len(BLANK_LINE)
    assert classic_client(client_address(master), code) == (0, BLANK_LINE + b"\nend\n", "")


# --- the classic doubles behave as the Go programs were observed to; the sieci client on canned replies ---


def test_classic_transcript_client_master_worker(classic):
    master = classic.master()
    worker = classic.worker(master)
    master.wait_for_workers(1)
    code = b'print("hello")\nx = 1\n'
    assert classic_job(master, code) == (0, b"result\n", "")
    upload_lines = [b"ENDSEQ " + CLASSIC_TERMINATOR + b"\n", b'print("hello")\n', b"x = 1\n",
                    CLASSIC_TERMINATOR + b"\n"]
    (link,) = master.links
    assert link.sent == [b"AVAILABLE\n"] + upload_lines
    assert link.received == [b"READY\n", b"RECEIVED\n", b"ENDSEQ dupa\n", b"result\n", b"dupa\n"]
    (client_peer,) = master.clients
    assert client_peer.received == upload_lines
    assert client_peer.sent_bytes == b"RECEIVED\n" + CLASSIC_RESULTS
    assert worker.received == [b"AVAILABLE\n", b"".join(upload_lines)]


def test_classic_master_and_worker_hang_on_a_glued_terminator(classic):
    master = classic.master()
    worker = classic.worker(master)
    master.wait_for_workers(1)
    exit_code, stdout, stderr = classic_job(master, b"print(1)", timeout=0.5)
    assert (exit_code, stdout) == (None, b"")
    assert stderr.startswith("hung")
    assert worker.uploads == []


def test_classic_master_rolls_back_the_second_classic_worker(classic):
    master = classic.master()
    workers = [classic.worker(master), classic.worker(master)]
    master.wait_for_workers(2)
    assert classic_job(master, b"print(2)\n") == (0, b"result\n", "")
    for worker in workers:
        worker.wait_until(lambda w=worker: len(w.received) == 2, what="an answer to its READY")
    assert sorted(worker.rollbacks for worker in workers) == [0, 1]


class CannedMaster:
    """A master that reads one upload block and answers with fixed bytes."""

    def __init__(self, reply, close=False):
        self.reply = reply
        self.close = close
        self.uploads = []
        self.server = StreamServer(("127.0.0.1", 0), self._handle)

    def _handle(self, sock, address):
        with sock.makefile("rb") as reader:
            self._converse(sock, reader)

    def _converse(self, sock, reader):
        header = reader.readline()
        terminator = header.split()[1]
        upload = [header]
        while True:
            line = reader.readline()
            if not line:
                return
            upload.append(line)
            if line.strip() == terminator:
                break
        self.uploads.append(b"".join(upload))
        sock.sendall(self.reply)
        if not self.close:
            reader.read()  # until the client closes

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc_info):
        self.server.stop(timeout=1)


@pytest.mark.parametrize("reply, close, expected", [
    (b"RECEIVED extra\nENDSEQ   T  junk\nline1\n  line2  \n\n\tT  \nafter\n", False, (0, b"line1\n  line2  \n\n", "")),
    (b"ERROR\n", True, (1, b"", "FAIL")),
    (b"ERROR no worker\n", False, (1, b"", "FAIL")),
    (b"RECEIVED\nENDSEQ T\nline1\n", True, (1, b"", "EOF")),
    (b"RECEIVED\nENDSEQ T\nline1\nT", True, (1, b"", "EOF")),
])
def test_classic_client_reads_as_observed(reply, close, expected):
    with CannedMaster(reply, close) as canned:
        assert classic_client(canned.server.address, b"print(1)\n") == expected
        assert canned.uploads == [b"ENDSEQ " + CLASSIC_TERMINATOR + b"\nprint(1)\n" + CLASSIC_TERMINATOR + b"\n"]


def test_classic_worker_that_cannot_reach_a_master_exits_1(classic, reserved_port):
    worker = classic.worker(reserved_port().address)
    assert worker.exited.is_set() and worker.exit_code == 1


def test_sieci_client_reads_a_classic_masters_loose_formatting():
    reply = b"RECEIVED extra\nENDSEQ   T  junk\nline1\n  line2  \n\n\tT  \nafter\n"
    with CannedMaster(reply) as canned:
        status, output = sieci_client(canned.server.address, b"print(1)\n")
    assert (output.stdout, output.stderr, status) == (b"line1\n  line2  \n\n", b"", 0)
    assert canned.uploads[0].endswith(b"\nprint(1)\n" + canned.uploads[0].split()[1] + b"\n")


def test_sieci_client_reports_a_classic_error_reply():
    with CannedMaster(b"ERROR\n", close=True) as canned:
        with pytest.raises(client.ClientError, match="refused"):
            sieci_client(canned.server.address, b"print(1)\n")


def test_a_sieci_master_says_relay_to_sieci_workers_only(cluster, classic):
    """RELAY (stdin streams, files on request) goes before the code only to a worker that said
    READY v=2: a classic worker would take the line for a block header."""
    master = cluster.master()
    worker = classic.worker(master.workers_address)
    worker.wait_until(lambda: worker.rollbacks == 1, what="the ROLLBACK that ends its link's greeting")
    upload = b"ENDSEQ T v=2 stdin=stream\nprint(1)\nT\n"
    with socket.create_connection(master.clients_address, timeout=WAIT) as sock:
        sock.sendall(upload)
        answer = b""
        while not answer.endswith(b"dupa\n"):
            data = sock.recv(4096)
            assert data, f"the master closed after {answer!r}"
            answer += data
    assert re.search(rb"RECEIVED job=[0-9a-f]{16}\n" + re.escape(CLASSIC_RESULTS) + rb"\Z", answer)
    assert worker.received == [b"AVAILABLE\n", b"ROLLBACK\n", b"AVAILABLE\n", upload]


def test_a_sieci_worker_that_refuses_a_job_keeps_a_classic_master_in_step(cluster, classic):
    """A classic master relays one block after the worker's answer, even after ERROR: so a worker
    whose code came without RELAY follows its refusal with an empty block, and the next job runs."""
    master = classic.master()
    cluster.worker(master.workers_address, secret=b"our secret")
    master.wait_for_workers(1)
    for _ in range(2):  # the first refusal leaves the classic master ready for the next job
        with pytest.raises(client.NotAccepted, match="unauthorized"):
            client.Client(format_address(master.clients_address), connect_timeout=WAIT).run(b"print('unsigned')\n")
