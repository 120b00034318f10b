"""A kept job's record, without I/O: what the master lists of a job and keeps of it across a restart,
and what a restarted master does with each job it finds recorded.

A record is a dict of the columns of state.py's ``jobs`` table. ``record_of`` reads one off a
master.job.Job (``row_of``: as the table's row); ``restart_action`` decides, from a record alone,
whether its job runs (again), was lost, or had ended. ``exit_status_of`` reads a job's exit status off
the end of its kept results.
"""

from sieci.wire import protocol, upload_format
from sieci.wire.results import parse_status

# The columns, in the table's order.
COLUMNS = ("id", "program", "arguments", "submitter", "state", "exit_status", "submitted", "started", "ended",
           "worker", "detached", "keep", "reason", "upload_file", "upload_size", "spool_file", "complete",
           "files_digest", "stdin")
_STATUS_KINDS = (b"exit", b"signal", b"limit", b"error")
MAX_PROGRAM_NAME = 255  # characters of a program's name recorded and listed
ENDED_STATES = frozenset({"done", "failed", "cancelled"})
_KNOWN_STATES = ENDED_STATES | {"queued", "sent", "running"}

# What a restarted master does with a recorded job.
KEEP_ENDED = "ended"  # its results are kept for --attach as they were
REQUEUE = "requeue"  # it never reached a worker: it waits in the queue again
RERUN = "rerun"  # it ran, but its client asked for --retries and no byte of its results had come
LOST = "lost"  # it may have run, in part or whole: reported lost, never run again

LOST_RUNNING = "lost: the master stopped while the job ran (it may have run in part or whole)"
LOST_NO_UPLOAD = "lost: the master stopped and its upload is gone"
LOST_STDIN = "lost: the master stopped and the job's stdin streamed from its client"
LOST_FILES = "lost: the master stopped and the job's files bundle is gone"


def program_of(fields):
    """The program's name as its client gave it, from an upload header's ``fields``; or None."""
    name = protocol.field_value(fields, upload_format.NAME_FIELD)
    try:
        text = upload_format.unquote(name) if name is not None else None
    except protocol.RemoteProtocolError:
        return None
    return text and text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")[:MAX_PROGRAM_NAME]


def arguments_of(fields):
    """How many arguments an upload header's ``fields`` give its program."""
    prefix = upload_format.ARG_FIELD + b"="
    return sum(1 for field in fields if field.startswith(prefix))


def record_of(job, exit_status=None):
    """The record of ``job`` (a master.job.Job whose results are kept) as it stands."""
    return dict(zip(COLUMNS, row_of(job, exit_status)))


def row_of(job, exit_status=None):
    """The record of ``job`` as a row: its values in COLUMNS' order."""
    spool = job.spool
    ended = spool is not None and spool.ended
    detached = int(job.detached_at_upload)
    return (job.id, job.program, job.arguments, job.client_name,
            spool.outcome if ended else job.state.value, exit_status,
            job.submitted, job.started, job.ended_wall,
            job.worker.name if job.worker is not None else job.worker_name,
            detached, 1 - detached,
            (spool.reason or None) if ended else None,
            job.upload_file_name, job.upload_size,
            spool.file_name if spool is not None else None,
            int(spool is not None and spool.complete),
            job.files.digest if job.files is not None else None,
            int(job.stdin is not None))


PREAMBLE_WORD = b"sieci-kept-job"


def preamble(job, spool_file):
    """The line a kept job's upload file begins with in a --state-dir: what its record first holds, so that
    a master killed before that record was written finds the job from its file alone (words: no spaces in
    any of them; the submitter's address last)."""
    name = protocol.field_value(job.fields, upload_format.NAME_FIELD) or b"-"  # quoted: no spaces
    return b"%s %s %s %r %d %d %s %s\n" % (PREAMBLE_WORD, job.id.encode(), spool_file.encode(), job.submitted,
                                            job.detached_at_upload, job.arguments, name,
                                            job.client_name.encode())


