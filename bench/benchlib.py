"""Helpers shared by the performance scripts (latency, throughput, workers, bigoutput).

Nothing here starts a daemon (see processes.py for that): statistics, figures
read from /proc, a description of the machine, and the light simulated worker
the scripts use in place of a real one. The simulated worker is written
against the plain ``socket`` API, so it runs in a thread, or in a greenlet
once gevent has patched the standard library.
"""

import ast
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time


# --- statistics ---------------------------------------------------------------------


HELLO = b'print("hello, world")\n'


def write_job(name, code):
    """A fresh temporary folder holding one job file; returns the folder and the file's path.

    The caller removes the folder (shutil.rmtree) when it is done.
    """
    import tempfile

    workdir = tempfile.mkdtemp(prefix="sieci-bench-")
    path = os.path.join(workdir, name)
    with open(path, "wb") as file:
        file.write(code)
    return workdir, path


def median(values):
    return statistics.median(values)


def percentile(values, fraction):
    """Nearest-rank percentile: the smallest value with ``fraction`` of them at or below it."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil
    return ordered[int(rank) - 1]


def p90(values):
    return percentile(values, 0.9)


# --- the baseline: what a user would run instead ------------------------------------


def job_like_environment():
    """This environment without its PYTHON* variables, which sieci's jobs do not get either."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}


