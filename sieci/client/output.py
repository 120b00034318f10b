"""Where a job's output goes as it comes: straight to file descriptors (FdOutput), held until the
attempt that made it is known to be the one to show (HeldOutput), or kept whole (CollectedOutput)."""

import os

from sieci.client.errors import OutputFailed
from sieci.wire import protocol


def shown_on_terminal(fd=1):
    return os.isatty(fd)


def streams_merged(stdout_fd=1, stderr_fd=2):
    """Whether stdout and stderr go to one place (``2>&1``, one terminal), where their order shows."""
    try:
        out, err = os.fstat(stdout_fd), os.fstat(stderr_fd)
    except OSError:
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)


class FdOutput:
    """Writes the job's streams to file descriptors, whole, as they arrive."""

    BIG_WRITE = 1 << 16

    def __init__(self, stdout_fd=1, stderr_fd=2):
        self.fds = {protocol.STDOUT: stdout_fd, protocol.STDERR: stderr_fd}
        self._widened = set()
        self._pipes = {}

    def pipe_for(self, stream):
        """The stream's splice.OutputPipe if its fd is a blocking pipe, which a socket can splice into; else None."""
        if stream not in self._pipes:
            from sieci import splice

            fd = self.fds[stream]
            self._pipes[stream] = splice.OutputPipe(fd) if splice.is_blocking_pipe(fd) else None
            self._widen(fd)
        return self._pipes[stream]

    def write(self, stream, data):
        fd = self.fds[stream]
        if len(data) >= self.BIG_WRITE:
            self._widen(fd)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as error:
            raise OutputFailed(f"cannot write to {stream} ({(error.strerror or str(error)).lower()})") from None

    def _widen(self, fd):
        """Big output into a pipe: make the pipe hold more, so each side wakes less often."""
        if fd not in self._widened:
            from sieci import splice

            self._widened.add(fd)
            splice.widen(fd)


class HeldOutput:
    """Keeps a job's output until it is known to be the one to show."""

    def __init__(self):
        self.events = []

    def write(self, stream, data):
        self.events.append((stream, data))

    def replay(self, output):
        for stream, data in self.events:
            output.write(stream, data)


class CollectedOutput:
    """Keeps a job's stdout and stderr, each whole."""

    def __init__(self):
        self.parts = {protocol.STDOUT: [], protocol.STDERR: []}

    def write(self, stream, data):
        self.parts[stream].append(data)

    def bytes(self, stream):
        return b"".join(self.parts[stream])
