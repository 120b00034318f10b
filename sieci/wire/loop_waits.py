"""A daemon's waits on one gevent socket through the event loop's own watcher and timer.

gevent's own ways cost more on every wait: a socket's timeout starts a
gevent Timeout (Python objects), wait_read makes a watcher, and a wait for
either of two things needs a greenlet of its own. Only the daemons watch
their peers so; the client's standard library sockets never come here.
"""

import select
import time

from gevent import get_hub
from gevent.hub import Waiter
from gevent.monkey import get_original
from gevent.socket import wait_read


class LoopWaits:
    """One watcher of ``sock``, kept for every wait: a new one costs system calls each."""

    def __init__(self, sock):
        self.sock = sock
        self._readable = None

    def readable_within(self, seconds, unless=None):
        """True once the socket is readable, False after ``seconds``, None once ``unless`` (a gevent
        Event) is set: one wait on all three in this greenlet."""
        if unless is not None and unless.is_set():
            return None
        hub = get_hub()
        if self._readable is None:
            self._readable = hub.loop.io(self.sock.fileno(), 1)
        waiter = Waiter(hub)
        timer = hub.loop.timer(seconds)
        self._readable.start(waiter.switch, True)
        timer.start(waiter.switch, False)
        wake = None if unless is None else (lambda _: waiter.switch(None))
        if wake is not None:
            unless.rawlink(wake)
        try:
            return waiter.get()
        finally:
            if wake is not None:
                unless.unlink(wake)
            timer.close()
            self._readable.stop()

    def recv_by(self, deadline, size):
        """One read of at most ``size`` bytes by ``deadline`` (time.monotonic()), else TimeoutError. The
        socket does not wait (its timeout is 0) only within this greenlet's turn: other greenlets' sends
        never see it so."""
        if deadline - time.monotonic() <= 0:
            raise TimeoutError("deadline passed")
        while True:
            timeout = self.sock.gettimeout()
            self.sock.settimeout(0.0)
            try:
                return self.sock.recv(size)
            except BlockingIOError:
                pass
            finally:
                self.sock.settimeout(timeout)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.readable_within(remaining):
                raise TimeoutError("timed out")

    def hang_up(self):
        """Return once the peer has closed or reset the connection (see Connection.wait_for_hang_up)."""
        poller = get_original("select", "epoll")()  # (gevent's patching hides it: its own loop is one)
        try:
            poller.register(self.sock.fileno(), select.EPOLLRDHUP)  # (EPOLLHUP and EPOLLERR come unasked)
            wait_read(poller.fileno())
        finally:
            poller.close()

    def close(self):
        if self._readable is not None:
            self._readable.close()
