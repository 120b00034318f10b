"""Job ids and job control over real sockets: detach, attach during and after the job, cancel, list, the secret."""

import gevent
import gevent.event
import pytest

from sieci.client import client
from sieci.client.errors import ClientError
from sieci.wire import protocol, upload_format

from tests.helpers import WAIT, Captured, JobEvents, client_address
from tests.helpers.classic import classic_client
from tests.helpers.proxy import CuttingProxy

SECRET = b"a secret long enough for the test"
SLOW = b"import sys, time\nprint('first', flush=True)\nprint('err', file=sys.stderr, flush=True)\n" \
       b"time.sleep(0.5)\nprint('second')\nsys.exit(3)\n"


@pytest.fixture
def serve(cluster):
    """Makes a master (with ``options``) with a worker: the master, its job events, and a Client of it."""
    def make(**options):
        master = cluster.master(**options)
        cluster.worker(master)
        return master, JobEvents(master), client.Client(client_address(master))

    return make


def program(code):
    return client.Program(code, "job.py")


def outwait_client_timeout(master, peers):
    """Return once the master has refused a client that sent nothing: its ``client_timeout`` has passed
    since the call, and every timer of its that was due before has fired."""
    silent = peers(master.clients_address)
    assert silent.rest().startswith(b"ERROR nothing received for ")


def test_every_job_has_an_id_in_its_result_its_log_and_the_status(cluster, log_lines):
    master = cluster.master()
    cluster.worker(master)
    lines = log_lines("sieci.master")
    result = client.Client(client_address(master)).run(b"print(1)\n")
    assert protocol.parse_job_id(result.job_id) == result.job_id
    assert lines.wait_for(f"job {result.job_id} done")
    other = client.Client(client_address(master)).run(b"print(1)\n")
    assert other.job_id != result.job_id


def test_the_status_shows_the_running_job_by_its_id(cluster):
    master = cluster.master()
    cluster.worker(master)
    events = JobEvents(master)
    job_id = client.Client(client_address(master)).detach(program(b"import time\ntime.sleep(30)\n"))
    events.wait_for("dispatched")
    [(_, state)] = client.Client(client_address(master)).status()
    assert state["workers"][0]["job"] == job_id


def test_a_detached_job_runs_and_is_attached_to_during_and_after(serve):
    master, events, api = serve()
    job_id = api.detach(program(SLOW))
    assert protocol.parse_job_id(job_id) == job_id
    events.wait_for("dispatched")
    during = api.attach(job_id)
    assert (during.exit_status, during.stdout, during.stderr) == (3, b"first\nsecond\n", b"err\n")
    assert during.job_id == job_id
    events.wait_for("done")
    after = Captured()
    assert api.attach(job_id, after).exit_status == 3
    assert (after.stdout, after.stderr) == (b"first\nsecond\n", b"err\n")


def test_a_queued_detached_job_is_attached_to_before_it_starts_for_as_long_as_it_waits(cluster, peers, log_lines):
    master = cluster.master(client_timeout=0.2)
    lines = log_lines("sieci.master")
    api = client.Client(client_address(master))
    job_id = api.detach(program(b"print('late')\n"))
    attached = gevent.spawn(api.attach, job_id)
    lines.wait_for(f"attached to job {job_id}")
    outwait_client_timeout(master, peers)
    assert not attached.ready()
    cluster.worker(master)
    result = attached.get(timeout=WAIT)
    assert (result.exit_status, result.stdout) == (0, b"late\n")


def test_two_clients_attach_at_once_and_both_get_every_byte(cluster):
    master = cluster.master()
    cluster.worker(master)
    api = client.Client(client_address(master))
    code = b"import sys\nfor i in range(20000):\n    print(i, 'x' * 50)\n"
    job_id = api.detach(program(code))
    first, second = gevent.spawn(api.attach, job_id), gevent.spawn(api.attach, job_id)
    expected = b"".join(b"%d %s\n" % (i, b"x" * 50) for i in range(20000))
    assert first.get(timeout=WAIT).stdout == expected
    assert second.get(timeout=WAIT).stdout == expected


def test_cancel_stops_a_running_job_and_drops_a_queued_one(serve):
    master, events, api = serve()
    running = api.detach(program(b"import time\nprint('up', flush=True)\ntime.sleep(60)\n"))
    queued = api.detach(program(b"print('never')\n"))
    events.wait_for("dispatched")
    api.cancel(queued)
    api.cancel(running)
    events.wait_for("cancelled", 2)
    with pytest.raises(client.JobLost, match="cancelled by request"):
        api.attach(queued)
    with pytest.raises(ClientError, match="no queued or running job"):
        api.cancel(running)


def test_cancel_tells_an_attached_client_of_a_queued_job(cluster):
    master = cluster.master()
    events = JobEvents(master)
    waiting = gevent.spawn(client.Client(client_address(master)).run, b"print(1)\n")
    events.wait_for("queued")
    [job] = master.dispatcher.active_jobs
    client.Client(client_address(master)).cancel(job.id)
    with pytest.raises(client.NotAccepted, match="cancelled by request"):
        waiting.get(timeout=WAIT)


