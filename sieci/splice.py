"""Raw output moved past Python: spliced from a socket into a pipe, and from there on.

Pipes are made roomy for big output (widen): fewer wake-ups on each side.

Linux's ``splice`` moves bytes from a socket into a pipe, and from a pipe
into another socket, inside the kernel. The big raw chunks of extended
results travel this way, passed on by their length and never looked at:
the client splices them into its output pipe (OutputPipe); the master
relays them from a worker's socket to a client's through a pipe of its own
(SplicePipe). ``Connection.splice_raw`` is what moves them, for both.
"""

import fcntl
import os
import stat

AVAILABLE = hasattr(os, "splice")  # Linux
RELAY_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)

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


class OutputPipe:
    """A blocking pipe (the command-line client's stdout, say) that a plain blocking
    socket's bytes are spliced into; a full pipe blocks the splice."""

    def __init__(self, fd):
        self.fd = fd

    def fill(self, source_fd, size, timeout=None):
        """Move up to ``size`` bytes from a socket into the pipe, once it has some; 0 means
        it closed. TimeoutError if it has had none for ``timeout`` seconds."""
        while True:
            try:
                return os.splice(source_fd, self.fd, size)
            except BlockingIOError:  # a socket with a timeout does not block
                import select

                poll = select.poll()
                poll.register(source_fd, select.POLLIN)
                if not poll.poll(None if timeout is None else timeout * 1000):
                    raise TimeoutError("deadline passed") from None
            except ConnectionResetError:
                return 0


class SplicePipe:
    """A pipe that bytes cross on their way from one gevent socket to another: a read
    or write that would block waits on the hub."""

    def __init__(self):
        self.read_end, self.write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.held = 0  # bytes taken from a source and not yet given to a destination
        widen(self.write_end)

    def fill(self, source_fd, size, timeout=None):
        """Take up to ``size`` bytes from a socket, once it has some; 0 means it closed.
        TimeoutError if it has had none for ``timeout`` seconds."""
        while True:
            try:
                taken = os.splice(source_fd, self.write_end, size, flags=RELAY_FLAGS)
            except BlockingIOError:  # the pipe is empty, so it is the socket that has nothing yet
                from gevent.socket import wait_read

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
                self.held -= os.splice(self.read_end, dest_fd, self.held, flags=RELAY_FLAGS)
            except BlockingIOError:
                from gevent.socket import wait_write

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
