"""What a worker's link to a master logs.

Its redials of a master that stays down: the first failure is a warning, the next ones are folded
into a warning each time their count doubles or a minute has passed (every one is still a line at
debug), and the link that comes back is one line at info with the count.

Its jobs, by number: a master does not tell a worker its jobs' ids, so the worker names each job
``<worker>#<n>``, the n-th code read on the link, with ``<worker>`` its end of the link; the master's
line "job <id> dispatched to worker <worker> as <worker>#<n>" counts the codes it sends alike.
"""

import logging

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


class JobNumbers:
    """The names of the jobs read on one link (``where``: the worker's end of it), in order."""

    def __init__(self, where):
        self.where = where
        self.count = 0

    def next(self):
        self.count += 1
        return f"{self.where}#{self.count}"
