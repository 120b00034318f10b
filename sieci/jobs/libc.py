"""The C library, for the system calls Python has no wrapper for (a job's namespaces, mounts, keyrings, prctl)."""

import ctypes
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38


def prctl(option, value):
    libc.prctl(option, value, 0, 0, 0)


def check(result, what):
    """``result``, unless the call failed: then OSError, saying ``what`` failed and why."""
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")
    return result
