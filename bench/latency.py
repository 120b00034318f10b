#!/usr/bin/env python3
"""Latency: one `sieci-client MASTER hello.py` process against `python hello.py`.

Target: the whole client process takes at most 1.5x the wall time of
`python hello.py`, run locally by the same venv's interpreter: what a user
would run instead. The client runs against a warm local cluster (1 master,
2 workers, as processes on 127.0.0.1).

The venv is the README's: `python3 -m venv V && V/bin/pip install .`, made
here in a temporary folder (`--no-deps`: the client imports none of them,
and they add no `.pth` file), or the one given with `--venv`. Its installed
`sieci-client` script and its `python` are measured; an editable install
(`pip install -e`) is warned about, as its finder loads ~36 more modules at
every start of that interpreter, `python hello.py`'s too.

Every command is started the same way, by `posix_spawn` from this process,
with stdin from /dev/null, stdout to a file (checked after every run), and
no PYTHON* variables (PYTHONUNBUFFERED would split every print in two writes);
its wall time runs from the spawn to `wait4`'s return, and its CPU time
(user + system) is `wait4`'s account of it. After --warmup runs of
everything, --rounds rounds; each round runs every command once, in a
shuffled order, so that the baseline and sieci's figures see the same
noise. Printed: medians and p90s, the client's wall and CPU ratios against
`python hello.py` from the same rounds, the modules each imports, and a
breakdown of where the client's time goes.

    .venv/bin/python bench/latency.py                      # ~1 min, a plain venv made for it
    .venv/bin/python bench/latency.py --venv /path/to/venv  # a venv of yours that holds sieci
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import threading
import time

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, CHECKOUT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    HELLO, PeerCounters, describe_baseline_interpreter, job_like_environment, median, p90, print_banner,
    simulated_worker, write_job,
)
from processes import Daemon, LocalCluster, free_port, wait_for_port  # noqa: E402

from sieci.client import client  # noqa: E402

EXPECTED = b"hello, world\n"
TARGET = 1.5
CLIENT_MODULE = "sieci.client.command"  # what the sieci-client script imports
# The client leaves with os._exit, skipping Python's finalization; these rows end so too.
QUICK_EXIT = "; import os; os._exit(0)"

START = "python -c pass, then os._exit"
IMPORT = f"python -c 'import {CLIENT_MODULE}', then os._exit"
BASELINE = "python hello.py"
CLIENT = "sieci-client MASTER hello.py"
INSTANT = "sieci-client INSTANT-MASTER hello.py"
STDIN = "sieci-client MASTER hello.py < FILE (stdin streams)"
FRESH = "sieci-client --fresh MASTER hello.py"
IN_PROCESS = "client.run in this process, cluster"
IN_PROCESS_INSTANT = "client.run in this process, instant worker"


def plain_venv(folder):
    """The README's venv in ``folder``, holding this checkout as ``pip install .`` does; its python."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", folder], check=True)
    python = os.path.join(folder, "bin", "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", CHECKOUT], check=True,
                   stdout=subprocess.DEVNULL)
    return python


