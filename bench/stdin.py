#!/usr/bin/env python3
"""A job's stdin: `producer | sieci-client M filter.py | consumer` against `producer | python3 filter.py | consumer`.

Target: 2 GiB through a remote filter with constant memory: the peak RSS
(VmHWM) of the client, the master and the workers each grows by less than
30 MB over the run, whatever the size (run with a smaller --mib to see that
it does not move). Speed is reported against the local pipeline, measured
in the same run (alternating rounds, medians): the bytes cross three
processes and two sockets more, so no ratio is promised.

The producer is a Python process writing --mib MiB of 64 KiB lines to its
stdout; the filter copies its stdin to its stdout (read1/write, 64 KiB at a
time); this script reads the consumer end, counts and hashes it. The
client's peak RSS is its ru_maxrss, from a wrapper that waits for it.

    .venv/bin/python bench/stdin.py                 # 3 rounds of 2 GiB each, ~1 min
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import median, peak_mb, print_banner, write_job  # noqa: E402
from processes import LocalCluster, client_command  # noqa: E402

RSS_TARGET_MB = 30.0
LINE = b"x" * 65535 + b"\n"

PRODUCER = """import sys
line = b"x" * 65535 + b"\\n"
block = line * 16
write = sys.stdout.buffer.write
for _ in range(int(sys.argv[1]) // 16):
    write(block)
"""

FILTER = """import sys
read, write = sys.stdin.buffer.read1, sys.stdout.buffer.write
while data := read(1 << 16):
    write(data)
"""

# Runs a command and reports its peak RSS (ru_maxrss, KiB) on the fd its first argument names, once it has ended.
PEAK = """import os, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(report)
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
os.write(report, str(usage.ru_maxrss).encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def pipeline(command, lines, read_size=256 << 10, deadline=300):
    """Run producer | command, reading its stdout: (count, sha256, seconds, the command's peak RSS in MB)."""
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER, str(lines)], stdout=subprocess.PIPE)
    peak_read, peak_write = os.pipe()
    started = time.monotonic()
    filtered = subprocess.Popen([sys.executable, "-c", PEAK, str(peak_write), *command], stdin=producer.stdout,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(peak_write,))
    producer.stdout.close()
    os.close(peak_write)
    digest, count = hashlib.sha256(), 0
    try:
        while time.monotonic() < started + deadline and (data := os.read(filtered.stdout.fileno(), read_size)):
            count += len(data)
            digest.update(data)
        seconds = time.monotonic() - started
        stderr = filtered.stderr.read()
        status = filtered.wait(timeout=30)
        peak = int(os.read(peak_read, 64) or 0) / 1024
    finally:
        for process in (producer, filtered):
            if process.poll() is None:
                process.kill()
            process.wait()
        os.close(peak_read)
    if status != 0:
        raise RuntimeError(f"{command[-1]} exited {status}: {stderr[-500:]!r}")
    return count, digest.hexdigest(), seconds, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=2048, help="MiB of stdin (a multiple of 1 MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    lines = args.mib * 16
    total = lines * len(LINE)
    print_banner(f"stdin: {args.mib} MiB through a filter job, remote (sieci) vs local (python3)")
    expected = hashlib.sha256()
    block = LINE * 16
    for _ in range(lines // 16):
        expected.update(block)
    expected = expected.hexdigest()
    workdir, filter_path = write_job("filter.py", FILTER.encode())
    results = {"local": [], "sieci": []}
    growth = {}
    all_right = True
    with LocalCluster(masters=1, workers=2, worker_options=("--max-output", f"{2 * args.mib + 1}M")) as cluster:
        subprocess.run(client_command(cluster.client_addresses, "-"), input=b"pass\n", timeout=60, check=True)
        daemons = {"master": cluster.masters[0].process.pid,
                   **{f"worker {n + 1}": worker.process.pid for n, worker in enumerate(cluster.workers)}}
        subprocess.run(client_command(cluster.client_addresses, filter_path), input=LINE * 64, timeout=60,
                       check=True, stdout=subprocess.DEVNULL)  # each daemon's memory after a small stdin job
        before = {name: peak_mb(pid) for name, pid in daemons.items()}
        for number in range(1, args.rounds + 1):
            for kind in ("local", "sieci") if number % 2 else ("sieci", "local"):
                command = [sys.executable, filter_path] if kind == "local" else \
                    client_command(cluster.client_addresses, filter_path)
                count, sha, seconds, peak = pipeline(command, lines)
                right = count == total and sha == expected
                all_right &= right
                results[kind].append((seconds, peak))
                print(f"round {number} {kind:5s}: {total / 1e6 / seconds:7.1f} MB/s ({seconds:.2f} s), "
                      f"{'client' if kind == 'sieci' else 'python3'} peak RSS {peak:.1f} MB; "
                      + ("bytes right" if right else f"BYTES WRONG: {count} bytes, sha256 {sha[:16]}..."))
                sys.stdout.flush()
        growth = {name: peak_mb(pid) - before[name] for name, pid in daemons.items()}
    shutil.rmtree(workdir, ignore_errors=True)
    print()
    rates = {kind: total / 1e6 / median(seconds for seconds, _ in results[kind]) for kind in results}
    for kind in results:
        print(f"{kind:5s} median: {rates[kind]:7.1f} MB/s, peak RSS {max(p for _, p in results[kind]):.1f} MB")
    print(f"ratio sieci / local: {rates['sieci'] / rates['local']:.3f}")
    client_growth = max(p for _, p in results["sieci"]) - min(p for _, p in results["local"])
    print("peak RSS growth over the run: " + ", ".join(f"{name} {mb:+.1f} MB" for name, mb in growth.items())
          + f"; client peak {client_growth:+.1f} MB over the local python3's")
    met = max([*growth.values(), client_growth]) < RSS_TARGET_MB
    print(f"constant memory (every growth < {RSS_TARGET_MB:.0f} MB): {'met' if met else 'NOT met'}")
    print(json.dumps({"rates_mb_s": rates, "growth_mb": growth, "client_over_python3_mb": client_growth}))
    print("every byte right" if all_right else "SOME OUTPUT WRONG")
    return 0 if all_right and met else 1


if __name__ == "__main__":
    sys.exit(main())
