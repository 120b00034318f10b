"""A job's stdin at the worker: the stdin block a sieci master sends, fed into the job as it comes."""

import time

import gevent.event

from . import protocol
from .stdin_stream import Resize, StdinDecoder, is_stdin_header


class StdinFeeder:
    """Reads the job's stdin block from the master's link (``conn``) and writes it into the job, item
    by item: the job's pipe holds back the link, and TCP the master. What the job no longer takes
    (it closed its stdin, or ended) is read and dropped up to the block's end, which the master
    sends in any case (stdin_relay.py): the link is then in step for the next job."""

    def __init__(self, conn):
        self.conn = conn
        self.ended = gevent.event.Event()  # the block's terminator has come

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
        """Feed ``run`` (a JobRun) until the block ends (True), or the master's link closes (False)."""
        decoder, taking = StdinDecoder(), True
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
