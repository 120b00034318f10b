"""The master's client port: what each client connection costs it, counted."""

from sieci.client import client
from sieci.master import client_watch

from tests.helpers import Captured, client_address


def counted(monkeypatch, module, name):
    """Count the calls of ``module.name`` (still made)."""
    calls = []
    original = getattr(module, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def run_jobs(master, count):
    for number in range(count):
        output = Captured()
        assert client.run(client_address(master), b"print(%d)\n" % number, output=output) == 0
        assert output.stdout == b"%d\n" % number


def test_a_jobs_client_is_watched_without_a_greenlet_of_its_own(cluster, monkeypatch):
    spawned = counted(monkeypatch, client_watch.gevent, "spawn")
    master = cluster.master()
    cluster.worker(master)
    run_jobs(master, 3)
    assert [args for args in spawned if getattr(args[0], "__self__", None) is master.intake.watch] == []
