#!/usr/bin/env python3
"""Big output: 200 MiB of a job's stdout, end to end to the client's stdout.

Target: the job's 200 MiB reach the stdout of a real `sieci-client` process
(bin/client, started by this script, its stdout a pipe that this script reads,
counts and hashes) at no less than half the speed of the same job run
locally, and the master's resident memory grows by less than
30 MB while it relays them (VmRSS sampled from /proc every 10 ms).

The baseline is what a user would run instead: the same job run locally by
the interpreter sieci's jobs use (`python big.py`, its stdout a pipe that
this script reads, counts and hashes the same way). The two are measured in
alternating rounds; medians are printed. Each rate is given twice: end to
end (from starting the job, or the client, to the last byte read; each
includes a Python start, the job's for sieci) and streaming (first byte to
last byte). Every run's bytes are checked: count and SHA-256.

    .venv/bin/python bench/bigoutput.py             # 5 rounds of 200 MiB each
"""

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import shutil
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import cpu_seconds, job_like_environment, median, print_banner, rss_mb, write_job  # noqa: E402
from processes import LocalCluster, client_command  # noqa: E402

RATIO_TARGET = 0.5
RSS_TARGET_MB = 30.0
LINE = b"x" * 65535 + b"\n"  # the job writes this line over and over

JOB = """import sys
chunk = b"x" * 65535 + b"\\n"
write = sys.stdout.buffer.write
for _ in range({lines}):
    write(chunk)
"""

class Sampler(threading.Thread):
    """Samples the VmRSS of some processes every ``period`` seconds until stopped."""

    def __init__(self, pids, period=0.01):
        super().__init__(daemon=True)
        self.pids, self.period = dict(pids), period
        self.peak = {name: 0.0 for name in self.pids}
        self.samples = 0
        self.stopped = threading.Event()

    def add(self, name, pid):
        self.peak.setdefault(name, 0.0)
        self.pids[name] = pid

    def run(self):
        while not self.stopped.is_set():
            for name, pid in list(self.pids.items()):
                try:
                    self.peak[name] = max(self.peak[name], rss_mb(pid))
                except (OSError, RuntimeError):
                    pass
            self.samples += 1
            self.stopped.wait(self.period)

    def stop(self):
        self.stopped.set()
        self.join()
        return self.peak


def read_counting(fd, read_size, deadline):
    """Reads ``fd`` to its end (or ``deadline``): byte count, SHA-256, times of the first and last byte."""
    digest, count, first = hashlib.sha256(), 0, None
    while time.monotonic() < deadline:
        data = os.read(fd, read_size)
        if not data:
            break
        if first is None:
            first = time.monotonic()
        count += len(data)
        digest.update(data)
    last = time.monotonic()
    return count, digest.hexdigest(), first or last, last


