#!/usr/bin/env python3
"""Throughput: hello-world jobs per second through 1 master and 2 workers.

Three clusters: one whose workers wall every job in (namespaces, a network
of its own and a cgroup each, the default), one the same but for jobs sharing
the host's network (--job-network on), one with those walls off. Targets: the walls cost at
most a fifth of the throughput (on >= 0.8x off), and at least 400 jobs/s, from a load generator that keeps --in-flight
(16) jobs in flight: greenlets in this process, each a real TCP client
running sieci's client code (sieci.client.client.run under gevent), against a
master and 2 workers started as processes on 127.0.0.1. Every answer is
checked.

Baseline, for context: how many `python hello.py` processes per second this
machine can start and wait for with the same number in flight (plain
subprocess from threads, in a helper process without gevent), measured
first. Then the two clusters in alternating rounds (--rounds; each cluster
goes first in every other round), each bounded by --jobs jobs and --seconds
seconds; the medians are printed.

    .venv/bin/python bench/throughput.py            # 3 rounds of each, <= 2,000 jobs or 10 s per round
"""

import sys

BASELINE_HELPER = "--spawn-baseline-helper"

if BASELINE_HELPER not in sys.argv:  # the helper process measures plain subprocess, without gevent
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    HELLO, cpu_seconds, hello_jobs, machine_busy_seconds, median, print_banner, tree_cpu_seconds, write_job,
)

TARGET = 400.0


def spawn_baseline(python, hello, in_flight, jobs, seconds):
    """In the helper process: start `python hello.py` with ``in_flight`` running at once."""
    import concurrent.futures
    import threading

    lock = threading.Lock()
    state = {"next": 0, "right": 0, "wrong": 0}
    deadline = time.monotonic() + seconds

    def runner():
        while True:
            with lock:
                if state["next"] >= jobs or time.monotonic() >= deadline:
                    return
                state["next"] += 1
            done = subprocess.run([python, hello], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, timeout=60)
            with lock:
                state["right" if done.returncode == 0 and done.stdout == b"hello, world\n" else "wrong"] += 1

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        for future in [pool.submit(runner) for _ in range(in_flight)]:
            future.result()
    elapsed = time.monotonic() - started
    return {"right": state["right"], "wrong": state["wrong"], "elapsed": elapsed}


def sieci_round(address, in_flight, jobs, seconds, pids, fresh=False):
    """``jobs`` hello-world jobs (or as many as fit in ``seconds``), ``in_flight`` at once; and the CPU used."""

    def cpu_now():
        figures = {name: tree_cpu_seconds(pid) if name.startswith("worker") else cpu_seconds(pid)
                   for name, pid in pids.items()}
        figures["whole machine"] = machine_busy_seconds()
        return figures

    cpu_before = cpu_now()
    outcomes, elapsed = hello_jobs(address, in_flight, jobs, seconds, show_failures=jobs, fresh=fresh)
    cpu_after = cpu_now()
    cpu = {name: (cpu_after[name] - cpu_before[name]) / elapsed for name in cpu_after}
    return outcomes, elapsed, cpu


