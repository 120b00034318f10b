"""A job that runs in the environment of its requirements (``--requirements``), built first if need be.

A worker's Environments hold its store (environments.py), the interpreter's
name in keys, and the fork servers of the environments last used: one per
environment, started on demand, at most ``--environment-servers`` at once
(the one used longest ago stops first), each holding its environment in the
store. An EnvironmentRun has a JobRun's ways (executor.py): it gets its
environment when its output is first asked for (a build meanwhile sends
heartbeats, as a quiet job does), then runs the job there; a build that
fails ends the job with exit status 2 and pip's messages on its stderr.
"""

import logging
import os
import subprocess
import time
from collections import OrderedDict

import gevent
import gevent.event

from sieci.wire import bundle
from sieci.wire.protocol import STDERR
from sieci.wire.results import Status
from sieci.worker import environment_build
from sieci.worker.environment_bundles import WheelBundles
from sieci.worker.environment_build import BuildFailed
from sieci.worker.environment_plan import environment_key
from sieci.worker.environments import EnvironmentStore, StoreUnusable, WaitedTooLong
from sieci.worker.fork_server import ForkServer, ForkServerError

log = logging.getLogger("sieci.worker")

BUILD_FAILED_EXIT = b"2"
# Seconds a failed build's answer is given again to jobs of the same environment (a batch of a thousand
# with a requirement that cannot be installed runs pip once a minute, not a thousand times), and how many.
FAILURE_KEPT = 60.0
FAILURES_KEPT = 64


class Environments:
    """The environments of a JobRunner (``runner``: its python, limits, job user and walls), as ``options``
    (an EnvironmentOptions) say."""

    def __init__(self, options, runner):
        self.options = options
        self.runner = runner
        self._store = None
        self._interpreter = None
        self._servers = OrderedDict()  # key: (ForkServer, Lease), the one used longest ago first
        self.wheel_bundles = WheelBundles(runner.limits.disk or bundle.DEFAULT_MAX_SIZE)
        self._failed_builds = {}  # key: (when, BuildFailed), each given again for FAILURE_KEPT seconds
        self.servers_started = 0  # fork servers of environments started (for tests and logs)
        self.builds_started = 0  # builds this worker started, failed ones included

    @property
    def store(self):
        if self._store is None:
            self._store = EnvironmentStore(self.options.folder, self.options.max_size)
        return self._store

    def interpreter(self):
        """The job interpreter as keys name it: the one its virtual environments run, and its version."""
        if self._interpreter is None:
            said = subprocess.run([self.runner.python, "-c", "import sys; print(sys._base_executable); "
                                   "print(sys.version)"], capture_output=True, timeout=60, check=True)
            executable, version = said.stdout.decode().split("\n", 1)
            self._interpreter = f"{os.path.realpath(executable)} {version.strip()}"
        return self._interpreter

    def key_of(self, settings):
        if settings.files is None:
            return environment_key(self.interpreter(), settings.requirements)
        wheels = self.wheel_bundles.wheels(settings.files) if settings.wheels else ()
        files = self.wheel_bundles.digest(settings.files)
        return environment_key(self.interpreter(), settings.requirements, wheels, files)

    def fork_server(self, key, deadline, build):
        """The fork server of environment ``key`` (built first with ``build(folder)`` if the store lacks it)."""
        if key in self._servers:
            self._servers.move_to_end(key)
            server, lease = self._servers[key]
            lease.touch()
            return server
        failed = self._failed_builds.get(key)
        if failed is not None and time.monotonic() - failed[0] < FAILURE_KEPT:
            raise failed[1]
        try:
            lease = self.store.lease(key, build, deadline)
        except BuildFailed as error:
            if not error.pips_answer:
                raise
            if len(self._failed_builds) >= FAILURES_KEPT:
                self._failed_builds.clear()
            self._failed_builds[key] = (time.monotonic(), error)
            raise
        self._failed_builds.pop(key, None)
        while len(self._servers) >= self.options.servers:
            self._stop(next(iter(self._servers)))
        walls = {**self.runner.isolation.walls(self.runner.limits, self.runner.job_user),
                 "environment": {"prefix": lease.path, "site": environment_build.site_packages(lease.path)}}
        server = ForkServer(os.path.join(lease.path, "bin", "python"), walls, interpreter_flags=("-S",))
        self._servers[key] = (server, lease)
        self.servers_started += 1
        try:
            self.store.make_room()
        except OSError as error:
            log.warning("cannot make room in the environments' store: %s", error)
        return server

    def _stop(self, key):
        server, lease = self._servers.pop(key)
        server.close()
        lease.release()

    def forget(self, key):
        """Stop the fork server of ``key``: it failed, and starts afresh for the next job."""
        if key in self._servers:
            self._stop(key)

    def close(self):
        while self._servers:
            self._stop(next(iter(self._servers)))
        self.wheel_bundles.close()


