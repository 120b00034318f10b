"""The worker's end of a running job's stdin: a pipe's, or that of the pseudo-terminal the job runs on.

Writes wait the gevent way while the job's stdin is full, so a job that
reads slowly never blocks the worker's other links.
"""

import fcntl
import os
import posix
import struct
import termios

import gevent

from sieci import splice

# The real close: gevent's (under monkey patching) puts it off until its loop next wakes.
_close = posix.close


class StdinClosed(Exception):
    """The job's stdin was closed while a write to it waited."""


class JobInput:
    """Where a job's stdin is written (kept non-blocking), if it has one; ``terminal``: it is the
    job's terminal, written to as typed on it."""

    def __init__(self, terminal=False):
        self.terminal = terminal
        self._fd = None  # where the job's stdin is written: a pipe's end, or the terminal's (a dup)
        self._wait = None  # the watcher a write to it waits on, while it waits

    def job_end(self, given):
        """The job's end of its stdin: a pipe's, ours kept here, when it is ``given`` one, else /dev/null."""
        if not given:
            return os.open(os.devnull, os.O_RDONLY)
        read_end, self._fd = os.pipe()
        splice.widen(read_end)
        os.set_blocking(self._fd, False)
        return read_end

    def on_terminal(self, master):
        """The job's stdin is the terminal whose (non-blocking) master is ``master``."""
        self._fd = os.dup(master)  # its own fd: the output's reader closes the other at the end

    def write(self, data):
        """Write ``data`` to the job's stdin, waiting while it is full; False once the job takes no more
        (it closed its stdin, or ended: the rest is to be dropped)."""
        view = memoryview(data)
        while view and self._fd is not None:
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                self._wait_for_room()
            except OSError:  # EPIPE: nothing of the job holds its stdin open; EIO: its terminal is gone
                self.close()
        return self._fd is not None

    def _wait_for_room(self):
        self._wait = gevent.get_hub().loop.io(self._fd, 2)
        try:
            gevent.get_hub().wait(self._wait)
        except StdinClosed:
            pass
        finally:
            self._wait.close()
            self._wait = None

    def end(self):
        """The job's stdin has ended: it reads end of file (on a terminal, a hang-up would end
        the job, so its stdin is left open, as a terminal's is)."""
        if not self.terminal:
            self.close()

    def resize(self, columns, rows):
        """Its terminal has this size now (the job gets SIGWINCH); nothing without one."""
        if self.terminal and self._fd is not None:
            set_size(self._fd, columns, rows)

    def write_all(self, data):
        self.write(data)
        self.end()

    def close(self):
        """No more is written to the job's stdin; a write that waits for room gives up."""
        fd, self._fd = self._fd, None
        if fd is not None:
            gevent.get_hub().cancel_waits_close_and_then([self._wait], StdinClosed(), _close, fd)


def open_terminal(columns, rows):
    """A new pseudo-terminal of that size: ``(master, slave)``, the master non-blocking."""
    master, slave = os.openpty()
    set_size(master, columns, rows)
    os.set_blocking(master, False)
    return master, slave


def set_size(fd, columns, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
