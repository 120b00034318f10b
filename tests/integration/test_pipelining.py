"""Pipelined dispatch over real sockets: asking ahead, standing offers, credit (see sieci/link.py)."""

import re
import socket

import gevent
import gevent.event
import pytest

from sieci import defaults
from sieci.client import client
from sieci.wire import conversation, protocol
from sieci.worker.worker import ROUND_TRIPS_TRUSTED

from tests.helpers import (WAIT, Captured, JobEvents, Offers, Stdout, client_address, forged_master_link, greeted,
                           read_block)
from tests.helpers.classic import CLASSIC_RESULTS

RELAY_LINE = re.compile(rb"RELAY job=[0-9a-f]{16}\n")  # a sieci master names the job whose code follows


def run_job(master, code, **options):
    output = Captured()
    with gevent.Timeout(WAIT, AssertionError(f"no result within {WAIT} s")):
        status = client.run(client_address(master), code, output=output, **options)
    return status, output


def spawn_job(master, code):
    output = Captured()
    return gevent.spawn(client.run, client_address(master), code, output=output), output


@pytest.fixture
def gate():
    """A listening socket a job dials and blocks on, until the test writes to it: a job that runs at will."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(WAIT)
    yield server
    server.close()


def held_job_code(gate):
    return b"import socket\ns = socket.create_connection(%r)\ns.recv(1)\nprint('held')\n" % (gate.getsockname(),)


# --- asking ahead: every worker kind -----------------------------------------------------------


def classic_worker_running_a_job(cluster, classic, peers):
    """A master whose one worker, a classic one, runs a job until ``release`` is set: (master, worker,
    its link at the master, release, the job's client: a RawPeer that has read RECEIVED)."""
    master = cluster.master()
    release = gevent.event.Event()
    worker = classic.worker(master.workers_address, hold_results=release)
    worker.wait_until(lambda: worker.rollbacks == 1, what="the ROLLBACK that ends its link's greeting")
    [link] = master.links
    first = peers(master.clients_address)
    first.send(protocol.encode_block(b"print(1)\n", [protocol.EXTENDED]))
    assert first.answer() == b"RECEIVED\n"  # the master has seen the worker accept it
    return master, worker, link, release, first


def test_a_classic_worker_is_asked_for_the_next_job_while_it_runs_one(cluster, classic, peers):
    master, worker, link, release, first = classic_worker_running_a_job(cluster, classic, peers)
    second, output = spawn_job(master, b"print(2)\n")
    JobEvents(master).wait_for("queued")
    # The ask went while the first job ran: the worker reads it after its results.
    assert link.state.asked_ahead and link.state.state == conversation.RUNNING
    release.set()
    assert first.rest() == CLASSIC_RESULTS
    assert second.get(timeout=WAIT) == 0 and output.stdout == b"result\n"
    greeting = [b"AVAILABLE\n", b"ROLLBACK\n"]
    assert [line for line in worker.received if not line.startswith(b"ENDSEQ")] == greeting + [b"AVAILABLE\n"] * 2
    assert len(worker.uploads) == 2 and worker.rollbacks == 1


def test_a_queue_drained_while_the_worker_was_asked_ahead_costs_one_rollback(cluster, classic, peers):
    master, worker, link, release, first = classic_worker_running_a_job(cluster, classic, peers)
    events = JobEvents(master)
    leaver = peers(master.clients_address)
    leaver.send(protocol.encode_block(b"print(2)\n", [protocol.EXTENDED]))
    events.wait_for("queued")
    assert link.state.asked_ahead
    leaver.close()
    events.wait_for("cancelled")
    release.set()
    assert first.rest() == CLASSIC_RESULTS
    worker.wait_until(lambda: worker.rollbacks == 2, what="ROLLBACK for the READY the ask ahead brought")
    assert run_job(master, b"print(3)\n") == (0, Stdout(b"result\n"))
    assert worker.rollbacks == 2  # the greeting's, and the ask ahead's


# --- standing offers: sieci workers ------------------------------------------------------------


def test_an_idle_sieci_worker_is_sent_each_job_at_once_the_links_first_too(cluster, recording_proxy):
    """The master asks a new link at once, no job waiting: the worker's READY is rolled back, and from
    then on it says FREE, so every code goes as soon as its client's upload has come, the link's first
    too: no AVAILABLE and READY between (3 round trips)."""
    master = cluster.master()
    offers = Offers(master)
    proxy = recording_proxy(master.workers_address)
    cluster.worker(proxy.address, name="w1")
    offers.wait_for(1)
    assert proxy.sent(0, "to target") == b"READY v=2 free worker=w1\nFREE\n"
    for number in range(3):
        assert run_job(master, b"print(%d)\n" % number) == (0, Stdout(b"%d\n" % number))
    from_master = proxy.sent(0, "from target")
    assert re.match(rb"AVAILABLE\nROLLBACK free\nRELAY job=[0-9a-f]{16}\nENDSEQ ", from_master)
    assert from_master.count(b"AVAILABLE") == 1
    assert len(re.findall(rb"RELAY job=[0-9a-f]{16}\nENDSEQ ", from_master)) == 3
    transcript = proxy.transcripts[0]
    for index, (direction, data) in enumerate(transcript):
        if direction == "from target" and RELAY_LINE.match(data):
            before = [data for way, data in transcript[:index] if way == "to target"]
            assert before[-1].endswith(b"FREE\n")  # what the worker said last: its standing offer


def test_a_classic_dispatch_master_asks_for_every_job(cluster, recording_proxy):
    master = cluster.master(pipelined=False)
    proxy = recording_proxy(master.workers_address)
    cluster.worker(proxy.address)
    assert master.wait_for_workers(1, WAIT)
    for number in range(3):
        assert run_job(master, b"print(%d)\n" % number)[0] == 0
    assert proxy.sent(0, "from target").count(b"AVAILABLE\n") == 3
    assert b"FREE" not in proxy.sent(0, "to target") and b" free" not in proxy.sent(0, "from target")


def test_a_worker_never_holds_more_jobs_than_its_credit(cluster):
    master = cluster.master()
    held = []
    master.dispatcher.listeners.append(lambda event, job: held.append(len(job.worker.jobs))
                                       if event == "dispatched" else None)
    cluster.worker(master, credit=3)
    assert master.wait_for_workers(1, WAIT)
    jobs = [spawn_job(master, b"print(%d)\n" % number) for number in range(12)]
    for number, (job, output) in enumerate(jobs):
        assert job.get(timeout=WAIT) == 0 and output.stdout == b"%d\n" % number
    assert max(held) == 3


def test_a_job_held_in_a_lost_workers_credit_runs_once_elsewhere(cluster, peers):
    master = cluster.master()
    events = JobEvents(master)
    fake = greeted(peers(master.workers_address), b"READY v=2 free\n")  # a sieci worker: it makes offers
    fake.send(b"FREE\n")
    first, _ = spawn_job(master, b"print('first')\n")
    assert RELAY_LINE.fullmatch(fake.line())
    read_block(fake)
    fake.send(b"RECEIVED\nFREE\n")  # a credit of 2: the first runs, one more may come
    second, output = spawn_job(master, b"print('second')\n")
    assert RELAY_LINE.fullmatch(fake.line())
    assert read_block(fake)[1].endswith(b"print('second')\n")
    fake.close()  # lost, with the second job held and never accepted
    with pytest.raises(client.JobLost):
        first.get(timeout=WAIT)
    events.wait_for("requeued")
    cluster.worker(master)
    assert second.get(timeout=WAIT) == 0 and output.stdout == b"second\n"
    assert (events.seen.count("dispatched"), events.seen.count("requeued"), events.seen.count("done")) == (3, 1, 1)


def test_a_standing_offer_raced_by_another_master_is_refused_and_the_job_runs_once(cluster, gate, log_lines):
    first_master, other_master = cluster.master(), cluster.master()
    events = JobEvents(first_master)
    lines = log_lines("sieci.master")
    cluster.worker(first_master, other_master)
    assert first_master.wait_for_workers(1, WAIT) and other_master.wait_for_workers(1, WAIT)
    # One job through each master: from then on the worker makes both standing offers.
    assert run_job(other_master, b"pass\n")[0] == 0
    assert run_job(first_master, b"pass\n")[0] == 0
    held, held_output = spawn_job(other_master, held_job_code(gate))
    job_side, _ = gate.accept()  # the other master's job runs; the first master's offer still stands
    with job_side:
        raced, output = spawn_job(first_master, b"print('once')\n")
        events.wait_for("requeued")
        lines.wait_for("busy for another master")
        job_side.sendall(b"x")
    assert held.get(timeout=WAIT) == 0 and held_output.stdout == b"held\n"
    assert raced.get(timeout=WAIT) == 0 and output.stdout == b"once\n"
    assert events.seen.count("requeued") == 1 and events.seen.count("done") == 2


def offering_fake(master, peers, credit):
    """A fake sieci worker linked to ``master`` that has run one job and now holds ``credit`` offers;
    returns it, and that first job's greenlet."""
    fake = greeted(peers(master.workers_address), b"READY v=2 free\n")
    fake.send(b"FREE\n")
    first, _ = spawn_job(master, b"print('first')\n")
    assert RELAY_LINE.fullmatch(fake.line())
    read_block(fake)
    fake.send(b"RECEIVED\nENDSEQ T v=2\nx exit 0\nT\n" + b"FREE\n" * credit)
    assert first.get(timeout=WAIT) == 0
    return fake


def test_a_worker_that_does_not_answer_a_code_sent_against_its_offer_is_dropped(cluster, peers):
    master = cluster.master(client_timeout=0.5)
    events = JobEvents(master)
    fake = offering_fake(master, peers, 1)
    job, output = spawn_job(master, b"print('moved')\n")
    assert RELAY_LINE.fullmatch(fake.line())
    read_block(fake)
    assert fake.rest() == b""  # silence: the master hangs up
    events.wait_for("requeued")
    cluster.worker(master)
    assert job.get(timeout=WAIT) == 0 and output.stdout == b"moved\n"


def test_a_job_whose_client_left_while_it_waited_in_credit_is_stopped_when_it_starts(cluster, peers):
    master = cluster.master()
    events = JobEvents(master)
    fake = offering_fake(master, peers, 2)
    running = peers(master.clients_address)
    running.send(protocol.encode_block(b"print('running')\n", [protocol.EXTENDED]))
    assert RELAY_LINE.fullmatch(fake.line())
    read_block(fake)
    fake.send(b"RECEIVED\n")
    assert running.answer() == b"RECEIVED\n"
    leaver = peers(master.clients_address)
    leaver.send(protocol.encode_block(b"print('left')\n", [protocol.EXTENDED]))
    assert RELAY_LINE.fullmatch(fake.line())
    assert read_block(fake)[1].endswith(b"print('left')\n")
    leaver.close()
    fake.send(b"ENDSEQ T v=2\no running\nx exit 0\nT\n")  # the running job ends untouched
    assert running.rest().endswith(b"x exit 0\nT\n")
    fake.send(b"RECEIVED\n")  # the worker starts the job whose client left: the master hangs up to stop it
    assert fake.rest() == b""
    events.wait_for("cancelled")
    assert events.seen.count("done") == 2


def test_a_worker_that_floods_offers_is_dropped_and_its_job_runs_elsewhere(cluster, peers):
    master = cluster.master()
    events = JobEvents(master)
    fake = offering_fake(master, peers, conversation.MAX_OFFERS)
    fake.send(b"FREE\n")  # one past the most a worker may have standing
    assert fake.rest() == b""
    assert master.wait_for_workers(0, WAIT, exactly=True)
    cluster.worker(master)
    assert run_job(master, b"print('fine')\n") == (0, Stdout(b"fine\n"))
    assert events.seen.count("failed") == 0


def test_a_master_that_sends_a_code_no_offer_asked_for_is_dropped(cluster):
    """A worker takes offers' codes only as many as it offered: a forged master is hung up on."""
    with forged_master_link(cluster) as (link, _):
        link.sendall(b"AVAILABLE\n")
        assert link.recv(100) == b"READY v=2 free worker=w1\n"
        link.sendall(b"ROLLBACK free\n")
        assert link.recv(100) == b"FREE\n"  # credit 1
        code = protocol.encode_block(b"print(1)\n")
        link.sendall(b"RELAY\n" + code + b"RELAY\n" + code)  # the second without an offer
        received = b""
        while data := link.recv(65536):
            received += data
        terminator = received.split()[2]
        # The first job's results (classic: its stdout), then no FREE: the worker hung up.
        assert received.startswith(b"RECEIVED\nENDSEQ ") and received.endswith(b"\n1\n" + terminator + b"\n")


# --- the auto credit (the default): by the round trip and the jobs' length -----------------------


def test_a_worker_far_from_its_master_holds_enough_jobs_to_cover_the_round_trip(cluster, delaying_proxy):
    """A worker a (simulated) round trip of 0.2 s from its master, short jobs: once it has seen a few round
    trips and knows how long a job takes, it holds several jobs at once, the next codes crossing while
    one runs."""
    master = cluster.master()
    held_at_dispatch = []
    master.dispatcher.listeners.append(lambda event, job: held_at_dispatch.append(len(job.worker.jobs))
                                       if event == "dispatched" else None)
    worker = cluster.worker(delaying_proxy(master.workers_address, 0.1).address)
    assert master.wait_for_workers(1, WAIT)
    jobs = [spawn_job(master, b"print(%d)\n" % number) for number in range(16)]
    for number, (job, output) in enumerate(jobs):
        assert job.get(timeout=WAIT) == 0 and output.stdout == b"%d\n" % number
    assert worker.links[0].round_trip.seen >= ROUND_TRIPS_TRUSTED and worker.links[0].credit() >= 2
    assert held_at_dispatch[:2] == [1, 1]  # until it has seen the round trips it trusts
    assert 2 <= max(held_at_dispatch) <= defaults.MAX_CREDIT


def test_workers_beside_their_master_hold_no_job_behind_a_long_one(cluster, gate):
    """Near workers (the auto credit): one runs a long job, and the short jobs that come meanwhile all run
    on the other, none held behind the long one: no worker ever holds two jobs."""
    master = cluster.master()
    held_at_dispatch = []
    master.dispatcher.listeners.append(lambda event, job: held_at_dispatch.append(len(job.worker.jobs))
                                       if event == "dispatched" else None)
    workers = [cluster.worker(master), cluster.worker(master)]
    assert master.wait_for_workers(2, WAIT)
    # Until each worker knows how long a job takes and how far the master is (beside it: no job ahead).
    while not all(worker.job_seconds and worker.links[0].round_trip.seen >= ROUND_TRIPS_TRUSTED
                  for worker in workers):
        jobs = [spawn_job(master, b"print('warm')\n") for _ in range(4)]
        assert all(job.get(timeout=WAIT) == 0 for job, _ in jobs)
    long_job, _ = spawn_job(master, held_job_code(gate))
    job_side, _ = gate.accept()
    with job_side:
        [long_link] = [link for link in master.links if link.jobs]
        done_before = {link: link.jobs_done for link in master.links}
        short_jobs = [spawn_job(master, b"print(%d)\n" % number) for number in range(6)]
        for number, (job, output) in enumerate(short_jobs):
            assert job.get(timeout=WAIT) == 0 and output.stdout == b"%d\n" % number
        done = {link: link.jobs_done - done_before[link] for link in master.links}
        job_side.sendall(b"x")
    assert long_job.get(timeout=WAIT) == 0
    assert sorted(done.values()) == [0, 6] and done[long_link] == 0
    assert max(held_at_dispatch) == 1


def test_a_worker_of_two_masters_takes_turns_however_far_and_busy_one_is(cluster, delaying_proxy):
    """The auto credit holds no job ahead for a worker of several masters: a far master with a queue of
    short jobs would otherwise keep it for as long as its next code comes first, and the near master's job
    would wait for that whole queue."""
    far, near = cluster.master(), cluster.master()
    worker = cluster.worker(delaying_proxy(far.workers_address, 0.1).address, near)
    assert far.wait_for_workers(1, WAIT) and near.wait_for_workers(1, WAIT)
    far_jobs = [spawn_job(far, b"print(%d)\n" % number) for number in range(24)]
    for job, _ in far_jobs[:ROUND_TRIPS_TRUSTED + 1]:  # the far link has seen the round trips it trusts
        assert job.get(timeout=WAIT) == 0
    status, output = run_job(near, b"print('near')\n")
    far_done = sum(job.ready() for job, _ in far_jobs)
    assert (status, output.stdout) == (0, b"near\n")
    # Its turn came after the far job then running (or one more, on a busy machine), not after the far
    # master's queue: a credit of 25 to the far master let 9 or 10 more go first here.
    assert far_done <= ROUND_TRIPS_TRUSTED + 3
    assert worker.links[0].credit() == 1
    for number, (job, output) in enumerate(far_jobs):
        assert job.get(timeout=WAIT) == 0 and output.stdout == b"%d\n" % number
