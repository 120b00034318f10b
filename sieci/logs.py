"""The daemons' log lines: text or JSON, each stamped in ISO 8601 with its zone (UTC unless
``--log-time local``), a job's lines with its id; and the lines said before logging is set up
(a refused command line, a daemon that cannot start) in the format that was asked for."""

import json
import logging
import sys
import time

JOB_FIELD = "job"  # the ``extra`` key that ties a record to a job: ``extra={"job": job.id}``


def escaped(text):
    """``text`` with what is not printable (control characters, line and paragraph separators, bidi
    overrides) as repr writes it: forged bytes from the network end up in messages, and a terminal or a
    log reader could take them for a line's end or a command."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


def timestamp(created, local=False):
    """``created`` (seconds since the epoch) as ISO 8601 to the millisecond: ``...Z`` in UTC, else the
    host's zone with its offset (``+01:00``)."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    if not local:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
    moment = time.localtime(seconds)
    offset = time.strftime("%z", moment)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{millis:03d}{offset[:3]}:{offset[3:]}"


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``, and ``job=<id>`` where the message does not name the job."""

    def __init__(self, local=False):
        super().__init__()
        self.local = local

    def format(self, record):
        message = escaped(record.getMessage())
        job = getattr(record, JOB_FIELD, None)
        if job is not None and job not in message:
            message += f" job={job}"
        line = f"{timestamp(record.created, self.local)} {record.levelname} {record.name}: {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a job's id, its event and any
    other ``extra`` fields in EXTRA_FIELDS when the record has them."""

    EXTRA_FIELDS = (JOB_FIELD, "event", "link_job", "settings")

    def __init__(self, local=False):
        super().__init__()
        self.local = local

    def format(self, record):
        entry = {"time": timestamp(record.created, self.local), "level": record.levelname.lower(),
                 "logger": record.name, "message": record.getMessage()}
        for field in self.EXTRA_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def formatter(log_format="text", log_time="utc"):
    local = log_time == "local"
    return JsonFormatter(local) if log_format == "json" else TextFormatter(local)


def setup_logging(level, log_format="text", log_time="utc"):
    # Neither format shows where a call was made, nor thread or process: skip finding them
    # for every record (the logging HOWTO's "Optimization"; what it saved: bench/README.md).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format, log_time))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def startup_error(prog, message, as_json=None, usage=None, file=None):
    """A daemon that cannot start, or whose command line is refused: ``prog: error: message`` (after
    the usage, if any), or one JSON line with the usage folded into one line. ``as_json`` None: as
    the log, once set up, is written."""
    file = file or sys.stderr
    if as_json is None:
        as_json = any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)
    if not as_json:
        file.write(f"{usage or ''}{prog}: error: {message}\n")
        return
    entry = {"time": timestamp(time.time()), "level": "error", "logger": prog.replace("-", "."),
             "message": f"{prog}: error: {message}"}
    if usage:
        entry["usage"] = " ".join(usage.split())
    file.write(json.dumps(entry) + "\n")
    file.flush()
