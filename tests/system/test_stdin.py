"""The job's stdin and terminal (issue 15) through the sieci-client command, as processes."""

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from sieci import defaults

from tests.helpers import REPO, WAIT, client_address

CLIENT = os.path.join(REPO, "bin", "client")
ENVIRON = {key: value for key, value in os.environ.items() if not key.startswith("SIECI_")}
FILTER = "import sys\nfor line in sys.stdin.buffer:\n    sys.stdout.buffer.write(line.upper())\n"


@pytest.fixture
def master(master_with_a_worker):
    return master_with_a_worker


def job_file(tmp_path, code, name="job.py"):
    path = tmp_path / name
    path.write_text(code)
    return str(path)


def client(address, *command, **options):
    return subprocess.run([sys.executable, CLIENT, address, *command], capture_output=True, timeout=WAIT,
                          env=ENVIRON, **options)


def test_a_filter_in_a_pipeline(master, tmp_path):
    data = b"one\n" + "zażółć".encode() + b" \xff\x00\r\nlast line without a newline"
    done = client(client_address(master), job_file(tmp_path, FILTER), input=data)
    assert (done.returncode, done.stdout, done.stderr) == (0, data.upper(), b"")


def test_an_endless_producer_ends_with_the_job(master, tmp_path):
    """``yes | sieci-client M head.py``: the client ends when the job does, as locally."""
    head = job_file(tmp_path, "import sys\nfor _ in range(3):\n    sys.stdout.write(sys.stdin.readline())\n")
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        done = client(client_address(master), head, stdin=yes.stdout)
    finally:
        yes.kill()
        yes.wait()
        yes.stdout.close()
    assert (done.returncode, done.stdout) == (0, b"y\ny\ny\n")


def test_a_job_that_does_not_read_its_stdin(master, tmp_path):
    done = client(client_address(master), job_file(tmp_path, "print('done')\n"), input=b"x" * (4 << 20))
    assert (done.returncode, done.stdout) == (0, b"done\n")


def test_a_terminal_stdin_without_t_is_empty(master, tmp_path):
    job = job_file(tmp_path, "import sys\nprint(repr(sys.stdin.read()))\n")
    controller, terminal = pty.openpty()
    try:
        done = client(client_address(master), job, stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert (done.returncode, done.stdout) == (0, b"''\n")


def test_stdin_through_a_classic_master(cluster, classic, tmp_path):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    address = client_address(master)
    job = job_file(tmp_path, FILTER)
    small = b"small\n" * 100
    assert client(address, job, input=small).stdout == small.upper()
    done = client(address, job, input=b"x" * (defaults.MAX_INLINE_STDIN + 1))
    assert done.returncode == defaults.EXIT_USAGE
    assert b"stdin is longer than the 64 KiB that can go with the code through a classic master" in done.stderr


def test_t_without_a_terminal_is_refused(master, tmp_path):
    done = client("-t", client_address(master), job_file(tmp_path, "print(1)\n"), input=b"")
    assert done.returncode == defaults.EXIT_USAGE
    assert done.stderr.endswith(b"error: -t needs a terminal, and stdin is not one\n")


# --- -t: the client driven through a pseudo-terminal, as a person would --------------------------


class Terminal:
    """The client running with a pseudo-terminal of ``size`` as its stdin, stdout and stderr."""

    def __init__(self, address, job, size=(91, 33), *options):
        self.controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
        self.mode = termios.tcgetattr(terminal)
        self.terminal = terminal
        self.process = subprocess.Popen([sys.executable, CLIENT, *options, "-t", address, job], stdin=terminal,
                                        stdout=terminal, stderr=terminal, env=ENVIRON, start_new_session=True)
        self.seen = b""

    def read_until(self, text):
        deadline = time.monotonic() + WAIT
        while text not in self.seen:
            assert select.select([self.controller], [], [], max(0, deadline - time.monotonic()))[0], \
                f"{text!r} did not come within {WAIT} s: {self.seen!r}"
            self.seen += os.read(self.controller, 4096)
        return self.seen

    def type(self, keys):
        os.write(self.controller, keys)

    def finish(self):
        """The client's exit status, once it has ended; the terminal must have its mode back."""
        status = self.process.wait(WAIT)
        assert termios.tcgetattr(self.terminal) == self.mode
        return status

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.controller)
        os.close(self.terminal)


@pytest.fixture
def terminal(master, tmp_path):
    opened = []

    def open_terminal(code, *options, size=(91, 33)):
        opened.append(Terminal(client_address(master), job_file(tmp_path, code), size, *options))
        return opened[-1]

    yield open_terminal
    for each in opened:
        each.close()


def test_t_gives_the_job_a_terminal_of_the_clients_size(terminal):
    session = terminal("import os, sys\nprint([s.isatty() for s in (sys.stdin, sys.stdout, sys.stderr)], "
                       "tuple(os.get_terminal_size()), os.getsid(0) == os.getpid())\n", size=(91, 33))
    session.read_until(b"\n")
    assert session.finish() == 0
    assert session.seen == b"[True, True, True] (91, 33) True\r\n"


