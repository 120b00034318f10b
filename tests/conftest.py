"""Test set-up: gevent first, then each test's tier, then the fixtures every tier may use.

The tiers are the folders: ``unit`` (our code alone in this process: no sockets, no
processes; seconds), ``integration`` (masters, workers, clients and the executor in this
process, over real loopback sockets, with the job processes they start; a fixture may run
a tool such as openssl) and ``system`` (our programs as processes, jobs behind namespaces
and cgroups, chaos). ``pytest -m unit`` runs one tier; plain ``pytest`` runs all three.
Shared helpers are in tests/helpers. Everything a fixture starts it also stops, whether
the test passed or not.
"""

import gevent
from gevent import monkey

monkey.patch_all()
# Tests dial loopback addresses only, which resolve at once. Without gevent's
# resolver threads this process has none, so its subprocesses (which gevent
# forks, running Python in the child) cannot deadlock on a lock a thread held.
gevent.config.resolver = "block"

import logging  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import Cluster, LogLines, RawPeer, ReservedPort  # noqa: E402

TIERS = ("unit", "integration", "system")
TESTS = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Each run's temporary folders in a private folder of its own, removed at the end, instead of
    pytest's numbered folders shared by every run of a user: pytest's clean-up of those fails the
    whole run, after every test passed, on what an earlier run left there (a tree deeper than
    Python's recursion limit, a mount still busy)."""
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="sieci-tests-")
        # rm, not shutil.rmtree, which recurses once per level; never into a mount left behind.
        config.add_cleanup(lambda: subprocess.run(["rm", "-rf", "--one-file-system", "--", config.option.basetemp]))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Marks each test with its folder's tier (before ``-m`` selects)."""
    for item in items:
        tier = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else None
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test belongs in tests/unit, tests/integration "
                                    "or tests/system (see tests/conftest.py)")
        item.add_marker(tier)


@pytest.fixture(autouse=True)
def no_native_threads():
    """No test leaves a thread behind: see the resolver above. (Python 3.12 warns
    of a fork with threads alive, but swallows that warning when it is an error.)"""
    yield
    assert os.listdir("/proc/self/task") == [str(os.getpid())], "a native thread is alive"


@pytest.fixture
def classic():
    """Classic (Go-like) masters and workers; see tests/helpers/classic.py."""
    from tests.helpers.classic import ClassicPeers

    peers = ClassicPeers()
    try:
        yield peers
    finally:
        peers.stop()


@pytest.fixture
def cluster():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def master_with_a_worker(cluster):
    """A master in this process with one worker linked."""
    from tests.helpers import WAIT

    master = cluster.master()
    cluster.worker(master)
    assert master.wait_for_workers(1, WAIT)
    return master


def closed_at_the_end(make):
    """For a fixture that makes things (``make(...)``) and closes them all at the end of the test."""
    made = []

    def make_one(*args, **options):
        made.append(make(*args, **options))
        return made[-1]

    yield make_one
    for thing in made:
        thing.close()


@pytest.fixture
def reserved_port():
    """``reserved_port()``: a new ReservedPort."""
    yield from closed_at_the_end(ReservedPort)


@pytest.fixture
def recording_proxy():
    """``recording_proxy(target)``: a new proxy.RecordingProxy to it."""
    from tests.helpers.proxy import RecordingProxy

    yield from closed_at_the_end(RecordingProxy)


@pytest.fixture
def delaying_proxy():
    """``delaying_proxy(target, one_way)``: a new proxy.DelayingProxy to it."""
    from tests.helpers.proxy import DelayingProxy

    yield from closed_at_the_end(DelayingProxy)


@pytest.fixture
def peers():
    """``peers(address)``: a new RawPeer connected to it."""
    yield from closed_at_the_end(RawPeer)


@pytest.fixture
def log_lines():
    """``log_lines(name)``: a LogLines on that logger, at every level, removed at the end."""
    attached = []

    def attach(name):
        logger, lines = logging.getLogger(name), LogLines()
        attached.append((logger, lines, logger.level))
        logger.addHandler(lines)
        logger.setLevel(logging.DEBUG)
        return lines

    yield attach
    for logger, lines, level in attached:
        logger.removeHandler(lines)
        logger.setLevel(level)
