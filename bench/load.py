#!/usr/bin/env python3
"""Load: one master holds many concurrent clients queued on a few workers.

Starts a master and --workers workers as processes on loopback, then opens
--clients client connections at once (greenlets in this process, each a
real TCP client running sieci's client code), each sending its own job.
Every answer is checked. The master's open file descriptors and resident
memory are read from /proc before the first round, at the peak, and after
each round, to show that nothing grows once the clients are gone.

    .venv/bin/python bench/load.py                  # 1,000 clients, 4 workers, 2 rounds
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from processes import LocalCluster  # noqa: E402

from sieci.client import client  # noqa: E402


def master_figures(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return fds, rss_kb / 1024


def one_job(address, number):
    try:
        result = client.Client(address, timeout=600).run(b"print(%d * %d)\n" % (number, number))
    except client.ClientError as error:
        return f"failed: {error}"
    return "right" if result.exit_status == 0 and result.stdout == b"%d\n" % (number * number) else "wrong"


def run_round(address, clients, pid):
    peak = [master_figures(pid)]

    def sample():
        while True:
            peak.append(master_figures(pid))
            gevent.sleep(0.05)

    sampler = gevent.spawn(sample)
    started = time.monotonic()
    jobs = [gevent.spawn(one_job, address, number) for number in range(clients)]
    gevent.joinall(jobs, timeout=900)
    sampler.kill()
    outcomes = [job.value if job.ready() else "hung" for job in jobs]
    return outcomes, time.monotonic() - started, max(peak, key=lambda figures: figures[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with LocalCluster(masters=1, workers=args.workers) as cluster:
        pid = cluster.masters[0].process.pid
        address = cluster.client_addresses
        client.Client(address).run(b"pass\n")  # warm up: the workers have linked
        before = master_figures(pid)
        print(f"load: {args.clients} concurrent clients, 1 master, {args.workers} workers, {args.rounds} rounds")
        print(f"master before:        {before[0]:5d} fds, {before[1]:7.1f} MB RSS")
        all_right, after_each = True, []
        for number in range(1, args.rounds + 1):
            outcomes, elapsed, peak = run_round(address, args.clients, pid)
            after = master_figures(pid)
            after_each.append(after)
            right = outcomes.count("right")
            all_right &= right == args.clients
            print(f"round {number}: {right}/{args.clients} right in {elapsed:.1f} s "
                  f"({args.clients / elapsed:.0f} jobs/s); peak {peak[0]} fds, {peak[1]:.1f} MB; "
                  f"after: {after[0]} fds, {after[1]:.1f} MB")
            for outcome in sorted(set(outcomes) - {"right"}):
                print(f"  {outcomes.count(outcome):5d}  {outcome}")
        growth = after[0] - before[0], after[1] - before[1]
        print(f"master after:         {after[0]:5d} fds, {after[1]:7.1f} MB RSS "
              f"(change: {growth[0]:+d} fds, {growth[1]:+.1f} MB)")
        # The first round may leave the hub's own lasting resources; a leak grows every round.
        leaked = after_each[-1][0] - after_each[0][0]
        print(f"fds after the last round vs after the first: {leaked:+d}")
    return 0 if all_right and leaked <= 0 else 1


if __name__ == "__main__":
    sys.exit(main())
