"""Jobs stay strangers (issue 27): each attack here once worked against a worker with its default walls.

Real masters, workers and clients (bin/), as processes on loopback.
"""

import glob
import platform
import re
import secrets
import select
import socket

import gevent
import gevent.server
import pytest

from tests.helpers import PYTHON, children_of, unavailable_walls
from tests.helpers.processes import DEADLINE, FAST_WORKER, POLL, WORKER

# A job that reads its memory (ctypes.string_at over each readable anonymous range of /proc/self/maps)
# and prints every string shaped like the victim's secrets: the patterns themselves do not match.
MEMORY_SCAN = b"""\
import ctypes, re
found = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        addresses, permissions, *rest = line.split()
        start, end = (int(address, 16) for address in addresses.split("-"))
        anonymous = rest[2] == "0" and rest[-1] not in ("[vvar]", "[vvar_vclock]", "[vsyscall]")  # heap and the like
        if permissions.startswith("r") and anonymous and end - start < 1 << 28:
            found.update(re.findall(rb"(?:tok|pw)-[0-9a-f]{32}", ctypes.string_at(start, end - start)))
print(sorted(found))
"""


def test_nothing_of_a_jobs_arguments_or_environment_stays_in_the_fork_server_that_later_jobs_come_from(procs):
    token, password = f"tok-{secrets.token_hex(16)}", f"pw-{secrets.token_hex(16)}"
    procs.master()
    worker = procs.worker()  # one worker: every job here is forked from the same fork server
    master = f"127.0.0.1:{procs.clients_port}"
    victim = procs.code_file(b"import os, sys\nprint(len(os.environ['API_TOKEN']), sys.argv[1:2])\n")
    result = procs.run_client("-e", "NOTES=" + "x" * 3000, "-e", f"API_TOKEN={token}", master, victim,
                              "--password", password)
    assert (result.returncode, result.stdout) == (0, b"36 ['--password']\n"), procs.logs()
    secrets_shape = re.compile(rb"(?:tok|pw)-[0-9a-f]{32}")
    for pid in fork_server_processes(worker.pid):  # the fork server, and the next job's process it made
        assert not secrets_shape.findall(memory_of(pid)), f"process {pid} holds the earlier job's secrets"
    for _ in range(3):
        scan = procs.run_client(master, procs.code_file(MEMORY_SCAN))
        assert (scan.returncode, scan.stdout) == (0, b"[]\n"), procs.logs()


def test_a_forged_worker_cannot_make_the_client_write_a_file_it_did_not_ask_for(procs, classic, tmp_path):
    procs.master()
    forged = b"ENDSEQ T v=2\nr 5 .bashrc\nevil\nr 5 .ssh/authorized_keys\nevil\nx exit 0\nT\n"
    classic.worker(("127.0.0.1", procs.workers_port), results=forged)
    results = tmp_path / "results"
    result = procs.run_client("--return", "*.csv", "--results", str(results), f"127.0.0.1:{procs.clients_port}",
                              procs.code_file(b"pass\n"))
    assert result.returncode == 255, procs.logs()
    assert result.stderr.decode().splitlines() == [
        f"sieci-client: error: {name}: refused: the worker sent a file that no --return asked for"
        for name in (".bashrc", ".ssh/authorized_keys")]
    assert not results.exists() or not any(results.iterdir())


def secret_file(folder):
    """A fresh secret in a file only we can read."""
    secret = folder / "secret"
    secret.write_text(secrets.token_hex(16))
    secret.chmod(0o600)
    return secret


def fork_server_processes(worker_pid):
    """The worker's fork server, and its children."""
    fork_server = children_of(worker_pid)[0]
    return [fork_server, *children_of(fork_server)]


def memory_of(pid):
    """All the readable memory of process ``pid`` (ours to read: the same user), joined."""
    parts = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as memory:
        for line in maps:
            addresses, permissions, *rest = line.split()
            start, end = (int(address, 16) for address in addresses.split("-"))
            if permissions.startswith("r") and rest[-1] not in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
                try:
                    memory.seek(start)
                    parts.append(memory.read(end - start))
                except OSError:
                    pass
    return b"".join(parts)


# A job that dials the cluster master's worker port (found as a job could find it, in /proc/net/tcp; here
# given) and tries to become a worker: what it was told.
BECOME_A_WORKER = b"""\
import socket, sys
try:
    link = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
except OSError as error:
    print("cannot dial:", type(error).__name__)
    raise SystemExit
link.settimeout(10)
lines = link.makefile("rb")
first = lines.readline()
link.sendall(b"READY v=2\\n")
print(first.split()[:1], lines.readline().split()[:2])
"""


