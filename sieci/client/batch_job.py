"""One job of a batch (batch.py runs them): its command, how it ran, and sieci's word on it."""

import os
import threading
import time

from sieci import defaults
from sieci.client.batch_syntax import quote_words, tag_of
from sieci.client.errors import ClientError
from sieci.client.program import load_program
from sieci.client.result import not_returned_lines


class BatchJob:
    """One job of the batch, and what became of it.

    ``seq`` is its number in the joblog (its place in the input, kept when
    it is run again); ``previous`` is its line in the joblog being resumed or retried.
    Its ``command`` (PROG and its ARGs) is given, or made by ``plan`` (batch_plan.BatchPlan)
    from its ``values`` once its job slot is known (``{%}``). ``output`` (a
    batch_output.JobOutput) takes its output until it is shown.
    """

    def __init__(self, seq, command=None, previous=None, values=None, plan=None):
        self.seq = seq
        self.command = command
        self.previous = previous
        self.values = values  # one from each input source; None for a job from a joblog alone
        self.plan = plan
        self.slot = None
        self.index = None  # its place in this run's output order
        self.output = None
        self.result = None
        self.failure = None  # why sieci could not run it
        self.failure_status = defaults.EXIT_FAILED  # the exit status that gives it (124: the client's --timeout)
        self.started = None
        self.runtime = None
        self.logged = False  # its joblog line is written: it counts as done
        self.noted = False  # sieci's word on it is shown

    def take_slot(self, slot):
        """The job slot (1..--jobs) it runs in: its command is made now."""
        self.slot = slot
        if self.command is None:
            self.command = self.plan.command(self, slot)

    @property
    def path(self):
        return self.command[0]

    def shell_line(self, slot):
        """Its command as --dry-run prints it (GNU parallel's quoting)."""
        if self.plan is not None:
            return self.plan.shell_line(self, slot)
        return quote_words(self.command)

    @property
    def tag(self):
        """--tag's prefix: its values (a job from a joblog alone: its command's words)."""
        return tag_of(self.values if self.values is not None else self.command)

    def run(self, client, env=None, programs=None, returns=(), results="."):
        """Run it; the files it returns go to its own folder in ``results``, named by its number."""
        self.started, clock = time.time(), time.monotonic()
        try:
            if self.path == "-":
                raise ClientError("- (stdin) cannot be the PROG of a batch's job")
            program = (programs or Programs()).load(self.path)
            self.result = client.run_program(program, self.output, self.command[1:], env, returns=returns,
                                             results=os.path.join(results, str(self.seq)))
        except ClientError as error:
            self.failure = str(error) or type(error).__name__
            self.failure_status = error.exit_code
        except Exception as error:  # noqa: BLE001 - a bug must fail this job, not hang the batch
            self.failure = f"unexpected error: {error!r}"
        self.runtime = time.monotonic() - clock
        if self.output is not None:
            self.output.writes_ended()

    @property
    def bytes(self):
        return self.output.bytes if self.output is not None else 0

    @property
    def exit_status(self):
        if self.result is None:
            return self.failure_status
        if self.result.not_returned:
            return defaults.EXIT_FAILED
        return self.result.exit_status

    @property
    def reason(self):
        """Why sieci could not run it, which limit it hit, or that files it returned were not written;
        None if none of these."""
        if self.failure is not None:
            return self.failure
        if self.result.not_returned:
            return f"{len(self.result.not_returned)} of the files it returned not written"
        return self.result.message if self.result.limit else None

    def note(self, prog):
        """sieci's word on it for stderr, after its own output ("" if none)."""
        if self.failure is not None:
            return f"{prog}: error: {self.path}: {self.failure}\n"
        if self.result.not_returned:
            return "".join(not_returned_lines(self.result, prog, f"{self.path}: "))
        if self.reason:
            return f"{prog}: {self.path}: {self.reason}\n"
        return ""


class Programs:
    """A batch's programs, each with the ``files`` (``--with``) beside it. One with files, or a
    folder, is loaded once, so its bundle is packed once and travels to each worker once;
    a plain file is read afresh for each job, as it always was."""

    def __init__(self, files=()):
        self.files = list(files)
        self.loaded = {}
        self.lock = threading.Lock()

    def load(self, path):
        if not self.files and not os.path.isdir(path):
            return load_program(path)
        with self.lock:
            if path not in self.loaded:
                self.loaded[path] = load_program(path, self.files)
            return self.loaded[path]
