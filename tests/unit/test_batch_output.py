"""A batch job's output: spooled in the order written, replayed at its turn, then written straight through."""

import errno
import os

import pytest

from sieci.client import batch_output
from sieci.client.errors import OutputFailed


class Shown:
    """Where the batch writes: a list of (stream, bytes), merged where a stream goes on."""

    def __init__(self, fail=None):
        self.writes = []
        self.fail = fail

    def write(self, stream, data):
        if self.fail:
            raise OutputFailed(self.fail)
        if self.writes and self.writes[-1][0] == stream:
            self.writes[-1] = (stream, self.writes[-1][1] + data)
        else:
            self.writes.append((stream, bytes(data)))


def test_the_spool_keeps_the_order_of_the_streams_and_the_job_goes_on_straight_through(tmp_path):
    shown = Shown()
    output = batch_output.JobOutput(shown, str(tmp_path / "1"))
    output.write("stdout", b"one\n")
    output.write("stderr", b"two\n")
    output.write("stdout", b"three\n")
    assert shown.writes == [] and os.path.exists(tmp_path / "1")
    output.show()
    output.write("stderr", b"four\n")
    output.writes_ended()
    assert shown.writes == [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n"), ("stderr", b"four\n")]
    assert output.bytes == 19
    output.close()
    assert os.listdir(tmp_path) == []


def test_a_big_write_is_replayed_in_bounded_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_output, "READ_SIZE", 1000)
    pieces = []
    output = batch_output.JobOutput(type("Pieces", (), {"write": lambda self, stream, data: pieces.append(data)})(),
                             str(tmp_path / "1"))
    data = bytes(range(256)) * 10
    output.write("stdout", data)
    output.show()
    assert [len(piece) for piece in pieces] == [1000, 1000, 560] and b"".join(pieces) == data


def test_no_output_no_file_and_nothing_shown(tmp_path):
    shown = Shown()
    output = batch_output.JobOutput(shown, str(tmp_path / "1"))
    output.show()
    output.close()
    assert (shown.writes, os.listdir(tmp_path)) == ([], [])


def test_an_abandoned_job_writes_nowhere_and_its_file_goes(tmp_path):
    shown = Shown()
    output = batch_output.JobOutput(shown, str(tmp_path / "1"))
    output.write("stdout", b"before\n")
    output.abandon()
    output.write("stdout", b"after\n")
    output.show()
    assert (shown.writes, os.listdir(tmp_path), output.bytes) == ([], [], 13)


def test_a_full_disk_fails_the_job_and_keeps_what_was_spooled_before(tmp_path, monkeypatch):
    shown = Shown()
    output = batch_output.JobOutput(shown, str(tmp_path / "1"))
    output.write("stdout", b"kept\n")
    real_write = os.write

    def full(fd, data):
        if fd == output.spool:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(batch_output.os, "write", full)
    with pytest.raises(batch_output.SpoolFailed, match=r"could not be kept for its turn: cannot write .*no space left"):
        output.write("stdout", b"lost\n")
    with pytest.raises(batch_output.SpoolFailed):
        output.write("stdout", b"later\n")
    output.show()
    output.close()
    assert shown.writes == [("stdout", b"kept\n")] and os.listdir(tmp_path) == []
    assert isinstance(output.failure, batch_output.SpoolFailed)


def test_a_failure_to_write_where_the_output_goes_is_kept(tmp_path):
    output = batch_output.JobOutput(Shown(fail="cannot write to stdout (broken pipe)"), str(tmp_path / "1"))
    output.show()
    with pytest.raises(OutputFailed):
        output.write("stdout", b"x")
    assert str(output.failure) == "cannot write to stdout (broken pipe)"


def test_a_job_that_ended_holds_no_fd_until_its_turn(tmp_path):
    shown = Shown()
    output = batch_output.JobOutput(shown, str(tmp_path / "1"))
    output.write("stdout", b"waits\n")
    output.writes_ended()
    assert output.spool is None and output.reader is None
    output.show()
    output.close()
    assert shown.writes == [("stdout", b"waits\n")] and os.listdir(tmp_path) == []


def test_a_job_ending_while_the_batch_closes_its_output_closes_each_fd_once(tmp_path, monkeypatch):
    output = batch_output.JobOutput(Shown(), str(tmp_path / "1"))
    output.write("stdout", b"spooled\n")
    closed, real_close = [], os.close

    def close_as_the_job_ends(fd):  # the job's thread ends the job at the worst moment: mid-close
        closed.append(fd)
        real_close(fd)
        if len(closed) == 1:
            output.writes_ended()

    monkeypatch.setattr(batch_output.os, "close", close_as_the_job_ends)
    output.abandon()
    assert len(closed) == len(set(closed)) == 1 and not (tmp_path / "1").exists()
