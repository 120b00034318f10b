"""What a worker's link to a master logs.

Its redials of a master that stays down: the first failure is a warning, the next ones are folded
into a warning each time their count doubles or a minute has passed (every one is still a line at
debug), and the link that comes back is one line at info with the count.

Its jobs, by the master's ids: a sieci master names each job on the RELAY line before its code
(``job=<id>``), and the worker's lines about the job carry that id, as the master's do. A job without
one (a classic master says no RELAY) is named ``<worker>#<n>``, the n-th code read on the link, with
``<worker>`` its end of the link; a sieci master's "dispatched" line counts the codes it sends alike.
The id is a label only: one that is not a job's id (16 lower-case hex digits) is not used.
"""

import logging

from sieci.wire import protocol

SUMMARY_EVERY = 60.0  # seconds: the longest a master that stays down goes without a warning


class RedialLog:
    """The failed dials of one master since a link to it last held. ``failed(...)`` and
    ``linked(now)`` return ``(level, message)`` for the log."""

    def __init__(self, master):
        self.master = master
        self.failures = 0
        self.first_at = None
        self.summary_at = None
        self.back_said = False  # the run of failures has had its "linked ... again" line

    def failed(self, why, delay, now, link_held=False):
        """A dial failed, or a link was lost; ``link_held``: after a link that lasted (a new run of failures)."""
        if link_held:
            self.failures, self.back_said = 0, False
        self.failures += 1
        if self.failures == 1:
            self.first_at = self.summary_at = now
            return logging.WARNING, f"{why}; redialling in {delay:.2f} s"
        if _is_power_of_two(self.failures) or now - self.summary_at >= SUMMARY_EVERY:
            self.summary_at = now
            return logging.WARNING, (f"{why}; redialling in {delay:.2f} s ({self._tally(now)}; the next warning "
                                     f"at twice the attempts or in {SUMMARY_EVERY:g} s)")
        return logging.DEBUG, f"{why}; redialling in {delay:.2f} s"

    def linked(self, now):
        if self.failures == 0:
            return logging.INFO, f"linked to master {self.master}"
        level = logging.DEBUG if self.back_said else logging.INFO
        self.back_said = True
        return level, f"linked to master {self.master} again ({self._tally(now)})"

    def _tally(self, now):
        attempts = "attempt" if self.failures == 1 else "attempts"
        return f"{self.failures} failed {attempts} in {now - self.first_at:.0f} s"


def _is_power_of_two(number):
    return number & (number - 1) == 0


class JobName:
    """How the worker's log names one job: ``link_job`` (``<worker>#<n>``), and ``job_id``, the id its
    master gave, or None. ``malformed``: the start of a ``job=`` value that was no job's id, or None."""

    MALFORMED_SHOWN = 32  # bytes of a malformed id that a log line shows

    def __init__(self, link_job, job_id=None, malformed=None):
        self.link_job = link_job
        self.job_id = job_id
        self.malformed = malformed

    @property
    def label(self):
        return self.job_id or self.link_job

    @property
    def fields(self):
        """The ``extra`` of a log line about the job (see logs.JsonFormatter)."""
        if self.job_id is None:
            return {"link_job": self.link_job}
        return {"job": self.job_id, "link_job": self.link_job}


def relayed_job_id(relay):
    """The job's id a master's RELAY line (a protocol.Line, or None) gives, and the start of its
    ``job=`` value if that is no job's id: ``(id or None, malformed or None)``."""
    if relay is None:
        return None, None
    value = relay.field(protocol.JOB_ID_FIELD)
    if value is None:
        return None, None
    job_id = protocol.parse_job_id(value)
    return job_id, None if job_id is not None else value[:JobName.MALFORMED_SHOWN]


class JobNumbers:
    """The names of the jobs read on one link (``where``: the worker's end of it), in order."""

    def __init__(self, where):
        self.where = where
        self.count = 0

    def next(self, relay=None):
        """The JobName of the next code read, which came after ``relay`` (its RELAY line, or None)."""
        self.count += 1
        return JobName(f"{self.where}#{self.count}", *relayed_job_id(relay))
