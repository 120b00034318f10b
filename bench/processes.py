"""Starting sieci's daemons as real processes on loopback, for the bench scripts.

Everything here uses this interpreter (``sys.executable``: run the scripts
with the venv's Python) and the checkout's ``bin/`` wrappers.
"""

import os
import signal
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "bin")
sys.path.insert(0, REPO)
from sieci.worker.isolation import unavailable_walls  # noqa: E402


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, timeout=20.0):
    """Return once something accepts on 127.0.0.1:port; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s") from None
            time.sleep(0.02)


class Daemon:
    """A master or worker process that can be killed and started again."""

    def __init__(self, role, args, log_level="warning", prefix=()):
        """``prefix``: a command that runs the daemon elsewhere (e.g. nsenter into a network namespace)."""
        # Every load generator here is one address, with up to thousands of clients at once.
        per_address = ["--max-connections-per-address", "1000000"] if role == "master" else []
        self.command = [*prefix, sys.executable, os.path.join(BIN, role), "--log-level", log_level, *per_address,
                        *args]
        self.process = None

    def start(self):
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return self

    def kill(self):
        """SIGKILL: the process vanishes without a word."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL if it has not gone within ``timeout``."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class LocalCluster:
    """``masters`` masters and ``workers`` workers, each worker linked to every master."""

    def __init__(self, masters=1, workers=2, worker_options=(), master_options=()):
        self.worker_ports = [free_port() for _ in range(masters)]
        self.client_ports = [free_port() for _ in range(masters)]
        self.masters = [Daemon("master", [f"127.0.0.1:{w}", f"127.0.0.1:{c}", *master_options])
                        for w, c in zip(self.worker_ports, self.client_ports)]
        links = [f"127.0.0.1:{port}" for port in self.worker_ports]
        self.workers = [Daemon("worker", [*links, "--reconnect-max", "0.5", *unavailable_walls(), *worker_options])
                        for _ in range(workers)]

    @property
    def client_addresses(self):
        return ",".join(f"127.0.0.1:{port}" for port in self.client_ports)

    def __enter__(self):
        try:
            for master in self.masters:
                master.start()
            for port in self.client_ports:
                wait_for_port(port)
            for worker in self.workers:
                worker.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        for daemon in self.workers + self.masters:
            daemon.stop()


def job_interpreter():
    """None, or for a root bench whose Python nobody cannot read: a python3 on the jobs' PATH."""
    import shutil

    from sieci.worker.fork_server import JOB_PATH
    from sieci.worker.isolation import Isolation

    if os.geteuid() != 0 or not Isolation(namespaces=False, cgroups=False).unreadable_for((65534, 65534)):
        return None
    return shutil.which("python3", path=JOB_PATH)


def client_command(*args):
    return [sys.executable, os.path.join(BIN, "client"), *args]
