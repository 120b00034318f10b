"""What one job may use, and the status it ends with: which limit, if any, stopped it."""

import signal

from sieci import defaults
from sieci.wire.results import Status


class Limits:
    """What one job may use. ``None`` for a limit means none."""

    def __init__(self, timeout=defaults.JOB_TIMEOUT, max_output=defaults.MAX_OUTPUT, cpu=defaults.MAX_CPU,
                 memory=defaults.MAX_MEMORY, file_size=defaults.MAX_FILE_SIZE, disk=defaults.MAX_DISK,
                 open_files=defaults.MAX_OPEN_FILES, processes=defaults.MAX_PROCESSES):
        self.timeout = timeout
        self.max_output = max_output
        self.cpu = cpu
        self.memory = memory
        self.file_size = file_size
        self.disk = disk
        self.open_files = open_files
        self.processes = processes

    def rlimits(self, in_cgroup=False):
        """The per-process limits the kernel enforces, as the fork server takes them;
        in a cgroup, CPU, memory and processes are limited for the whole job there instead."""
        per_process = {"file_size": self.file_size, "open_files": self.open_files}
        if not in_cgroup:
            per_process.update(cpu=self.cpu and int(self.cpu), memory=self.memory, processes=self.processes)
        return per_process

    def describe(self, name):
        values = {"time": f"{self.timeout:g} s", "cpu": f"{self.cpu} s of CPU", "output": f"{self.max_output} bytes",
                  "memory": f"{self.memory} bytes", "file-size": f"{self.file_size} bytes",
                  "disk": f"{self.disk} bytes", "open-files": f"{self.open_files} open files",
                  "processes": f"{self.processes} processes"}
        return values[name]


# What Python reports for a write past RLIMIT_FSIZE: it ignores SIGXFSZ, so the write fails.
FILE_TOO_LARGE = b"[Errno 27] File too large"


def job_status(limits, stopped_for, returncode, ended, file_too_large=False):
    """The job's Status: the limit it was stopped for (``stopped_for``, by the run) or hit
    in the kernel, else how it ended (``returncode``, and the fork server's ``Ended``,
    None when the job could not be waited for). ``file_too_large``: it wrote FILE_TOO_LARGE."""
    limit = stopped_for or _kernel_limit_hit(limits, returncode, ended, file_too_large)
    if limit:
        return Status(b"limit", limit.encode(), _limit_message(limits, limit).encode())
    if ended is not None and ended.error is not None:
        return Status(b"error", b"start", ended.error.encode())
    if returncode is None:
        return Status(b"error", b"lost", b"the job's process could not be waited for")
    if returncode < 0:
        return Status(b"signal", str(-returncode).encode())
    return Status(b"exit", str(returncode).encode())


def _kernel_limit_hit(limits, returncode, ended, file_too_large):
    """Which kernel-enforced limit ended the job, if one did."""
    cpu_seconds = ended.cpu if ended is not None else None
    if returncode == -signal.SIGXCPU or (returncode == -signal.SIGKILL and limits.cpu
                                         and (cpu_seconds or 0) >= limits.cpu):
        return "cpu"
    if returncode == -signal.SIGXFSZ or (returncode and file_too_large and limits.file_size):
        return "file-size"
    # The counters of its cgroup and tmpfs; a job that exited 0 coped with its limits.
    if returncode and ended is not None:
        return next(iter(ended.hit), None)
    return None


def _limit_message(limits, limit):
    if limit == "output":
        return f"the job hit its output limit ({limits.describe(limit)}); its output was cut there"
    if limit == "time":
        return f"the job ran past its time limit of {limits.describe(limit)}"
    return f"the job hit its {limit} limit ({limits.describe(limit)})"