@pytest.mark.parametrize("network", ["off", "on"])
def test_a_job_on_sieci_cluster_cannot_become_its_worker(procs, network):
    run_cluster = "import sys; from sieci.main import cluster_main; sys.exit(cluster_main())"
    cluster = procs.start("cluster", [PYTHON, "-c", run_cluster, "--workers", "1", "--job-network", network,
                                      *unavailable_walls()], capture_stdout=True)
    with gevent.Timeout(DEADLINE):
        first_line = cluster.popen.stdout.readline().decode()
        command = cluster.popen.stdout.readline().decode().split(": ", 1)[1].split()
    workers_port = first_line.rsplit(":", 1)[1].split()[0]
    assert command[1] == "--secret-file" and command[-1] == "FILE", command
    attack = procs.run_client(*command[1:-1], procs.code_file(BECOME_A_WORKER), workers_port)
    assert attack.returncode == 0, procs.logs()
    if network == "off" and "--job-namespaces" not in unavailable_walls():
        assert attack.stdout == b"cannot dial: ConnectionRefusedError\n"  # its loopback is its own
    else:  # it reaches the master, which asks for the secret, and drops it
        assert attack.stdout == b"[b'CHALLENGE'] [b'ERROR', b'unauthorized']\n", attack.stdout


SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}.get(platform.machine())  # add_key, keyctl
KEYS = """\
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = {syscalls}
USER_KEYRING, SESSION_KEYRING = -4, -3

def search(keyring, name):
    found = libc.syscall(KEYCTL, 10, keyring, b"user", name.encode(), 0)
    return "found" if found >= 0 else "none"

if sys.argv[1] == "leave":
    for keyring in (USER_KEYRING, SESSION_KEYRING):
        assert libc.syscall(ADD_KEY, b"user", b"left-behind", b"s3cret", 6, keyring) >= 0, ctypes.get_errno()
print(search(USER_KEYRING, "left-behind"), search(SESSION_KEYRING, "left-behind"),
      search(SESSION_KEYRING, "the-workers-own"))
"""
# The worker, started in a session keyring holding a key of its own, as systemd gives a service one.
WORKER_IN_A_SESSION_KEYRING = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
ADD_KEY, KEYCTL = {syscalls}
assert libc.syscall(KEYCTL, 1, None) >= 0  # KEYCTL_JOIN_SESSION_KEYRING: a new one
assert libc.syscall(ADD_KEY, b"user", b"the-workers-own", b"r00t", 4, -3) >= 0
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


@pytest.mark.skipif(SYSCALLS is None, reason="the keyring system calls' numbers are known here for x86-64 and arm64")
def test_a_job_reaches_neither_another_jobs_keys_nor_the_workers_session_keyring(procs):
    if "--job-namespaces" in unavailable_walls():
        pytest.skip("needs namespaces for jobs: keyrings are kept apart by a user namespace per job")
    procs.master()
    wrapper = WORKER_IN_A_SESSION_KEYRING.format(syscalls=SYSCALLS)
    procs.start("worker", [PYTHON, "-c", wrapper, WORKER, f"127.0.0.1:{procs.workers_port}", *FAST_WORKER])
    code = procs.code_file(KEYS.format(syscalls=SYSCALLS).encode())
    master = f"127.0.0.1:{procs.clients_port}"
    leaves = procs.run_client(master, code, "leave")
    assert (leaves.returncode, leaves.stdout) == (0, b"found found none\n"), procs.logs()  # a job's keys are its own
    looks = procs.run_client(master, code, "look")
    assert (looks.returncode, looks.stdout) == (0, b"none none none\n"), procs.logs()


def test_detached_jobs_uploads_count_against_the_kept_store_and_wait_on_disk(procs, tmp_path):
    procs.master(extra=["--max-kept-output", "8M", "--files-store-dir", str(tmp_path)])  # no worker: they wait
    code = procs.code_file(b"#" + b"x" * (3 << 20) + b"\nprint('big')\n")
    master = f"127.0.0.1:{procs.clients_port}"
    ids = [procs.run_client("--detach", master, code) for _ in range(2)]
    assert [result.returncode for result in ids] == [0, 0], procs.logs()
    third = procs.run_client("--detach", master, code)
    assert third.returncode == 255 and b"no room for the job's upload" in third.stderr, third
    [folder] = tmp_path.glob("sieci-kept-*")
    assert sorted(path.stat().st_size >> 20 for path in folder.iterdir()) == [0, 0, 3, 3]  # 2 uploads, 2 spools