class EnvironmentRun:
    """A JobRun's ways for a job with requirements; ``make_run(python, fork_server)`` makes the JobRun
    of the job itself, ``make_build(settings, limits, isolation)`` that of a build."""

    def __init__(self, settings, environments, make_run, make_build):
        self.settings = settings
        self.environments = environments
        self.limits = environments.runner.limits
        self._make_run = make_run
        self._make_build = make_build
        self._run = None
        self._build = None
        self._started = gevent.event.Event()  # set once the job runs, or will never run
        self._files_handed = False
        self._key = None
        self._killed = False
        self.status = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._killed = True
        self._started.set()
        try:
            if self._run is not None:
                self._run.__exit__(*exc_info)
        finally:
            if not self._files_handed and self.settings.files is not None:
                os.close(self.settings.files)

    def output(self, quiet_every=None):
        started = time.monotonic()
        deadline = started + (self.limits.timeout or self.environments.options.build_timeout)
        getting = gevent.spawn(self._fork_server, deadline)
        try:
            while not getting.ready():
                getting.join(quiet_every)
                if not getting.ready() and quiet_every:
                    yield None, b""
        finally:
            getting.kill()
        python, server, failure = getting.get() if getting.successful() else (None, None, getting.exception)
        if failure is not None or self._killed:
            yield from self._not_run(failure, deadline)
            return
        try:
            if self.settings.wheels and self.settings.files is not None:
                self.environments.wheel_bundles.leave_out_wheels(self.settings.files)
        except OSError as error:
            yield from self._not_run(error, deadline)
            return
        run = self._make_run(python, server)
        self._files_handed = True  # the run closes them, entered or not
        try:
            run.__enter__()
            self._run = run
        except ForkServerError as error:  # not the worker's own fork server: its other jobs run on
            self.environments.forget(self._key)
            yield from self._not_run(error, deadline)
            return
        finally:
            self._started.set()
        yield from self._run.output(quiet_every)
        self.status = self._run.status

    def _fork_server(self, deadline):
        """``(python, fork server, None)`` of the job's environment, or ``(None, None, why not)``: returned,
        not raised, which gevent would print as a greenlet's failure."""
        try:
            self._key = key = self.environments.key_of(self.settings)
            server = self.environments.fork_server(key, deadline, self._build_into)
        except Exception as error:
            return None, None, error
        return server.python, server, None

    def _build_into(self, folder):
        """Build the job's environment in ``folder`` (see environment_build.py)."""
        if self._killed:
            raise BuildFailed("the job was stopped before its environment was built")
        options = self.environments.options
        runner = self.environments.runner
        self.environments.builds_started += 1
        environment_build.make_skeleton(runner.python, folder)
        files = os.dup(self.settings.files) if self.settings.files is not None else None
        if files is not None:
            os.lseek(files, 0, os.SEEK_SET)
        limits = environment_build.build_limits(runner.limits, options.build_timeout)
        isolation = environment_build.build_isolation(runner.isolation, options.build_network)
        build = self._make_build(self.settings.requirements, options.build_network, self.settings.wheels, files,
                                 limits, isolation)
        with build as self._build:
            try:
                environment_build.run_build(build, folder)
            finally:
                self._build = None
                if self.settings.files is not None:
                    os.lseek(self.settings.files, 0, os.SEEK_SET)

    def _not_run(self, why, deadline):
        self._started.set()
        if self._killed:
            self.status = Status(b"error", b"lost", b"the job was stopped while its environment was built")
            return
        if isinstance(why, WaitedTooLong) and time.monotonic() >= deadline and self.limits.timeout:
            self.status = Status(b"limit", b"time", f"the job ran past its time limit of {self.limits.timeout:g} s "
                                 "waiting for its environment's build".encode())
            return
        output = getattr(why, "output", b"")
        if output:
            yield STDERR, output if output.endswith(b"\n") else output + b"\n"
        if not isinstance(why, (BuildFailed, WaitedTooLong, StoreUnusable, OSError, ForkServerError)):
            log.error("cannot build a job's environment", exc_info=why)  # ours: the traceback says where
            why = f"{type(why).__name__}: {why}"
        doing = "start" if isinstance(why, ForkServerError) else "build"
        yield STDERR, f"sieci-worker: cannot {doing} the job's environment: {why}\n".encode()
        log.warning("cannot %s a job's environment: %s", doing, why)
        self.status = Status(b"exit", BUILD_FAILED_EXIT)

    def kill(self):
        self._killed = True
        for run in (self._run, self._build):
            if run is not None:
                run.kill()

    def write_stdin(self, data):
        self._started.wait()
        return self._run.write_stdin(data) if self._run is not None else False

    def end_stdin(self):
        self._started.wait()
        if self._run is not None:
            self._run.end_stdin()

    def resize(self, columns, rows):
        if self._run is not None:
            self._run.resize(columns, rows)

    def open_folder(self):
        if self._run is None:
            raise OSError("the job did not run: its environment could not be built")
        return self._run.open_folder()

    def more_output_ready(self):
        return self._run is not None and self._run.more_output_ready()
