"""The master's client port: what each client connection costs it, counted."""

import socket

import pytest

from sieci import defaults
from sieci.client import client
from sieci.master import client_watch, intake
from sieci.wire.connection import tune_socket

from tests.helpers import Captured, client_address

KEEPALIVE_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY), (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                     (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                     (socket.IPPROTO_TCP, socket.TCP_KEEPCNT)]


def options_of(sock):
    return [sock.getsockopt(level, option) for level, option in KEEPALIVE_OPTIONS]


@pytest.mark.skipif(not intake.ACCEPTED_INHERIT_OPTIONS, reason="Linux's accepted connections inherit options")
def test_an_accepted_connection_has_its_listening_sockets_options():
    with socket.socket() as listener:
        tune_socket(listener, 45, user_timeout=False)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as dialed:
            accepted, _ = listener.accept()
            with accepted:
                assert options_of(accepted) == options_of(listener) == [1, 1, 15, 8, 4]
                assert options_of(dialed) != options_of(listener)


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


def test_client_connections_are_tuned_once_at_the_listening_socket(cluster, monkeypatch):
    tunes = counted(monkeypatch, intake, "tune_socket")
    master = cluster.master()
    cluster.worker(master)
    run_jobs(master, 3)
    expected = 1 if intake.ACCEPTED_INHERIT_OPTIONS else 4
    assert len(tunes) == expected
    with socket.socket() as tuned:
        tune_socket(tuned, defaults.KEEPALIVE, user_timeout=False)
        assert options_of(master.client_server.socket) == options_of(tuned)


def test_a_jobs_client_is_watched_without_a_greenlet_of_its_own(cluster, monkeypatch):
    spawned = counted(monkeypatch, client_watch.gevent, "spawn")
    master = cluster.master()
    cluster.worker(master)
    run_jobs(master, 3)
    assert [args for args in spawned if getattr(args[0], "__self__", None) is master.intake.watch] == []
