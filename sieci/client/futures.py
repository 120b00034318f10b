"""sieci.Executor: a concurrent.futures.Executor whose jobs run on a sieci cluster."""

import concurrent.futures

from sieci import defaults
from sieci.client.client import Client


class Executor(concurrent.futures.Executor):
    """Runs jobs on a sieci cluster, ``max_workers`` at a time.

    ``submit(code)`` returns a Future of the job's Result (or of the
    ClientError that says why sieci could not get one); ``map(codes)``
    yields Results in order. The other arguments are Client's::

        with sieci.Executor("master:2001", max_workers=16) as pool:
            for result in pool.map(f"print({n} ** 2)" for n in range(100)):
                print(result.stdout.decode(), end="")
    """

    def __init__(self, masters, max_workers=defaults.JOBS_AT_ONCE, **client_settings):
        self.client = Client(masters, **client_settings)
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="sieci")

    def submit(self, code, filename="job.py", args=(), env=None, returns=(), results=".", stdin=None):
        """The job ``python3 FILENAME ARGS...`` of ``code``, with ``env`` added to its environment,
        the files it writes that match ``returns`` brought back into ``results`` (see Client.run),
        and ``stdin`` (bytes, or a binary file object) as its stdin."""
        return self._threads.submit(self.client.run, code, filename, None, args, env, returns=returns,
                                    results=results, stdin=stdin)

    def map(self, codes, timeout=None):
        return self._threads.map(self.client.run, codes, timeout=timeout)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._threads.shutdown(wait, cancel_futures=cancel_futures)
