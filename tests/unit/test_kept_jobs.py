"""The master's kept jobs, without sockets: ids, the spool, retention and the cap."""

import os
import time

from sieci import kept_jobs, protocol
from sieci.kept_jobs import JOB_OVERHEAD, KeptJobs


class StandInJob:
    def __init__(self, job_id):
        self.id = job_id
        self.spool = None


def kept(store, job_id, data=b"", ended=True):
    job = StandInJob(job_id)
    store.keep(job)
    job.spool.write(data, last=True)
    if ended:
        job.spool.end("done", "")
    return job


def test_ids_are_16_hex_digits_and_differ():
    ids = {kept_jobs.new_job_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(protocol.parse_job_id(job_id) == job_id for job_id in ids)


def test_a_spool_is_read_back_from_any_offset(tmp_path):
    store = KeptJobs(1 << 20, 60, tmp_path)
    job = kept(store, "a" * 16, b"ENDSEQ T v=2\n1 3\nabcx exit 0\nT\n")
    assert job.spool.read(0) == b"ENDSEQ T v=2\n1 3\nabcx exit 0\nT\n"
    assert job.spool.read(13) == b"1 3\nabcx exit 0\nT\n"
    assert job.spool.complete and store.find("a" * 16) is job
    store.close()
    assert list(tmp_path.iterdir()) == []


def test_no_file_is_named_after_an_id(tmp_path):
    store = KeptJobs(1 << 20, 60, tmp_path)
    kept(store, "b" * 16, b"data\n")
    [folder] = tmp_path.iterdir()
    assert list(folder.iterdir()) == []  # anonymous files only
    store.close()


def test_finished_jobs_expire_after_the_retention(tmp_path):
    store = KeptJobs(1 << 20, 0.05, tmp_path)
    running = kept(store, "c" * 16, b"x\n", ended=False)
    kept(store, "d" * 16, b"y\n")
    time.sleep(0.1)
    assert store.find("d" * 16) is None and store.find("c" * 16) is running
    assert store.total == JOB_OVERHEAD + 2
    store.close()


def test_the_oldest_finished_job_makes_room_and_results_past_the_cap_are_cut(tmp_path):
    store = KeptJobs(3 * JOB_OVERHEAD + 100, 60, tmp_path)
    kept(store, "e" * 16, b"1" * 60)
    newer = kept(store, "f" * 16, b"2" * 30)
    growing = kept(store, "0" * 16, b"3" * 50, ended=False)
    assert store.find("e" * 16) is None and store.find("f" * 16) is newer
    growing.spool.write(b"4" * 10000)
    assert store.find("f" * 16) is None and growing.spool.cut and growing.spool.size == 50
    store.close()


def test_results_that_cannot_be_written_are_cut_and_uncounted(tmp_path):
    store = KeptJobs(1 << 20, 60, tmp_path)
    job = kept(store, "1" * 16, b"kept\n", ended=False)
    job.spool.file.close()
    job.spool.file = open(os.devnull, "rb")  # writing fails, as on a full disk
    job.spool.write(b"lost\n")
    assert job.spool.cut and job.spool.size == 5 and store.total == JOB_OVERHEAD + 5
    store.close()
