"""The client's side of a job's environment: a --requirements file is read no further than a requirements
field may hold, so a device or a FIFO that never ends is one clear error, not a client that reads for ever."""

import pytest

from sieci.client.program import ClientError, JobEnvironment
from sieci.wire.upload_format import MAX_REQUIREMENTS


def test_a_requirements_file_that_never_ends_is_refused_in_one_line():
    with pytest.raises(ClientError, match=f"--requirements: a requirements file of more than {MAX_REQUIREMENTS} bytes"):
        JobEnvironment("/dev/zero")


def test_a_requirements_file_of_the_most_bytes_is_read_whole(tmp_path):
    (tmp_path / "requirements.txt").write_bytes(b"#" * (MAX_REQUIREMENTS - 1) + b"\n")
    assert len(JobEnvironment(str(tmp_path / "requirements.txt")).requirements) == MAX_REQUIREMENTS
