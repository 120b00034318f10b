"""sieci.Executor: a concurrent.futures.Executor whose jobs run on a sieci cluster."""

import concurrent.futures
import itertools
import threading
import time

from sieci import defaults
from sieci.client.client import Client


class Executor(concurrent.futures.Executor):
    """Runs jobs on a sieci cluster, ``max_workers`` at a time.

    ``submit(fn, *args, **kwargs)`` calls the function ``fn`` on a worker and returns a Future of
    its value (or of what it raised); ``map(fn, *iterables)`` yields the values in order. Functions
    need the cluster's secret (``secret`` or ``secret_file``): see docs/python-api.md.

    ``submit(code)`` (a str or bytes program) returns a Future of the job's Result (or of the
    ClientError that says why sieci could not get one); ``map(codes)`` yields Results in order.
    The other arguments are Client's (``requirements=`` a requirements file, and ``wheels=`` a folder of
    wheels: every job, functions' calls included, runs in a virtual environment of those packages)::

        with sieci.Executor("master:2001", max_workers=16, secret_file="secret") as pool:
            squares = list(pool.map(lambda n: n * n, range(100)))
            for result in pool.map(f"print({n} ** 2)" for n in range(100)):
                print(result.stdout.decode(), end="")
    """

    def __init__(self, masters, max_workers=defaults.JOBS_AT_ONCE, **client_settings):
        self.client = Client(masters, **client_settings)
        self._threads = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="sieci")
        self._calls = None
        self._calls_made = threading.Lock()

    def submit(self, fn=None, /, *args, **kwargs):
        """A Future of ``fn(*args, **kwargs)``'s value, called on a worker; for a program (``fn`` a str or
        bytes, or ``code=``), of its job's Result (see ``submit_code``)."""
        if fn is None:
            return self.submit_code(*args, **kwargs)
        if not callable(fn):
            return self.submit_code(fn, *args, **kwargs)
        from sieci.client.call_codec import CallCode

        calls = self._function_calls()
        return self._threads.submit(calls.call_one, CallCode(fn).program([(args, kwargs)]))

    def submit_code(self, code, filename="job.py", args=(), env=None, returns=(), results=".", stdin=None):
        """The job ``python3 FILENAME ARGS...`` of ``code``, with ``env`` added to its environment,
        the files it writes that match ``returns`` brought back into ``results`` (see Client.run),
        and ``stdin`` (bytes, or a binary file object) as its stdin."""
        return self._threads.submit(self.client.run, code, filename, None, args, env, returns=returns,
                                    results=results, stdin=stdin)

    def map(self, fn, *iterables, timeout=None, chunksize=1):
        """``fn``'s values for the items of ``iterables``, in order, as concurrent.futures' map gives them:
        ``chunksize`` calls in one job, which gives their values together (an exception in one of them
        is raised in their place, and the values of the others in that job are lost, as
        ProcessPoolExecutor's map does); for programs (``map(codes)``), their Results."""
        if not callable(fn):
            return self._threads.map(self.client.run, fn, *iterables, timeout=timeout)
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        from sieci.client.call_codec import CallCode

        code, calls = CallCode(fn), self._function_calls()
        deadline = None if timeout is None else time.monotonic() + timeout
        chunks = itertools.batched(zip(*iterables), chunksize) if hasattr(itertools, "batched") else \
            _batched(zip(*iterables), chunksize)
        futures = [self._threads.submit(calls.call, code.program([(args, {}) for args in chunk]), len(chunk))
                   for chunk in chunks]
        return _in_order(futures, deadline)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._threads.shutdown(wait, cancel_futures=cancel_futures)
        if self._calls is not None and wait:
            self._calls.close()

    def _function_calls(self):
        with self._calls_made:
            if self._calls is None:
                from sieci.client.calls import Calls

                self._calls = Calls(self.client)
        return self._calls


def _batched(items, size):
    items = iter(items)
    while chunk := tuple(itertools.islice(items, size)):
        yield chunk


def _in_order(futures, deadline):
    """The values in the futures' results (lists) in order, each future waited for until ``deadline`` at
    most (TimeoutError after); those not waited for are cancelled when this generator is closed early,
    as concurrent.futures does."""
    try:
        futures.reverse()
        while futures:
            future = futures.pop()
            if deadline is None:
                yield from future.result()
            else:
                yield from future.result(deadline - time.monotonic())
    finally:
        for future in futures:
            future.cancel()
