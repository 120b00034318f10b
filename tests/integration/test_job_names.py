"""The name a worker's log gives a job: the id its sieci master gave on RELAY (``job=<id>``), or, for
an id that is no job's id (forged, absurd), the job's count on its link; the job runs either way."""

from sieci.wire import protocol

from tests.helpers import forged_master_link, greeted, read_block

CODE = protocol.encode_block(b"print(1)\n")


def test_the_id_on_relay_is_the_one_the_jobs_client_gets(cluster, peers):
    master = cluster.master()
    fake = greeted(peers(master.workers_address), b"READY v=2\n")
    submitter = peers(master.clients_address)
    submitter.send(protocol.encode_block(b"print(1)\n", [protocol.EXTENDED]))
    assert fake.line() == b"AVAILABLE\n"
    fake.send(b"READY v=2\n")
    relay = fake.line()
    assert read_block(fake)[1] == b"print(1)\n"
    fake.send(b"RECEIVED\n")
    received = submitter.line()
    if received.startswith(b"QUEUED "):
        received = submitter.line()
    job_id = protocol.job_id_of(received)
    assert received.startswith(b"RECEIVED ") and job_id is not None, received
    assert relay == b"RELAY job=%s\n" % job_id.encode(), relay


def read_until(link, marker, received=b""):
    while marker not in received:
        data = link.recv(65536)
        assert data, f"the worker closed the link after {received!r}"
        received += data
    return received


def test_a_worker_names_a_job_by_its_masters_id_and_by_its_count_where_the_id_is_forged(cluster, log_lines):
    worker_log = log_lines("sieci.worker")
    forged = b"../../etc/passwd" + b"x" * 3000
    with forged_master_link(cluster) as (link, master):
        where = "%s:%d" % link.getpeername()[:2]
        for relay in (b"RELAY job=" + forged + b"\n", b"RELAY job=0123456789abcdef sent=1.x\n"):
            link.sendall(b"AVAILABLE\n")
            read_until(link, b"READY v=2 free worker=w1\n")
            link.sendall(relay + CODE)
            assert read_until(link, b"\n1\n").startswith(b"RECEIVED\nENDSEQ ")
        first, second = worker_log.wait_for(" exited 0 after ", count=2)
    (warning,) = [line for line in worker_log.messages if "which is no job's id" in line]
    assert warning.startswith(f"master {master} gave job {where}#1 the id "), warning
    assert repr(forged[:32]) in warning and len(warning) < 200, warning
    assert first.startswith(f"job {where}#1 for {master} exited 0 after "), first
    assert second.startswith(f"job 0123456789abcdef for {master} exited 0 after "), second



def test_a_job_stopped_because_its_master_hung_up_has_its_line_with_its_id(cluster, log_lines):
    worker_log = log_lines("sieci.worker")
    with forged_master_link(cluster) as (link, _):
        link.sendall(b"AVAILABLE\n")
        read_until(link, b"READY v=2 free worker=w1\n")
        code = protocol.encode_block(b"import time\ntime.sleep(60)\n", [protocol.EXTENDED])
        link.sendall(b"RELAY job=89abcdef01234567\n" + code)
        read_until(link, b"RECEIVED\n")
    (ended,) = worker_log.wait_for("job 89abcdef01234567 for ")
    assert ended.endswith("; its master hung up, so it was stopped"), ended