def local_copy(job_path, read_size):
    """The job run locally, its stdout a pipe read here: count, SHA-256, seconds end to end and
    streaming, and the job's CPU seconds."""
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    job = subprocess.Popen([sys.executable, job_path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           env=job_like_environment())
    try:
        count, sha, first, last = read_counting(job.stdout.fileno(), read_size, started + 120)
        status = job.wait(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    if status != 0:
        raise RuntimeError(f"the local job exited {status}")
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (children_after.ru_utime - children_before.ru_utime + children_after.ru_stime - children_before.ru_stime)
    return count, sha, last - started, last - first, cpu


def sieci_copy(cluster, job_path, read_size):
    master_pid = cluster.masters[0].process.pid
    worker_pids = {f"worker {n + 1}": worker.process.pid for n, worker in enumerate(cluster.workers)}
    rss_before = {"master": rss_mb(master_pid), **{name: rss_mb(pid) for name, pid in worker_pids.items()}}
    sampler = Sampler({"master": master_pid, **worker_pids})
    cpu_before = {"master": cpu_seconds(master_pid),
                  **{name: cpu_seconds(pid, children=True) for name, pid in worker_pids.items()}}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.start()
    started = time.monotonic()
    client = subprocess.Popen(client_command(cluster.client_addresses, job_path), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler.add("client", client.pid)
    try:
        count, sha, first, last = read_counting(client.stdout.fileno(), read_size, started + 120)
        stderr = client.stderr.read()
        status = client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    peak = sampler.stop()
    elapsed = last - started
    cpu = {"master": cpu_seconds(master_pid) - cpu_before["master"],
           **{name: cpu_seconds(pid, children=True) - cpu_before[name] for name, pid in worker_pids.items()}}
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu["client"] = (children_after.ru_utime - children_before.ru_utime
                     + children_after.ru_stime - children_before.ru_stime)
    growth = {name: peak[name] - rss_before[name] for name in rss_before}
    if status != 0:
        raise RuntimeError(f"the client exited {status}: {stderr[-500:]!r}")
    return {"count": count, "sha256": sha, "end_to_end": elapsed, "streaming": last - first,
            "rss_before": rss_before, "growth": growth,
            "client_peak": peak["client"], "cpu": cpu, "samples": sampler.samples}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=200, help="MiB of output (a multiple of 1 MiB)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=256 * 1024, help="this script's pipe read size")
    args = parser.parse_args(argv)
    lines = args.mib * (1 << 20) // len(LINE)
    total = lines * len(LINE)
    print_banner(f"bigoutput: {args.mib} MiB of job stdout through sieci vs the same job run locally")
    expected = hashlib.sha256()
    for _ in range(lines):
        expected.update(LINE)
    expected = expected.hexdigest()
    print(f"{total} bytes ({lines} lines of 64 KiB); sha256 {expected[:16]}...; the client's stdout, and the "
          f"local job's, a pipe read by this script ({args.chunk}-byte reads), counted and hashed")
    workdir, job_path = write_job("big.py", JOB.format(lines=lines).encode())
    results = {"baseline": [], "sieci": []}
    all_right = True
    with LocalCluster(masters=1, workers=2) as cluster:
        subprocess.run(client_command(cluster.client_addresses, "-"), input=b"pass\n", timeout=60,
                       check=True)  # the workers have linked
        for number in range(1, args.rounds + 1):
            for kind in ("baseline", "sieci") if number % 2 else ("sieci", "baseline"):
                if kind == "baseline":
                    count, sha, end_to_end, streaming, cpu = local_copy(job_path, args.chunk)
                    extra = f"\n           CPU seconds: the local job {cpu:.2f}"
                else:
                    run = sieci_copy(cluster, job_path, args.chunk)
                    count, sha, end_to_end, streaming = run["count"], run["sha256"], run["end_to_end"], run["streaming"]
                    workers = [name for name in run["growth"] if name.startswith("worker")]
                    busy = max(workers, key=lambda name: run["cpu"][name])
                    extra = (f"\n           master RSS {run['rss_before']['master']:.1f} MB, peak growth "
                             f"{run['growth']['master']:+.1f} MB ({run['samples']} samples); {busy} (the job's) "
                             f"{run['growth'][busy]:+.1f} MB; client peak RSS {run['client_peak']:.1f} MB"
                             f"\n           CPU seconds: master {run['cpu']['master']:.2f}, {busy} with its job "
                             f"{run['cpu'][busy]:.2f}, client {run['cpu']['client']:.2f}")
                    results.setdefault("growth", []).append(run["growth"]["master"])
                right = count == total and sha == expected
                all_right &= right
                results[kind].append((end_to_end, streaming))
                mb = total / 1e6
                print(f"round {number} {kind:8s}: {mb / end_to_end:7.1f} MB/s end to end ({end_to_end:.3f} s), "
                      f"{mb / streaming:7.1f} MB/s streaming ({streaming:.3f} s); "
                      + ("bytes right" if right else f"BYTES WRONG: {count} bytes, sha256 {sha[:16]}...")
                      + extra)
                sys.stdout.flush()
    shutil.rmtree(workdir, ignore_errors=True)
    mb = total / 1e6
    print()
    rates = {}
    for kind in ("baseline", "sieci"):
        end_to_end = median(value[0] for value in results[kind])
        streaming = median(value[1] for value in results[kind])
        rates[kind] = (mb / end_to_end, mb / streaming)
        print(f"{kind:8s} median: {rates[kind][0]:7.1f} MB/s end to end, {rates[kind][1]:7.1f} MB/s streaming")
    ratio = rates["sieci"][0] / rates["baseline"][0]
    print(f"ratio sieci / baseline, end to end: {ratio:.3f} (target >= {RATIO_TARGET}: "
          f"{'met' if ratio >= RATIO_TARGET else 'NOT met'})")
    print(f"ratio sieci / baseline, streaming:  {rates['sieci'][1] / rates['baseline'][1]:.3f}")
    growth = max(results["growth"])
    print(f"master RSS growth while relaying, largest of {args.rounds}: {growth:+.1f} MB "
          f"(target < {RSS_TARGET_MB:.0f} MB: {'met' if growth < RSS_TARGET_MB else 'NOT met'})")
    print("every byte right" if all_right else "SOME OUTPUT WRONG")
    return 0 if all_right else 1


if __name__ == "__main__":
    sys.exit(main())
