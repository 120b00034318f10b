#!/usr/bin/env python3
"""A batch's memory: 8 jobs printing 300 MiB each, all at once, through a real client process.

Target (issue 16): the client's peak resident memory stays under 100 MB
while the 8 x 300 MiB (2.4 GiB) reach its stdout byte-exact and in input
order. Each job is running while the ones before it are shown, so the 7
whose turn has not come spool their output to disk. The client's stdout is
a pipe this script reads and checks as it comes (job N's lines are its own
letter, in order); the peak is the kernel's: VmHWM from /proc/<pid>/status,
read every 20 ms while it runs, and ru_maxrss from wait4 when it ends.

    .venv/bin/python bench/batchmemory.py                  # 8 x 300 MiB, ~1 min
    .venv/bin/python bench/batchmemory.py --jobs 4 --mib 50
"""

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import peak_mb, print_banner, write_job  # noqa: E402
from processes import LocalCluster, client_command  # noqa: E402

PEAK_TARGET_MB = 100.0
LINE_SIZE = 1 << 20
READ_SIZE = 1 << 20
LETTERS = "abcdefghijklmnopqrstuvwxyz"

JOB = """import sys
line = sys.argv[1].encode() * ({line_size} - 1) + b"\\n"
write = sys.stdout.buffer.write
for _ in range({lines}):
    write(line)
"""


class PeakSampler(threading.Thread):
    """The highest VmHWM seen of a process, read every ``period`` seconds until it is gone."""

    def __init__(self, pid, period=0.02):
        super().__init__(daemon=True)
        self.pid, self.period, self.peak = pid, period, 0.0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, peak_mb(self.pid))
            except (OSError, RuntimeError):
                return
            self.stopped.wait(self.period)


class OrderCheck:
    """Checks the client's stdout as it comes: ``lines`` lines of LINE_SIZE bytes of each job's letter,
    job after job."""

    def __init__(self, letters, lines):
        self.lines_of = [(letter.encode() * (LINE_SIZE - 1) + b"\n") * 2 for letter in letters]
        self.per_job = lines * LINE_SIZE
        self.total = self.per_job * len(letters)
        self.position = 0
        self.wrong_at = None

    def feed(self, data):
        view = memoryview(data)
        while view and self.wrong_at is None:
            if self.position >= self.total:
                self.wrong_at = self.position
                return
            job, offset = divmod(self.position, self.per_job)
            size = min(len(view), self.per_job - offset, LINE_SIZE)
            start = offset % LINE_SIZE
            if view[:size] != self.lines_of[job][start:start + size]:
                self.wrong_at = self.position
                return
            self.position += size
            view = view[size:]

    @property
    def right(self):
        return self.wrong_at is None and self.position == self.total


def run_batch(cluster, job_path, jobs, check, timeout):
    letters = LETTERS[:jobs]
    command = client_command("--jobs", str(jobs), cluster.client_addresses, job_path, ":::", *letters)
    started = time.monotonic()
    client = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = PeakSampler(client.pid)
    sampler.start()
    stderr = []
    reader = threading.Thread(target=lambda: stderr.append(client.stderr.read()), daemon=True)
    reader.start()
    fd = client.stdout.fileno()
    deadline = started + timeout
    try:
        while time.monotonic() < deadline and (data := os.read(fd, READ_SIZE)):
            check.feed(data)
    finally:
        if time.monotonic() >= deadline:
            client.kill()
        _, status, usage = os.wait4(client.pid, 0)
        client.returncode = os.waitstatus_to_exitcode(status)
        sampler.stopped.set()
        sampler.join()
        reader.join(timeout=5)
    return {"seconds": time.monotonic() - started, "exit": client.returncode, "vmhwm_mb": sampler.peak,
            "maxrss_mb": usage.ru_maxrss / 1024, "stderr": b"".join(stderr)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs in the batch, all at once (at most 26)")
    parser.add_argument("--mib", type=int, default=300, help="MiB each job prints")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    print_banner(f"batchmemory: {args.jobs} jobs printing {args.mib} MiB each, through one sieci-client batch")
    workdir, job_path = write_job("big.py", JOB.format(line_size=LINE_SIZE, lines=args.mib).encode())
    check = OrderCheck(LETTERS[:args.jobs], args.mib)
    try:
        with LocalCluster(masters=1, workers=args.jobs) as cluster:
            subprocess.run(client_command(cluster.client_addresses, "-"), input=b"pass\n", timeout=60,
                           check=True)  # the workers have linked
            figures = run_batch(cluster, job_path, args.jobs, check, args.timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    peak = max(figures["vmhwm_mb"], figures["maxrss_mb"])
    rate = check.position / figures["seconds"] / (1 << 20)
    print(f"{check.position:,} bytes of {check.total:,} in {figures['seconds']:.1f} s ({rate:.0f} MiB/s); "
          f"exit {figures['exit']}; output {'byte-exact and in order' if check.right else 'WRONG'}"
          + (f" (first wrong byte at {check.wrong_at:,})" if check.wrong_at is not None else ""))
    print(f"client peak RSS: VmHWM {figures['vmhwm_mb']:.1f} MB (sampled), ru_maxrss {figures['maxrss_mb']:.1f} MB "
          f"(at its end); target < {PEAK_TARGET_MB:.0f} MB: {'met' if peak < PEAK_TARGET_MB else 'NOT met'}")
    if figures["stderr"]:
        print("client stderr:", figures["stderr"][-500:].decode(errors="replace"))
    return 0 if check.right and figures["exit"] == 0 and peak < PEAK_TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
