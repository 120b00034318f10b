#!/usr/bin/env python3
"""Environments (--requirements): a job in a built environment against the same job without one, and
the time of a first build.

Starts a master and a worker in this process (gevent, on 127.0.0.1), with a
store of environments in a temporary folder, and writes a tiny pure-Python
wheel (no network needed). Then, in one run:

1. --jobs jobs one after another (as a user's loop of sieci-client calls runs
   them: the latency a job costs), each ``import json`` in the environment
   of ``tinypkg`` (built before the first round, from the wheel sent with
   --with-wheels), against the same number of the same program without
   --requirements, --rounds rounds each way, alternating; target: within
   1.2x (the ratio of the medians of the rounds' seconds). A third kind of
   round, ``import tinypkg`` in the environment, is shown beside them.
2. --builds first builds of that requirement (each with other bytes, so
   each is a new environment), timed from the job's upload to its result;
   and, if PyPI answers within 5 s, one first build of ``six`` from the
   index (a worker with --build-network host). Target: under 30 s.

    .venv-bench/bin/python bench/environments.py
"""

import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time

from gevent import monkey

monkey.patch_all()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.benchlib import print_banner  # noqa: E402
from sieci.client.client import Client  # noqa: E402
from sieci.master.master import Master  # noqa: E402
from sieci.wire.address import format_address  # noqa: E402
from sieci.worker.environments import EnvironmentOptions  # noqa: E402
from sieci.worker.isolation import Isolation  # noqa: E402
from sieci.worker.limits import Limits  # noqa: E402
from sieci.worker.worker import Worker  # noqa: E402

# The tests' wheel writer, loaded alone (tests/helpers' package needs pytest, which a plain venv lacks).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("wheels", os.path.join(REPO, "tests", "helpers", "wheels.py"))
wheels = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheels)

IN_ENVIRONMENT = b"import tinypkg\nprint(tinypkg.VALUE)\n"
SAME_JOB = b"import json\nprint(json.dumps(42))\n"
TARGET_RATIO = 1.2
TARGET_BUILD = 30.0


def timed_jobs(client, code, jobs):
    started = time.monotonic()
    for _ in range(jobs):
        result = client.run(code, "job.py")
        assert (result.exit_status, result.stdout) == (0, b"42\n"), (result.exit_status, result.stderr[-400:])
    return time.monotonic() - started


def first_build(client, code=IN_ENVIRONMENT, expected=b"42\n"):
    started = time.monotonic()
    result = client.run(code, "job.py")
    assert (result.exit_status, result.stdout) == (0, expected), (result.exit_status, result.stderr[-600:])
    return time.monotonic() - started


def pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def start_worker(master, folder, network, namespaces=False):
    isolation = Isolation(namespaces=namespaces, cgroups=False, network=not namespaces)
    worker = Worker([master.workers_address], Limits(timeout=300), isolation=isolation,
                    environments=EnvironmentOptions(os.path.join(folder, f"environments-{network}"),
                                                    build_network=network))
    worker.start()
    return worker


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50, help="jobs in a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--builds", type=int, default=3)
    parser.add_argument("--namespaces", action="store_true",
                        help="jobs and builds in namespaces of their own (as root, or with user namespaces)")
    options = parser.parse_args()
    print_banner("environments: a job in a built environment, and a first build"
                 + (" (namespaces)" if options.namespaces else ""))
    # Where a worker keeps its environments by default: /var/tmp, not under each sandboxed job's own /tmp.
    folder = tempfile.mkdtemp(prefix="sieci-bench-environments-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    master = Master(("127.0.0.1", 0), ("127.0.0.1", 0))
    master.start()
    worker = start_worker(master, folder, "none", options.namespaces)
    try:
        master.wait_for_workers(1, 30)
        os.mkdir(os.path.join(folder, "wheels"))
        wheels.write_wheel(os.path.join(folder, "wheels"))
        address = format_address(master.clients_address)
        built(options, folder, address)
        builds(options, folder, address)
        from_the_index(master, folder, address, options.namespaces)
    finally:
        worker.stop(grace=1)
        master.stop(grace=1)
        shutil.rmtree(folder, ignore_errors=True)


def requirements_client(folder, address, text, wheels=True):
    path = os.path.join(folder, f"requirements-{abs(hash(text))}.txt")
    with open(path, "w") as requirements:
        requirements.write(text)
    return Client(address, requirements=path, wheels=os.path.join(folder, "wheels") if wheels else None)


def built(options, folder, address):
    with_environment = requirements_client(folder, address, "tinypkg\n")
    print(f"(building the environment first: {first_build(with_environment):.2f} s)")
    kinds = {"with": (with_environment, SAME_JOB), "without": (Client(address), SAME_JOB),
             "tinypkg": (with_environment, IN_ENVIRONMENT)}
    seconds = {kind: [] for kind in kinds}
    for round_number in range(options.rounds):
        order = list(kinds) if round_number % 2 == 0 else list(reversed(kinds))
        for kind in order:
            seconds[kind].append(timed_jobs(*kinds[kind], options.jobs))
    per_job = {kind: statistics.median(rounds) / options.jobs * 1000 for kind, rounds in seconds.items()}
    ratio = per_job["with"] / per_job["without"]
    print(f"1. {options.jobs} jobs one after another, {options.rounds} rounds each way (ms a job, median round):")
    print(f"   import json, in a built environment: {per_job['with']:.2f}")
    print(f"   import json, without requirements:   {per_job['without']:.2f}")
    print(f"   import tinypkg, in the environment:  {per_job['tinypkg']:.2f}")
    print(f"   ratio {ratio:.3f} (target <= {TARGET_RATIO}): {'met' if ratio <= TARGET_RATIO else 'NOT met'}")


def builds(options, folder, address):
    seconds = [first_build(requirements_client(folder, address, f"tinypkg\n# build {n}\n"))
               for n in range(options.builds)]
    median = statistics.median(seconds)
    print(f"2. first build of tinypkg from its wheel (--build-network none), {options.builds} builds: "
          f"median {median:.2f} s (each: {', '.join(f'{s:.2f}' for s in seconds)}); target < {TARGET_BUILD:g} s: "
          f"{'met' if median < TARGET_BUILD else 'NOT met'}")


def from_the_index(master, folder, address, namespaces):
    if not pypi_reachable():
        print("   six from PyPI: not measured (pypi.org:443 does not answer within 5 s)")
        return
    master_with_network = Master(("127.0.0.1", 0), ("127.0.0.1", 0))
    master_with_network.start()
    worker = start_worker(master_with_network, folder, "host", namespaces)
    try:
        master_with_network.wait_for_workers(1, 30)
        client = requirements_client(folder, format_address(master_with_network.clients_address), "six\n",
                                     wheels=False)
        seconds = first_build(client, b"import six\nprint(six.PY3)\n", b"True\n")
        print(f"   six from PyPI (--build-network host): {seconds:.2f} s; target < {TARGET_BUILD:g} s: "
              f"{'met' if seconds < TARGET_BUILD else 'NOT met'}")
    finally:
        worker.stop(grace=1)
        master_with_network.stop(grace=1)


if __name__ == "__main__":
    main()
