"""The job's stdin at the client: streamed to the master while the results come, or inline.

``JobStdin`` is where it comes from (bytes, a file object, or a file
descriptor such as the client's own stdin, a terminal with -t); a
``StdinPump`` sends it, in a thread of its own, as the one stdin block of
stdin_stream.py, once the job is accepted. Backpressure is TCP's: the pump
reads no more than the master takes. Loaded only for jobs that have stdin,
such as every ``producer | sieci-client ...``: its thread is a bare
``_thread`` one, as the threading module would load a dozen more.
"""

import _signal
import _socket
import _thread
import os
import select

from sieci.wire import protocol, upload_format
from sieci.wire.stdin_stream import encode_resize, encode_stdin_header, stdin_items, tty_field

CHUNK = 256 << 10  # bytes read from stdin at a time
STOP_PATIENCE = 1.0  # seconds to wait for the pump to stop once the results have ended
RESIZED = object()  # what a read gives when a resize woke it, and nothing was read
UNKNOWN_SIZE = (80, 24)  # (columns, rows) for a terminal that reports 0: shutil.get_terminal_size's fallback


def known_size(columns, rows):
    """``(columns, rows)`` of a terminal, each that it reports as 0 (unknown: ``script``, some CI runners)
    taken as shutil.get_terminal_size takes it; the protocol's tty= sizes start at 1."""
    return columns or UNKNOWN_SIZE[0], rows or UNKNOWN_SIZE[1]


class JobStdin:
    """The job's stdin, from ``source``: bytes, a file descriptor (int), or a binary file object.

    ``terminal`` (columns, rows): the source is the client's terminal (-t),
    the job gets one of that size (see known_size); ``resized`` tells it of a new size.
    Reads from a file descriptor wait for it and for ``stop`` alike; a file
    object's read cannot be interrupted, and is let finish on its own.
    """

    def __init__(self, source, terminal=None):
        self.source = memoryview(source) if isinstance(source, (bytes, bytearray)) else source
        self.terminal = known_size(*terminal) if terminal else None
        self.started = False  # some of it has been read: what went cannot be sent again
        self._resizes = []
        self._wake_read, self._wake_write = os.pipe()
        self._stopped = False

    def fields(self):
        """The upload's header fields that ask for it to stream."""
        return [upload_format.STDIN_STREAM] + ([tty_field(*self.terminal)] if self.terminal else [])

    def read(self, size=CHUNK):
        """Up to ``size`` bytes; ``b""`` at its end, RESIZED when woken by a resize alone, None once stopped."""
        self.started = True
        if isinstance(self.source, memoryview):
            data, self.source = self.source[:size], self.source[size:]
            return None if self._stopped else bytes(data)
        if isinstance(self.source, int):
            return self._read_fd(size)
        data = self.source.read1(size) if hasattr(self.source, "read1") else self.source.read(size)
        return None if self._stopped else data

    def _read_fd(self, size):
        readable, _, _ = select.select([self.source, self._wake_read], [], [])
        if self._stopped:
            return None
        if self.source not in readable:
            os.read(self._wake_read, 64)
            return RESIZED
        try:
            return os.read(self.source, size)
        except OSError:  # a terminal that went away (EIO) ends it as end of file would
            return b""

    def read_inline(self, limit):
        """The whole of it, if it holds at most ``limit`` bytes; else None."""
        chunks, size = [], 0
        while size <= limit and (data := self.read(limit + 1 - size)):
            chunks.append(data)
            size += len(data)
        return b"".join(chunks) if size <= limit else None

    def resized(self, columns, rows):
        """From a signal handler: the terminal has a new size, to tell the job."""
        self._resizes.append(known_size(columns, rows))
        os.write(self._wake_write, b"w")

    def take_resizes(self):
        resizes, self._resizes = self._resizes, []
        return [encode_resize(columns, rows) for columns, rows in resizes]

    def stop(self):
        """Reads give None from now on; one that waits returns."""
        if not self._stopped and self._wake_write is not None:
            os.write(self._wake_write, b".")
        self._stopped = True

    def close(self):
        if self._wake_write is not None:
            os.close(self._wake_read)
            os.close(self._wake_write)
            self._wake_read = self._wake_write = None


class StdinPump:
    """Sends ``stdin`` (a JobStdin) on ``conn`` (the job's Connection, once it is accepted): the
    block's header at once, then its items from a thread, and its terminator at the end of stdin.

    The conversation is the reading thread's: the pump leaves it at the header (FEEDING), from
    which the results' end is as legal as from FED, whichever of the two ends first.
    """

    def __init__(self, conn, stdin):
        self.conn = conn
        self.stdin = stdin
        self.terminator = protocol.choose_terminator()
        self._pumping = _thread.allocate_lock()  # held while the thread pumps

    def start(self):
        self.conn.send(encode_stdin_header(self.terminator), completes=protocol.ENDSEQ)
        self._pumping.acquire()
        _thread.start_new_thread(self._pump_then_release, ())
        return self

    def stop(self, leaving=False):
        """Send no more: the job has ended, or its results failed. A send that waits fails at once.
        ``leaving``: before the results have ended (interrupted, say): the connection's close resets
        it, which the master learns at once, though it has yet to read the stdin sent before."""
        self.stdin.stop()
        if leaving:
            self.conn.shutdown(reset=True)
        else:
            try:
                self.conn.sock.shutdown(_socket.SHUT_WR)
            except OSError:
                pass
        if self._pumping.acquire(timeout=STOP_PATIENCE):  # as a join: wait for the thread, briefly
            self._pumping.release()

    def _pump_then_release(self):
        try:
            self._pump()
        finally:
            self._pumping.release()

    def _pump(self):
        if _signal.getsignal(_signal.SIGPIPE) == _signal.SIG_DFL:  # the command's (for its stdout), in a thread
            _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGPIPE])  # a master that has gone: EPIPE, no death
        try:
            while (data := self.stdin.read()) is not None:
                pieces = self.stdin.take_resizes()
                if data is not RESIZED:
                    pieces += stdin_items(data, self.terminator) if data else [self.terminator + b"\n"]
                self.conn.send_pieces(pieces)
                if not data:
                    return
        except OSError:
            pass  # the master has gone: the results say what became of the job


def read_while_pumping(reading, stdin):
    """The job's results (a result.ResultsReading), read while ``stdin`` (a JobStdin) is pumped to the
    master; one that leaves before they have ended resets the connection (see StdinPump.stop)."""
    pump = StdinPump(reading.conn, stdin).start()
    try:
        result = reading.read()
    except BaseException:
        pump.stop(leaving=True)
        raise
    pump.stop()
    return result
