"""The unit tier holds itself to its promise: a test here that opens a socket or starts a
process fails, saying so (it belongs in tests/integration or tests/system)."""

import os
import sys

import pytest

FORBIDDEN = {"socket.__new__": "opened a socket", "subprocess.Popen": "started a process",
             "os.fork": "forked", "os.forkpty": "forked", "os.posix_spawn": "started a process",
             "os.exec": "started a program"}
_guarded_pid = []


def _refuse(event, args):
    if event in FORBIDDEN and _guarded_pid == [os.getpid()]:
        raise RuntimeError(f"a unit test {FORBIDDEN[event]}: move it to tests/integration or tests/system")


sys.addaudithook(_refuse)


@pytest.fixture(autouse=True)
def no_sockets_or_processes():
    _guarded_pid.append(os.getpid())
    try:
        yield
    finally:
        _guarded_pid.clear()