def local_runs(python, program, in_flight, runs):
    """``python PROGRAM`` run ``runs`` times, ``in_flight`` at once, by ``xargs -P`` (a small C
    spawner: a Python one would add its own costs to every run); (seconds taken, stdout of all).
    Without PYTHON* variables (PYTHONUNBUFFERED, for one, would split every print in two writes)."""
    numbers = "".join(f"{number}\n" for number in range(runs)).encode()
    started = time.monotonic()
    done = subprocess.run(["xargs", "-P", str(in_flight), "-n", "1", python, program], input=numbers,
                          env=job_like_environment(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=600)
    return time.monotonic() - started, done.stdout if done.returncode == 0 else None


def local_rate(python, program, expected, in_flight, jobs, seconds):
    """Runs per second of ``python PROGRAM`` started by ``xargs -P in_flight``: as many runs as fit
    in about ``seconds`` (sized by a short first batch), at most ``jobs``; and whether every run
    printed ``expected``."""
    calibration = 4 * in_flight
    elapsed, output = local_runs(python, program, in_flight, calibration)
    runs = max(calibration, min(jobs, int(calibration / elapsed * seconds)))
    elapsed, output = local_runs(python, program, in_flight, runs)
    return runs / elapsed, output == expected * runs


def interpreter_start(python):
    """The modules ``python`` has imported when a program's first line runs, and whether an
    editable install's finder is among them (it makes every start heavier than a plain venv's)."""
    modules = subprocess.run([python, "-c", "import sys; print(*sys.modules)"], capture_output=True, text=True,
                             check=True).stdout.split()
    return len(modules), any("__editable__" in name for name in modules)


def describe_baseline_interpreter(python):
    """A line about the baseline's interpreter; a warning when it is an editable venv's."""
    count, editable = interpreter_start(python)
    line = f"baseline interpreter: {python} ({count} modules at start)"
    if editable:
        line += ("\nWARNING: an editable install's finder loads at every start of this interpreter: a "
                 "plain `python hello.py` costs more here than in the README's plain venv (`pip install .`), "
                 "so every ratio against it is flattered; run the bench with that venv's python")
    return line


# --- the machine and this interpreter -------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine():
    return (f"machine: {os.cpu_count()} CPU(s), {cpu_model()}; Python {platform.python_version()}; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}")


def print_banner(title):
    print(title)
    in_venv = sys.prefix != sys.base_prefix
    print(f"interpreter: {sys.executable}" + ("" if in_venv else "  (NOT a venv: run with .venv/bin/python)"))
    print(describe_machine())
    print(f"code: {describe_checkout()}")
    print(f"load average at the start: {load_average()} (other work on the machine skews every figure)")
    sys.stdout.flush()


def load_average():
    try:
        with open("/proc/loadavg") as loadavg:
            return " ".join(loadavg.read().split()[:3])
    except OSError:
        return "unknown"


def describe_checkout():
    """The checkout's commit, and whether it has changes not committed yet."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        done = subprocess.run(["git", "-C", repo, "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return done.stdout.strip() or "unknown"


def venv_script(name):
    """The console script ``name`` beside this interpreter (``.venv/bin/NAME``), or None."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.access(path, os.X_OK) else None


def raise_fd_limit():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- a process's figures from /proc -------------------------------------------------------


def rss_mb(pid):
    return _status_mb(pid, "VmRSS")


def peak_mb(pid):
    """The process's peak resident memory so far (VmHWM)."""
    return _status_mb(pid, "VmHWM")


def _status_mb(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, children=False):
    """User + system CPU seconds the process has used so far (and its waited-for children's)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def descendants(pid):
    """The live descendants of ``pid`` (children, their children...)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as children:
                    kids = [int(kid) for kid in children.read().split()]
                found.extend(kids)
                todo.extend(kids)
        except OSError:
            pass
    return found


def tree_cpu_seconds(pid):
    """CPU seconds of ``pid`` and everything under it: live descendants, and the ones already reaped."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        try:
            total += cpu_seconds(member, children=True)
        except (OSError, IndexError):
            pass  # gone meanwhile: its parent's reaped-children figure has it (or will)
    return total


def machine_busy_seconds():
    """CPU seconds all CPUs together have spent not idle (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / _TICKS


# --- the simulated worker -----------------------------------------------------------------

_PRINT = re.compile(rb"^\s*print\((.*)\)\s*$", re.S)


def answer_for(code):
    """What the job ``print(<literal>)`` would print (without the newline)."""
    match = _PRINT.match(code)
    if match:
        try:
            value = ast.literal_eval(match.group(1).decode())
            if isinstance(value, tuple):
                return " ".join(str(part) for part in value).encode()
            return str(value).encode()
        except (ValueError, SyntaxError, UnicodeDecodeError):
            pass
    return b"hello, world"


class PeerCounters:
    def __init__(self):
        self.available = 0
        self.rollbacks = 0
        self.jobs = 0
        self.linked = 0


def simulated_worker(port, counters=None, host="127.0.0.1"):
    """A light worker: READY to every AVAILABLE, an instant answer to every job.

    Answers the code with ``RECEIVED`` and at once with extended results
    ``ENDSEQ t v=2 / o <answer> / x exit 0 / t`` (classic results if the
    upload did not ask for ``v=2``); ``ROLLBACK`` gets nothing. Returns when
    the master closes the link (or the socket is shut down from elsewhere).
    """
    counters = counters or PeerCounters()
    sock = socket.create_connection((host, port), timeout=30)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    counters.linked += 1
    buffer = b""
    terminator = None
    extended = False
    code = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
            while True:
                end = buffer.find(b"\n")
                if end < 0:
                    break
                line, buffer = buffer[:end + 1], buffer[end + 1:]
                if terminator is not None:
                    if line.strip() == terminator:
                        answer = answer_for(b"".join(code))
                        token = b"t"
                        if extended:
                            results = b"ENDSEQ %s v=2\no %s\nx exit 0\n%s\n" % (token, answer, token)
                        else:
                            results = b"ENDSEQ %s\n%s\n%s\n" % (token, answer, token)
                        sock.sendall(b"RECEIVED\n" + results)
                        counters.jobs += 1
                        terminator, code = None, []
                    else:
                        code.append(line)
                    continue
                words = line.split()
                word = words[0] if words else b""
                if word == b"AVAILABLE":
                    counters.available += 1
                    sock.sendall(b"READY\n")
                elif word in (b"ROLLBACK", b"ERROR"):
                    counters.rollbacks += 1
                elif word == b"ENDSEQ":
                    terminator, extended = words[1], b"v=2" in words[2:]
    except OSError:
        return
    finally:
        counters.linked -= 1
        sock.close()


# --- load ---------------------------------------------------------------------------


def hello_jobs(address, in_flight, jobs, seconds, show_failures=5, fresh=False, retries=0):
    """Up to ``jobs`` hello-world jobs (or as many as fit in ``seconds``), ``in_flight`` at once
    (``fresh``: each in an interpreter of its own; ``retries``: the client's --retries, which has the
    master keep each job's results).

    Runs in greenlets of this (gevent-patched) process; every answer is
    checked. Returns the outcomes counted and the seconds it took.
    """
    import gevent

    from sieci.client import client

    runner_client = client.Client(address, timeout=60, fresh=fresh, retries=retries)
    outcomes = {"right": 0, "wrong": 0, "failed": 0}
    numbers = iter(range(jobs))
    deadline = time.monotonic() + seconds

    def runner():
        for number in numbers:
            if time.monotonic() >= deadline:
                return
            try:
                result = runner_client.run(b'print("hello, world %d")\n' % number, "hello.py")
            except client.ClientError as error:
                outcomes["failed"] += 1
                if outcomes["failed"] <= show_failures:
                    print(f"  job {number} failed: {error}", file=sys.stderr)
                continue
            right = result.exit_status == 0 and result.stdout == b"hello, world %d\n" % number
            outcomes["right" if right else "wrong"] += 1

    started = time.monotonic()
    greenlets = [gevent.spawn(runner) for _ in range(in_flight)]
    gevent.joinall(greenlets, timeout=seconds + 70)
    elapsed = time.monotonic() - started
    gevent.killall(greenlets, timeout=5)
    return outcomes, elapsed
