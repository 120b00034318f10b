"""A batch's output is spooled to disk until its turn, never held whole: issue 16's 8 jobs printing
300 MiB each through a real client, against a real master and 8 real workers (about 25 s here;
bench/batchmemory.py measures the same with its figures); a full disk while spooling; hundreds of
jobs waiting for their turn."""

import os
import re
import resource
import subprocess

import pytest

from tests.helpers import WAIT, client_address, read_joblog
from tests.helpers.processes import CLIENT, PYTHON, clean_env
from tests.system.test_batch import job

JOBS = 8
MIB_EACH = 300
PEAK_LIMIT_MB = 100
LINE = 1 << 20
JOB = (b"import sys\nline = sys.argv[1].encode() * (%d - 1) + b'\\n'\nwrite = sys.stdout.buffer.write\n"
       b"print(sys.argv[1], 'starts', file=sys.stderr, flush=True)\n"
       b"for _ in range(%d):\n    write(line)\n") % (LINE, MIB_EACH)
DEADLINE = 180.0


def vmhwm_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def read_checking(stdout, letters, client_pid):
    """Reads the client's stdout to its end: each job's MIB_EACH lines of its letter, job after job.
    Returns the bytes read and the highest VmHWM of the client seen while it ran."""
    expected = [(letter.encode() * (LINE - 1) + b"\n") * 2 for letter in letters]
    per_job, position, peak = MIB_EACH * LINE, 0, 0.0
    while data := stdout.read(LINE):
        view = memoryview(data)
        while view:
            job, offset = divmod(position, per_job)
            assert job < len(letters), f"more output than {len(letters)} jobs printed"
            size = min(len(view), per_job - offset)
            start = offset % LINE
            assert view[:size] == expected[job][start:start + size], f"wrong byte near {position}"
            position, view = position + size, view[size:]
        try:
            peak = max(peak, vmhwm_mb(client_pid))
        except (OSError, StopIteration):
            pass  # it has ended: its peak was read before
    return position, peak


def test_eight_jobs_of_300_mib_keep_the_client_under_100_mb_in_order_byte_exact(procs, tmp_path):
    procs.master()
    workers = [procs.worker() for _ in range(JOBS)]
    for worker in workers:
        procs.wait_for_log(worker, "linked")
    job = procs.code_file(JOB, "big.py")
    letters = "abcdefgh"[:JOBS]
    spool = tmp_path / "spool"  # the client's temp folder, where its spool folder goes
    spool.mkdir()
    client = procs.start("client", [PYTHON, CLIENT, "--jobs", str(JOBS), f"127.0.0.1:{procs.clients_port}", job,
                                    ":::", *letters], capture_stdout=True, env=clean_env(TMPDIR=str(spool)))
    read, peak = read_checking(client.popen.stdout, letters, client.pid)
    assert client.popen.wait(DEADLINE) == 0, procs.logs()
    assert read == JOBS * MIB_EACH * LINE
    assert 0 < peak < PEAK_LIMIT_MB, f"the client's peak RSS was {peak:.1f} MB"
    starts = re.findall(r"(\w) starts", client.stderr())
    assert starts == list(letters), client.stderr()  # each job's stderr in its turn too
    assert not os.listdir(spool)  # every spool file removed, and their folder



@pytest.fixture
def small_disk(tmp_path):
    """A folder on a tmpfs of 256 KiB of its own (root only)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                                           stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_fails_the_job_whose_output_could_not_be_spooled_and_the_batch(cluster, tmp_path, small_disk):
    master = cluster.master()
    cluster.worker(master, name="w1")
    cluster.worker(master, name="w2")
    joblog = tmp_path / "joblog"
    first = job(tmp_path, "a", waits_for=(joblog, "big.py"))  # b's output is spooled while a runs
    big = tmp_path / "big.py"
    big.write_text("import sys\nsys.stdout.buffer.write(b'x' * (1 << 20))\n")
    done = subprocess.run([PYTHON, CLIENT, "--joblog", joblog, client_address(master), ":::", first, big],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=WAIT * 2,
                          env=clean_env(TMPDIR=str(small_disk)))
    assert done.returncode == 255, done.stderr
    kept = done.stdout.removeprefix(b"a out\n")  # then what of b's was spooled before the disk was full
    assert kept == b"x" * len(kept) and 0 < len(kept) < 1 << 20
    reason = "its output could not be kept for its turn: cannot write "
    assert f"sieci-client: error: {big}: {reason}".encode() in done.stderr
    assert b"(no space left on device)" in done.stderr
    rows = {os.path.basename(row[1]): row for row in read_joblog(joblog)}
    assert (rows["a.py"][6], rows["big.py"][6]) == ("0", "255") and rows["big.py"][8].startswith(reason)
    assert os.listdir(small_disk) == []


def test_hundreds_of_jobs_waiting_for_their_turn_hold_no_fd_each(cluster, tmp_path):
    """300 jobs end while the first waits for them, under a client limit of 64 open files."""
    master = cluster.master()
    for name in ("w1", "w2", "w3", "w4"):
        cluster.worker(master, name=name)
    joblog = tmp_path / "joblog"
    program = tmp_path / "job.py"
    program.write_text("import sys, time\n"
                       "def ended():\n"
                       f"    return open({str(joblog)!r}).read().count('\\n') - 1\n"
                       f"deadline = time.monotonic() + {WAIT}\n"
                       "while sys.argv[1] == '0' and ended() < 300 and time.monotonic() < deadline:\n"
                       "    time.sleep(0.02)\n"
                       "print('job', sys.argv[1])\n")
    values = [str(number) for number in range(301)]
    done = subprocess.run([PYTHON, CLIENT, "--joblog", joblog, client_address(master), program, ":::", *values],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=WAIT * 3, env=clean_env(),
                          preexec_fn=_few_files)
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == b"".join(b"job %s\n" % value.encode() for value in values)


def _few_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
