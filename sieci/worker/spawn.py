"""Starting a helper process from a gevent daemon without forking Python.

A daemon has native threads (gevent resolves host names on a thread pool),
and a child forked from a threaded process that runs Python before exec can
deadlock on a lock another thread held (Python 3.12 warns of it). gevent's
subprocess does just that; ``posix_spawn`` runs no Python in the child.
The event loop reaps the process, so its pid is never signalled once
another process may have it.
"""

import os
import shutil
import signal

import gevent
import gevent.event


# Reset to their defaults in the helper: a daemon started from a script in the background ignores
# SIGINT (as shells have it), and what a fork server inherits, its jobs would (Ctrl-C under -t).
CATCHABLE = frozenset(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}


class SpawnedProcess:
    """``argv`` running with ``env``, in a session of its own, stdin and stdout on /dev/null, every
    signal at its default and none blocked."""

    def __init__(self, argv, env, pass_fds=()):
        program = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
        for fd in pass_fds:
            os.set_inheritable(fd, True)  # the only ones: Python opens every fd non-inheritable
        try:
            self.pid = os.posix_spawn(program, argv, env, setsid=True, setsigmask=(), setsigdef=CATCHABLE,
                                      file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                                    (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
        finally:
            for fd in pass_fds:
                os.set_inheritable(fd, False)
        self._exited = gevent.event.Event()
        # Started before the loop runs again, so the loop cannot reap the pid unwatched.
        self._watcher = gevent.get_hub().loop.child(self.pid, False)
        self._watcher.start(self._exited.set)

    def kill(self, grace=0):
        """SIGKILL it, unless it exits within ``grace`` seconds; wait until it is reaped."""
        if not self._exited.wait(grace) and not self._watcher.rpid:  # (rpid: reaped, its callback not yet run)
            os.kill(self.pid, signal.SIGKILL)
        self._exited.wait()
        self._watcher.stop()
