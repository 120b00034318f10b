"""How a job ended, as the master tells operators (metrics, dashboard), without I/O: the status line read
off the end of its relayed results, its class (``ok``, ``failed``...) and a few words for people."""

from sieci.wire import protocol
from sieci.wire.results import parse_status

# The classes of an ending, as the metrics label them.
OK = "ok"  # exited 0
FAILED = "failed"  # exited with another status
SIGNAL = "signal"  # killed by a signal
TIMEOUT = "timeout"  # hit its time limit
LIMIT = "limit"  # hit another limit (output, memory...)
LOST = "lost"  # its worker or its link was lost, or the master stopped, once it ran
ERROR = "error"  # the worker could not run it, or the master failed it before it ran
CANCELLED = "cancelled"  # its client left, or it was cancelled by request
NO_STATUS = "no_status"  # it ended, but its (classic) worker says no status
CLASSES = (OK, FAILED, SIGNAL, TIMEOUT, LIMIT, LOST, ERROR, CANCELLED, NO_STATUS)
OF_A_STATUS = CLASSES[:7]  # those a status line gives: all a worker knows

MAX_STATUS_LINE = 1024  # a status line longer than this is not looked for


def status_of_results(header, last_pieces):
    """The results.Status of a results block whose header is ``header`` (protocol.BlockHeader) and whose
    last relayed bytes are ``last_pieces`` (a few of its last pieces, in order); None for a classic
    worker's results (which have no status line) or if no status line ends them."""
    if header is None or not header.extended:
        return None
    tail = b"".join(piece[-MAX_STATUS_LINE:] for piece in last_pieces)[-MAX_STATUS_LINE:]
    if not tail.endswith(b"\n"):
        return None
    line = tail[tail.rfind(b"\n", 0, len(tail) - 1) + 1:]
    if not line.startswith(protocol.STATUS_TAG + b" "):
        return None
    try:
        return parse_status(line)
    except protocol.RemoteProtocolError:
        return None


def ending_class(outcome, status, ran):
    """The class of a job's ending: ``outcome`` the master's ("done", "failed", "cancelled"), ``status``
    its results' Status (or None), ``ran``: a worker had taken it."""
    if outcome == "cancelled":
        return CANCELLED
    if status is None:
        if outcome == "done":
            return NO_STATUS
        return LOST if ran else ERROR
    if status.kind == b"exit":
        return OK if int(status.value) == 0 else FAILED
    if status.kind == b"signal":
        return SIGNAL
    if status.kind == b"limit":
        return TIMEOUT if status.value == b"time" else LIMIT
    return LOST if status.value == b"lost" else ERROR


def exit_status(status):
    """The exit status a local run would have given (an int), or None without a status."""
    return status.exit_code if status is not None else None


def ending_text(outcome, status, reason):
    """A few words for people: "exited 1", "killed by signal 9", "lost: <reason>", "cancelled"..."""
    if outcome == "cancelled":
        return "cancelled" + (f": {reason}" if reason else "")
    if status is not None and status.kind == b"error" and status.value == b"lost":
        message = status.message.decode("utf-8", "replace")
        return "lost" + (f": {message}" if message else "")
    if status is not None:
        return status.describe()
    if outcome == "done":
        return "ended (no exit status from a classic worker)"
    return "failed" + (f": {reason}" if reason else "")
