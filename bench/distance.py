#!/usr/bin/env python3
"""Distance: how throughput and latency suffer when the hosts are a round-trip time (RTT) apart.

Hosts: a master, two workers and a client, each in a network namespace of
its own (root and `ip` needed), each joined to a hub namespace by a veth
pair (10.77.N.2 on the host's side, 10.77.N.1 on the hub's). Where
namespaces cannot be made, every host is 127.0.0.1 and the bench says so.
The kernel here has no netem, so distance comes from a relay of our own (an
asyncio process in the hub) that every delayed connection goes through, also
at RTT 0 (so the relay's own cost is in every row).

The relay's model, per connection, with d = RTT/2 (one way):
- each chunk it reads is written to the other side d after it was read, in
  order; an end of stream (FIN) likewise;
- the TCP handshake: the connecting side's connect() returns at once (the
  relay accepts locally), but nothing it sends passes before accept + 3d
  (a real connect returns after a full RTT, and its first data needs d more),
  and nothing the far side sends arrives before accept + 4d;
- timers are late by up to 1 ms (epoll's resolution); the relay fires them
  half a millisecond early to centre that error. The measured RTT is shown.
Not modelled: bandwidth, TCP windows and slow start (a sender's window is
never limited by the RTT: its ACKs come from the relay at once), loss,
reordering, resets (a reset is passed on as a close), delayed ACKs.

Measured in one run, for each configuration (a list of extra daemon
arguments; a column of the tables) and each RTT:
1. jobs/s of hello-world jobs through 1 master and 2 workers, the workers at
   that RTT from the master, 16 in flight from a load generator beside the
   master (greenlets running sieci's client API, in a helper process in the
   master's namespace: no delay between it and the master); bounded by
   --jobs and --seconds per round;
2. one job's latency with every host that far apart (client to master too):
   a fresh `bin/client MASTER hello.py` process in the client's namespace,
   timed from here (nsenter's start included), median of --latency-runs
   runs per round;
3. the same for a link's first job: one run right after the workers have
   linked (before the throughput round), median over the rounds.
Workers are started afresh for each RTT, the master for each configuration;
rounds repeat the whole sequence and medians are printed. The configurations:
classic (`--classic-dispatch`), default (no options), and a fixed credit for
each of --credits.

    .venv/bin/python bench/distance.py            # ~2.5 min: 2 rounds, <= 3 s or 1,500 jobs each
"""

import sys

RELAY_HELPER, ECHO_HELPER, PROBE_HELPER, LOAD_HELPER, LINKED_HELPER = "--relay-helper", "--echo-helper", \
    "--probe-helper", "--load-helper", "--linked-helper"

if sys.argv[1:2] == [LOAD_HELPER]:  # only the load generator runs sieci's client, under gevent
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    HELLO, cpu_seconds, hello_jobs, machine_busy_seconds, median, print_banner, tree_cpu_seconds, write_job,
)

HOSTS = ("master", "worker1", "worker2", "client")
WORKERS = ("worker1", "worker2")
MASTER_PORTS = {"workers": 7001, "clients": 7002, "echo": 7003}  # in the master's namespace
HELPER_TIMEOUT = 30.0
# The goal: jobs/s kept at these RTTs (ms), as a share of the 0 ms rate, by the default configuration.
THROUGHPUT_TARGETS = {10: 0.9, 50: 0.6}
DEFAULT = "default"


# --- the relay (its own process) -----------------------------------------------------------

# epoll waits whole milliseconds, rounded up: firing this early centres the lateness on zero.
TIMER_SLACK = 0.0005
EOF, CLOSE = object(), object()


