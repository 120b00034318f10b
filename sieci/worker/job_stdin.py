"""A job's stdin at the worker: the stdin block a sieci master sends, fed into the job as it comes."""

import time

import gevent
import gevent.event

from sieci.wire import protocol
from sieci.wire.connection import HEADER_READ, RECV_SIZE
from sieci.wire.stdin_stream import Resize, StdinDecoder, is_stdin_header


RAW_READ = 256 << 10  # bytes of stdin read from the link at a time


class StdinFeeder:
    """Reads the job's stdin block from the master's link (``conn``) and writes it into the job, item
    by item: the job's pipe holds back the link, and TCP the master. What the job no longer takes
    (it closed its stdin, or ended) is read and dropped up to the block's end, which the master
    sends in any case (stdin_relay.py): the link is then in step for the next job."""

    def __init__(self, conn):
        self.conn = conn
        self.ended = gevent.event.Event()  # the block's terminator has come
        self._buffer = memoryview(bytearray(RAW_READ))

    def open(self, patience):
        """Read the block's header, which the master sends right after RECEIVED, within ``patience`` seconds."""
        self.conn.deadline = time.monotonic() + patience
        try:
            line = self.conn.next_event()
        finally:
            self.conn.deadline = None
            self.conn.settimeout(None)
        if line is protocol.CONNECTION_CLOSED:
            raise ConnectionResetError("the master closed the link before the job's stdin")
        if not is_stdin_header(self.conn.start_block(line.raw, items=True)):
            raise protocol.RemoteProtocolError("expected the job's stdin block")

    def feed(self, run):
        """Feed ``run`` (a JobRun) until the block ends (True), or the master's link closes (False).
        A master that hangs up stops the job at once, even while the job takes nothing (its stdin
        full), and so the link waits unread, the master's hang-up behind what it sent before."""
        decoder, taking = StdinDecoder(), True
        hang_up = gevent.spawn(self._kill_at_hang_up, run)  # then the rest is read and dropped, as below
        self.conn.recv_size = HEADER_READ  # the items' lines; their bytes come through _take_raw
        try:
            while True:
                event = self.conn.next_event()
                if event is protocol.CONNECTION_CLOSED:
                    return False
                if isinstance(event, protocol.BlockEnd):
                    run.end_stdin()
                    self.ended.set()
                    return True
                for item in decoder.feed(event.data):
                    if isinstance(item, Resize):
                        run.resize(item.columns, item.rows)
                    elif taking:
                        taking = run.write_stdin(item)
                taking = self._take_raw(decoder, run, taking)
        finally:
            hang_up.kill()
            self.conn.recv_size = RECV_SIZE

    def _kill_at_hang_up(self, run):
        self.conn.wait_for_hang_up()
        run.kill()

    def _take_raw(self, decoder, run, taking):
        """The rest of a raw item, from the socket into the job through one buffer, used again and
        again: a fresh one for every read, freed while others live on, would scatter the heap."""
        while pending := self.conn.receiver.raw_pending:
            size = self.conn.sock.recv_into(self._buffer, min(pending, len(self._buffer)))
            if not size:
                self.conn.receiver.receive_data(b"")  # the master closed: the next event says so
                break
            self.conn.receiver.took_raw(size)
            decoder.took_raw(size)
            if taking:
                taking = run.write_stdin(self._buffer[:size])
        return taking
