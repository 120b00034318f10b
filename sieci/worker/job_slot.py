"""A worker's one job at a time, whichever of its masters the job is for."""

import gevent.event


class JobSlot:
    """One job at a time, whichever master it is for: the link that holds the worker now.

    A link holds it from READY (or from taking a code sent against a standing
    offer) until its job's results have gone, or until ROLLBACK. When it is
    let go, ``on_free`` callables run: links to masters that take offers
    then offer themselves again.
    """

    def __init__(self):
        self.holder = None
        self.on_free = []
        self._freed = gevent.event.Event()
        self._freed.set()

    def take(self, link):
        """Hold it for ``link`` if no other link does; whether it now does."""
        if self.holder not in (None, link):
            return False
        self.holder = link
        self._freed.clear()
        return True

    def wait_and_take(self, link):
        while not self.take(link):
            self._freed.wait()

    def let_go(self, link):
        if self.holder is link:
            self.holder = None
            self._freed.set()
            for callback in self.on_free:
                callback()
