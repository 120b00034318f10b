#!/usr/bin/env python3
"""Files: N jobs that share one 20 MB data file (--with), content-addressed.

Starts a master and --workers workers in this process (gevent, on 127.0.0.1),
packs one --size MB file once (incompressible: the worst case on the wire),
and runs --jobs jobs that each read it, --in-flight at a time. Prints the
bytes that crossed each leg (client to master, master to workers: counted by
the master's and the workers' stores), against what sending the bundle with
every job would have cost (N times its size on each leg), and jobs/s with
--with against the same jobs without files, in one run, interleaved
(--rounds rounds of each, medians).

    .venv/bin/python bench/files.py                   # 200 jobs, 20 MB, 2 workers, 3 rounds
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

from gevent import monkey

monkey.patch_all()

import gevent.pool  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.benchlib import print_banner  # noqa: E402
from sieci.client import client  # noqa: E402
from sieci.master.master import Master  # noqa: E402
from sieci.wire.address import format_address  # noqa: E402
from sieci.worker.limits import Limits  # noqa: E402
from sieci.worker.worker import Worker  # noqa: E402

CODE = b"import os\nprint(os.path.exists('data.bin'))\n"  # the same code with and without the file


def run_jobs(runner, jobs, in_flight, files):
    """Seconds for ``jobs`` jobs, ``in_flight`` at a time; every one must succeed."""
    started = time.monotonic()
    results = gevent.pool.Pool(in_flight).map(lambda _: runner.run(CODE, "job.py", files=files), range(jobs))
    seconds = time.monotonic() - started
    assert all(result.exit_status == 0 for result in results), [r for r in results if r.exit_status][:1]
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--size", type=int, default=20, help="MB of the shared file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    print_banner("files: jobs sharing one file, content-addressed")
    limit = (options.size + 8) << 20
    master = Master(("127.0.0.1", 0), ("127.0.0.1", 0), max_upload=limit)
    master.start()
    workers = [Worker([master.workers_address], Limits(timeout=60), max_upload=limit) for _ in range(options.workers)]
    for worker in workers:
        worker.start()
    try:
        master.wait_for_workers(options.workers, 30)
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "data.bin"), "wb") as data:
                data.write(os.urandom(options.size << 20))
            files = client.pack_files([os.path.join(folder, "data.bin")], os.path.join(folder, "job.py"))
        runner = client.Client(format_address(master.clients_address))
        timings = {"with": [], "without": []}
        for round_number in range(options.rounds):
            for kind in ("with", "without") if round_number % 2 == 0 else ("without", "with"):
                timings[kind].append(run_jobs(runner, options.jobs, options.in_flight,
                                              files if kind == "with" else None))
        report(options, files, master, workers, timings)
    finally:
        for worker in workers:
            worker.stop(grace=1)
        master.stop(grace=1)


def report(options, files, master, workers, timings):
    jobs_with = options.jobs * options.rounds
    every_job = jobs_with * files.size
    to_master, to_workers = master.files.received_bytes, sum(worker.files.store.received_bytes for worker in workers)
    print(f"bundle: {files.size} bytes; {jobs_with} jobs with it, {options.workers} workers")
    print(f"client -> master : {to_master:>13,} bytes (with every job: {every_job:,}; ratio {to_master / every_job:.4f})")
    print(f"master -> workers: {to_workers:>13,} bytes (with every job: {every_job:,}; ratio {to_workers / every_job:.4f})")
    rate = {kind: options.jobs / statistics.median(seconds) for kind, seconds in timings.items()}
    print(f"jobs/s: with --with {rate['with']:.0f}, without {rate['without']:.0f}; "
          f"ratio {rate['with'] / rate['without']:.2f} (first round of 'with' pays the transfers)")


if __name__ == "__main__":
    main()
