"""What a running job writes: read from its pipes into a bounded queue, and given out under its limits
(time, output), which stop the job when it passes them."""

import os
import posix
import time

import gevent.queue
import gevent.socket

from sieci import splice
from sieci.wire.protocol import STDERR, STDOUT
from sieci.worker.limits import FILE_TOO_LARGE

# Every reader's reads, up to a pipe's size: nothing to allocate for a print, few wake-ups for a flood.
# One for all: a read and the copy of what it brought never yield to another greenlet between them.
_READS = memoryview(bytearray(splice.PIPE_SIZE))
EVENTS_HELD = 4  # output read and not yet sent: at most this many reads (4 MiB)
HAND_OVER_POLL = 0.1  # seconds; how often a reader waiting on a full queue checks for the run's end
# How long the pipes may stay open once the job has ended or been killed.
DRAIN_AFTER_KILL = 2.0

# The real close: gevent's (under monkey patching) puts it off until its loop
# next wakes, and a job's pipe must not wait for that to reach end of file.
_close = posix.close


class JobOutput:
    """One run's output: its pipes' readers (``read_pipe``) and the job's end (``hand_over``) queue
    events, which ``events`` gives out, up to ``limits`` (a Limits); ``kill`` kills the job.
    ``limit_hit``: the limit the job was stopped for, if any."""

    def __init__(self, limits, kill):
        self.limits = limits
        self._kill = kill
        self._events = gevent.queue.Queue(maxsize=EVENTS_HELD)
        self.torn_down = False  # nobody reads the events any more
        self.limit_hit = None
        self.file_too_large = False  # the job reported a write past its file-size limit
        self._deadline = None

    def read_pipe(self, stream, fd):
        """Read the non-blocking ``fd`` to its end. Reads go into one buffer, and what they bring is
        copied out at its size: a read of a pipe's size that brings less (a filter's output, paced by
        its input) would otherwise leave the rest of its allocation as a hole in the heap, under bytes
        that live on."""
        try:
            while True:
                try:
                    size = os.readv(fd, [_READS])
                except BlockingIOError:
                    gevent.socket.wait_read(fd)
                    continue
                if not size:
                    break
                self.hand_over((stream, bytes(_READS[:size])))
        except OSError:
            pass
        finally:
            _close(fd)
            self.hand_over((stream, None))

    def hand_over(self, event):
        """Queue an event for events(), waiting while the queue is full.

        Once the run is being torn down nobody reads the queue any more, so
        the event is dropped: a reader never waits on it for ever.
        """
        while not self.torn_down:
            try:
                self._events.put(event, timeout=HAND_OVER_POLL)
                return
            except gevent.queue.Full:
                pass

    def events(self, started_at, open_pipes, quiet_every, on_exit):
        """Yield ``(stream, bytes)`` as the job writes, until its end and that of its ``open_pipes`` pipes
        (or the time to drain them is up); returns its exit code. With ``quiet_every``, also ``(None, b"")``
        each time the job has been quiet that many seconds. ``on_exit()``, if given, is called at the job's end."""
        self._deadline = started_at + self.limits.timeout
        ended, returncode, written = False, None, 0
        while open_pipes or not ended:
            if not self.limit_hit and not ended and time.monotonic() >= self._deadline:
                self.stop("time")
            wait = max(0.0, self._deadline - time.monotonic())
            try:
                kind, data = self._events.get(timeout=min(wait, quiet_every) if quiet_every else wait)
            except gevent.queue.Empty:
                if quiet_every and time.monotonic() < self._deadline:
                    yield None, b""
                    continue
                if self.limit_hit or ended:
                    break  # the job is over, yet something holds a pipe
                continue
            if kind == "exit":
                ended, returncode = True, data
                self._allow_draining()
                if on_exit is not None:
                    on_exit()
            elif data is None:
                open_pipes -= 1
            elif self.limit_hit != "output":
                allowed = self.limits.max_output - written
                if len(data) > allowed:
                    data = data[:allowed]
                    self.stop("output")
                written += len(data)
                self.file_too_large = self.file_too_large or FILE_TOO_LARGE in data
                if data:
                    yield kind, data
        return returncode

    def more_ready(self):
        """Whether events() has more of the job's output to give at once, without waiting."""
        try:
            kind, data = self._events.peek(block=False)
        except gevent.queue.Empty:
            return False
        return kind in (STDOUT, STDERR) and data is not None

    def stop(self, limit):
        """Kill the job, which passed ``limit``."""
        self.limit_hit = limit
        self._kill()
        # Not min(): at the time limit, the deadline has passed, and the result must still
        # wait until the job is known to be dead (every process of it gone) or this runs out.
        self._deadline = time.monotonic() + DRAIN_AFTER_KILL

    def _allow_draining(self):
        self._deadline = min(self._deadline, time.monotonic() + DRAIN_AFTER_KILL)
