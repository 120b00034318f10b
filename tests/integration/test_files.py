"""A job's files (--with), directory programs and their bundles on the wire, over real sockets.

Bytes moved are counted by the stores of the master and the workers (what
each took in and gave out), never timed.
"""

import hashlib
import os
import re
import zlib

import gevent
import gevent.pool
import pytest

from sieci.client import client
from sieci.wire import bundle, upload_format
from sieci.worker.limits import Limits

from tests.helpers import WAIT, JobEvents, client_address, greeted

CODE = b"import sys, pkg\nprint(sys.argv[1:], pkg.VALUE, open('data.csv').read().split())\n"


@pytest.fixture
def program(tmp_path):
    """job.py, and beside it a package and a data file (and a folder program, app, that uses them)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("VALUE = 42\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "job.py").write_bytes(CODE)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(
        "import os, sys, helper\nprint(sys.argv, sys.path[0] == os.path.abspath('app'), helper.NAME,"
        " open('data.csv').read().split())\nraise SystemExit(3)\n")
    (tmp_path / "app" / "helper.py").write_text("NAME = 'helper'\n")
    return tmp_path


def run_path(master, path, files=(), args=()):
    return client.Client(client_address(master)).run_path(str(path), list(args), files=[str(f) for f in files])


@pytest.mark.parametrize("fresh_interpreter", [False, True], ids=["forked", "fresh interpreter"])
def test_with_a_package_and_a_data_file_imports_and_opens_work(cluster, program, fresh_interpreter):
    master = cluster.master()
    cluster.worker(master, fresh_interpreter=fresh_interpreter)
    result = run_path(master, program / "job.py", [program / "pkg", program / "data.csv"], ["x y"])
    assert (result.exit_status, result.stdout, result.stderr) == (0, b"['x y'] 42 ['a,b', '1,2']\n", b"")


@pytest.mark.parametrize("fresh_interpreter", [False, True], ids=["forked", "fresh interpreter"])
def test_a_directory_program_runs_as_python3_runs_it(cluster, program, fresh_interpreter):
    master = cluster.master()
    cluster.worker(master, fresh_interpreter=fresh_interpreter)
    result = run_path(master, program / "app", [program / "data.csv"], ["z"])
    assert (result.exit_status, result.stdout, result.stderr) == (3, b"['app', 'z'] True helper ['a,b', '1,2']\n", b"")


def test_a_folder_without_main_is_refused_as_python3_refuses_it(cluster, program):
    master = cluster.master()
    with pytest.raises(client.ClientError, match="can't find '__main__' module in"):
        run_path(master, program / "pkg")


def test_a_bundle_travels_to_the_master_and_to_each_worker_once(cluster, program):
    master = cluster.master()
    worker = cluster.worker(master)
    files = client.pack_files([str(program / "pkg"), str(program / "data.csv")], str(program / "job.py"))
    runner = client.Client(client_address(master))
    for _ in range(3):
        assert runner.run(CODE, "job.py", files=files).stdout == b"[] 42 ['a,b', '1,2']\n"
    assert (master.files.received_bytes, master.files.sent_bytes, worker.files.store.received_bytes) == (
        files.size, files.size, files.size)


def test_through_a_classic_master_the_bundle_goes_inline_once_per_worker(cluster, classic, program):
    master = classic.master()
    worker = cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    files = client.pack_files([str(program / "pkg"), str(program / "data.csv")], str(program / "job.py"))
    runner = client.Client(client_address(master))
    for _ in range(2):
        result = runner.run(CODE, "job.py", args=["a"], files=files)
        assert (result.exit_status, result.stdout) == (0, b"['a'] 42 ['a,b', '1,2']\n")
    # The first upload ended at once (the worker lacked the files) and went again inline; the second found them.
    assert worker.files.store.received_bytes == files.size and master.jobs_done == 3


def test_two_hundred_jobs_sharing_a_20_mb_file_move_it_to_each_worker_once(cluster, tmp_path):
    master = cluster.master(max_upload=64 << 20)
    workers = [cluster.worker(master, max_upload=64 << 20) for _ in range(2)]
    assert master.wait_for_workers(2, WAIT)
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(20 << 20))
    files = client.pack_files([str(data)], str(tmp_path / "job.py"))
    runner = client.Client(client_address(master))
    code = b"import os\nprint(os.path.getsize('data.bin'))\n"
    pool = gevent.pool.Pool(8)
    results = pool.map(lambda _: runner.run(code, "job.py", files=files), range(200))
    assert {(result.exit_status, result.stdout) for result in results} == {(0, b"%d\n" % (20 << 20))}
    assert master.files.received_bytes == files.size > 20 << 20
    received = [worker.files.store.received_bytes for worker in workers]
    assert set(received) <= {0, files.size} and master.files.sent_bytes == sum(received)


# --- what the master and the workers refuse -------------------------------------------------------


def upload(files_field, code=b"print('ran')\n"):
    return b"ENDSEQ T v=2 name=job.py " + files_field + b"\n" + code + b"T\n"


def files_block(field, data):
    return b"ENDSEQ U " + field + b"\n" + data + b"\nU\n"


def test_a_forged_bundle_is_refused_and_not_kept(cluster, peers):
    master = cluster.master()
    announced = upload_format.FilesWanted(hashlib.sha256(b"the real bundle").hexdigest(), 15)
    peer = peers(master.clients_address)
    peer.send(upload(announced.field))
    assert peer.line() == b"NEED " + announced.digest.encode() + b"\n"
    peer.send(files_block(announced.field, b"a forged one!!!"))
    assert peer.line().startswith(b"ERROR the files bundle is not the one announced")
    assert os.listdir(master.files.folder) == [] and master.files.used == 0


def test_a_bundle_larger_than_announced_is_refused(cluster, peers):
    master = cluster.master()
    announced = upload_format.FilesWanted(hashlib.sha256(b"short").hexdigest(), 5)
    peer = peers(master.clients_address)
    peer.send(upload(announced.field))
    peer.line()
    peer.send(files_block(announced.field, b"short and then much more"))
    assert peer.line() == b"ERROR block larger than the limit of 6 bytes\n"
    assert os.listdir(master.files.folder) == []


def test_a_bundle_other_than_the_one_asked_for_is_refused(cluster, peers):
    master = cluster.master()
    announced = upload_format.FilesWanted(hashlib.sha256(b"one").hexdigest(), 3)
    other = upload_format.FilesWanted(hashlib.sha256(b"two").hexdigest(), 3)
    peer = peers(master.clients_address)
    peer.send(upload(announced.field))
    peer.line()
    peer.send(files_block(other.field, b"two"))
    assert peer.line().startswith(b"ERROR sent files other than those asked for")


def test_a_client_that_never_sends_the_bundle_is_dropped_after_the_client_timeout(cluster, peers):
    master = cluster.master(client_timeout=0.3)
    announced = upload_format.FilesWanted("ab" * 32, 3)
    peer = peers(master.clients_address)
    peer.send(upload(announced.field))
    assert peer.line().startswith(b"NEED")
    assert peer.line() == b"ERROR nothing received for 0.3 s\n"


@pytest.mark.parametrize("field", [b"files=../../../etc/passwd.1", b"files=" + b"A" * 64 + b".1",
                                   b"files=" + b"a" * 64])
def test_a_files_field_that_names_no_digest_is_refused(cluster, peers, field):
    master = cluster.master()
    peer = peers(master.clients_address)
    peer.send(upload(field))
    assert peer.line().startswith(b"ERROR a malformed files= field")


def test_a_bundle_larger_than_the_store_is_refused(cluster, program):
    master = cluster.master(files_store=16)
    with pytest.raises(client.NotAccepted, match="larger than the store"):
        run_path(master, program / "job.py", [program / "data.csv"])


def raw_bundle(*entries):
    return zlib.compress(bundle.MAGIC + b"".join(b"%s %d %d\n%s%s" % (kind, len(content), len(name), name, content)
                                                 for kind, name, content in entries) + bundle.END)


@pytest.mark.parametrize("entries, why", [
    ([(b"f", b"../escaped", b"x")], b"not a plain relative path"),
    ([(b"f", b"/etc/escaped", b"x")], b"not a plain relative path"),
    ([(b"l", b"link", b"/etc/passwd")], b"a malformed entry"),
    ([(b"f", b"job.py", b"print('not me')")], b"holds job.py, the program's own name"),
    ([(b"f", b"big", b"x" * 2000)], b"take more than 1000 bytes"),
])
def test_a_worker_refuses_a_bundle_with_a_bad_entry_and_serves_on(cluster, peers, entries, why):
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=30, disk=1000))
    data = raw_bundle(*entries)
    announced = upload_format.FilesWanted(hashlib.sha256(data).hexdigest(), len(data))
    peer = peers(master.clients_address)
    peer.send(upload(announced.field))
    assert peer.line().startswith(b"NEED")
    peer.send(files_block(announced.field, data))
    answer = peer.answer()
    assert answer.startswith(b"ERROR the worker refused the job: ") and why in answer
    result = client.Client(client_address(master)).run(b"print('next')\n")
    assert result.stdout == b"next\n"


def test_a_worker_that_asks_for_files_it_was_not_offered_is_dropped_and_the_job_goes_on(cluster, peers, program):
    master = cluster.master()
    events = JobEvents(master)
    fake = greeted(peers(master.workers_address), b"READY v=2\n")
    job = gevent.spawn(run_path, master, program / "job.py", [program / "pkg", program / "data.csv"])
    assert fake.line() == b"AVAILABLE\n"
    fake.send(b"READY v=2\n")
    assert re.fullmatch(rb"RELAY job=[0-9a-f]{16}\n", fake.line())
    fake.send(b"NEED " + b"0" * 64 + b"\n")
    events.wait_for("requeued")
    assert fake.rest().endswith(b"\n")  # the code block, then the master hung up
    cluster.worker(master)
    assert job.get(timeout=WAIT).stdout == b"[] 42 ['a,b', '1,2']\n"
