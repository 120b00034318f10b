"""Why the client could not get a job's result: one class per reason, each with the exit status the
sieci-client command gives it (as click's exceptions carry theirs)."""

from sieci import defaults


class ClientError(Exception):
    """sieci could not get a result; the message says why."""

    exit_code = defaults.EXIT_FAILED


class NotAccepted(ClientError):
    """No worker accepted the job through this master: another may be tried."""


class NeedsInline(NotAccepted):
    """A classic master stands in the way of the job's stdin or files: they must go in the upload."""


class JobLost(ClientError):
    """The job was accepted, then lost: it may have run, or run partly."""


class ConnectionBroke(JobLost):
    """The connection to the master broke while the job's results came."""


class ReattachFailed(JobLost):
    """The connection broke, and the master could not be reached again to attach to the job, which may run
    on there: lost, as JobLost, and run again elsewhere only with retries left (at least once)."""


class TimedOut(ClientError):
    """No result within the client's own --timeout: as timeout(1), and as the worker's time limit."""

    exit_code = defaults.EXIT_TIME_LIMIT


class MasterRefused(ClientError):
    """The master answered a request with ERROR."""


class OutputFailed(ClientError):
    """The job's output could not be written where it goes (a full disk, say)."""


class StdinCannotGo(ClientError):
    """The job's stdin cannot reach it: a classic master stands in the way of a long or a terminal one."""

    exit_code = defaults.EXIT_USAGE
