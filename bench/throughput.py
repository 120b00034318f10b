#!/usr/bin/env python3
"""Throughput: hello-world jobs per second through 1 master and 2 workers.

Against what a user would run instead: the baseline is `python hello.py`
run locally by `xargs -P 16` (a C spawner), with the interpreter the jobs
use, measured first in the same run; every rate is shown as a ratio to it.
Run the bench with the README's plain venv (`pip install .`): an editable
install's interpreter starts heavier, which flatters every ratio (the bench
says so when it sees one).

Clusters: one whose workers wall every job in (namespaces, a network of its
own and a cgroup each, the default), the same with --fresh jobs (an
interpreter per job, no fork server), one with the jobs sharing the host's
network (--job-network on), one with the walls off. The load generator keeps
--in-flight (16) jobs in flight: greenlets in this process, each a real TCP
client running sieci's client code, against a master and 2 workers started
as processes on 127.0.0.1. Every answer is checked. The clusters take turns
at going first in each round (--rounds), each round bounded by --jobs jobs
and --seconds seconds; medians are printed, with each process's CPU per job.

Two more clusters run jobs whose client has --retries, so that the master
keeps each (its results spooled): one master keeps them in memory, the other
records them in a --state-dir; the difference of the master's CPU per job is
what recording a job costs.

Targets: walls on >= 2.5x the baseline, --fresh >= 1.0x, walls on >= 0.8x
walls off; the master's CPU per job <= 0.5 ms, the worker host's (a
worker's process tree: worker, fork server, init, job) <= 3.5 ms; recording
a kept job in a --state-dir <= 0.1 ms of the master's CPU.

    /path/to/plain/venv/bin/python bench/throughput.py   # 3 rounds, <= 2,000 jobs or 10 s each
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    HELLO, cpu_seconds, describe_baseline_interpreter, hello_jobs, local_rate, machine_busy_seconds, median,
    print_banner, tree_cpu_seconds, write_job,
)

BASELINE_TARGET = 2.5  # walls on, as a multiple of the baseline's rate
FRESH_TARGET = 1.0
WALLS_TARGET = 0.8  # the walls (namespaces and a cgroup per job) cost at most a fifth
MASTER_MS_TARGET = 0.5  # the master's CPU per job
WORKER_HOST_MS_TARGET = 3.5  # a worker's process tree's CPU per job
WALLS_OFF = ["--job-namespaces", "off", "--job-cgroups", "off"]
FRESH = "walls on, --fresh"
HOST_NETWORK = "walls on, host network"  # --job-network on: what a job's own loopback (the default) costs
# Jobs whose client has --retries, so the master keeps them: in memory, and recorded in a --state-dir.
KEPT = "walls off, kept"
RECORDED = "walls off, kept, --state-dir"
KEPT_CLUSTERS = (KEPT, RECORDED)
RECORDING_MS_TARGET = 0.1  # the master's CPU per job for recording it (--state-dir's cost)


def sieci_round(address, in_flight, jobs, seconds, pids, fresh=False, retries=0):
    """``jobs`` hello-world jobs (or as many as fit in ``seconds``), ``in_flight`` at once; and each
    process's CPU seconds meanwhile (a worker's with its fork server and jobs)."""

    def cpu_now():
        figures = {name: tree_cpu_seconds(pid) if name.startswith("worker") else cpu_seconds(pid)
                   for name, pid in pids.items()}
        figures["whole machine"] = machine_busy_seconds()
        return figures

    cpu_before = cpu_now()
    outcomes, elapsed = hello_jobs(address, in_flight, jobs, seconds, show_failures=jobs, fresh=fresh, retries=retries)
    cpu_after = cpu_now()
    return outcomes, elapsed, {name: cpu_after[name] - cpu_before[name] for name in cpu_after}


def main(argv=None):
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
        print(f"jobs (in every cluster) run with {interpreter}: without namespaces, the job user could not "
              f"read this interpreter")
    options = ["--python", interpreter] if interpreter else []
    print(describe_baseline_interpreter(interpreter or sys.executable))
    workdir, hello = write_job("hello.py", HELLO)
    rates = {"baseline": [], "walls on": [], FRESH: [], HOST_NETWORK: [], "walls off": [], KEPT: [], RECORDED: []}
    cpu_per_job = {name: [] for name in rates}
    all_right = True
    # The baseline's rounds come first, apart: a round right after its thousands of short
    # processes runs slower while the kernel catches up, and the walled cluster more (see
    # bench/README.md). The clusters then take turns at going first.
    for number in range(1, args.rounds + 1):
        rate, right = local_rate(interpreter or sys.executable, hello, b"hello, world\n", args.in_flight,
                                 args.jobs, args.seconds)
        rates["baseline"].append(rate)
        all_right &= right
        print(f"baseline round {number}: {rate:6.1f} `python hello.py` runs/s (xargs -P {args.in_flight})"
              + ("" if right else " SOME OUTPUT WRONG"))
    with LocalCluster(masters=1, workers=args.workers, worker_options=options) as walled, \
            LocalCluster(masters=1, workers=args.workers, worker_options=[*options, "--job-network", "on"]) as shared, \
            LocalCluster(masters=1, workers=args.workers, worker_options=[*options, *WALLS_OFF]) as open_cluster, \
            LocalCluster(masters=1, workers=args.workers, worker_options=[*options, *WALLS_OFF],
                         master_options=["--state-dir", os.path.join(workdir, "state")]) as recording:
        clusters = {"walls on": walled, FRESH: walled, HOST_NETWORK: shared, "walls off": open_cluster,
                    KEPT: open_cluster, RECORDED: recording}
        for cluster in (walled, shared, open_cluster, recording):
            warm_up(cluster, args.in_flight)
        for number in range(1, args.rounds + 1):
            print(f"round {number}:")
            order = list(clusters.items()) if number % 2 else list(clusters.items())[::-1]
            for name, cluster in order:
                rate, right, cpu = measured_round(cluster, args, name)
                rates[name].append(rate)
                cpu_per_job[name].append(cpu)
                all_right &= right
            sys.stdout.flush()
    shutil.rmtree(workdir, ignore_errors=True)
    print_summary(args, rates, cpu_per_job)
    print("every answer right" if all_right else "SOME ANSWERS WRONG OR FAILED")
    return 0 if all_right else 1


def print_summary(args, rates, cpu_per_job):
    base = median(rates["baseline"])
    on, fresh, off, host_network = (median(rates[name]) for name in ("walls on", FRESH, "walls off", HOST_NETWORK))
    print()
    print(f"baseline (`python hello.py` by xargs -P {args.in_flight}): median {base:7.1f}/s")
    print(f"sieci, walls on  (namespaces and a cgroup per job):   median {on:7.1f} jobs/s ({on / base:.2f}x baseline)")
    print(f"sieci, walls on, --fresh (an interpreter per job):    median {fresh:7.1f} jobs/s ({fresh / base:.2f}x)")
    print(f"sieci, walls on, --job-network on (no network namespace): median {host_network:7.1f} jobs/s "
          f"({host_network / base:.2f}x; walls on is {on / host_network:.3f}x this)")
    print(f"sieci, walls off (--job-namespaces off --job-cgroups off): median {off:7.1f} jobs/s ({off / base:.2f}x)")
    for name in ("walls on", FRESH, "walls off", *KEPT_CLUSTERS):
        parts = cpu_per_job[name][0]
        print(f"CPU ms per job, {name} (medians): "
              + ", ".join(f"{part} {median([round_[part] for round_ in cpu_per_job[name]]):.2f}" for part in parts))
    master_ms = median([round_["master"] for round_ in cpu_per_job["walls on"]])
    # Each worker ran about half the jobs: the host's CPU per job is their sum.
    worker_ms = median([sum(ms for part, ms in round_.items() if part.startswith("worker"))
                        for round_ in cpu_per_job["walls on"]])
    for what, value, target in (("walls on / baseline", on / base, BASELINE_TARGET),
                                ("--fresh / baseline", fresh / base, FRESH_TARGET),
                                ("walls on / walls off", on / off, WALLS_TARGET)):
        print(f"{what}: {value:.3f} (target >= {target}: {'met' if value >= target else 'NOT met'})")
    kept_ms, recorded_ms = (median([round_["master"] for round_ in cpu_per_job[name]]) for name in KEPT_CLUSTERS)
    print(f"master CPU ms per kept job: {kept_ms:.3f} in memory, {recorded_ms:.3f} with --state-dir")
    for what, value, target in (("master CPU ms per job, walls on", master_ms, MASTER_MS_TARGET),
                                ("master CPU ms to record a kept job (--state-dir)", recorded_ms - kept_ms,
                                 RECORDING_MS_TARGET),
                                ("worker hosts' CPU ms per job, walls on", worker_ms, WORKER_HOST_MS_TARGET)):
        print(f"{what}: {value:.2f} (target <= {target}: {'met' if value <= target else 'NOT met'})")


def cluster_pids(cluster):
    pids = {"master": cluster.masters[0].process.pid, "bench": os.getpid()}
    pids.update({f"worker {n + 1}": w.process.pid for n, w in enumerate(cluster.workers)})
    return pids


def warm_up(cluster, in_flight):
    from sieci.client import client

    client.Client(cluster.client_addresses, timeout=60).run(HELLO)  # the workers have linked
    sieci_round(cluster.client_addresses, in_flight, 2 * in_flight, 10, cluster_pids(cluster))


def measured_round(cluster, args, name):
    """One round of one cluster: its rate, whether every answer was right, and CPU ms per job."""
    outcomes, elapsed, cpu = sieci_round(cluster.client_addresses, args.in_flight, args.jobs, args.seconds,
                                         cluster_pids(cluster), fresh=name == FRESH,
                                         retries=1 if name in KEPT_CLUSTERS else 0)
    rate = outcomes["right"] / elapsed
    done = sum(outcomes.values())
    print(f"         {name}: {outcomes['right']}/{done} right in {elapsed:.2f} s = {rate:6.1f} jobs/s"
          + (f" ({outcomes['wrong']} wrong, {outcomes['failed']} failed)"
             if outcomes["wrong"] or outcomes["failed"] else ""))
    per_job = {part: 1000 * seconds / max(done, 1) for part, seconds in cpu.items()}
    print("           CPU ms per job (a worker's includes its fork server and jobs): "
          + ", ".join(f"{part} {ms:.2f}" for part, ms in per_job.items()))
    return rate, outcomes["wrong"] == 0 and outcomes["failed"] == 0, per_job


if __name__ == "__main__":
    sys.exit(main())