class Leg:
    """One side of a relayed connection: what it reads goes to the other leg's socket, delayed."""

    def __init__(self, loop, delay, gate):
        self.loop, self.delay, self.gate = loop, delay, gate
        self.transport = self.peer = self.timer = None
        self.pending = []  # (due, bytes, EOF or CLOSE), due times never decreasing
        self.got_eof = self.sent_eof = False

    # asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport
        if self.peer.pending:
            self.peer.schedule()

    def data_received(self, data):
        self.forward(data)

    def eof_received(self):
        self.got_eof = True
        self.forward(EOF)
        self.close_if_done()
        return True  # half-closed: the other direction goes on

    def connection_lost(self, exc):
        self.forward(CLOSE)

    def pause_writing(self):
        self.peer.transport.pause_reading()

    def resume_writing(self):
        self.peer.transport.resume_reading()

    # relaying
    def forward(self, item):
        self.pending.append((max(self.loop.time() + self.delay, self.gate), item))
        if len(self.pending) == 1:
            self.schedule()

    def schedule(self):
        if self.peer.transport is None:
            return  # still connecting: its connection_made schedules
        due = self.pending[0][0] - TIMER_SLACK
        if due <= self.loop.time():
            self.deliver()
        else:
            self.timer = self.loop.call_at(due, self.deliver)

    def deliver(self):
        now = self.loop.time() + TIMER_SLACK
        chunks = []
        while self.pending and self.pending[0][0] <= now:
            item = self.pending.pop(0)[1]
            if isinstance(item, bytes):
                chunks.append(item)
                continue
            self.write(b"".join(chunks))
            chunks = []
            self.peer.finish(item)
        self.write(b"".join(chunks))
        if self.pending:
            self.schedule()

    def write(self, data):
        if data and not self.peer.transport.is_closing():
            self.peer.transport.write(data)

    def finish(self, item):
        if item is CLOSE or self.transport.is_closing():
            self.transport.close()
            return
        self.transport.write_eof()
        self.sent_eof = True
        self.close_if_done()

    def close_if_done(self):
        if self.got_eof and self.sent_eof:
            self.transport.close()


def relay_main(routes):
    """Serve every route ([listen host, port, target host, port, one-way delay]) until SIGTERM."""
    async def start(loop):
        for listen_host, listen_port, target_host, target_port, delay in routes:
            await loop.create_server(lambda t=(target_host, target_port), d=delay: accepted(loop, t, d),
                                     listen_host, listen_port, reuse_address=True)

    serve_until_sigterm(start)


