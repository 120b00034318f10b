"""A batch job's output on its way out: spooled to a file of its own until it is the job's turn,
then written straight through, so a batch holds no job's output in memory, whatever its size.

The spool keeps the job's writes as frames (stream, length, bytes) in the order they came, so
stdout and stderr come out interleaved as the job wrote them. The job's thread writes; the
batch's main thread calls ``show`` at the job's turn, and ``close`` (which removes the file)
once it has shown it.
"""

import os
import struct
import threading

from sieci.client.batch_syntax import LineTagger
from sieci.client.errors import OutputFailed
from sieci.wire import protocol

FRAME = struct.Struct("<BQ")  # the stream's code, then the length of the bytes that follow
STREAM_CODES = {protocol.STDOUT: 0, protocol.STDERR: 1}
STREAMS = {code: stream for stream, code in STREAM_CODES.items()}
READ_SIZE = 1 << 20  # a replay reads at most this much at once: its memory, whatever a frame's size


class SpoolFailed(OutputFailed):
    """The job's output could not be kept for its turn (a full disk, say)."""


class JobOutput:
    """One job's output: to the spool file at ``path`` (made at its first write) until ``show``,
    then to ``output`` (anything with ``write(stream, data)``)."""

    def __init__(self, output, path):
        self.output = output
        self.path = path
        self.lock = threading.Lock()  # the job's thread writes while the main thread shows
        self.bytes = 0  # the job's own, spooled or not
        self.spool = None  # the spool file's fd, for writing
        self.made = False  # whether the spool file is there to remove
        self.spooled = 0  # bytes of whole frames in the spool
        self.replayed = 0  # of them, bytes shown
        self.reader = None
        self.direct = False  # its turn: writes go straight to ``output``
        self.abandoned = False  # the batch is ending without it: writes go nowhere
        self.failure = None  # the SpoolFailed or OutputFailed that stopped it

    def write(self, stream, data):
        with self.lock:
            self.bytes += len(data)
            if self.abandoned:
                return
            if self.failure is not None:
                raise self.failure
            try:
                if self.direct:
                    self.output.write(stream, data)
                else:
                    self._spool(stream, data)
            except OutputFailed as failure:
                self.failure = failure
                raise

    def _spool(self, stream, data):
        try:
            if self.spool is None:
                self.spool = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                self.made = True
            _write_all(self.spool, FRAME.pack(STREAM_CODES[stream], len(data)))
            _write_all(self.spool, data)
        except OSError as error:
            reason = (error.strerror or str(error)).lower()
            raise SpoolFailed(f"its output could not be kept for its turn: cannot write {self.path} ({reason})") \
                from None
        self.spooled += FRAME.size + len(data)

    def writes_ended(self):
        """The job has ended: the spool file's fd goes, as a batch may have thousands of jobs waiting for
        their turn (each file is opened again to be shown)."""
        with self.lock:
            if self.spool is not None:
                os.close(self.spool)
                self.spool = None

    def show(self):
        """Its turn: writes what was spooled (while the job may still add to it), then lets the
        job write straight through. Resumable: a second call goes on where the first stopped."""
        while True:
            with self.lock:
                if self.replayed == self.spooled or self.abandoned:
                    self.direct = True
                    return
                end = self.spooled
            self._replay(end)

    def _replay(self, end):
        if self.reader is None:
            self.reader = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        while self.replayed < end:
            code, length = FRAME.unpack(self._read(FRAME.size, self.replayed))
            start = self.replayed + FRAME.size
            for offset in range(0, length, READ_SIZE):
                self.output.write(STREAMS[code], self._read(min(READ_SIZE, length - offset), start + offset))
            self.replayed = start + length

    def _read(self, size, offset):
        data = os.pread(self.reader, size, offset)
        if len(data) != size:  # nothing of ours cuts it: someone else did
            raise SpoolFailed(f"the spooled output in {self.path} was cut short")
        return data

    def abandon(self):
        """The batch ends without showing the rest: the job's later writes go nowhere."""
        with self.lock:
            self.abandoned = True
        self.close()

    def close(self):
        """Removes the spool file: shown, or never to be. Under the lock, as the job's thread may be
        closing the spool's fd at the same moment (writes_ended): else one fd could be closed twice,
        the second time perhaps another file's that took its number."""
        with self.lock:
            fds, self.spool, self.reader = (self.spool, self.reader), None, None
            made, self.made = self.made, False
        for fd in fds:
            if fd is not None:
                os.close(fd)
        if made:
            os.unlink(self.path)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]



class TaggedOutput:
    """--tag: one job's output to ``output`` with its ``tag`` before each of its lines."""

    def __init__(self, output, tag):
        self.output = output
        self.tagger = LineTagger(tag)

    def write(self, stream, data):
        self.output.write(stream, self.tagger.tagged(stream, data))
