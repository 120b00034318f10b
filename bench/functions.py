#!/usr/bin/env python3
"""Functions: ``Executor.map(fn, items)`` against the same work sent as code strings.

Target (issue 29): ``sieci.Executor.map`` of a trivial function (``n * n``) over --items items
(1,000) runs at least **0.8x** the rate (items per second) of the same work sent as code strings
(``map`` of ``print(N * N)`` programs, each value read back from the job's stdout), in the same run:
one local cluster (1 master, --workers workers, with a secret, which functions need and which both
sides use), one Executor of --in-flight threads, alternating rounds (the order swapped each round).
Printed: the ratio of the medians and the median of each round's ratio (the two kinds of a round
run a minute apart at most, under the same load); the target holds when both reach it. Also the
CPU per item of this process and of the daemons' process trees (jobs included), which the rates
follow on a busy machine. Every value is checked.

    .venv-bench/bin/python bench/functions.py      # 3 rounds of 1,000 items each way, ~1 min
"""

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import median, print_banner, tree_cpu_seconds  # noqa: E402
from processes import LocalCluster  # noqa: E402

import sieci  # noqa: E402

TARGET = 0.8


def square(n):
    return n * n


def function_round(pool, items):
    """Seconds for ``map`` of the function over ``items``; every value checked."""
    started = time.monotonic()
    values = list(pool.map(square, items, timeout=600))
    seconds = time.monotonic() - started
    assert values == [n * n for n in items], "wrong values"
    return seconds


def code_round(pool, items):
    """Seconds for the same work as code strings, each value read from the job's stdout; every value checked."""
    started = time.monotonic()
    values = [int(result.stdout) for result in pool.map([f"print({n} * {n})" for n in items], timeout=600)]
    seconds = time.monotonic() - started
    assert values == [n * n for n in items], "wrong values"
    return seconds


def cluster_cpu(cluster):
    """CPU seconds used so far by this process and by the cluster's daemons, their jobs included."""
    times = os.times()
    return times.user + times.system + sum(tree_cpu_seconds(daemon.process.pid)
                                           for daemon in cluster.masters + cluster.workers)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=8, help="the Executor's max_workers")
    options = parser.parse_args()
    print_banner("functions: Executor.map(fn, items) against the same work as code strings")
    folder = tempfile.mkdtemp(prefix="sieci-bench-functions-")
    secret_file = os.path.join(folder, "secret")
    with open(os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(secrets.token_hex(32))
    members = ["--secret-file", secret_file]
    items = list(range(options.items))
    rates = {"function": [], "code": []}
    cpu = {"function": [], "code": []}  # ms of CPU per item: this process, the master's and workers' trees
    try:
        with LocalCluster(workers=options.workers, worker_options=members, master_options=members) as cluster:
            with sieci.Executor(cluster.client_addresses, max_workers=options.in_flight,
                                secret_file=secret_file) as pool:
                code_round(pool, items[:50])  # warm-up: the fork servers, the client's imports
                function_round(pool, items[:50])
                for number in range(options.rounds):
                    rounds = [("function", function_round), ("code", code_round)]
                    for kind, run in rounds if number % 2 == 0 else reversed(rounds):
                        cpu_before = cluster_cpu(cluster)
                        rates[kind].append(len(items) / run(pool, items))
                        cpu[kind].append((cluster_cpu(cluster) - cpu_before) / len(items) * 1000)
                    print(f"round {number + 1}: functions {rates['function'][-1]:.1f} items/s, "
                          f"code strings {rates['code'][-1]:.1f} items/s")
    finally:
        shutil.rmtree(folder)
    function_rate, code_rate = median(rates["function"]), median(rates["code"])
    ratio = function_rate / code_rate
    paired = median([function / code for function, code in zip(rates["function"], rates["code"])])
    print(f"\nExecutor.map of a function: {function_rate:.1f} items/s (median of {options.rounds} rounds "
          f"of {options.items})")
    print(f"the same work as code strings: {code_rate:.1f} items/s")
    print(f"ratio of the medians: {ratio:.3f}x; median of each round's ratio: {paired:.3f}x")
    function_cpu, code_cpu = median(cpu["function"]), median(cpu["code"])
    print(f"CPU per item (this client, the master's and the workers' process trees): functions {function_cpu:.2f} "
          f"ms, code strings {code_cpu:.2f} ms (code/functions: {code_cpu / function_cpu:.3f}x; on a busy machine "
          "the rates follow the CPU)")
    met = ratio >= TARGET and paired >= TARGET
    print(f"target >= {TARGET}x, both ways: {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()
