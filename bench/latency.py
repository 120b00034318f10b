#!/usr/bin/env python3
"""Latency: one `sieci-client MASTER hello.py` process against `python hello.py`.

Target: the whole client process, against a running local cluster (1 master,
2 workers, as processes on 127.0.0.1), takes at most 1.5x as long as running
hello.py locally with the same interpreter.

Starts the cluster, warms up, then runs --rounds rounds; each round runs every
measured command once, in a shuffled order, so that the baseline and sieci's
figures see the same noise. Prints median and p90 of each, the ratio of
medians, and a breakdown of where the client's time goes: the interpreter's
start, importing the client's modules, the client against a master whose worker
answers at once (a simulated worker thread in this process: the client's
cost without the job's), and the same without a client process (client.run
in this process).

The checkout's venv holds sieci as an editable install, whose finder costs
every interpreter start in it (hello.py's too) about 12 ms. The rows marked
[plain venv] run in a venv made here that holds sieci the way
`pip install .` does: found by a plain path, with cached bytecode, and
nothing else in site-packages.

    .venv/bin/python bench/latency.py               # 40 rounds after 5 warm-up runs
"""

import argparse
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import venv

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, CHECKOUT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    HELLO, PeerCounters, median, p90, print_banner, simulated_worker, venv_script, write_job,
)
from processes import Daemon, LocalCluster, client_command, free_port, wait_for_port  # noqa: E402

from sieci.client import client  # noqa: E402

EXPECTED = b"hello, world\n"
TARGET = 1.5
# What bin/client imports.
CLIENT_MODULE = "sieci.client.command"
# The client leaves with os._exit, skipping Python's finalization; these two rows end so too.
QUICK_EXIT = "; import os; os._exit(0)"
PASS_QUICK = "python -c pass, then os._exit"
IMPORT = f'python -c "import {CLIENT_MODULE}", then os._exit'


def timed_process(command, expected=None, env=None, timeout=30):
    started = time.perf_counter()
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or (expected is not None and done.stdout != expected):
        raise RuntimeError(f"{command!r} gave exit {done.returncode}, stdout {done.stdout[:200]!r}, "
                           f"stderr {done.stderr[-300:]!r}")
    return elapsed


def timed_in_process(address, fresh=False):
    started = time.perf_counter()
    result = client.Client(address, timeout=30).run(HELLO, "hello.py", fresh=fresh)
    elapsed = time.perf_counter() - started
    if result.exit_status != 0 or result.stdout != EXPECTED:
        raise RuntimeError(f"client.run({address}) gave status {result.exit_status}, stdout {result.stdout!r}")
    return elapsed


def importtime_summary(command, top=12):
    """The heaviest imports of ``command`` by -X importtime (cumulative microseconds, name, depth)."""
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30)
    rows = []
    for line in done.stderr.decode("utf-8", "replace").splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((int(cumulative_us), int(self_us), name.strip(), depth))
    top_level = sorted((row for row in rows if row[3] == 0), reverse=True)
    total = sum(row[0] for row in top_level)
    return total, top_level[:top], rows


