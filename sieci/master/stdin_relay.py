"""A job's stdin at the master: the client's stdin block, relayed to the job's worker item by item.

The client's greenlet (intake.py) reads the block and sends each item on as
soon as it is decoded, whole, under ``sending``; the worker link's greenlet
(master.py) opens the worker's block after RECEIVED and, if the results end
first, ends it between two items (``cut_off``), so that the link is in step
for the next job. A worker that is not a sieci one (no RELAY) gets no stdin:
the client's is read and dropped.
"""

import gevent.event
import gevent.lock

from sieci.wire import protocol
from sieci.wire.connection import RECV_SIZE
from sieci.wire.stdin_stream import Resize, StdinDecoder, encode_resize, encode_stdin_header, is_stdin_header, stdin_items


class StdinRelay:
    def __init__(self):
        self.worker = None  # the link's Connection, once the worker's block is open
        self.terminator = None
        self.opened = gevent.event.Event()  # the worker's block is open, or there is none to open
        self.sending = gevent.lock.Semaphore()  # held while an item goes to the worker: it goes whole
        self.ended = False  # the worker's block has ended

    def open(self, worker):
        """From the link's greenlet, when a sieci worker has said RECEIVED: its stdin block begins."""
        self.worker, self.terminator = worker, protocol.choose_terminator()
        worker.send(encode_stdin_header(self.terminator), completes=protocol.ENDSEQ)
        self.opened.set()

    def drop(self):
        """The worker takes no stdin (a classic one): the client's is read and dropped."""
        self.ended = True
        self.opened.set()

    def cut_off(self, patience):
        """From the link's greenlet, once the results have ended: end the worker's block, between two
        items. False if an item still going to the worker has not gone within ``patience`` seconds."""
        if not self.sending.acquire(timeout=patience):
            return False
        try:
            self._end()
        finally:
            self.sending.release()
        return True

    def relay(self, client, alive):
        """From the client's greenlet: relay the client's stdin block (``client``: its Connection) until
        it ends (True) or the client leaves (False). ``alive()`` waits for the client's socket to be
        readable, and says False if the client has vanished. RemoteProtocolError for a malformed block."""
        header = _next_event(client, alive)
        if header is protocol.CONNECTION_CLOSED:
            return False
        if not is_stdin_header(client.start_block(header.raw, items=True)):
            raise protocol.RemoteProtocolError("expected the job's stdin block")
        client.recv_size = RECV_SIZE
        self.opened.wait()
        decoder = StdinDecoder()
        while not isinstance(event := _next_event(client, alive), protocol.BlockEnd):
            if event is protocol.CONNECTION_CLOSED:
                return False
            pieces = []
            for item in decoder.feed(event.data):
                pieces += [encode_resize(item.columns, item.rows)] if isinstance(item, Resize) else \
                    stdin_items(item, self.terminator)
            if pieces:
                self._send(pieces)
        with self.sending:
            self._end()
        return True

    def _send(self, pieces):
        with self.sending:
            if not self.ended:
                self._to_worker(self.worker.send_pieces, pieces)

    def _end(self):
        if not self.ended:
            self.ended = True
            self._to_worker(self.worker.send, self.terminator + b"\n", completes=protocol.JOB)

    def _to_worker(self, send, *args, **kwargs):
        """A worker that cannot be sent to is lost: its link's greenlet sees that and fails the job;
        the client's stdin is dropped meanwhile."""
        try:
            send(*args, **kwargs)
        except OSError:
            self.ended = True


def _next_event(client, alive):
    while (event := client.next_buffered_event()) is protocol.NEED_DATA:
        if not alive():
            return protocol.CONNECTION_CLOSED
        client.receive_more()
    return event
