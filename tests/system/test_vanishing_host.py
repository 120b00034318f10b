"""A worker whose host drops off the network: no FIN, no RST, just silence.

The worker runs in a network namespace of its own, joined to this one by a
veth pair; taking the namespace's end of the pair down makes it vanish. The
master, with a short keepalive, must notice, and the client must get its
answer or its error. Needs root and `ip` (iproute2) on Linux; skips
otherwise, saying why.
"""

import os
import shutil
import subprocess
import sys
import time

import gevent
import pytest

from sieci.client import client
from sieci.master.master import Master
from sieci.wire import protocol

from tests.helpers import REPO, WAIT, Captured, JobEvents, client_address

KEEPALIVE = 2  # seconds; detection takes a few of them
HOST_IP, WORKER_IP = "169.254.213.1", "169.254.213.2"  # link-local, on our own veth pair only


def ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=WAIT)


@pytest.fixture
def namespace():
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs Linux, root and iproute2's `ip` to make a network namespace")
    name = f"sieci{os.getpid()}"
    host_end, far_end = f"sv{os.getpid() % 100000}h", f"sv{os.getpid() % 100000}n"
    made = ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        for args in (
            ("link", "add", host_end, "type", "veth", "peer", "name", far_end),
            ("link", "set", far_end, "netns", name),
            ("addr", "add", f"{HOST_IP}/30", "dev", host_end),
            ("link", "set", host_end, "up"),
            ("-n", name, "addr", "add", f"{WORKER_IP}/30", "dev", far_end),
            ("-n", name, "link", "set", far_end, "up"),
            ("-n", name, "link", "set", "lo", "up"),
        ):
            done = ip(*args)
            if done.returncode != 0:
                pytest.skip(f"cannot set up a veth pair here (ip {' '.join(args)}): {done.stderr.strip()}")
        yield Namespace(name, far_end)
    finally:
        ip("link", "del", host_end)
        ip("netns", "del", name)


class Namespace:
    def __init__(self, name, far_end):
        self.name = name
        self.far_end = far_end

    def cut(self):
        assert ip("-n", self.name, "link", "set", self.far_end, "down").returncode == 0

    def mend(self):
        assert ip("-n", self.name, "link", "set", self.far_end, "up").returncode == 0

    def start_worker(self, master_port):
        command = ["ip", "netns", "exec", self.name, sys.executable, os.path.join(REPO, "bin", "worker"),
                   f"{HOST_IP}:{master_port}", "--keepalive", str(KEEPALIVE), "--reconnect-max", "0.5",
                   "--job-cgroups", "off"]  # `ip netns exec` mounts a /sys of its own, without cgroups
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def vanishing_setup(namespace):
    master = Master((HOST_IP, 0), ("127.0.0.1", 0), keepalive=KEEPALIVE)
    master.start()
    worker = namespace.start_worker(master.workers_address[1])
    try:
        assert master.wait_for_workers(1, WAIT), "the worker in the namespace never linked"
        yield master, namespace
    finally:
        worker.kill()
        worker.wait()
        master.stop(grace=0.1)


def test_a_worker_that_vanishes_mid_job_fails_the_job_within_the_keepalive_bound(vanishing_setup):
    master, namespace = vanishing_setup
    started = gevent.event.Event()

    class Watching(Captured):
        def write(self, stream, data):
            super().write(stream, data)
            started.set()

    output = Watching()
    job = gevent.spawn(client.run, client_address(master),
                       b"import time\nprint('started', flush=True)\ntime.sleep(60)\n", output=output)
    assert started.wait(WAIT)
    namespace.cut()
    cut_at = time.monotonic()
    with pytest.raises(client.JobLost, match="worker lost"):
        job.get(timeout=WAIT)
    print(f"master noticed the vanished worker mid-job after {time.monotonic() - cut_at:.1f} s "
          f"(keepalive {KEEPALIVE} s)")
    assert output.stdout == b"started\n"


def test_an_idle_worker_that_vanishes_is_dropped_and_relinks_once_back(vanishing_setup):
    master, namespace = vanishing_setup
    events = JobEvents(master)
    namespace.cut()
    cut_at = time.monotonic()
    job = gevent.spawn(client.run, client_address(master), b"print('answered')\n", output=Captured())
    events.wait_for("queued")
    assert master.wait_for_workers(0, WAIT, exactly=True), "the master never noticed the worker vanish"
    print(f"master dropped the vanished idle worker after {time.monotonic() - cut_at:.1f} s "
          f"(keepalive {KEEPALIVE} s)")
    namespace.mend()
    assert job.get(timeout=WAIT) == 0  # the worker came back, relinked, and ran the queued job


def test_a_client_that_vanishes_while_its_output_waits_is_taken_for_gone(namespace, cluster):
    """It stops reading (a zero window), then its host drops off: the master stops the job
    within a few keepalive periods, though it waits for a client that only reads slowly."""
    master = Master((HOST_IP, 0), (HOST_IP, 0), keepalive=KEEPALIVE)
    master.start()
    cluster.masters.append(master)
    cluster.worker(master)
    assert master.wait_for_workers(1, WAIT)
    events = JobEvents(master)
    upload = protocol.encode_block(b"import sys\nwhile True:\n    sys.stdout.write('z' * 65536)\n", [protocol.EXTENDED])
    script = ("import socket, sys, time\nsock = socket.create_connection((%r, %d))\nsock.sendall(%r)\n"
              "print(sock.recv(9), flush=True)\ntime.sleep(60)\n" % (HOST_IP, master.clients_address[1], upload))
    reader = subprocess.Popen(["ip", "netns", "exec", namespace.name, sys.executable, "-c", script],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert reader.stdout.readline().startswith(b"b'RECEIVED")  # and it reads no more
        events.wait_for("dispatched")
        namespace.cut()
        cut_at = time.monotonic()
        events.wait_for("stopping")
        print(f"master took the vanished client for gone after {time.monotonic() - cut_at:.1f} s "
              f"(keepalive {KEEPALIVE} s)")
    finally:
        reader.kill()
        reader.wait()
