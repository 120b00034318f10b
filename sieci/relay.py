"""Raw output from a worker's socket to a client's, through a pipe, never copied into Python.

Linux's ``splice`` moves bytes from a socket into a pipe, and from the pipe
into another socket, inside the kernel. The master relays the big raw
chunks of extended results this way: it passes them on by their length and
never looks at them. For gevent sockets: a read or write that would block
waits on the hub.
"""

import os

from gevent.socket import wait_read, wait_write

from . import pipes

AVAILABLE = hasattr(os, "splice")  # Linux
FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


class SplicePipe:
    """A pipe that bytes cross on their way from one socket to another."""

    def __init__(self):
        self.read_end, self.write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.held = 0  # bytes taken from a source and not yet given to a destination
        pipes.widen(self.write_end)

    def fill(self, source_fd, size, timeout=None):
        """Take up to ``size`` bytes from a socket, once it has some; 0 means it closed.
        TimeoutError if it has had none for ``timeout`` seconds."""
        while True:
            try:
                taken = os.splice(source_fd, self.write_end, size, flags=FLAGS)
            except BlockingIOError:  # the pipe is empty, so it is the socket that has nothing yet
                wait_read(source_fd, timeout=timeout, timeout_exc=TimeoutError("nothing to read"))
                continue
            except ConnectionResetError:
                return 0
            self.held += taken
            return taken

    def drain(self, dest_fd):
        """Give everything held to a socket, waiting while it is full."""
        while self.held:
            try:
                self.held -= os.splice(self.read_end, dest_fd, self.held, flags=FLAGS)
            except BlockingIOError:
                wait_write(dest_fd)

    def close(self):
        os.close(self.read_end)
        os.close(self.write_end)


class SplicePipes:
    """Pipes for relays in progress, kept for the next ones once empty."""

    def __init__(self):
        self._spare = []

    def take(self):
        return self._spare.pop() if self._spare else SplicePipe()

    def give_back(self, pipe):
        """A pipe that still holds bytes from a failed relay is not reused."""
        if pipe.held:
            pipe.close()
        else:
            self._spare.append(pipe)

    def close(self):
        while self._spare:
            self._spare.pop().close()