class Spawned:
    """A command run the same way as every other: posix_spawn, then wait4 (wall and CPU time)."""

    def __init__(self, argv, env, stdin=os.devnull, expected=EXPECTED):
        self.argv = argv
        self.env = env
        self.stdin = stdin
        self.expected = expected

    def run(self, output_path):
        actions = [(os.POSIX_SPAWN_OPEN, 0, self.stdin, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                   (os.POSIX_SPAWN_OPEN, 2, output_path + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)]
        started = time.perf_counter()
        pid = os.posix_spawn(self.argv[0], self.argv, self.env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - started
        with open(output_path, "rb") as output:
            stdout = output.read()
        if os.waitstatus_to_exitcode(status) != 0 or (self.expected is not None and stdout != self.expected):
            with open(output_path + ".err", "rb") as errors:
                stderr = errors.read()
            raise RuntimeError(f"{self.argv!r} gave status {status}, stdout {stdout[:200]!r}, stderr {stderr[-300:]!r}")
        return wall, usage.ru_utime + usage.ru_stime


class InProcess:
    """client.run in this process: the job's round trip without a client process (wall time only)."""

    def __init__(self, address):
        self.address = address

    def run(self, output_path):
        started = time.perf_counter()
        result = client.Client(self.address, timeout=30).run(HELLO, "hello.py")
        wall = time.perf_counter() - started
        if result.exit_status != 0 or result.stdout != EXPECTED:
            raise RuntimeError(f"client.run({self.address}) gave status {result.exit_status}, stdout {result.stdout!r}")
        return wall, None


def modules_imported(argv, env, stdin=os.devnull):
    """How many modules ``argv`` (a python and its arguments) imports after the interpreter's own
    first ones, by -X importtime (its lines, one a module)."""
    with open(stdin, "rb") as source:
        done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], stdin=source, capture_output=True,
                              env=env, timeout=30)
    return sum(line.startswith(b"import time:") and b"cumulative" not in line
               for line in done.stderr.splitlines())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--venv", help="a venv that holds sieci (pip install .): measure its python and "
                                       "sieci-client rather than a plain venv made for the run")
    args = parser.parse_args(argv)
    print_banner("latency: a whole sieci-client process vs `python hello.py` locally")
    rng = random.Random(args.seed)
    workdir, hello = write_job("hello.py", HELLO)
    stdin_file = os.path.join(workdir, "stdin.txt")
    with open(stdin_file, "wb") as file:
        file.write(b"a line of stdin\n")
    try:
        if args.venv:
            python = os.path.join(args.venv, "bin", "python")
        else:
            print("making the README's plain venv (python3 -m venv, pip install --no-deps .) ...", flush=True)
            python = plain_venv(os.path.join(workdir, "venv"))
        print(describe_baseline_interpreter(python))
        script = os.path.join(os.path.dirname(python), "sieci-client")
        if not os.access(script, os.X_OK):
            raise SystemExit(f"no sieci-client script in {os.path.dirname(python)}: pip install sieci there")
        run(args, rng, workdir, hello, stdin_file, python, script)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run(args, rng, workdir, hello, stdin_file, python, script):
    env = job_like_environment()
    # A master whose only worker is simulated and answers at once: the client's cost without the job's.
    instant_workers_port, instant_clients_port = free_port(), free_port()
    instant_master = Daemon("master", [f"127.0.0.1:{instant_workers_port}", f"127.0.0.1:{instant_clients_port}"])
    with LocalCluster(masters=1, workers=2) as cluster:
        instant_master.start()
        try:
            wait_for_port(instant_clients_port)
            threading.Thread(target=simulated_worker, args=(instant_workers_port, PeerCounters()),
                             daemon=True).start()
            address = cluster.client_addresses
            instant = f"127.0.0.1:{instant_clients_port}"
            measures = {
                START: Spawned([python, "-c", "pass" + QUICK_EXIT], env, expected=b""),
                IMPORT: Spawned([python, "-c", "import " + CLIENT_MODULE + QUICK_EXIT], env, expected=b""),
                BASELINE: Spawned([python, hello], env),
                CLIENT: Spawned([script, address, hello], env),
                INSTANT: Spawned([script, instant, hello], env),
                STDIN: Spawned([script, address, hello], env, stdin=stdin_file),
                FRESH: Spawned([script, "--fresh", address, hello], env),
                IN_PROCESS: InProcess(address),
                IN_PROCESS_INSTANT: InProcess(instant),
            }
            output_path = os.path.join(workdir, "output")
            measures[IN_PROCESS].run(output_path)  # the workers have linked
            measures[IN_PROCESS_INSTANT].run(output_path)  # the simulated worker has linked
            for _ in range(args.warmup):
                for measure in measures.values():
                    measure.run(output_path)
            walls = {name: [] for name in measures}
            cpus = {name: [] for name in measures}
            started = time.monotonic()
            for _ in range(args.rounds):
                order = list(measures)
                rng.shuffle(order)
                for name in order:
                    wall, cpu = measures[name].run(output_path)
                    walls[name].append(wall)
                    if cpu is not None:
                        cpus[name].append(cpu)
            elapsed = time.monotonic() - started
            report(walls, cpus, args, elapsed)
            print()
            print("modules imported (by -X importtime, after the interpreter's first ones):")
            for name, argv, stdin in ((BASELINE, [python, hello], os.devnull),
                                      (CLIENT, [python, script, address, hello], os.devnull),
                                      (STDIN, [python, script, address, hello], stdin_file)):
                print(f"  {name:58s} {modules_imported(argv, env, stdin):4d}")
        finally:
            instant_master.stop()


def report(walls, cpus, args, elapsed):
    print(f"{args.rounds} rounds after {args.warmup} warm-up runs, every command once per round in shuffled "
          f"order ({elapsed:.1f} s); times in ms (CPU: user + system of the process)")
    print(f"  {'':58s} {'wall':>7s} {'p90':>7s} {'min':>7s} {'CPU':>7s} {'p90':>7s}")
    for name, values in walls.items():
        cpu = f"{median(cpus[name]) * 1000:7.2f} {p90(cpus[name]) * 1000:7.2f}" if cpus[name] else ""
        print(f"  {name:58s} {median(values) * 1000:7.2f} {p90(values) * 1000:7.2f} {min(values) * 1000:7.2f} "
              f"{cpu}")
    wall = {name: median(values) * 1000 for name, values in walls.items()}
    cpu = {name: median(values) * 1000 for name, values in cpus.items() if values}
    print()
    for name in (CLIENT, STDIN, FRESH, INSTANT):
        ratio = wall[name] / wall[BASELINE]
        target = f" (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})" if name == CLIENT else ""
        print(f"ratio {name} / {BASELINE}: wall {wall[name]:.2f} / {wall[BASELINE]:.2f} ms = {ratio:.2f}{target}; "
              f"CPU {cpu[name]:.2f} / {cpu[BASELINE]:.2f} ms = {cpu[name] / cpu[BASELINE]:.2f}")
    print()
    print("breakdown (differences of medians, ms):                                                wall     CPU")
    rows = [
        ("the interpreter's start (python -c pass, then os._exit)", START, None),
        ("python hello.py past that start: its run and Python's finalization", BASELINE, START),
        ("the client's imports (python -c 'import ...', then os._exit - the start)", IMPORT, START),
        ("the client's run past its imports, the job answered at once (instant - import)", INSTANT, IMPORT),
        ("the job on a real worker (cluster - instant)", CLIENT, INSTANT),
    ]
    for label, name, minus in rows:
        print(f"  {label:84s} {wall[name] - (wall[minus] if minus else 0):6.2f} "
              f"{cpu[name] - (cpu[minus] if minus else 0):7.2f}")
    print(f"  {'the job round trip without a client process (' + IN_PROCESS + ')':84s} {wall[IN_PROCESS]:6.2f}")
    print(f"  {'the master round trip alone (' + IN_PROCESS_INSTANT + ')':84s} {wall[IN_PROCESS_INSTANT]:6.2f}")
    print(f"  budget for the whole client at the target: {TARGET * wall[BASELINE]:.2f} ms of wall time")


if __name__ == "__main__":
    sys.exit(main())
