"""Our programs as processes: masters, workers and clients started from bin/, each with
its stderr in a file, and stopped (SIGTERM, a bounded wait, then SIGKILL) by stop_all.

Every wait is bounded by a deadline; readiness is found by polling what a process
logged, never by fixed sleeps.
"""

import os
import re
import signal
import subprocess  # gevent's: tests/conftest.py patched the standard library first
import tempfile
import time

import gevent
import pytest

from tests.helpers import PYTHON, REPO, unavailable_walls

MASTER = os.path.join(REPO, "bin", "master")
WORKER = os.path.join(REPO, "bin", "worker")
CLIENT = os.path.join(REPO, "bin", "client")
# Every wait below is bounded by one of these; none is a sleep.
DEADLINE = 15.0
STOP_TIMEOUT = 5.0
POLL = 0.02
# The daemons' own waits, kept short so a failing test still ends quickly.
# Every wall this host can build; the tests of the walls themselves are in test_sandbox.py.
FAST_WORKER = ["--reconnect-max", "0.3", "--grace", "3", "--log-level", "info", *unavailable_walls()]
FAST_MASTER = ["--grace", "3", "--log-level", "info"]
LISTENING = r"master listening for workers on \S+:(?P<workers>\d+) and for clients on \S+:(?P<clients>\d+)"


def clean_env(**extra):
    """This environment without any SIECI_* variable, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
    env.update(extra)
    return env


class Proc:
    """One started process; its stderr goes to a temporary file for diagnostics."""

    def __init__(self, name, argv, env=None, stdin=None, capture_stdout=False, stdout=None):
        self.name = name
        self.argv = argv
        self.input = stdin
        # The child appends (O_APPEND) to its own descriptor; reads use another,
        # so reading never moves the offset the child writes at.
        fd, self.stderr_path = tempfile.mkstemp(prefix=f"sieci-{name}-", suffix=".log")
        os.close(fd)
        with open(self.stderr_path, "ab") as stderr_file:
            self.popen = subprocess.Popen(
                argv, cwd=REPO, env=env if env is not None else clean_env(),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=stdout or (subprocess.PIPE if capture_stdout else subprocess.DEVNULL),
                stderr=stderr_file,
            )

    @property
    def pid(self):
        return self.popen.pid

    def stderr_bytes(self):
        try:
            with open(self.stderr_path, "rb") as file:
                return file.read()
        except FileNotFoundError:
            return b"(log removed)"

    def stderr(self):
        return self.stderr_bytes().decode("utf-8", "replace")

    def exited(self):
        return self.popen.poll() is not None

    def terminate_and_wait(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; the exit status, or None if it had to be killed."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass

    def stop(self):
        try:
            self.terminate_and_wait()
        finally:
            self.kill()
            for pipe in (self.popen.stdin, self.popen.stdout):
                if pipe is not None:
                    pipe.close()
            os.unlink(self.stderr_path)


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return f"Result({self.returncode!r}, stdout={self.stdout!r}, stderr={self.stderr!r})"


class Processes:
    """Starts masters, workers and clients; ``stop_all`` ends whatever is left."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.procs = []
        self._files = 0

    def start(self, name, argv, **options):
        proc = Proc(name, argv, **options)
        self.procs.append(proc)
        return proc

    def logs(self):
        """Everything the processes wrote on stderr, for assertion messages."""
        parts = []
        for proc in self.procs:
            parts.append(f"--- {proc.name} (pid {proc.pid}, exit {proc.popen.returncode}) {proc.argv[1:]}\n"
                         + proc.stderr())
        return "\n".join(parts)

    def stop_all(self):
        errors = []
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as error:  # keep stopping the others
                errors.append(error)
        if errors:
            raise errors[0]

    # --- the daemons ----------------------------------------------------------

    def master(self, workers_port=0, clients_port=0, args=None, extra=(), **options):
        """Start bin/master on loopback (by default on ports the system picks) and learn
        its ports from the line it logs once it listens."""
        argv = [PYTHON, MASTER] + (args if args is not None else [
            f"127.0.0.1:{workers_port}", f"127.0.0.1:{clients_port}", *FAST_MASTER, *extra])
        proc = self.start("master", argv, **options)
        listening = self.wait_for_log(proc, LISTENING)
        self.workers_port, self.clients_port = int(listening["workers"]), int(listening["clients"])
        return proc

    def worker(self, *masters, args=(), **options):
        masters = masters or (f"127.0.0.1:{self.workers_port}",)
        return self.start("worker", [PYTHON, WORKER, *masters, *FAST_WORKER, *args], **options)

    def wait_for_log(self, proc, pattern, deadline=DEADLINE):
        """The first match of the regular expression ``pattern`` in what ``proc`` logged."""
        end = time.monotonic() + deadline
        while True:
            exited = proc.exited()  # before reading: then all it wrote is in the file
            found = re.search(pattern, proc.stderr())
            if found:
                return found
            if exited or time.monotonic() > end:
                why = "it exited" if exited else f"in {deadline} s"
                pytest.fail(f"{proc.name} never logged {pattern!r} ({why})\n" + self.logs())
            gevent.sleep(POLL)

    # --- clients --------------------------------------------------------------

    def code_file(self, code, name=None):
        self._files += 1
        path = self.tmp_path / (name or f"job{self._files}.py")
        path.write_bytes(code)
        return str(path)

    def client(self, *args, stdin=None, env=None):
        """Start a client; ``finish`` collects what it printed."""
        return self.start("client", [PYTHON, CLIENT, *args], stdin=stdin, capture_stdout=True, env=env)

    def finish(self, proc, deadline=DEADLINE):
        try:
            stdout, _ = proc.popen.communicate(proc.input, timeout=deadline)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{proc.name} {proc.argv[1:]} did not end within {deadline} s\n" + self.logs())
        return Result(proc.popen.returncode, stdout, proc.stderr_bytes())

    def run_client(self, *args, stdin=None, deadline=DEADLINE):
        return self.finish(self.client(*args, stdin=stdin), deadline)

    def run_job(self, code, address=None, deadline=DEADLINE):
        return self.run_client(address or f"127.0.0.1:{self.clients_port}", self.code_file(code), deadline=deadline)
