#!/usr/bin/env python3
"""Scale: a master with many idle workers, and with many queued clients.

Part 1. Target: with --many (1,000) idle simulated workers linked, the master
(a real master process on 127.0.0.1) dispatches at least half as many jobs
per second as with --few (10). The simulated workers are light test peers,
greenlets in this process: each answers every AVAILABLE with READY at once,
a job with RECEIVED and an instant extended result, and ROLLBACK with
nothing. The load generator (greenlets running sieci.client.client.run, --in-flight
at once) is the same for both; the two sizes are measured in alternating
rounds, each bounded by --jobs jobs and --seconds seconds, and every answer
is checked. Also printed: the CPU the master and this process used, and the
AVAILABLE and ROLLBACK messages the simulated workers got per job.

Part 2. Target: with --clients (10,000) clients queued at once (connections
that each uploaded a tiny job, to a fresh master with no worker, so they stay
queued), the master's resident memory (VmRSS from /proc) stays under 300 MB.
Then 10 simulated workers link and the queue drains (bounded by
--drain-seconds; what is left is closed), and every answer is checked.

    .venv/bin/python bench/workers.py               # 10 vs 1,000 workers; then 10,000 queued clients
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (PeerCounters, cpu_seconds, fd_count, hello_jobs, median, print_banner,  # noqa: E402
                      raise_fd_limit, rss_mb, simulated_worker)
from processes import Daemon, free_port, wait_for_port  # noqa: E402

from sieci.wire import protocol  # noqa: E402

SCALE_TARGET = 0.5
RSS_TARGET_MB = 300.0


def start_master():
    workers_port, clients_port = free_port(), free_port()
    master = Daemon("master", [f"127.0.0.1:{workers_port}", f"127.0.0.1:{clients_port}"]).start()
    wait_for_port(clients_port)
    gevent.sleep(0.2)  # the master has closed wait_for_port's probe connection
    return master, workers_port, f"127.0.0.1:{clients_port}"


def wait_until(condition, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(step)
    return True


class SimulatedWorkers:
    """``count`` simulated workers linked to the master at ``port``."""

    def __init__(self, port, count, master_pid, check_master=True):
        self.port, self.count, self.master_pid, self.check_master = port, count, master_pid, check_master
        self.counters = PeerCounters()
        self.greenlets = []

    def __enter__(self):
        base = fd_count(self.master_pid)
        for number in range(self.count):
            if number % 100 == 0:  # the master's listen backlog is finite: link them 100 at a time
                wait_until(lambda: self.counters.linked >= number, 30)
            self.greenlets.append(gevent.spawn(simulated_worker, self.port, self.counters))
        # With check_master, also until the master holds their links (not just the kernel's backlog).
        if not wait_until(lambda: self.counters.linked >= self.count and (
                not self.check_master or fd_count(self.master_pid) >= base + self.count - 2), 60):
            raise RuntimeError(f"only {self.counters.linked} of {self.count} simulated workers linked within 60 s")
        return self

    def __exit__(self, *exc_info):
        base = fd_count(self.master_pid) - self.counters.linked
        gevent.killall(self.greenlets, timeout=10)
        wait_until(lambda: fd_count(self.master_pid) <= base, 30)  # the master has seen them go


def dispatch_rate(args, master, workers_port, address, size):
    pid = master.process.pid
    with SimulatedWorkers(workers_port, size, pid) as peers:
        hello_jobs(address, args.in_flight, 4 * args.in_flight, 20)  # warm-up
        before = peers.counters.available, peers.counters.rollbacks
        cpu_before = cpu_seconds(pid), cpu_seconds(os.getpid())
        outcomes, elapsed = hello_jobs(address, args.in_flight, args.jobs, args.seconds)
        cpu = (cpu_seconds(pid) - cpu_before[0]) / elapsed, (cpu_seconds(os.getpid()) - cpu_before[1]) / elapsed
        done = max(1, sum(outcomes.values()))
        available = (peers.counters.available - before[0]) / done
        rollbacks = (peers.counters.rollbacks - before[1]) / done
        rss = rss_mb(pid)
    rate = outcomes["right"] / elapsed
    bad = "" if outcomes["right"] == done else f" ({outcomes['wrong']} WRONG, {outcomes['failed']} FAILED)"
    print(f"  {size:5d} workers: {outcomes['right']}/{done} right in {elapsed:5.2f} s = {rate:7.1f} jobs/s{bad}; "
          f"per job {available:6.1f} AVAILABLE, {rollbacks:6.1f} ROLLBACK; CPU (cores) master {cpu[0]:.2f}, "
          f"bench {cpu[1]:.2f}; master RSS {rss:.1f} MB")
    sys.stdout.flush()
    return rate, outcomes["right"] == done


def part_one(args):
    print(f"part 1: jobs/s with {args.few} vs {args.many} idle simulated workers, {args.in_flight} jobs in flight, "
          f"<= {args.jobs} jobs or {args.seconds:g} s per round, {args.rounds} rounds of each")
    master, workers_port, address = start_master()
    rates = {args.few: [], args.many: []}
    all_right = True
    try:
        for number in range(1, args.rounds + 1):
            print(f" round {number}:")
            for size in (args.few, args.many) if number % 2 else (args.many, args.few):
                rate, right = dispatch_rate(args, master, workers_port, address, size)
                rates[size].append(rate)
                all_right &= right
    finally:
        master.stop()
    few, many = median(rates[args.few]), median(rates[args.many])
    ratio = many / few if few else 0.0
    print(f" median jobs/s: {args.few} workers {few:.1f}, {args.many} workers {many:.1f}")
    print(f" ratio {args.many} / {args.few} workers: {ratio:.3f} (target >= {SCALE_TARGET}: "
          f"{'met' if ratio >= SCALE_TARGET else 'NOT met'})")
    return all_right


def open_queued_client(port, number, sockets, failures):
    block = protocol.encode_block(b'print("queued %d")\n' % number, [protocol.EXTENDED])
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        sock.sendall(block)
    except OSError as error:
        failures.append(str(error))
        return
    sockets[number] = sock


def without_job_ids(received):
    """A queued client's answer without its QUEUED line, and RECEIVED without the job's id (job=...)."""
    received = re.sub(rb"\AQUEUED[ \S]*\n", b"", received)
    return re.sub(rb"\ARECEIVED[ \S]*\n", b"RECEIVED\n", received)


def read_answer(number, sock, deadline, answers):
    expected = b"RECEIVED\nENDSEQ t v=2\no queued %d\nx exit 0\nt\n" % number
    received = b""
    try:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        while len(without_job_ids(received)) < len(expected):
            data = sock.recv(4096)
            if not data:
                break
            received += data
    except OSError:
        answers["unfinished"] += 1
        return
    answers["right" if without_job_ids(received) == expected else "wrong"] += 1


def part_two(args):
    hard = raise_fd_limit()
    clients = args.clients
    room = hard - fd_count(os.getpid()) - 100
    print()
    print(f"part 2: {args.clients} clients queued at once on a master with no worker "
          f"(RLIMIT_NOFILE hard limit here: {hard})")
    if clients > room:
        print(f" only {room} connections fit in this process's descriptor limit; using {room}")
        clients = room
    master, workers_port, address = start_master()
    port = int(address.rsplit(":", 1)[1])
    pid = master.process.pid
    sockets, failures = {}, []
    try:
        gevent.sleep(0.5)
        rss_before, fds_before = rss_mb(pid), fd_count(pid)
        started = time.monotonic()
        pool = gevent.pool.Pool(500)
        for number in range(clients):
            if time.monotonic() - started > args.connect_seconds:
                print(f" stopped connecting after {args.connect_seconds:g} s")
                break
            pool.spawn(open_queued_client, port, number, sockets, failures)
        pool.join(timeout=60)
        opened = time.monotonic() - started
        all_in = wait_until(lambda: fd_count(pid) >= fds_before + len(sockets), 60)
        samples = []
        for _ in range(6):  # the master may still be reading the last uploads: let RSS settle
            gevent.sleep(0.5)
            samples.append(rss_mb(pid))
        rss_queued, fds_queued = max(samples), fd_count(pid)
        refused = 0
        for sock in sockets.values():  # a queued client has heard nothing yet, or QUEUED
            sock.settimeout(0)  # gevent's sockets wait for data unless non-blocking
            try:
                heard = sock.recv(16, socket.MSG_PEEK)
                if heard and not heard.startswith(b"QUEUED"):
                    refused += 1
            except BlockingIOError:
                pass
            except OSError:
                refused += 1
        print(f" {len(sockets)} connections opened and uploaded in {opened:.1f} s ({len(failures)} failed"
              + (f": {failures[0]}" if failures else "") + f"); master holds {fds_queued} fds "
              f"({fds_queued - fds_before:+d}){'' if all_in else ' (NOT all arrived)'}; "
              f"{refused} clients already had an answer (refused or closed)")
        growth = rss_queued - rss_before
        print(f" master RSS: {rss_before:.1f} MB before, {rss_queued:.1f} MB with {len(sockets)} queued "
              f"({growth:+.1f} MB, {1024 * growth / max(1, len(sockets)):.1f} KB per client)")
        verdict = "met" if rss_queued < RSS_TARGET_MB else "NOT met"
        print(f" target RSS < {RSS_TARGET_MB:.0f} MB with {len(sockets)} queued: {verdict}"
              + ("" if len(sockets) == args.clients else f" (with {len(sockets)}, not {args.clients})"))
        # Drain: 10 simulated workers answer the queue; every client's answer is checked.
        answers = {"right": 0, "wrong": 0, "unfinished": 0}
        deadline = time.monotonic() + args.drain_seconds
        readers = [gevent.spawn(read_answer, number, sock, deadline, answers) for number, sock in sockets.items()]
        drain_started = time.monotonic()
        with SimulatedWorkers(workers_port, args.drain_workers, pid, check_master=False):
            gevent.joinall(readers, timeout=args.drain_seconds + 5)
            drained = time.monotonic() - drain_started
        gevent.killall(readers, timeout=5)
        print(f" drained by {args.drain_workers} simulated workers in {drained:.1f} s "
              f"({answers['right'] / drained:.0f} jobs/s): {answers['right']} right, {answers['wrong']} wrong, "
              f"{answers['unfinished']} unfinished (closed after --drain-seconds)")
    finally:
        for sock in sockets.values():
            sock.close()
        if sockets:
            wait_until(lambda: fd_count(pid) <= fds_before + 5, 30)
            print(f" after closing every client: master RSS {rss_mb(pid):.1f} MB, {fd_count(pid)} fds")
        master.stop()
    return answers["wrong"] == 0 and answers["unfinished"] == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--many", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2000, help="at most this many jobs per round")
    parser.add_argument("--seconds", type=float, default=15.0, help="and at most this long per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=10000, help="clients queued at once in part 2")
    parser.add_argument("--connect-seconds", type=float, default=120.0)
    parser.add_argument("--drain-workers", type=int, default=10)
    parser.add_argument("--drain-seconds", type=float, default=120.0)
    parser.add_argument("--skip-part-one", action="store_true")
    parser.add_argument("--skip-part-two", action="store_true")
    args = parser.parse_args(argv)
    print_banner("workers: master dispatch with many idle workers, and memory with many queued clients")
    raise_fd_limit()
    right = True
    if not args.skip_part_one:
        right &= part_one(args)
    if not args.skip_part_two:
        right &= part_two(args)
    print("every answer right" if right else "SOME ANSWERS WRONG, FAILED OR UNFINISHED")
    return 0 if right else 1


if __name__ == "__main__":
    sys.exit(main())
