"""The joblog of a batch (--joblog): GNU parallel's, a header and one tab-separated line per job as it
ends; written afresh by each batch, read back by --resume, --resume-failed and --retry-failed.
See docs/batches.md#the-joblog."""

import shlex

from sieci import defaults

COLUMNS = ("Seq", "Command", "Master", "Worker", "Starttime", "JobRuntime", "Exitval", "Bytes", "Reason", "JobId")
HEADER = "\t".join(COLUMNS)
NO_ID_HEADER = "\t".join(COLUMNS[:-1])  # older sieci's: no job ids (read with "-" for them)
FILE_HEADER = NO_ID_HEADER.replace("Command", "File")  # older yet: one file, no arguments
NOTHING = "-"  # a joblog field with no value
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


class BatchError(Exception):
    """sieci cannot run the batch at all (exit status 255); the message says why."""

    exit_code = defaults.EXIT_FAILED


class JoblogMismatch(BatchError):
    """The joblog to resume is not this batch's: resuming would skip or rerun the wrong jobs."""

    exit_code = defaults.EXIT_USAGE


def escape(text):
    """A command as one joblog field: backslash, tab, CR and newline escaped."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def unescape(field):
    chars, rest = [], iter(field)
    for char in rest:
        if char == "\\":
            after = next(rest, "")
            char = _UNESCAPES.get(after, "\\" + after)
        chars.append(char)
    return "".join(chars)


def _one_line(text):
    return " ".join(str(text).split()) or NOTHING


def joblog_line(job):
    result = job.result
    fields = [str(job.seq), escape(shlex.join(job.command)),
              _one_line(result.master if result else NOTHING), _one_line(result.worker if result else NOTHING),
              f"{job.started:.3f}", f"{job.runtime:.3f}", str(job.exit_status), str(job.bytes),
              _one_line(job.reason or NOTHING), _one_line(result.job_id or NOTHING if result else NOTHING)]
    return "\t".join(fields)


def _open_text(path, mode):
    return open(path, mode, encoding="utf-8", errors="surrogateescape", newline="")


class JobLog:
    """The joblog being written: the header, the lines kept, then a line per job as it ends."""

    def __init__(self, path, kept=()):
        self.path = path
        try:
            self.file = _open_text(path, "w")
        except OSError as error:
            raise BatchError(f"cannot write the joblog {path}: {error.strerror or error}") from None
        self._write([HEADER, *kept])

    def add(self, job):
        self._write([joblog_line(job)])

    def close(self, unfinished=()):
        """Puts back the old lines of retried jobs that did not finish (say, after Ctrl-C)."""
        try:
            self._write([job.previous for job in unfinished if job.previous is not None])
        finally:
            self.file.close()

    def _write(self, lines):
        try:
            self.file.write("".join(line + "\n" for line in lines))
            self.file.flush()
        except OSError as error:
            raise BatchError(f"cannot write the joblog {self.path}: {error.strerror or error}") from None


class PastRun:
    """One line of a joblog being resumed or retried: the job's ``seq``, ``command`` and ``exitval``."""

    def __init__(self, seq, command, exitval, line):
        self.seq = seq
        self.command = command
        self.exitval = exitval
        self.line = line  # as it is to be kept: under today's header


def read_joblog(path, missing_ok=False):
    """The runs a joblog holds, in its order, and the number of its last line if that was cut
    short (a batch killed mid-write, a full disk), else None: that job counts as not run.
    ``missing_ok``: no joblog at all is an empty one (--resume before any run)."""
    try:
        with _open_text(path, "r") as file:
            text = file.read()
    except FileNotFoundError:
        if missing_ok:
            return [], None
        raise BatchError(f"cannot read the joblog {path}: no such file") from None
    except OSError as error:
        raise BatchError(f"cannot read the joblog {path}: {error.strerror or error}") from None
    lines = text.split("\n")
    if lines[0] not in (HEADER, NO_ID_HEADER, FILE_HEADER):
        raise BatchError(f"{path} is not a sieci joblog (its first line is not the header)")
    runs, seen, cut = [], {}, None
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        line += "" if lines[0] == HEADER else "\t" + NOTHING
        try:
            run = _parse_line(line, f"{path}:{number}", lines[0] == FILE_HEADER)
        except BatchError:
            if number == len(lines):  # the last line, with no newline after it
                cut = number
                continue
            raise
        if run.seq in seen:
            raise JoblogMismatch(f"{path}: Seq {run.seq} is on two lines ({seen[run.seq]} and {number})")
        seen[run.seq] = number
        runs.append(run)
    return runs, cut


def _parse_line(line, where, of_files=False):
    fields = line.split("\t")
    try:
        if len(fields) != len(COLUMNS):
            raise ValueError
        command = [unescape(fields[1])] if of_files else shlex.split(unescape(fields[1]))
        if not command:
            raise ValueError
        seq, exitval = int(fields[0]), int(fields[6])
        if seq < 1:
            raise ValueError
    except ValueError:
        raise BatchError(f"{where}: not a joblog line ({len(COLUMNS)} tab-separated columns)") from None
    if of_files:  # kept under today's header: the file as a command
        line = "\t".join([fields[0], escape(shlex.join(command)), *fields[2:]])
    return PastRun(seq, command, exitval, line)