def test_list_shows_queued_running_and_kept_jobs(serve):
    master, events, api = serve()
    done = api.detach(program(b"print(1)\n"))
    events.wait_for("done")
    running = api.detach(program(b"import time\ntime.sleep(60)\n"))
    events.wait_for("dispatched", 2)
    queued = api.detach(program(b"print(2)\n"))
    [(_, listing)] = api.jobs()
    states = {job["id"]: (job["state"], job["detached"]) for job in listing["jobs"]}
    assert states == {done: ("done", True), running: ("running", True), queued: ("queued", True)}
    assert all(job["age"] >= 0 for job in listing["jobs"])


def test_unknown_expired_and_malformed_ids_are_refused(cluster, peers):
    master = cluster.master(keep_output=0.2, client_timeout=0.3)
    cluster.worker(master)
    events = JobEvents(master)
    api = client.Client(client_address(master))
    job_id = api.detach(program(b"print(1)\n"))
    events.wait_for("done")
    assert api.attach(job_id).stdout == b"1\n"
    outwait_client_timeout(master, peers)  # longer than the output is kept
    with pytest.raises(ClientError, match="no job .* is kept here"):
        api.attach(job_id)
    with pytest.raises(ClientError, match="no job 0123456789abcdef is kept here"):
        api.attach("0123456789abcdef")


@pytest.mark.parametrize("request_line", [b"ATTACH ../../etc/passwd\n", b"ATTACH 0123456789ABCDEF\n",
                                          b"CANCEL\n", b"ATTACH 0123456789abcdef0\n"])
def test_a_malformed_id_is_refused_before_anything_is_looked_up(cluster, peers, request_line):
    master = cluster.master()
    asker = peers(master.clients_address)
    asker.send(request_line)
    assert asker.rest() == b"ERROR expected a job id (16 hex digits)\n"


def test_the_spool_cap_forgets_the_oldest_finished_job(serve):
    _, events, api = serve(max_kept_output=64 << 10)
    first = api.detach(program(b"print('a' * 30000)\n"))
    events.wait_for("done")
    second = api.detach(program(b"print('b' * 30000)\n"))
    events.wait_for("done", 2)
    with pytest.raises(ClientError, match="is kept here"):
        api.attach(first)
    assert api.attach(second).stdout == b"b" * 30000 + b"\n"


def test_results_past_the_cap_are_cut_and_the_attacher_told(serve):
    _, events, api = serve(max_kept_output=32 << 10)
    job_id = api.detach(program(b"print('a' * 100000)\n"))
    events.wait_for("done")
    with pytest.raises(client.JobLost, match="in the middle of the results"):
        api.attach(job_id)


@pytest.fixture
def guarded(cluster):
    master = cluster.master(secret=SECRET)
    cluster.worker(master, secret=SECRET)
    return master


def test_with_a_secret_only_a_signed_request_attaches_cancels_or_lists(guarded, peers):
    members = client.Client(client_address(guarded), secret=SECRET)
    job_id = members.detach(program(b"print('private')\n"))
    for secret, why in ((None, "unauthorized"), (b"a different secret of some length", "does not prove")):
        stranger = client.Client(client_address(guarded), secret=secret)
        for request in (lambda: stranger.attach(job_id), lambda: stranger.cancel(job_id)):
            with pytest.raises(ClientError, match=why):
                request()
        [(_, error)] = stranger.jobs()
        assert why in str(error)
    asker = peers(guarded.clients_address)
    asker.send(b"ATTACH " + job_id.encode() + b"\n")
    assert asker.rest() == b"ERROR unauthorized\n"
    assert members.attach(job_id).stdout == b"private\n"
    [(_, listing)] = members.jobs()
    assert [job["id"] for job in listing["jobs"]] == [job_id]


def test_a_signed_attach_cannot_be_replayed_nor_moved_to_another_job(guarded, peers):
    members = client.Client(client_address(guarded), secret=SECRET)
    job_id = members.detach(program(b"print('x')\n"))
    link = members._masters()[0]
    fields = link._signed([job_id.encode()], protocol.ATTACH + b" " + job_id.encode())
    line = b"ATTACH " + b" ".join(fields) + b"\n"
    first = peers(guarded.clients_address)
    first.send(line)
    assert first.line().startswith(b"ATTACHED job=" + job_id.encode())
    again = peers(guarded.clients_address)
    again.send(line)
    assert again.rest() == b"ERROR unauthorized\n"
    other = "0" * 16
    moved = peers(guarded.clients_address)
    moved.send(line.replace(job_id.encode(), other.encode(), 1))
    assert moved.rest() == b"ERROR unauthorized\n"


def test_a_classic_client_sees_no_job_id(cluster, classic):
    master = cluster.master()
    cluster.worker(master)
    assert classic_client(client_address(master), b"print('hi')\n") == (0, b"hi\n", "")


