"""--halt, GNU parallel's: when a batch stops starting jobs (soon) or stops at once (now), and its exit
status then. Pure: the batch tells it of each job's end."""

import math

from sieci.defaults import MOST_FAILURES_COUNTED

_SHORT_FORMS = {"0": "never", "1": "soon,fail=1", "2": "now,fail=1", "-1": "soon,success=1", "-2": "now,success=1"}
WHENS = ("never", "soon", "now")
WHATS = ("fail", "success", "done")


class Halt:
    """``when`` (never, soon, now) after ``count`` jobs, or ``percent`` % of them, did ``what`` (fail,
    success: exited 0, done: ended either way). ``text``: as given."""

    def __init__(self, when, what=None, count=None, percent=None, text=""):
        self.when, self.what, self.count, self.percent, self.text = when, what, count, percent, text

    def __repr__(self):
        return f"Halt({self.text!r})"


def parse_halt(text):
    """``--halt``'s value; ValueError if it is not one."""
    spec = _SHORT_FORMS.get(text, text)
    if spec.endswith("%") and _is_number(spec[:-1]):
        spec = f"soon,fail={spec}"
    when, _, rest = spec.partition(",")
    what, _, amount = rest.partition("=")
    if when not in WHENS:
        raise ValueError(f"{text!r}: expected never, or soon or now, then ,fail=N, ,success=N or ,done=N "
                         "(N a count, or a percentage with %)")
    if when == "never":
        if rest:
            raise ValueError(f"{text!r}: never takes nothing after it")
        return Halt("never", text=text)
    if what not in WHATS:
        raise ValueError(f"{text!r}: {when} must be followed by ,fail=N, ,success=N or ,done=N")
    percent = amount.endswith("%")
    number = amount[:-1] if percent else amount
    if not _is_number(number) or int(number) < 1 or (percent and int(number) > 100):
        raise ValueError(f"{text!r}: {what}= takes a count of 1 or more, or a percentage from 1% to 100%")
    if percent:
        return Halt(when, what, percent=int(number), text=text)
    return Halt(when, what, count=int(number), text=text)


def _is_number(text):
    """Digits 0 to 9 only, as GNU parallel reads a count (str.isdigit takes ² and other scripts' digits)."""
    return text.isascii() and text.isdigit()


class HaltWatch:
    """A batch's jobs as they end, against ``halt``, for ``total`` jobs: ``ended`` says when to halt."""

    def __init__(self, halt, total):
        self.halt = halt
        self.total = total
        self.started = 0
        self.failed = 0
        self.ended_count = 0
        self.status = None  # the exit status, once halting

    def ended(self, exit_status):
        """A job ended: None, or "soon" or "now" when the batch halts (the first time only)."""
        failed = exit_status != 0
        self.failed += failed
        self.ended_count += 1
        what = self.halt.what
        if self.status is not None or self.halt.when == "never":
            return None
        if what == "fail" and failed:
            reached = self.failed
        elif what == "success" and not failed:
            reached = self.ended_count - self.failed
        elif what == "done":
            reached = self.ended_count
        else:
            return None
        needed = self.halt.count if self.halt.count is not None else self.total * self.halt.percent / 100
        if reached < needed:
            return None
        if what == "success":
            self.status = 0
        elif self.halt.percent is not None:
            self.status = math.ceil(self.failed / self.total * 100)
        elif self.halt.count == 1:
            self.status = exit_status
        else:
            self.status = min(self.failed, MOST_FAILURES_COUNTED + 1)
        return self.halt.when

    def exit_status(self):
        """The batch's exit status, as GNU parallel gives it with --halt (whether it halted or not)."""
        if self.status is not None:
            return self.status
        if self.halt.when != "never" and self.halt.percent is not None:
            return math.ceil(self.failed / (self.started or 1) * 100)
        return min(self.failed, MOST_FAILURES_COUNTED + 1)