def test_t_a_line_typed_reaches_the_job(terminal):
    session = terminal("name = input('name? ')\nprint('hello', name[::-1])\n")
    session.read_until(b"name? ")
    session.type(b"abc\r")
    session.read_until(b"hello cba")
    assert session.finish() == 0
    assert session.seen.replace(b"\r\n", b"\n") == b"name? abc\nhello cba\n"


def test_t_ctrl_c_interrupts_the_job(terminal):
    session = terminal("import time\ntry:\n    print('ready', flush=True)\n    time.sleep(60)\n"
                       "except KeyboardInterrupt:\n    print('interrupted')\n    raise\n")
    session.read_until(b"ready")
    session.type(b"\x03")
    session.read_until(b"KeyboardInterrupt")
    assert session.finish() == 128 + signal.SIGINT
    assert b"interrupted" in session.seen


def test_t_a_resize_reaches_the_job(terminal):
    # SIGWINCH is blocked before 'ready': one that comes at any time after waits for sigwait to take it.
    session = terminal("import os, signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGWINCH})\n"
                       "print('ready', flush=True)\nwhile True:\n    signal.sigwait({signal.SIGWINCH})\n"
                       "    if tuple(os.get_terminal_size()) == (120, 50):\n        break\n"
                       "print(os.get_terminal_size())\n", size=(80, 24))
    session.read_until(b"ready")
    fcntl.ioctl(session.terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    session.process.send_signal(signal.SIGWINCH)
    session.read_until(b"columns=120, lines=50")
    assert session.finish() == 0


# --- hundreds of megabytes through a filter, in constant memory ---------------------------------------

STREAMED_MIB = 256
PRODUCER = ("import sys\nblock = (b'x' * 65535 + b'\\n') * 16\n"
            f"for _ in range({STREAMED_MIB}):\n    sys.stdout.buffer.write(block)\n")
COPY = "import sys\nread, write = sys.stdin.buffer.read1, sys.stdout.buffer.write\nwhile data := read(1 << 16):\n" \
       "    write(data)\n"
# Runs a command; once it has ended, writes its peak RSS (ru_maxrss, KiB) to the fd its first argument names.
PEAK = ("import os, sys\nreport = int(sys.argv[1])\npid = os.fork()\nif pid == 0:\n    os.close(report)\n"
        "    os.execv(sys.argv[2], sys.argv[2:])\n_, status, usage = os.wait4(pid, 0)\n"
        "os.write(report, str(usage.ru_maxrss).encode())\nsys.exit(os.waitstatus_to_exitcode(status))\n")


def peak_mib(pid):
    """A running process's peak resident memory so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def test_hundreds_of_megabytes_through_a_filter_in_constant_memory(procs, tmp_path):
    """The issue's 2 GB run is bench/stdin.py; here a few hundred MB, with every process's peak RSS
    bounded well below what holding any sizeable part of the stream would take."""
    master, worker = procs.master(), procs.worker()
    address = f"127.0.0.1:{procs.clients_port}"
    copy = procs.code_file(COPY.encode())
    assert procs.run_client(address, copy, stdin=b"warm\n").stdout == b"warm\n", procs.logs()
    before = {"master": peak_mib(master.pid), "worker": peak_mib(worker.pid)}
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER], stdout=subprocess.PIPE)
    report_read, report_write = os.pipe()
    client = subprocess.Popen([sys.executable, "-c", PEAK, str(report_write), sys.executable, CLIENT, address, copy],
                              stdin=producer.stdout, stdout=subprocess.PIPE, pass_fds=(report_write,), env=ENVIRON)
    producer.stdout.close()
    os.close(report_write)
    try:
        count, tail = 0, b""
        while data := client.stdout.read(1 << 20):
            count, tail = count + len(data), (tail + data)[-65536:]
        assert client.wait(WAIT) == 0, procs.logs()
        client_peak = int(os.read(report_read, 64)) / 1024
    finally:
        for process in (producer, client):
            if process.poll() is None:
                process.kill()
            process.wait()
        os.close(report_read)
    assert (count, tail) == (STREAMED_MIB << 20, b"x" * 65535 + b"\n")
    growth = {"master": peak_mib(master.pid) - before["master"], "worker": peak_mib(worker.pid) - before["worker"]}
    # Measured: the client's peak 13 MiB, the master's and worker's growth under 5 MiB (the worker's
    # was 17 MiB, and growing with the stream, while its reads of the job's output left holes in its heap).
    assert client_peak < 24 and max(growth.values()) < 12, (client_peak, growth)


def test_t_through_a_classic_master_says_it_needs_a_sieci_master(cluster, classic, tmp_path):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    session = Terminal(client_address(master), job_file(tmp_path, "print(1)\n"))
    try:
        session.read_until(b"-t needs a sieci master")
        assert session.finish() == defaults.EXIT_USAGE
    finally:
        session.close()


def test_t_an_unflushed_print_shows_at_once(terminal):
    session = terminal("import sys\nprint('first')\nsys.stdin.buffer.read(1)\nprint('second')\n")
    session.read_until(b"first")  # before the job goes on: its stdout is line-buffered, as on a terminal
    session.type(b"x\r")  # the terminal gives a line at a time, as a local one would
    session.read_until(b"second")
    assert session.finish() == 0