def record_from_upload(preamble_line, header, upload_file, upload_size):
    """The record of a job whose upload file begins with ``preamble_line`` and whose upload's header (a
    protocol.BlockHeader) is ``header``, as it was when queued; or, with ``header`` None (the file holds
    only the preamble: a worker took the upload), as it was when it began to run. ValueError if the line
    is no preamble."""
    words = preamble_line.split()
    # (a results file's name is 16 hex digits too: nothing else is joined to the folder's path)
    if len(words) != 8 or words[0] != PREAMBLE_WORD or None in (protocol.parse_job_id(words[1]),
                                                               protocol.parse_job_id(words[2])):
        raise ValueError("not a kept job's upload")
    first = {"id": words[1].decode(), "spool_file": words[2].decode(), "submitted": float(words[3]),
             "detached": words[4] == b"1", "submitter": words[7].decode("utf-8", "replace")}
    listed = [upload_format.NAME_FIELD + b"=" + words[6]] if words[6] != b"-" else []
    listed += [upload_format.ARG_FIELD + b"="] * int(words[5])
    fields = header.fields if header is not None else listed
    files = upload_format.files_wanted(header) if header is not None else None
    detached = bool(first["detached"])
    return {"id": first["id"], "program": program_of(fields), "arguments": arguments_of(fields),
            "submitter": str(first["submitter"]), "state": "queued" if header is not None else "running",
            "exit_status": None, "submitted": float(first["submitted"]), "started": None, "ended": None,
            "worker": None, "detached": int(detached), "keep": int(not detached), "reason": None,
            "upload_file": upload_file, "upload_size": upload_size, "spool_file": first["spool_file"],
            "complete": 0, "files_digest": files.digest if files is not None else None,
            "stdin": int(upload_format.STDIN_STREAM in fields)}


def restart_action(record, upload_present, files_present, results_begun, results_complete=False):
    """What a restarted master does with the job of ``record``: KEEP_ENDED, REQUEUE, RERUN or LOST, and,
    for LOST, the reason its attachers are told. ``upload_present``: its upload is still in its file;
    ``files_present``: its files bundle, if it has one, is in the store; ``results_begun``: some of its
    results were kept; ``results_complete``: all of them (the record lags: the job ended)."""
    state = record["state"]
    if state not in _KNOWN_STATES:
        raise ValueError(f"a record of job {record['id']} in an unknown state {state!r}")
    if state in ENDED_STATES or results_complete:
        return KEEP_ENDED, None
    # A worker took it (its record may lag by a commit: the upload of a detached job goes once it is taken).
    ran = state == "running" or results_begun or (record["detached"] and not upload_present)
    if ran and (record["detached"] or results_begun or not upload_present):
        return LOST, LOST_RUNNING
    if not upload_present:
        return LOST, LOST_NO_UPLOAD
    if record["stdin"]:
        return LOST, LOST_STDIN
    if not files_present:
        return LOST, LOST_FILES
    return (RERUN if ran else REQUEUE), None


def exit_status_of(tail, terminator):
    """The exit status the last lines of a complete results block (``tail``, its last bytes) give, for
    results whose block header named ``terminator``; None for results with no status (a classic worker's).
    The status line may follow a raw chunk's bytes on the same line: the first status found in it counts."""
    lines = tail.split(b"\n")
    if len(lines) < 3 or lines[-1] != b"" or lines[-2] != terminator:
        return None
    line = lines[-3]
    starts = [0] + [line.find(protocol.STATUS_TAG + b" " + kind + b" ") for kind in _STATUS_KINDS]
    for start in sorted(start for start in starts if start >= 0):
        try:
            return parse_status(line[start:]).exit_code
        except protocol.RemoteProtocolError:
            continue
    return None


def described(record, age, attached):
    """A job as JOBS lists it (see docs/protocol.md, "Job control"), from its record; ``age``: seconds
    since it was queued, ``attached``: whether its client is still with it."""
    return {"id": record["id"], "state": _listed_state(record["state"]), "age": round(age, 3),
            "client": record["submitter"], "detached": not attached, "worker": record["worker"],
            "program": record["program"], "arguments": record["arguments"], "exit_status": record["exit_status"],
            "submitted": record["submitted"], "started": record["started"], "ended": record["ended"],
            "reason": record["reason"]}


def _listed_state(state):
    """A job sent to a worker's credit waits there: JOBS calls it queued, as it always did."""
    return "queued" if state == "sent" else state