def plain_venv(folder):
    """A venv in ``folder`` that finds sieci (this checkout) by a plain path; returns its python."""
    venv.create(folder, with_pip=False, symlinks=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    with open(os.path.join(folder, "lib", version, "site-packages", "sieci.pth"), "w") as pth:
        pth.write(CHECKOUT + "\n")
    return os.path.join(folder, "bin", "python")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print_banner("latency: a whole sieci-client process vs `python hello.py` locally")
    rng = random.Random(args.seed)
    bytecode_uncached = not os.path.exists(importlib.util.cache_from_source(client.__file__))
    if bytecode_uncached:
        print(f"note: sieci's modules have no cached bytecode here (PYTHONDONTWRITEBYTECODE="
              f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}), so every client start compiles them; "
              "rows marked [bytecode] run with a bytecode cache outside the checkout instead")
    workdir, hello = write_job("hello.py", HELLO)

    # A master whose only worker is simulated and answers at once: the client's cost without the job's.
    instant_workers_port, instant_clients_port = free_port(), free_port()
    instant_master = Daemon("master", [f"127.0.0.1:{instant_workers_port}", f"127.0.0.1:{instant_clients_port}"])
    counters = PeerCounters()
    with LocalCluster(masters=1, workers=2) as cluster:
        instant_master.start()
        try:
            wait_for_port(instant_clients_port)
            threading.Thread(target=simulated_worker, args=(instant_workers_port, counters), daemon=True).start()
            address = cluster.client_addresses
            instant = f"127.0.0.1:{instant_clients_port}"
            console = venv_script("sieci-client")
            # With bytecode written and read (to a cache outside the checkout), as on a machine without
            # PYTHONDONTWRITEBYTECODE, where sieci's modules are not compiled again at every start.
            cached = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
            cached["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pycache")
            measures = {
                "python -S -c pass (no site)": ([sys.executable, "-S", "-c", "pass"], None, None),
                "python -c pass": ([sys.executable, "-c", "pass"], None, None),
                PASS_QUICK: ([sys.executable, "-c", "pass" + QUICK_EXIT], None, None),
                IMPORT: ([sys.executable, "-c", "import " + CLIENT_MODULE + QUICK_EXIT], None, None),
                # wire/connection.py takes the C module _socket: what the socket package would add
                "python -c 'import re, _socket', then os._exit": (
                    [sys.executable, "-c", "import re, _socket" + QUICK_EXIT], None, None),
                "python -c 'import re, socket', then os._exit": (
                    [sys.executable, "-c", "import re, socket" + QUICK_EXIT], None, None),
                "python hello.py (local)": ([sys.executable, hello], EXPECTED, None),
                "bin/client, cluster": (client_command(address, hello), EXPECTED, None),
                "bin/client, instant worker": (client_command(instant, hello), EXPECTED, None),
                "bin/client --fresh, cluster": (client_command("--fresh", address, hello), EXPECTED, None),
                "client.run in-process, cluster": (address, None, None),
                "client.run in-process --fresh, cluster": ((address, "fresh"), None, None),
                "client.run in-process, instant worker": (instant, None, None),
            }
            plain = plain_venv(os.path.join(workdir, "venv"))
            measures["python hello.py (local) [plain venv]"] = ([plain, hello], EXPECTED, cached)
            measures["sieci-client, cluster [plain venv]"] = (
                [plain, os.path.join(CHECKOUT, "scripts", "sieci-client"), address, hello], EXPECTED, cached)
            if console:
                measures[".venv/bin/sieci-client, cluster"] = ([console, address, hello], EXPECTED, None)
            if bytecode_uncached:
                measures[IMPORT + " [bytecode]"] = (
                    [sys.executable, "-c", "import " + CLIENT_MODULE + QUICK_EXIT], None, cached)
                measures["python hello.py (local) [bytecode]"] = ([sys.executable, hello], EXPECTED, cached)
                measures["bin/client, cluster [bytecode]"] = (client_command(address, hello), EXPECTED, cached)
                measures["bin/client, instant worker [bytecode]"] = (
                    client_command(instant, hello), EXPECTED, cached)
            else:
                print("note: no sieci-client console script beside the interpreter; measuring bin/client only")

            def measure(name):
                command, expected, env = measures[name]
                if isinstance(command, str):
                    return timed_in_process(command)
                if isinstance(command, tuple):
                    return timed_in_process(command[0], fresh=True)
                return timed_process(command, expected, env)

            timed_in_process(address)  # the workers have linked
            timed_in_process(instant)  # the simulated worker has linked
            for _ in range(args.warmup):
                for name in measures:
                    measure(name)
            times = {name: [] for name in measures}
            started = time.monotonic()
            for _ in range(args.rounds):
                order = list(measures)
                rng.shuffle(order)
                for name in order:
                    times[name].append(measure(name))
            elapsed = time.monotonic() - started
            report(times, args, elapsed, bool(console), bytecode_uncached)
            print()
            print("imports of `bin/client INSTANT-MASTER hello.py` by -X importtime (top level, cumulative; "
                  "importtime's own overhead inflates them):")
            total, top, _ = importtime_summary(client_command(instant, hello))
            print(f"  all top-level imports: {total / 1000:6.1f} ms")
            for cumulative_us, self_us, name, _ in top:
                print(f"  {cumulative_us / 1000:6.1f} ms  {name}")
            print("  (for comparison, `python -c pass`:)")
            total_pass, top_pass, _ = importtime_summary([sys.executable, "-c", "pass"], top=5)
            print(f"  all top-level imports: {total_pass / 1000:6.1f} ms")
            for cumulative_us, self_us, name, _ in top_pass:
                print(f"  {cumulative_us / 1000:6.1f} ms  {name}")
        finally:
            instant_master.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(times, args, elapsed, console, bytecode_uncached):
    print(f"{args.rounds} rounds after {args.warmup} warm-up runs, every command once per round in shuffled "
          f"order ({elapsed:.1f} s); times in ms")
    print(f"  {'':66s} {'median':>8s} {'p90':>8s} {'min':>8s} {'>200ms':>7s}")
    for name, values in times.items():
        slow = sum(value > 0.2 for value in values)
        print(f"  {name:66s} {median(values) * 1000:8.1f} {p90(values) * 1000:8.1f} {min(values) * 1000:8.1f} "
              f"{slow:7d}")
    m = {name: median(values) * 1000 for name, values in times.items()}
    local = m["python hello.py (local)"]
    print()
    ratios = [("bin/client, cluster", "python hello.py (local)"),
              ("bin/client --fresh, cluster", "python hello.py (local)")]
    if console:
        ratios.append((".venv/bin/sieci-client, cluster", "python hello.py (local)"))
    if bytecode_uncached:
        ratios.append(("bin/client, cluster [bytecode]", "python hello.py (local) [bytecode]"))
    ratios.append(("sieci-client, cluster [plain venv]", "python hello.py (local) [plain venv]"))
    for name, base in ratios:
        ratio = m[name] / m[base]
        local = m[base]
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(f"ratio {name} / {base}: {m[name]:.1f} / {local:.1f} ms = {ratio:.2f} "
              f"(target <= {TARGET}: {verdict})")
    local = m["python hello.py (local)"]
    print()
    print("breakdown (differences of medians, ms):")
    rows = [
        ("interpreter start and end (python -c pass)", m["python -c pass"]),
        ("  of which site and the venv's .pth files (pass - pass -S)",
         m["python -c pass"] - m["python -S -c pass (no site)"]),
        ("  of which Python's finalization, which the client skips (pass - pass then os._exit)",
         m["python -c pass"] - m[PASS_QUICK]),
        ("hello.py's own run (local - pass)", local - m["python -c pass"]),
        (f"importing {CLIENT_MODULE} (import - pass, both then os._exit)", m[IMPORT] - m[PASS_QUICK]),
        ("client's run past its imports, instant worker (client - import)",
         m["bin/client, instant worker"] - m[IMPORT]),
        ("  of which the master round trip (client.run in-process, instant)",
         m["client.run in-process, instant worker"]),
        ("the job on a real worker (client cluster - client instant)",
         m["bin/client, cluster"] - m["bin/client, instant worker"]),
        ("whole job without a client process (client.run in-process, cluster)",
         m["client.run in-process, cluster"]),
        ("  the same with a fresh interpreter for the job (--fresh)", m["client.run in-process --fresh, cluster"]),
    ]
    if bytecode_uncached:
        rows[4:4] = [(f"importing {CLIENT_MODULE}, bytecode cached (import [bytecode] - pass)",
                      m[IMPORT + " [bytecode]"] - m[PASS_QUICK])]
    for label, value in rows:
        print(f"  {label:86s} {value:7.1f}")
    budget = TARGET * local
    print(f"  budget for the whole client at the target: {budget:.1f} ms; "
          f"the job's interpreter alone (python hello.py) is {local:.1f} ms of it")


if __name__ == "__main__":
    sys.exit(main())