def serve_until_sigterm(start):
    """Run ``await start(loop)`` (it starts servers), say "ready" on stdout, and serve until SIGTERM."""
    import asyncio

    async def serve():
        loop = asyncio.get_running_loop()
        await start(loop)
        print("ready", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(serve())


def accepted(loop, target, delay):
    now = loop.time()
    near = Leg(loop, delay, gate=now + 3 * delay)
    far = Leg(loop, delay, gate=now + 4 * delay)
    near.peer, far.peer = far, near

    def connect_failed(task):
        if task.cancelled() or task.exception():
            near.transport.close()

    loop.create_task(loop.create_connection(lambda: far, *target)).add_done_callback(connect_failed)
    return near


# --- the echo server and the probe that times it through the relay (their own processes) -----


def echo_main(host, port):
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def start(loop):
        await loop.create_server(Echo, host, port, reuse_address=True)

    serve_until_sigterm(start)


def probe_main(host, port, count):
    """Print the first exchange's time (connect included) and the median of ``count`` 64-byte echoes."""
    message = b"x" * 64
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(count + 1):
            sock.sendall(message)
            received = b""
            while len(received) < len(message):
                data = sock.recv(len(message) - len(received))
                if not data:
                    raise RuntimeError("the echo closed")
                received += data
            times.append(time.monotonic() - started)
            started = time.monotonic()
    print(json.dumps({"first": times[0], "rtt": median(times[1:])}))


# --- the load generator, beside the master (its own process, gevent) -------------------------


def load_main(address, workers, in_flight, jobs, seconds):
    """Wait for the workers, warm up, say "measuring", run the round and print its outcomes."""
    wait_for_workers(address, workers)
    hello_jobs(address, in_flight, 2 * in_flight, HELPER_TIMEOUT)
    print("measuring", flush=True)
    outcomes, elapsed = hello_jobs(address, in_flight, jobs, seconds)
    print(json.dumps({"outcomes": outcomes, "elapsed": elapsed}), flush=True)


def wait_for_workers(address, count):
    from sieci.client import client

    deadline = time.monotonic() + HELPER_TIMEOUT
    while time.monotonic() < deadline:
        for _, status in client.Client(address, connect_timeout=2).status():
            if isinstance(status, dict) and len(status["workers"]) >= count:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{count} workers did not link to {address} within {HELPER_TIMEOUT:g} s")


# --- the hosts ----------------------------------------------------------------------------


def run_quietly(command):
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


class Network:
    """Where each host lives (a namespace, or none), the addresses it listens on and reaches the relay at."""

    def __init__(self, rtts):
        self.rtts = rtts
        self.namespaces = []
        self.reason = self.why_no_namespaces()
        self.tag = f"sieci{os.getpid()}"

    @staticmethod
    def why_no_namespaces():
        if os.geteuid() != 0:
            return "not root"
        if not shutil.which("ip") or not shutil.which("nsenter"):
            return "no `ip` or `nsenter`"
        return None

    def __enter__(self):
        if self.reason is None:
            try:
                self.build_namespaces()
            except (OSError, subprocess.SubprocessError) as error:
                self.remove_namespaces()
                self.reason = f"making them failed: {getattr(error, 'stderr', b'') or error}"
        if self.reason:
            print(f"NO NETWORK NAMESPACES ({self.reason}): every host is 127.0.0.1, delayed by the same relay")
            self.ports = self.loopback_ports()
        else:
            print(f"network: namespaces {self.tag}-{{hub,{','.join(HOSTS)}}}, joined by veth pairs in 10.77.0.0/16")
            self.ports = dict(MASTER_PORTS)
            self.ports.update({(path, rtt): 9000 + 100 * n + k for n, path in enumerate(("workers", "clients", "echo"))
                               for k, rtt in enumerate(self.rtts)})
        return self

    def __exit__(self, *exc_info):
        self.remove_namespaces()

    @property
    def isolated(self):
        return self.reason is None

    def namespace(self, host):
        return f"{self.tag}-{host}"

    def build_namespaces(self):
        for host in ("hub", *HOSTS):
            run_quietly(["ip", "netns", "add", self.namespace(host)])
            self.namespaces.append(self.namespace(host))
            run_quietly(["ip", "-n", self.namespace(host), "link", "set", "lo", "up"])
        for number, host in enumerate(HOSTS, 1):
            outer, inner = f"sd{os.getpid()}h{number}", f"sd{os.getpid()}u{number}"
            run_quietly(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
            # Moved into its namespace at once: deleting the namespace then deletes the pair.
            run_quietly(["ip", "link", "set", outer, "netns", self.namespace(host)])
            run_quietly(["ip", "link", "set", inner, "netns", self.namespace("hub")])
            for side, device, last in ((host, outer, 2), ("hub", inner, 1)):
                run_quietly(["ip", "-n", self.namespace(side), "addr", "add", f"10.77.{number}.{last}/24",
                             "dev", device])
                run_quietly(["ip", "-n", self.namespace(side), "link", "set", device, "up"])

    def remove_namespaces(self):
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        self.namespaces = []
        for number in range(1, len(HOSTS) + 1):  # a pair left in this namespace by a failed move
            subprocess.run(["ip", "link", "del", f"sd{os.getpid()}h{number}"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)

    def loopback_ports(self):
        from processes import free_port

        ports = {path: free_port() for path in MASTER_PORTS}
        ports.update({(path, rtt): free_port() for path in MASTER_PORTS for rtt in self.rtts})
        return ports

    def prefix(self, host):
        """The command that runs a program on ``host``."""
        return ["nsenter", f"--net=/run/netns/{self.namespace(host)}"] if self.isolated else []

    def address(self, host):
        """Where ``host`` listens."""
        return f"10.77.{HOSTS.index(host) + 1}.2" if self.isolated else "127.0.0.1"

    def relay_address(self, host, path, rtt):
        """Where ``host`` reaches the master's ``path`` at ``rtt`` (through the relay in the hub)."""
        near = f"10.77.{HOSTS.index(host) + 1}.1" if self.isolated else "127.0.0.1"
        return f"{near}:{self.ports[path, rtt]}"

    def master_address(self, path):
        return f"{self.address('master')}:{self.ports[path]}"

    def routes(self):
        # In the hub, the relay listens on all of its addresses: each host reaches it on its own link.
        listen = "0.0.0.0" if self.isolated else "127.0.0.1"
        return [[listen, self.ports[path, rtt], self.address("master"), self.ports[path], rtt / 2000]
                for path in MASTER_PORTS for rtt in self.rtts]


# --- starting the helpers -----------------------------------------------------------------


def helper_command(network, host, *args):
    return [*network.prefix(host), sys.executable, os.path.abspath(__file__), *map(str, args)]


@contextlib.contextmanager
def serving_helper(name, command):
    """A helper process that prints "ready" once it serves; stopped (SIGTERM, then SIGKILL) at the end."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        if process.stdout.readline() != b"ready\n":
            raise RuntimeError(f"the {name} did not start")
        yield process
    finally:
        stop_process(process)


def stop_process(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def measure_rtts(network, rtts, pings):
    """{rtt: (first exchange, median RTT)} through the workers' path, from worker1's host, in seconds."""
    measured = {}
    for rtt in rtts:
        host, port = network.relay_address("worker1", "echo", rtt).split(":")
        done = subprocess.run(helper_command(network, "worker1", PROBE_HELPER, host, port, pings),
                              capture_output=True, timeout=HELPER_TIMEOUT + pings * rtt / 1000)
        figures = json.loads(done.stdout)
        measured[rtt] = (figures["first"], figures["rtt"])
    return measured


# --- the configurations ---------------------------------------------------------------------


def help_text(program):
    from processes import BIN

    return subprocess.run([sys.executable, os.path.join(BIN, program), "--help"], capture_output=True, text=True,
                          timeout=30).stdout


def configurations(credits):
    """[(name, master arguments, worker arguments)], without the flags this checkout lacks (said loudly)."""
    wanted = [("classic", ["--classic-dispatch"], []), (DEFAULT, [], [])]
    wanted += [(f"credit {credit}", [], ["--credit", str(credit)]) for credit in credits]
    has = {"--classic-dispatch": "--classic-dispatch" in help_text("master"), "--credit": "--credit" in help_text("worker")}
    for flag, present in has.items():
        if not present:
            print(f"!!! NOTE: this checkout's {'master' if flag == '--classic-dispatch' else 'worker'} has no {flag}:"
                  f" the configurations that need it run WITHOUT it, so their numbers come from identical setups !!!")
    return [(name, [a for a in master if has.get(a, True)], without_missing(worker, has)) for name, master, worker in wanted]


def without_missing(arguments, has):
    """``arguments`` (flag, value pairs) less the flags that are missing."""
    pairs = zip(arguments[::2], arguments[1::2])
    return [word for flag, value in pairs if has.get(flag, True) for word in (flag, value)]


# --- one configuration at one RTT ----------------------------------------------------------


def start_master(network, master_arguments):
    from processes import Daemon

    master = Daemon("master", [network.master_address("workers"), network.master_address("clients"),
                               *master_arguments], log_level="error", prefix=network.prefix("master"))
    return master.start()


def start_workers(network, rtt, worker_arguments):
    from processes import Daemon, job_interpreter, unavailable_walls

    interpreter = job_interpreter()
    options = ["--python", interpreter] if interpreter else []
    return [Daemon("worker", [network.relay_address(host, "workers", rtt), "--reconnect-max", "0.5",
                              *unavailable_walls(), *options, *worker_arguments], log_level="error",
                              prefix=network.prefix(host)).start()
            for host in WORKERS]


def throughput_round(network, args, pids):
    """jobs/s of one round, whether every answer was right, and the CPU seconds each part used in it."""
    load = subprocess.Popen(helper_command(network, "master", LOAD_HELPER, network.master_address("clients"),
                                           len(WORKERS), args.in_flight, args.jobs, args.seconds),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        if load.stdout.readline() != b"measuring\n":
            raise RuntimeError("the load generator failed before its round")
        pids = {**pids, "load": load.pid}
        before = cpu_figures(pids)
        report = json.loads(load.stdout.readline())
        after = cpu_figures(pids)
        load.wait(HELPER_TIMEOUT)
    finally:
        stop_process(load)
    outcomes, elapsed = report["outcomes"], report["elapsed"]
    cpu = {part: after[part] - before[part] for part in after}
    return outcomes["right"] / elapsed, outcomes["wrong"] + outcomes["failed"] == 0, cpu, elapsed


def cpu_figures(pids):
    figures = {part: tree_cpu_seconds(pid) if part.startswith("worker") else cpu_seconds(pid)
               for part, pid in pids.items()}
    figures["machine"] = machine_busy_seconds()
    return figures


def latency_runs(network, rtt, hello, runs):
    """Seconds of each fresh `bin/client` run, the client at ``rtt`` from the master; and whether all were right."""
    from processes import client_command

    times, right = [], True
    for _ in range(runs):
        command = [*network.prefix("client"), *client_command(network.relay_address("client", "clients", rtt), hello)]
        started = time.monotonic()
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=HELPER_TIMEOUT)
        times.append(time.monotonic() - started)
        right &= done.returncode == 0 and done.stdout == b"hello, world\n"
    return times, right


def wait_until_linked(network):
    """Until the master has both workers linked (asked from the master's namespace, without delay)."""
    subprocess.run(helper_command(network, "master", LINKED_HELPER, network.master_address("clients"), len(WORKERS)),
                   check=True, stdin=subprocess.DEVNULL, timeout=HELPER_TIMEOUT + 10)


def measure_configuration(network, args, configuration, hello, figures):
    """One configuration at every RTT; ``figures``: {"rates", "latencies", "first jobs"} of {(name, rtt): list}."""
    name, master_arguments, worker_arguments = configuration
    master = start_master(network, master_arguments)
    all_right = True
    try:
        for rtt in args.rtts:
            workers = start_workers(network, rtt, worker_arguments)
            try:
                pids = {"master": master.process.pid, "relay": args.relay_pid,
                        **{host: worker.process.pid for host, worker in zip(WORKERS, workers)}}
                wait_until_linked(network)
                first, first_right = latency_runs(network, rtt, hello, 1)
                rate, right, cpu, elapsed = throughput_round(network, args, pids)
                times, latency_right = latency_runs(network, rtt, hello, args.latency_runs)
            finally:
                for worker in workers:
                    worker.stop()
            figures["rates"][name, rtt].append(rate)
            figures["latencies"][name, rtt].extend(times)
            figures["first jobs"][name, rtt].extend(first)
            right &= first_right and latency_right
            all_right &= right
            print(f"  {name:>22} {rtt:3g} ms: {rate:7.1f} jobs/s, latency median {median(times) * 1000:6.1f} ms,"
                  f" a link's first job {first[0] * 1000:6.1f} ms" + ("" if right else "  (SOME ANSWERS WRONG OR FAILED)"))
            print(f"  {'':>29} CPU s in {elapsed:.1f} s: "
                  + ", ".join(f"{part} {seconds:.2f}" for part, seconds in cpu.items()))
            sys.stdout.flush()
    finally:
        master.stop()
    return all_right


# --- the tables -----------------------------------------------------------------------------


def print_tables(args, names, measured, figures):
    reference = args.rtts[0]
    rates = figures["rates"]

    def rate_cell(name, rtt):
        rate = median(rates[name, rtt])
        return f"{rate:.1f} ({rate / median(rates[name, reference]):.2f}x)"

    def latency_cell(latencies):
        def cell(name, rtt):
            latency = median(latencies[name, rtt])
            extra = latency - median(latencies[name, reference])
            return f"{latency * 1000:.1f}" + (f" ({extra / measured[rtt][1]:.1f} RTT)" if rtt > reference else "")
        return cell

    print_table(f"jobs/s, workers at RTT from the master, {args.in_flight} in flight from beside it (median of "
                f"{args.rounds} rounds; x: the configuration's own {reference:g} ms figure)",
                args.rtts, names, measured, rate_cell)
    print_throughput_target(args, names, rates)
    print_table(f"one job's latency, ms, every host at RTT (fresh bin/client process; median of "
                f"{args.rounds * args.latency_runs} runs; in brackets, the round trips it took more than at "
                f"{reference:g} ms)", args.rtts, names, measured, latency_cell(figures["latencies"]))
    print_table(f"a link's first job's latency, ms, as above, right after the workers linked (median of "
                f"{args.rounds} runs)", args.rtts, names, measured, latency_cell(figures["first jobs"]))
    print("target: one job on an idle cluster of sieci workers costs 3 round trips, a link's first job too "
          "(4 with the classic exchange)")


def print_table(title, rtts, names, measured, cell):
    width = max(22, *map(len, names))
    print()
    print(title)
    print(f"{'RTT':>6} {'measured':>9} {'1st echo':>9}  " + "  ".join(f"{name:>{width}}" for name in names))
    for rtt in rtts:
        print(rtt_cells(rtt, measured) + "  ".join(f"{cell(name, rtt):>{width}}" for name in names))


def print_throughput_target(args, names, rates):
    """Whether each configuration keeps its jobs/s at THROUGHPUT_TARGETS' RTTs (the target: the default's)."""
    wanted = {rtt: ratio for rtt, ratio in THROUGHPUT_TARGETS.items() if rtt in args.rtts}
    if args.rtts[0] != 0 or not wanted:
        return
    goal = " and ".join(f"{ratio:g}x at {rtt:g} ms" for rtt, ratio in wanted.items())
    for name in names:
        ratios = {rtt: median(rates[name, rtt]) / median(rates[name, 0]) for rtt in wanted}
        met = all(ratios[rtt] >= ratio for rtt, ratio in wanted.items())
        print(f"target ({goal} of the 0 ms rate{', the default options' if name == DEFAULT else ''}): {name}: "
              + ", ".join(f"{ratios[rtt]:.2f}x" for rtt in wanted) + (": met" if met else ": not met"))


def rtt_cells(rtt, measured):
    first, echo = measured[rtt]
    return f"{rtt:>4g}ms {echo * 1000:>7.2f}ms {first * 1000:>7.2f}ms  "


def number_list(kind):
    return lambda text: [kind(part) for part in text.split(",") if part]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    helpers = {RELAY_HELPER: lambda: relay_main(json.loads(argv[1])),
               ECHO_HELPER: lambda: echo_main(argv[1], int(argv[2])),
               PROBE_HELPER: lambda: probe_main(argv[1], int(argv[2]), int(argv[3])),
               LOAD_HELPER: lambda: load_main(argv[1], *map(int, argv[2:5]), float(argv[5])),
               LINKED_HELPER: lambda: wait_for_workers(argv[1], int(argv[2]))}
    if argv and argv[0] in helpers:
        helpers[argv[0]]()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="each configuration at each RTT this many times")
    parser.add_argument("--seconds", type=float, default=3.0, help="at most this long per throughput round")
    parser.add_argument("--jobs", type=int, default=1500, help="and at most this many jobs per throughput round")
    parser.add_argument("--in-flight", type=int, default=16, help="jobs in flight in the throughput rounds")
    parser.add_argument("--rtts", type=number_list(float), default="0,2,10,50", help="ms, the first the reference")
    parser.add_argument("--credits", type=number_list(int), default="1",
                        help="fixed worker credits, a configuration each (besides the default's)")
    parser.add_argument("--latency-runs", type=int, default=5, help="fresh client runs per RTT, configuration and round")
    parser.add_argument("--pings", type=int, default=20, help="echoes timed per RTT to measure it")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the finally clauses clean up
    print_banner(f"distance: jobs/s and one job's latency, hosts at RTT {', '.join(f'{rtt:g}' for rtt in args.rtts)} ms"
                 " apart")
    return run(args)


def run(args):
    started = time.monotonic()
    configs = configurations(args.credits)
    names = [name for name, _, _ in configs]
    workdir, hello = write_job("hello.py", HELLO)
    figures = {kind: {(name, rtt): [] for name in names for rtt in args.rtts}
               for kind in ("rates", "latencies", "first jobs")}
    all_right = True
    try:
        with Network(args.rtts) as network, \
                serving_helper("relay", helper_command(network, "hub", RELAY_HELPER,
                                                       json.dumps(network.routes()))) as relay, \
                serving_helper("echo server", helper_command(network, "master", ECHO_HELPER,
                                                             network.address("master"), network.ports["echo"])):
            args.relay_pid = relay.pid
            measured = measure_rtts(network, args.rtts, args.pings)
            for number in range(1, args.rounds + 1):
                print(f"round {number}:")
                for configuration in configs if number % 2 else configs[::-1]:
                    all_right &= measure_configuration(network, args, configuration, hello, figures)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_tables(args, names, measured, figures)
    print("every answer right" if all_right else "SOME ANSWERS WRONG OR FAILED")
    print(f"took {time.monotonic() - started:.0f} s")
    return 0 if all_right else 1


if __name__ == "__main__":
    sys.exit(main())
