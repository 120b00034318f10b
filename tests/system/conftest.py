"""Fixtures of the system tier."""

import pytest

from tests.helpers.processes import Processes


@pytest.fixture
def procs(tmp_path):
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()
