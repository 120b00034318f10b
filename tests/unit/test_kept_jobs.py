"""The master's kept jobs, without sockets: ids, the spool, retention and the cap."""

import os

import pytest

from sieci.master import kept_jobs
from sieci.master.job import Job
from sieci.master.kept_jobs import JOB_OVERHEAD, KeptJobs
from sieci.wire import protocol


def new_job(job_id, upload=b""):
    return Job(job_id, upload, None, "a client", protocol.parse_header(b"ENDSEQ T keep\n"))


def kept(store, job_id, data=b"", ended=True):
    job = new_job(job_id)
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


def test_no_file_is_named_after_an_id_and_none_is_held_open_once_its_job_has_ended(tmp_path):
    open_fds = len(os.listdir("/proc/self/fd"))
    store = KeptJobs(1 << 20, 60, tmp_path)
    job = kept(store, "b" * 16, b"data\n")
    [folder] = tmp_path.iterdir()
    assert len(list(folder.iterdir())) == 2 and not any("b" * 16 in path.name for path in folder.iterdir())
    assert len(os.listdir("/proc/self/fd")) == open_fds and job.spool.read(0) == b"data\n"
    store.close()


def test_a_kept_jobs_upload_waits_on_disk_counted_until_a_worker_accepts_it(tmp_path):
    store = KeptJobs(JOB_OVERHEAD + 1000, 60, tmp_path)
    job = new_job("c" * 16, b"x" * 900)
    store.keep(job)
    assert job._upload is None and job.upload == b"x" * 900 and store.total == JOB_OVERHEAD + 900
    with pytest.raises(kept_jobs.NoRoom):
        store.keep(new_job("d" * 16, b"y" * 200))  # its upload finds no room: refused
    job.drop_upload()  # accepted
    assert store.total == JOB_OVERHEAD and len(list(next(tmp_path.iterdir()).iterdir())) == 1
    store.keep(new_job("d" * 16, b"y" * 200))
    store.close()


def test_finished_jobs_expire_after_the_retention(tmp_path):
    store = KeptJobs(1 << 20, 60, tmp_path)
    running = kept(store, "c" * 16, b"x\n", ended=False)
    done = kept(store, "d" * 16, b"y\n")
    assert store.find("d" * 16) is done
    done.spool.ended_at -= 61  # as if it had ended 61 s ago
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
    os.close(job.spool._writer)
    job.spool._writer = os.open(os.devnull, os.O_RDONLY)  # writing fails, as on a full disk
    job.spool.write(b"lost\n")
    assert job.spool.cut and job.spool.size == 5 and store.total == JOB_OVERHEAD + 5
    store.close()


def test_files_that_cannot_be_removed_leave_the_store_working(tmp_path, monkeypatch):
    """A folder gone read-only (ext4 remounts so on a disk's errors): forgetting a job cannot remove its
    files, and the store goes on (an attach, the results of a running job), where the error escaped."""
    store = KeptJobs(3 * JOB_OVERHEAD + 100, 60, tmp_path)
    done = kept(store, "a" * 16, b"x\n")
    running = kept(store, "b" * 16, b"", ended=False)
    done.spool.ended_at -= 61

    def read_only(path, *args, **kwargs):
        raise OSError(30, "Read-only file system", path)

    monkeypatch.setattr(os, "unlink", read_only)
    assert store.find("b" * 16) is running and store.find("a" * 16) is None
    again = kept(store, "c" * 16, b"y\n")
    again.spool.ended_at -= 61
    running.spool.write(b"z" * (JOB_OVERHEAD + 50))  # room made by forgetting the ended job
    assert store.find("c" * 16) is None and running.spool.size == JOB_OVERHEAD + 50
    monkeypatch.undo()
    store.close()