# The walls (namespaces and a cgroup per job) must cost at most this share of throughput.
WALLS_TARGET = 0.8
WALLS_OFF = ["--job-namespaces", "off", "--job-cgroups", "off"]
FRESH = "walls on, --fresh"
HOST_NETWORK = "walls on, host network"  # --job-network on: what a job's own loopback (the default) costs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == BASELINE_HELPER:
        python, hello, in_flight, jobs, seconds = argv[1], argv[2], int(argv[3]), int(argv[4]), float(argv[5])
        print(json.dumps(spawn_baseline(python, hello, in_flight, jobs, seconds)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2000, help="at most this many jobs per round")
    parser.add_argument("--seconds", type=float, default=10.0, help="and at most this long per round")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    from processes import LocalCluster, job_interpreter, unavailable_walls

    print_banner("throughput: hello-world jobs per second through 1 master and "
                 f"{args.workers} workers, {args.in_flight} in flight")
    missing = unavailable_walls()
    if missing:
        print(f"this host cannot build every wall; the walled cluster runs with {' '.join(missing)}")
    interpreter = job_interpreter()
    if interpreter:
        print(f"jobs (in both clusters) run with {interpreter}: without namespaces, the job user could not "
              f"read this interpreter")
    options = ["--python", interpreter] if interpreter else []
    workdir, hello = write_job("hello.py", HELLO)
    rates = {"baseline": [], "walls on": [], HOST_NETWORK: [], "walls off": [], FRESH: []}
    all_right = True
    # The baseline's rounds come first, apart: a round right after its thousands of short
    # processes runs slower while the kernel catches up, and the walled cluster more (see
    # bench/README.md). The two clusters then take turns at going first.
    for number in range(1, args.rounds + 1):
        rate, right = baseline_round(hello, args)
        rates["baseline"].append(rate)
        all_right &= right
        print(f"baseline round {number}: {rate:6.1f} `python hello.py` processes/s")
    with LocalCluster(masters=1, workers=args.workers, worker_options=options) as walled, \
            LocalCluster(masters=1, workers=args.workers, worker_options=[*options, "--job-network", "on"]) as shared, \
            LocalCluster(masters=1, workers=args.workers, worker_options=[*options, *WALLS_OFF]) as open_cluster:
        clusters = {"walls on": walled, HOST_NETWORK: shared, "walls off": open_cluster, FRESH: walled}
        for cluster in (walled, shared, open_cluster):
            warm_up(cluster, args.in_flight)
        for number in range(1, args.rounds + 1):
            print(f"round {number}:")
            order = list(clusters.items()) if number % 2 else list(clusters.items())[::-1]
            for name, cluster in order:
                rate, right = measured_round(cluster, args, name)
                rates[name].append(rate)
                all_right &= right
            sys.stdout.flush()
    shutil.rmtree(workdir, ignore_errors=True)
    base, on, off, fresh = (median(rates[name]) for name in ("baseline", "walls on", "walls off", FRESH))
    host_network = median(rates[HOST_NETWORK])
    print()
    print(f"baseline (python hello.py processes, {args.in_flight} in flight): median {base:7.1f}/s")
    print(f"sieci, walls on  (namespaces and a cgroup per job):   median {on:7.1f} jobs/s ({on / base:.2f}x baseline)")
    print(f"sieci, walls on, --job-network on (no network namespace): median {host_network:7.1f} jobs/s "
          f"({host_network / base:.2f}x; walls on is {on / host_network:.3f}x this)")
    print(f"sieci, walls off (--job-namespaces off --job-cgroups off): median {off:7.1f} jobs/s ({off / base:.2f}x)")
    print(f"sieci, walls on, --fresh (an interpreter per job): median {fresh:7.1f} jobs/s ({fresh / base:.2f}x)")
    verdict = "met" if on >= WALLS_TARGET * off else "NOT met"
    print(f"walls on / walls off: {on / off:.3f} (target >= {WALLS_TARGET}: {verdict})")
    verdict = "met" if on >= TARGET else "NOT met"
    print(f"walls on / target of {TARGET:.0f} jobs/s: {on / TARGET:.3f} (target >= 1: {verdict})")
    print("every answer right" if all_right else "SOME ANSWERS WRONG OR FAILED")
    return 0 if all_right else 1


def cluster_pids(cluster):
    pids = {"master": cluster.masters[0].process.pid, "bench": os.getpid()}
    pids.update({f"worker {n + 1}": w.process.pid for n, w in enumerate(cluster.workers)})
    return pids


def warm_up(cluster, in_flight):
    from sieci.client import client

    client.Client(cluster.client_addresses, timeout=60).run(HELLO)  # the workers have linked
    sieci_round(cluster.client_addresses, in_flight, 2 * in_flight, 10, cluster_pids(cluster))


def baseline_round(hello, args):
    helper = subprocess.run(
        [sys.executable, os.path.abspath(__file__), BASELINE_HELPER, sys.executable, hello,
         str(args.in_flight), str(args.jobs), str(args.seconds)],
        capture_output=True, timeout=args.seconds + 120)
    if helper.returncode != 0:
        raise RuntimeError(f"baseline helper failed: {helper.stderr.decode()[-500:]}")
    baseline = json.loads(helper.stdout)
    return baseline["right"] / baseline["elapsed"], baseline["wrong"] == 0


def measured_round(cluster, args, name):
    outcomes, elapsed, cpu = sieci_round(cluster.client_addresses, args.in_flight, args.jobs, args.seconds,
                                         cluster_pids(cluster), fresh=name == FRESH)
    rate = outcomes["right"] / elapsed
    done = sum(outcomes.values())
    print(f"         {name}: {outcomes['right']}/{done} right in {elapsed:.2f} s = {rate:6.1f} jobs/s"
          + (f" ({outcomes['wrong']} wrong, {outcomes['failed']} failed)"
             if outcomes["wrong"] or outcomes["failed"] else ""))
    print(f"           CPU (cores of {os.cpu_count()}; a worker's includes its jobs): "
          + ", ".join(f"{part} {share:.2f}" for part, share in cpu.items()))
    return rate, outcomes["wrong"] == 0 and outcomes["failed"] == 0


if __name__ == "__main__":
    sys.exit(main())
