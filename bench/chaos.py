#!/usr/bin/env python3
"""Fault injection: many jobs through 2 masters and 4 workers while they are killed.

Starts the daemons on loopback, runs --jobs jobs from --clients concurrent
`sieci-client` processes that are given both masters, and meanwhile SIGKILLs
and restarts random workers and, now and then, a master. At the end it prints
the jobs submitted, right and wrong answers, hung clients, and the failures
grouped by the reason the client gave. Exit status 0 when the acceptance
holds: no wrong answer, no hung client, every failure with a reason, and,
with --retries, every job right (the line before it says "500/500 right: yes").

    .venv/bin/python bench/chaos.py                 # 500 jobs, no retries
    .venv/bin/python bench/chaos.py --retries 3     # every job must end right
    .venv/bin/python bench/chaos.py --retries 3 --seed 7 --master-kills 0.5   # half the kills kill a master
"""

import argparse
import collections
import concurrent.futures
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from processes import LocalCluster, client_command, wait_for_port  # noqa: E402

JOB = "import time\ntime.sleep({pause})\nprint({number} * {number})\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--clients", type=int, default=32, help="clients in flight at once")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--retries", type=int, default=0, help="passed to every client")
    parser.add_argument("--hang-after", type=float, default=60.0,
                        help="a client still running after this many seconds counts as hung (and is killed)")
    parser.add_argument("--chaos-every", type=float, default=0.4,
                        help="mean seconds between two kills")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop submitting after this long")
    parser.add_argument("--master-kills", type=float, default=0.15,
                        help="the share of kills that kill a master rather than a worker")
    parser.add_argument("--seed", type=int, default=None,
                        help="of the faults and the jobs' pauses (default: a random one, printed)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    return args


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.submitted = self.right = self.wrong = self.hung = 0
        self.failures = collections.Counter()

    def record(self, outcome, detail=None):
        with self.lock:
            if outcome == "failed":
                self.failures[detail] += 1
            else:
                setattr(self, outcome, getattr(self, outcome) + 1)


def run_job(number, args, masters, tally, rng_lock, rng):
    with rng_lock:
        pause = round(rng.uniform(0, 0.2), 3)
    command = client_command("--retries", str(args.retries), "--connect-timeout", "2", masters, "-")
    tally.record("submitted")
    try:
        done = subprocess.run(command, input=JOB.format(pause=pause, number=number).encode(),
                              capture_output=True, timeout=args.hang_after)
    except subprocess.TimeoutExpired:
        tally.record("hung")
        return
    if done.returncode == 0 and done.stdout == b"%d\n" % (number * number):
        tally.record("right")
    elif done.returncode == 255:
        reason = done.stderr.decode("utf-8", "replace").strip()
        tally.record("failed", _generalise(reason) or "(no reason given)")
    else:
        tally.record("wrong")
        print(f"wrong answer for job {number}: exit {done.returncode}, stdout {done.stdout[:80]!r}, "
              f"stderr {done.stderr[-200:]!r}", file=sys.stderr)


def _generalise(reason):
    """Group reasons that differ only in addresses and ports."""
    words = []
    for word in reason.split():
        if word.strip("()").replace(".", "").replace(":", "").replace(";", "").isdigit():
            word = "ADDR" + word[-1] if word[-1] in ");" else "ADDR"
        words.append(word)
    return " ".join(words)


def inject_faults(cluster, args, stop, rng, log):
    """Kill and restart random daemons until ``stop`` is set."""
    while not stop.wait(rng.expovariate(1 / args.chaos_every)):
        if rng.random() < args.master_kills:
            number = rng.randrange(len(cluster.masters))
            cluster.masters[number].kill()
            log["master kills"] += 1
            stop.wait(rng.uniform(0.2, 1.0))
            cluster.masters[number].start()
            wait_for_port(cluster.client_ports[number])  # one master down at a time
        else:
            victim = rng.choice(cluster.workers)
            victim.kill()
            log["worker kills"] += 1
            victim.start()


def main(argv=None):
    args = parse_args(argv)
    rng = random.Random(args.seed)
    tally, rng_lock, kills = Tally(), threading.Lock(), collections.Counter()
    started = time.monotonic()
    with LocalCluster(masters=2, workers=args.workers, worker_options=["--keepalive", "10"]) as cluster:
        stop = threading.Event()
        chaos = threading.Thread(target=inject_faults, args=(cluster, args, stop, rng, kills), daemon=True)
        chaos.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
                futures = []
                for number in range(args.jobs):
                    if time.monotonic() - started > args.max_seconds:
                        break
                    futures.append(pool.submit(run_job, number, args, cluster.client_addresses,
                                               tally, rng_lock, rng))
                for future in futures:
                    future.result()
        finally:
            stop.set()
            chaos.join()
    elapsed = time.monotonic() - started
    report(tally, kills, elapsed, args)
    unexplained = tally.failures["(no reason given)"]
    every_job_right = tally.right == args.jobs
    accepted = tally.wrong == 0 and tally.hung == 0 and unexplained == 0 and (args.retries == 0 or every_job_right)
    print(f"{tally.right}/{args.jobs} right: {'yes' if every_job_right else 'no'}"
          + ("" if args.retries else " (the target with --retries only)"))
    print("acceptance:", "PASS" if accepted else "FAIL",
          "(every job right, none wrong or hung)" if args.retries else "(none wrong or hung, every failure explained)")
    return 0 if accepted else 1


def report(tally, kills, elapsed, args):
    failed = sum(tally.failures.values())
    print(f"chaos: {args.jobs} jobs, {args.clients} clients at once, 2 masters, {args.workers} workers, "
          f"--retries {args.retries}, --seed {args.seed}; {elapsed:.1f} s")
    print(f"faults injected: {kills['worker kills']} worker SIGKILLs, {kills['master kills']} master SIGKILLs "
          "(each restarted)")
    print(f"jobs submitted: {tally.submitted}")
    print(f"right answers:  {tally.right}")
    print(f"wrong answers:  {tally.wrong}")
    print(f"hung clients:   {tally.hung}")
    print(f"failures:       {failed}")
    for reason, count in tally.failures.most_common():
        print(f"  {count:5d}  {reason}")


if __name__ == "__main__":
    sys.exit(main())
