"""Pipes made roomy for big output: fewer wake-ups on each side."""

import fcntl
import os
import stat

PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux


def widen(fd, size=PIPE_SIZE):
    """Let the pipe ``fd`` hold ``size`` bytes, where the system allows."""
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    except OSError:
        pass  # not a pipe, or over the system's limit: the default size works too


def is_blocking_pipe(fd):
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode) and not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
    except OSError:
        return False