def test_through_a_classic_master_the_job_has_no_id_and_detach_says_so(classic, cluster):
    classic_master = classic.master()
    cluster.worker(classic_master.workers_address)
    api = client.Client(f"127.0.0.1:{classic_master.clients_address[1]}")
    result = api.run(b"print('hi')\n")
    assert (result.stdout, result.job_id) == (b"hi\n", None)
    with pytest.raises(ClientError, match="cannot detach a job"):
        api.detach(program(b"print('hi')\n"))


COUNTING = b"for i in range(200000):\n    print(i)\n"
COUNTED = b"".join(b"%d\n" % i for i in range(200000))


@pytest.fixture
def proxy():
    made = []

    def make(target, cuts):
        made.append(CuttingProxy(target, cuts))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_a_cut_connection_attaches_again_and_every_byte_comes_once(cluster, proxy):
    master = cluster.master()
    cluster.worker(master)
    events = JobEvents(master)
    cutter = proxy(master.clients_address, [50_000, 300_000, 1])
    result = client.Client(cutter.address, retries=3).run(COUNTING)
    assert (result.exit_status, len(result.stdout), result.stdout == COUNTED) == (0, len(COUNTED), True)
    assert len(cutter.passed) == 4 and cutter.passed[:3] == [50_000, 300_000, 1]
    assert events.seen.count("dispatched") == 1 and events.seen.count("done") == 1


def test_a_cut_connection_without_retries_loses_the_job_as_before(cluster, proxy):
    master = cluster.master()
    cluster.worker(master)
    events = JobEvents(master)
    cutter = proxy(master.clients_address, [50_000])
    with pytest.raises(client.JobLost):
        client.Client(cutter.address).run(COUNTING)
    events.wait_for("cancelled")
    assert master.kept.listed() == []


def test_a_kept_job_runs_on_for_its_client_then_is_cancelled_if_none_attaches(cluster, peers, log_lines):
    master = cluster.master(client_timeout=0.5)
    lines = log_lines("sieci.master")
    cluster.worker(master)
    events = JobEvents(master)
    leaver = peers(master.clients_address)
    code = b"import time\nprint('up', flush=True)\ntime.sleep(60)\n"
    leaver.send(protocol.encode_block(code, [protocol.EXTENDED, upload_format.KEEP_FIELD]))
    assert leaver.answer() == b"RECEIVED\n"
    leaver.close()
    lines.wait_for("which runs on for 0.5 s for a client to attach")
    [job] = master.dispatcher.active_jobs
    assert job.client is None and not job.finished.is_set()
    events.wait_for("cancelled")


def test_a_client_that_leaves_while_attached_to_a_queued_job_is_let_go(cluster, peers):
    master = cluster.master()
    job_id = client.Client(client_address(master)).detach(program(b"print(1)\n"))
    leaver = peers(master.clients_address)
    leaver.send(b"ATTACH " + job_id.encode() + b"\n")
    assert leaver.line() == b"ATTACHED job=" + job_id.encode() + b"\n"
    [job] = master.dispatcher.active_jobs
    assert job.spool.attached == 1
    let_go = gevent.event.Event()
    last_left = master.intake.control.last_left  # called as the last attached client leaves
    master.intake.control.last_left = lambda job: (last_left(job), let_go.set())
    leaver.close()
    assert let_go.wait(WAIT)  # (its handler then ends without waiting for anything)
    assert (job.spool.attached, master.intake.connections) == (0, {})
    assert not job.finished.is_set()  # a detached job runs on, whoever leaves


def test_a_kept_job_whose_reattached_client_leaves_again_is_cancelled_too(cluster, peers, log_lines):
    master = cluster.master(client_timeout=0.3)
    lines = log_lines("sieci.master")
    cluster.worker(master)
    events = JobEvents(master)
    leaver = peers(master.clients_address)
    leaver.send(protocol.encode_block(b"import time\ntime.sleep(60)\n", [protocol.EXTENDED, upload_format.KEEP_FIELD]))
    assert leaver.answer() == b"RECEIVED\n"
    [job] = master.dispatcher.active_jobs
    leaver.close()
    again = peers(master.clients_address)
    again.send(b"ATTACH " + job.id.encode() + b"\n")
    assert again.line().startswith(b"ATTACHED")
    lines.wait_for("which runs on for 0.3 s for a client to attach")
    outwait_client_timeout(master, peers)  # the first client's time to attach again has passed
    assert not job.finished.is_set()  # attached: it runs on
    again.close()
    events.wait_for("cancelled")


def test_a_detached_job_takes_its_files_along(serve, tmp_path):
    _, _, api = serve()
    (tmp_path / "data.txt").write_text("beside it\n")
    (tmp_path / "job.py").write_text("print(open('data.txt').read(), end='')\n")
    job_id = api.detach(client.load_program(str(tmp_path / "job.py"), [str(tmp_path / "data.txt")]))
    assert api.attach(job_id).stdout == b"beside it\n"