def test_a_flood_of_unfinished_first_lines_keeps_no_signed_client_out(procs, tmp_path):
    secret = secret_file(tmp_path)
    procs.master(extra=["--secret-file", str(secret), "--max-new-connections", "40",
                        "--max-connections-per-address", "30"])
    procs.worker(args=["--secret-file", str(secret)])
    flood = []
    try:
        for address in ("127.0.0.2", "127.0.0.3"):
            for _ in range(30):  # each holds most of a first line, and sends no more
                sock = socket.socket()
                sock.bind((address, 0))
                sock.connect(("127.0.0.1", procs.clients_port))
                sock.sendall(b"ENDSEQ " + b"a" * 60_000)
                flood.append(sock)
        result = procs.run_client("--secret-file", str(secret), f"127.0.0.1:{procs.clients_port}",
                                  procs.code_file(b"print('in')\n"))
        assert (result.returncode, result.stdout) == (0, b"in\n"), procs.logs()
        hung_up, _, _ = select.select(flood, [], [], 0)  # (their ends came long before the job's)
        assert len(hung_up) >= 21, len(hung_up)  # 60 + 1 came, 40 may wait
    finally:
        for sock in flood:
            sock.close()


def test_a_client_with_the_secret_sends_nothing_to_a_squatter_on_its_masters_port(procs, tmp_path):
    secret = secret_file(tmp_path)
    code = procs.code_file(b"import os\nprint(os.environ['DB_PASSWORD'])\n")
    with socket.create_server(("127.0.0.1", 0)) as squatter:  # a job that took a stopped master's port
        client = procs.client("--secret-file", str(secret), "-e", "DB_PASSWORD=hunter2-squatted",
                              f"127.0.0.1:{squatter.getsockname()[1]}", code)
        with gevent.Timeout(DEADLINE):
            victim, _ = squatter.accept()
            heard = victim.makefile("rb").readline()
            victim.sendall(b"AUTH " + b"0" * 64 + b"\nENDSEQ T v=2\no forged\nx exit 0\nT\n")
            result = procs.finish(client)
            rest = victim.recv(1 << 16)
        victim.close()
    assert heard.startswith(b"CHALLENGE ") and rest == b"", (heard, rest)  # no code, no environment
    assert result.returncode == 255 and result.stdout == b"", result
    assert b"does not prove that it holds the secret" in result.stderr, result.stderr


def test_a_client_with_the_secret_is_told_when_its_master_has_none(procs, tmp_path):
    secret = secret_file(tmp_path)
    procs.master()
    result = procs.run_client("--secret-file", str(secret), f"127.0.0.1:{procs.clients_port}",
                              procs.code_file(b"print('x')\n"))
    assert result.returncode == 255 and b"this master has none" in result.stderr, result


def test_a_clean_sigterm_leaves_no_job_cgroup_behind(procs):
    if "--job-cgroups" in unavailable_walls():
        pytest.skip("this host has no cgroups for jobs")
    procs.master()
    worker = procs.worker()
    result = procs.run_job(b"print('one job')\n")
    assert result.returncode == 0, procs.logs()
    with gevent.Timeout(DEADLINE, AssertionError("the fork server made no standby for the next job")):
        while len(processes := fork_server_processes(worker.pid)) < 2:  # the fork server and its standby,
            gevent.sleep(POLL)  # which held the cgroup busy when the fork server went
    job_cgroups = f"/sys/fs/cgroup/**/sieci-jobs-of-{processes[0]}"
    assert glob.glob(job_cgroups, recursive=True), "the fork server has no cgroup here"
    assert worker.terminate_and_wait() == 0, procs.logs()
    assert glob.glob(job_cgroups, recursive=True) == []


@pytest.mark.parametrize("request_args", [
    ["--status", "MASTER"], ["--list", "MASTER"], ["--attach", "0" * 16, "MASTER"], ["--cancel", "0" * 16, "MASTER"],
    ["--detach", "MASTER", "PROG"], ["MASTER", "PROG"],
], ids=["status", "list", "attach", "cancel", "detach", "run"])
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_a_peer_that_answers_nonsense_ends_every_request_in_one_line(procs, tmp_path, request_args, signed):
    def nonsense(sock, _):
        sock.recv(1 << 16)
        sock.sendall(b"garbage here\n")
        sock.close()

    peer = gevent.server.StreamServer(("127.0.0.1", 0), nonsense)
    peer.start()
    try:
        values = {"MASTER": f"127.0.0.1:{peer.server_port}", "PROG": procs.code_file(b"print('x')\n")}
        options = ["--secret-file", str(secret_file(tmp_path))] if signed else []
        result = procs.run_client(*options, *(values.get(arg, arg) for arg in request_args))
    finally:
        peer.stop()
    assert result.returncode == 255 and len(result.stderr.splitlines()) == 1, result
    assert b"broke the protocol" in result.stderr or b"something other than JSON" in result.stderr, result
