"""How a worker sends its master a job's results, as the job's output comes."""

import tempfile

from . import protocol
from .results import OUTPUT_CHUNK, output_pieces

# Classic results are spooled to disk past this size: their terminator can
# only be chosen once every line of the output is known.
SPOOL_IN_MEMORY = 1 << 20


def worker_field(name):
    return b"worker=" + b"_".join(name.encode("utf-8", "replace").split())


def send_extended(conn, run, worker_name, beat):
    """Stream the results, with an empty item every ``beat`` seconds the job is quiet;
    what is ready together (the header and the first output, say) goes in one send."""
    terminator = protocol.choose_terminator()
    unsent = [protocol.encode_header(terminator, [protocol.EXTENDED, worker_field(worker_name),
                                                  protocol.beat_field(beat)])]
    for stream, data in run.output(quiet_every=beat):
        if stream is None:
            unsent.append(protocol.HEARTBEAT_ITEM)
        else:
            unsent += output_pieces(stream, data, terminator)
        if not run.more_output_ready():
            conn.send_pieces(unsent)
            unsent = []
    unsent.append(run.status.encode() + terminator + b"\n")
    conn.send_pieces(unsent, completes=protocol.JOB)


def send_status(conn, worker_name, status):
    """Extended results that hold nothing but ``status``: a job that could not run."""
    terminator = protocol.choose_terminator()
    conn.send(protocol.encode_header(terminator, [protocol.EXTENDED, worker_field(worker_name)])
              + status.encode() + terminator + b"\n", completes=protocol.JOB)


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
