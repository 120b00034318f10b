"""How a worker sends its master a job's results, as the job's output comes, and the files it returns."""

import os
import posix
import tempfile
import time

from sieci.wire import protocol
from sieci.wire.results import OUTPUT_CHUNK, FilePiece, file_items, output_pieces
from sieci.wire.returns import ENTRY_BYTES, glob_matches
from sieci.worker import workdir

FILE_CHUNK = 1 << 20  # bytes of a returned file read and sent at once
_close = posix.close  # at once: gevent's os.close waits for its loop

# Classic results are spooled to disk past this size: their terminator can
# only be chosen once every line of the output is known.
SPOOL_IN_MEMORY = 1 << 20


def worker_field(name):
    return protocol.WORKER_FIELD + b"=" + b"_".join(name.encode("utf-8", "replace").split())


def send_extended(conn, run, worker_name, beat, returns=None, seal=None):
    """Stream the results, with an empty item every ``beat`` seconds the job is quiet;
    what is ready together (the header and the first output, say) goes in one send.
    ``returns``: the files the client asked for (returns.decode_returns), sent once the
    job has ended, before its status. ``seal`` (an auth.ResultsSeal): the results are sealed."""
    seal = seal or _Unsealed()
    terminator = protocol.choose_terminator()
    unsent = [protocol.encode_header(terminator, [protocol.EXTENDED, worker_field(worker_name),
                                                  protocol.beat_field(beat)])]
    for stream, data in run.output(quiet_every=beat):
        if stream is None:
            unsent.append(protocol.HEARTBEAT_ITEM)
        else:
            seal.add(stream, data)
            unsent += output_pieces(stream, data, terminator)
        if not run.more_output_ready():
            conn.send_pieces(unsent)
            unsent = []
    if returns is not None and returns[0]:
        conn.send_pieces(unsent)
        notes = "".join(ReturnedFiles(conn, terminator, returns[1], beat, seal).send(run, returns[0]))
        notes = notes.encode("utf-8", "surrogateescape")
        seal.add(protocol.STDERR, notes)
        unsent = output_pieces(protocol.STDERR, notes, terminator)
    status_line = run.status.encode()
    unsent += [seal.item(status_line), status_line + terminator + b"\n"]
    conn.send_pieces(unsent, completes=protocol.JOB)


class _Unsealed:
    """Results without a seal: no secret, or an unsigned upload."""

    def add(self, stream, data):
        pass

    def item(self, status_line):
        return b""


class ReturnedFiles:
    """Sends the files a job returns, as items of its results: at most ``max_bytes`` of them (None:
    no bound; each file costs returns.ENTRY_BYTES more), and one byte more if more would come, by
    which the client knows they did not fit;
    an empty item every ``beat`` seconds a walk of the job's folder sends nothing."""

    def __init__(self, conn, terminator, max_bytes, beat, seal):
        self.conn = conn
        self.seal = seal
        self.terminator = terminator
        self.room = None if max_bytes is None else max_bytes + 1
        self.max_bytes = max_bytes
        self.beat = beat
        self.last_sent = time.monotonic()

    def send(self, run, globs):
        """Send what matches ``globs`` in ``run``'s folder; returns lines for the job's stderr on
        what was not returned."""
        try:
            folder_fd = run.open_folder()
        except OSError as error:
            return [f"sieci: --return: no file returned: {error}\n"]
        notes, matched = [], set()
        try:
            for name, fd, why in workdir.returnable_files(folder_fd, globs, self.pulse):
                matched.update(glob for glob in globs if glob_matches(glob, name.split("/")))
                if why:
                    notes.append(f"sieci: --return: {name} not returned: {why}\n")
                elif not self._send_file(name, fd):
                    notes.append(f"sieci: --return: {name} and the files after it (in name order) not returned: "
                                 f"they pass the client's --max-return of {self.max_bytes} bytes\n")
                    break
        finally:
            _close(folder_fd)
        return notes + [f"sieci: --return {'/'.join(glob)!r} matched no file\n" for glob in globs
                        if glob not in matched]

    def _send_file(self, name, fd):
        """Send the file open at ``fd`` (and close it); False if it did not fit whole."""
        try:
            if self.room is not None:
                self.room -= ENTRY_BYTES
                if self.room <= 0:  # its name alone passes the bound: the client learns so from it
                    self._send_piece(name, b"")
                    return False
            first = name
            while True:
                chunk = os.read(fd, FILE_CHUNK if self.room is None else min(FILE_CHUNK, self.room))
                if chunk or first is not None:
                    self._send_piece(first, chunk)
                    self.last_sent, first = time.monotonic(), None
                if self.room is not None:
                    self.room -= len(chunk)
                    if self.room == 0:  # one byte past the bound has gone: the client refuses this file
                        return False
                if not chunk:
                    return True
        finally:
            _close(fd)

    def _send_piece(self, name, data):
        self.seal.add(protocol.RETURNED, FilePiece(name, data))
        self.conn.send_pieces(file_items(data, self.terminator, name))

    def pulse(self):
        if time.monotonic() - self.last_sent >= self.beat:
            self.conn.send(protocol.HEARTBEAT_ITEM)
            self.last_sent = time.monotonic()


def send_classic(conn, run, worker_name):
    """The job's stdout alone, as the classic results block."""
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
        last = b"\n"
        for stream, data in run.output():
            if stream == protocol.STDOUT:
                spool.write(data)
                last = data[-1:]
        if last != b"\n":
            spool.write(b"\n")
        terminator = _terminator_absent_from(spool)
        conn.send(protocol.encode_header(terminator, [worker_field(worker_name)]))
        spool.seek(0)
        while chunk := spool.read(OUTPUT_CHUNK * 8):
            conn.send(chunk)
        conn.send(terminator + b"\n", completes=protocol.JOB)


def _terminator_absent_from(spool):
    while True:
        terminator = protocol.choose_terminator()
        spool.seek(0)
        overlap = b""
        while chunk := spool.read(1 << 20):
            if terminator in overlap + chunk:
                break
            overlap = chunk[-len(terminator):]
        else:
            return terminator
