#!/usr/bin/env python3
"""Job cost: the CPU and page faults of one hello-world job, by process, on the worker's host.

Drives a worker's fork server directly (the worker's own JobRunner, without
master, client or network): one `print("hello")` job at a time, --jobs per
round after a warm-up. For each round it reads, per job:

- the fork server's own CPU (/proc/PID/schedstat, nanoseconds) and faults;
- all the fork server has reaped (/proc/PID/stat, exact): each job's
  process, from its fork as the standby to its end, rehearsal and exit
  included, and with walls on the init of its PID namespace (a 40-byte
  program, pid_init.py);
- the faults of each job's process and of each init, from the kernel's
  exit record of each (taskstats, by pid; an init is the process spawned
  just before its job). Their CPU there is counted in whole ticks: unused.

Each --checkout (a folder holding a `sieci` package; default: this
checkout) runs in a driver process of its own, all taking turns in every
round (A/B in the same run), with walls on (namespaces and a cgroup, as the
worker has them by default) and off. Prints the median of the rounds. Needs
root (taskstats, and the walls).

    .venv/bin/python bench/jobcost.py --python /tmp/plain/bin/python
    .venv/bin/python bench/jobcost.py --checkout /tmp/base --checkout . --rounds 7
"""

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
HELLO = b'print("hello")\n'
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the jobs' interpreter (default: this one)")
    parser.add_argument("--checkout", action="append", help="a folder with sieci's code; repeat to compare")
    parser.add_argument("--walls", choices=("on", "off", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=300, help="measured jobs per round and checkout")
    parser.add_argument("--warm-up", type=int, default=30, help="jobs before each round's measure")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        json.dump(drive(args.drive, args.python, args.walls == "on", args.jobs, args.warm_up), sys.stdout)
        return
    if os.geteuid() != 0:
        sys.exit("jobcost.py: run as root (taskstats and the walls need it)")
    checkouts = [os.path.abspath(path) for path in args.checkout or [CHECKOUT]]
    sys.path.insert(0, HERE)
    from benchlib import median, print_banner

    print_banner("jobcost.py: one hello-world job's CPU and faults on the worker's host, by process")
    print(f"jobs' interpreter: {args.python}; {args.jobs} jobs a round after {args.warm_up}, {args.rounds} rounds")
    walls = ["on", "off"] if args.walls == "both" else [args.walls]
    results = {(wall, path): [] for wall in walls for path in checkouts}
    for round_number in range(args.rounds):
        order = checkouts if round_number % 2 == 0 else checkouts[::-1]
        for wall in walls:
            for path in order:
                results[wall, path].append(run_driver(path, args, wall))
        print(f"round {round_number + 1} of {args.rounds} done", file=sys.stderr)
    print_table(results, median)


def run_driver(path, args, wall):
    command = [sys.executable, os.path.abspath(__file__), "--drive", path, "--python", args.python,
               "--walls", wall, "--jobs", str(args.jobs), "--warm-up", str(args.warm_up)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"jobcost.py: the driver of {path} failed:\n{done.stderr}")
    return json.loads(done.stdout)


COLUMNS = [("fork server", "server_ms"), ("job (and init)", "job_ms"), ("all", "all_ms"),
           ("faults: server", "server_faults"), ("job", "job_faults"), ("init", "init_faults")]


def print_table(results, median):
    print("\nper job, median of the rounds (CPU in ms; minor page faults)")
    print("| walls | checkout | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for (wall, path), rounds in results.items():
        cells = [format_cell(median([one[key] for one in rounds]), key) for _, key in COLUMNS]
        print(f"| {wall} | {path} | " + " | ".join(cells) + " |")
    print("inits matched to their jobs (walls on): " + ", ".join(
        f"{median([one['inits_seen'] for one in rounds]):.0%}" for (wall, _), rounds in results.items() if wall == "on"))
    print("\nrounds (all_ms): " + "; ".join(
        f"{wall} {os.path.basename(path)}: " + ", ".join(f"{one['all_ms']:.2f}" for one in rounds)
        for (wall, path), rounds in results.items()))


def format_cell(value, key):
    return f"{value:.2f}" if key.endswith("_ms") else f"{value:.0f}"


# --- the driver: one fork server, in a process of its own ---------------------------------


def drive(path, python, walls, jobs, warm_up):
    sys.path.insert(0, path)
    from sieci.worker.executor import JobRunner
    from sieci.worker.isolation import Isolation

    isolation = Isolation(namespaces=walls, cgroups=walls)
    user = (65534, 65534)
    if not walls and isolation.unreadable_for(user, python):
        user = None  # nobody cannot reach this interpreter without the walls' view: the bench's own user
    runner = JobRunner(python=python, job_user=user, isolation=isolation)
    runner.start()
    exits = TaskExits()
    try:
        server = only_child()
        for _ in range(warm_up):
            run_job(runner)
        before = process_counters(server)
        job_pids = [run_job(runner) for _ in range(jobs)]
        after = process_counters(server)
        job_exits = exits.collect(set(job_pids))
        init_exits = exits.collect({pid - 1 for pid in job_pids}, timeout=0.1) if walls else {}
    finally:
        runner.close()
        exits.close()
    if len(job_exits) != jobs:
        raise SystemExit(f"saw {len(job_exits)} of {jobs} jobs' exits")
    inits = [faults for faults in init_exits.values() if faults < INIT_MOST_FAULTS]
    reaped_ms = (after["children_ticks"] - before["children_ticks"]) * TICK_MS / jobs
    server_ms = (after["cpu_ns"] - before["cpu_ns"]) / 1e6 / jobs
    return {"server_ms": server_ms, "job_ms": reaped_ms, "all_ms": server_ms + reaped_ms,
            "server_faults": (after["faults"] - before["faults"]) / jobs, "job_faults": sum(job_exits.values()) / jobs, "init_faults": sum(inits) / len(inits) if inits else 0.0,
            "inits_seen": len(inits) / jobs}


def run_job(runner):
    from sieci.worker.executor import JobSettings

    with runner.run(JobSettings(HELLO, filename="hello.py")) as run:
        output = b"".join(data for stream, data in run.output() if stream is not None)
    if (run.status.kind, run.status.value) != (b"exit", b"0") or output != b"hello\n":
        raise SystemExit(f"a job failed: {run.status} {output!r}")
    return run.pid


def only_child():
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as children:
        (pid,) = children.read().split()
    return int(pid)


def process_counters(pid):
    with open(f"/proc/{pid}/schedstat") as schedstat:
        cpu_ns = int(schedstat.read().split()[0])
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (the 3rd field of stat): minflt is the 10th, cminflt 11th, cutime 16th, cstime 17th.
    return {"cpu_ns": cpu_ns, "faults": int(fields[7]), "children_faults": int(fields[8]),
            "children_ticks": int(fields[13]) + int(fields[14])}


# --- the kernel's exit records (taskstats over generic netlink) ---------------------------

NETLINK_GENERIC, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_FAMILY_ID = 16, 0x10, 3, 2, 1
TASKSTATS_CMD_GET, TASKSTATS_CMD_ATTR_REGISTER_CPUMASK = 1, 3
TASKSTATS_TYPE_PID, TASKSTATS_TYPE_STATS, TASKSTATS_TYPE_AGGR_PID = 1, 3, 4
# Offsets in struct taskstats (linux/taskstats.h, the same from version 1 onwards).
AC_MINFLT = 168
INIT_MOST_FAULTS = 50  # a process spawned before a job with more is not its init


class TaskExits:
    """The kernel's record of every process that exits on this host from now on: its faults, by pid."""

    def __init__(self):
        self.socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.socket.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: the whole host's exits
        self.socket.bind((0, 0))
        family = self._family_id()
        cpus = f"0-{os.cpu_count() - 1}".encode() + b"\0"
        self._request(family, TASKSTATS_CMD_GET, attribute(TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, cpus))
        self.seen = {}

    def _family_id(self):
        self._request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, attribute(CTRL_ATTR_FAMILY_NAME, b"TASKSTATS\0"))
        for _, _, payload in messages(self.socket.recv(1 << 16)):
            for kind, value in attributes(payload[4:]):
                if kind == CTRL_ATTR_FAMILY_ID:
                    return struct.unpack_from("=H", value)[0]
        raise SystemExit("no taskstats in this kernel")

    def _request(self, family, command, payload):
        body = struct.pack("=BBH", command, 1, 0) + payload
        self.socket.send(struct.pack("=IHHII", 16 + len(body), family, 1, 0, 0) + body)

    def collect(self, pids, timeout=5.0):
        """{pid: minor faults} of those of ``pids`` that exit within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not pids <= self.seen.keys() and time.monotonic() < deadline:
            self.socket.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.socket.recv(1 << 20)
            except socket.timeout:
                break
            for _, _, payload in messages(data):
                self._note(payload[4:])
        return {pid: self.seen[pid] for pid in pids if pid in self.seen}

    def _note(self, payload):
        for kind, value in attributes(payload):
            if kind != TASKSTATS_TYPE_AGGR_PID:
                continue
            pid = faults = None
            for inner, data in attributes(value):
                if inner == TASKSTATS_TYPE_PID:
                    pid = struct.unpack_from("=I", data)[0]
                elif inner == TASKSTATS_TYPE_STATS:
                    faults = struct.unpack_from("=Q", data, AC_MINFLT)[0]
            if pid is not None and faults is not None:
                self.seen[pid] = faults

    def close(self):
        self.socket.close()


def attribute(kind, value):
    return struct.pack("=HH", 4 + len(value), kind) + value + bytes(-len(value) % 4)


def attributes(data):
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def messages(data):
    offset = 0
    while offset + 16 <= len(data):
        length, kind, flags = struct.unpack_from("=IHH", data, offset)
        if length < 16:
            return
        yield kind, flags, data[offset + 16:offset + length]
        offset += (length + 3) & ~3


if __name__ == "__main__":
    main()
