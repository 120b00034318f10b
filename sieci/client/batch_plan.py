"""What a batch runs: its jobs from the command line's input sources (batch_syntax.py), made as they
are taken, and, resuming or retrying, which of them the joblog says to run again.

``plan`` reads the input source files (``::::``, ``-a``; ``-`` is stdin) and the joblog; the rest is
pure. The jobs to run come as a JobQueue: an iterator that makes each job when the batch takes it,
so a batch of a billion combinations holds only the jobs in flight and those waiting to be shown.
"""

import re
import shlex
import sys

from sieci.client.batch_job import BatchJob
from sieci.client.batch_syntax import Combinations, Source, SyntaxRefused, Template, lines_of, split_sources
from sieci.client.joblog import BatchError, JoblogMismatch, read_joblog

_SLOT_MARK = "\0"  # no value can hold it (a command's words are C strings)


class BatchPlan:
    """The jobs of the batch: ``template`` (batch_syntax.Template) filled in with each of ``combinations``."""

    def __init__(self, template, combinations):
        self.template = template
        self.combinations = combinations

    def __len__(self):
        return len(self.combinations)

    def job(self, seq, previous=None):
        return BatchJob(seq, previous=previous, values=self.combinations[seq - 1], plan=self)

    def command(self, job, slot):
        return self.template.command(job.values, job.seq, slot)

    def shell_line(self, job, slot):
        return self.template.shell_line(job.values, job.seq, slot)

    def matches(self, seq, command):
        """Whether ``command`` (a joblog's) is job ``seq``'s, in whichever job slot it ran."""
        made = self.template.command(self.combinations[seq - 1], seq, _SLOT_MARK)
        if not self.template.uses_slot:
            return made == command
        patterns = ["[1-9][0-9]*".join(map(re.escape, word.split(_SLOT_MARK))) for word in made]
        return len(patterns) == len(command) and all(map(re.fullmatch, patterns, command))


class JobQueue:
    """The jobs to run, in input order, each made as it is taken; ``total`` of them. ``rerun``: the joblog
    lines of those that run again, by Seq, until taken (put back if the batch ends without them)."""

    def __init__(self, jobs, total, rerun=None):
        self.jobs = iter(jobs)
        self.total = total
        self.rerun = dict(rerun or {})

    def __iter__(self):
        return self

    def __next__(self):
        job = next(self.jobs)
        self.rerun.pop(job.seq, None)
        return job

    def lines_left(self):
        """The joblog lines of the jobs to run again that were never taken."""
        return list(self.rerun.values())


# Resuming and retrying.

def retried(runs):
    """--retry-failed without the batch's values: the joblog's lines of jobs that exited 0, kept, and its
    other jobs to run again, in Seq order."""
    again = sorted((run for run in runs if run.exitval != 0), key=lambda run: run.seq)
    jobs = [BatchJob(run.seq, run.command, previous=run.line) for run in again]
    return [run.line for run in runs if run.exitval == 0], JobQueue(jobs, len(jobs), {run.seq: run.line
                                                                                       for run in again})


def resumed(plan, runs, path, rerun_failed):
    """--resume: the joblog's lines of the batch's jobs it lists, kept, and the jobs it does not list, to
    run; ``rerun_failed`` (--resume-failed): those it lists as not exiting 0 run again too. A line whose
    Seq or command is not the batch's is refused: the joblog is another batch's."""
    for run in runs:
        if run.seq > len(plan):
            raise JoblogMismatch(f"{path} is not this batch's joblog: its Seq {run.seq} is past this batch's "
                                 f"{len(plan)} jobs")
        if not plan.matches(run.seq, run.command):
            expected = plan.command(plan.job(run.seq), 1)
            raise JoblogMismatch(f"{path} is not this batch's joblog: its Seq {run.seq} ran "
                                 f"{shlex.join(run.command)!r}, where this batch's job {run.seq} is "
                                 f"{shlex.join(expected)!r}")
    listed = {run.seq for run in runs}
    rerun = {run.seq: run.line for run in runs if rerun_failed and run.exitval != 0}
    kept = [run.line for run in runs if run.seq not in rerun]

    def jobs():
        for seq in range(1, len(plan) + 1):
            if seq not in listed or seq in rerun:
                yield plan.job(seq, previous=rerun.get(seq))

    return kept, JobQueue(jobs(), len(plan) - len(listed) + len(rerun), rerun)


# What to run.

def read_source(source, stdin_read):
    """A ``::::`` or ``-a`` file's values (``-``: stdin, read once: a second ``-`` is empty, as in GNU parallel)."""
    path = source.path
    try:
        if path == "-":
            data = b"" if stdin_read[0] else sys.stdin.buffer.read()
            stdin_read[0] = True
        else:
            with open(path, "rb") as file:
                data = file.read()
    except OSError as error:
        raise BatchError(f"cannot read the {source.given_by} file {path}: {error.strerror or error}") from None
    if b"\0" in data:
        raise SyntaxRefused(f"the {source.given_by} file {path} holds a NUL byte, which no argument can hold "
                            "(GNU parallel would put the two characters \\0 in its place)")
    return lines_of(data)


def input_sources(args):
    """The command line's input sources: -a's file first, as GNU parallel puts it, then those after ':::'."""
    sources = [Source(path=args.arg_file, given_by="-a")] if args.arg_file else []
    return sources + split_sources(args.batch_words or [])


def batch_plan(args):
    """The BatchPlan of the command line's template and input sources (read now), or None when it has none
    (``--joblog``, ``--dry-run`` or ``--retry-failed`` with no values: the one job of the command line, or
    the joblog's)."""
    sources = input_sources(args)
    if not sources:
        return None
    template = Template(args.command, len(sources))  # its mistakes before any file is read
    stdin_read = [False]
    columns = [source.values if source.path is None else read_source(source, stdin_read) for source in sources]
    return BatchPlan(template, Combinations(columns, [source.linked for source in sources]))


def plan(args, prog="sieci-client"):
    """The joblog lines to keep and the JobQueue of the jobs to run, as the command line asks."""
    batch = batch_plan(args)
    resuming = args.resume or args.resume_failed or (args.retry_failed and batch is not None)
    if args.retry_failed and batch is None:
        return retried(_past_runs(args.joblog, prog))
    if batch is None:
        return [], JobQueue([BatchJob(1, args.command)], 1)
    if not resuming:
        return [], JobQueue(map(batch.job, range(1, len(batch) + 1)), len(batch))
    runs = _past_runs(args.joblog, prog, missing_ok=True)
    return resumed(batch, runs, args.joblog, rerun_failed=args.resume_failed or args.retry_failed)


def resumed_by(args):
    """The option that runs what this batch leaves if it is interrupted: a retry from the joblog alone keeps
    the old lines of the jobs it did not finish, so another retry runs them."""
    if args.retry_failed and args.batch_words is None and not args.arg_file:
        return "--retry-failed"
    return "--resume"


def _past_runs(path, prog, missing_ok=False):
    runs, cut = read_joblog(path, missing_ok)
    if cut is not None:
        sys.stderr.write(f"{prog}: {path}:{cut}: the last line is cut short; its job counts as not run\n")
    return runs
