"""What became of a job (Result), and how the client reads it from a master as it comes (ResultsReading).

Like the rest of the client, it imports no gevent.
"""

from sieci.client.errors import ConnectionBroke, JobLost
from sieci.wire import protocol
from sieci.wire.results import ResultDecoder


class Result:
    """What became of one job.

    ``exit_status`` is the number the command-line client exits with (the
    job's own code, 128+N for signal N, 124 for the time limit, 137 for
    another limit). ``limit`` names the limit the job hit, if any, and
    ``message`` says so for people. ``stdout`` and ``stderr`` are the job's
    output (bytes) when the client collected it, else None. ``master`` is
    the address that ran it, ``worker`` the worker's name (None from a
    classic worker), ``seconds`` the wall time from upload to result.
    ``returned`` lists the names of the files the job returned that were
    written, ``not_returned`` ``(name, why)`` for each that could not be.
    ``job_id`` is the id the master gave the job (16 hex digits; None from a
    classic master).
    """

    def __init__(self, exit_status, status=None, master=None, worker=None, seconds=None, stdout=None, stderr=None,
                 job_id=None):
        self.exit_status = exit_status
        self.job_id = job_id
        self.status = status
        self.master = master
        self.worker = worker
        self.seconds = seconds
        self.stdout = stdout
        self.stderr = stderr
        self.returned = []
        self.not_returned = []

    @property
    def limit(self):
        if self.status is not None and self.status.kind == b"limit":
            return self.status.value.decode()
        return None

    @property
    def message(self):
        return self.status.message.decode("utf-8", "replace") if self.status is not None else ""

    def __repr__(self):
        return (f"Result(exit_status={self.exit_status}, limit={self.limit!r}, master={self.master!r}, "
                f"worker={self.worker!r}, seconds={self.seconds!r}, job_id={self.job_id!r})")



def not_returned_lines(result, prog, where=""):
    """A line for people for each file the job returned that could not be written (``where``: before
    its name, the job's in a batch)."""
    return [f"{prog}: error: {where}{'' if name is None else _shown(name) + ': '}{why}\n"
            for name, why in result.not_returned]


def _shown(name):
    """A name as one line can show it: a job chose it, control characters and all."""
    return name if name.isprintable() else repr(name)


def next_answer(conn, failure, doing):
    """The master's next line (or event) on ``conn``; ``failure`` (a ClientError class), saying it
    closed the connection ``doing`` what, if it did."""
    event = conn.next_event()
    if event is protocol.CONNECTION_CLOSED:
        raise failure(f"the master closed the connection {doing}")
    return event


class ResultsReading:
    """One job's results, read as they come from ``conn`` and written to ``output`` (with ``splice``,
    a raw chunk bound for a blocking pipe goes there past Python: see splice.py; returned files go to
    ``returned``, those not asked for nowhere). If the connection breaks (ConnectionBroke), ``resume``
    goes on with a new one, where the master sends the results again from ``offset``: the bytes of
    them read so far, whatever framing state they left, so every byte is taken once."""

    def __init__(self, conn, output, where, splice=False, returned=None, job_id=None, seal=None):
        self.conn = conn
        self.seal = seal  # an auth.ResultsSeal: the results must be sealed with the secret
        self.output = output
        self.where = where
        self.pipe_for = getattr(output, "pipe_for", None) if splice else None
        self.returned = returned
        self.job_id = job_id
        self.header = None
        self.decoder = ResultDecoder()
        self.parts = []  # plain results: written once whole, like the classic client
        self.unsealed = False  # the seal did not match: nothing of the results is to be trusted
        self._read_before = 0  # bytes of the results read on earlier connections
        self._start = conn.received - conn.receiver.buffered  # where they begin on this one

    @property
    def offset(self):
        return self._read_before + self.conn.received - self._start

    def resume(self, conn):
        """Go on with ``conn``, on which the master has just said ATTACHED: what follows continues the results."""
        self._read_before = self.offset
        self._start = conn.received - conn.receiver.buffered
        self.conn.receiver.resume_from(conn.receiver)
        conn.receiver = self.conn.receiver
        self.conn.close()
        self.conn = conn

    def read(self):
        """The job's Result; ConnectionBroke if the connection breaks first."""
        if self.header is None:
            line = next_answer(self.conn, ConnectionBroke, f"before the job's results came (master {self.where})")
            if line.word == protocol.ERROR:
                reason = line.reason.decode("utf-8", "replace") or "no reason given"
                raise JobLost(f"the job failed: {reason} (master {self.where})")
            self.header = self.conn.start_block(line.raw, results=True)
        worker = self.header.field(protocol.WORKER_FIELD)
        worker = worker.decode("utf-8", "replace") if worker else None
        if self.header.extended:
            status = self._read_extended()
            return Result(status.exit_code, status, self.where, worker, job_id=self.job_id)
        self._read_classic()
        return Result(0, None, self.where, worker, job_id=self.job_id)

    def _read_classic(self):
        while not isinstance(event := self._next_event(), protocol.BlockEnd):
            self.parts.append(event.data)
        self.output.write(protocol.STDOUT, b"".join(self.parts))

    def _next_event(self):
        return next_answer(self.conn, ConnectionBroke, f"in the middle of the results (master {self.where})")

    def _read_extended(self):
        decoder = self.decoder
        while not isinstance(event := self._next_event(), protocol.BlockEnd):
            for stream, data in decoder.feed(event.data):
                if self.seal is not None:
                    self.seal.add(stream, data)
                if stream != protocol.RETURNED:
                    self.output.write(stream, data)
                elif self.returned is not None:
                    self.returned.write(data)
            if (self.pipe_for is not None and self.conn.receiver.raw_pending
                    and decoder.raw_stream != protocol.RETURNED and (pipe := self.pipe_for(decoder.raw_stream))):
                for moved in self.conn.splice_raw(pipe):
                    decoder.took_raw(moved)
        where = self.where
        status = decoder.status
        if status is None or not decoder.complete:
            raise JobLost(f"the results were cut short: the worker or master was lost (master {where})")
        if self.seal is not None:
            from sieci.wire.auth import Unauthorized

            try:
                self.seal.check(decoder.seal, decoder.status_line)
            except Unauthorized as why:
                self.unsealed = True
                raise JobLost(f"{why} (master {where}); the files it returned are removed") from None
        if status.kind == b"error":
            message = status.message.decode("utf-8", "replace")
            raise JobLost(f"the job failed: {message or status.value.decode()} (master {where})")
        return status

    def close_returned(self):
        """Done with the files the job returned: whole if the results ended well, none if their seal failed."""
        if self.returned is not None:
            if self.unsealed:
                self.returned.discard()
            self.returned.close(complete=self.decoder.status is not None and self.decoder.complete)
