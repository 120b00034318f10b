"""A master's live dashboard: an HTML page at / and the JSON it polls at /status.json.

Both are served beside /metrics, on the address given to ``--metrics``. The
page (dashboard.html, in this package) is static and self-contained: its
script fetches the JSON every few seconds and writes what it shows with
``textContent`` only, since worker names and failure reasons come from the
network. The JSON is the status request's snapshot (status.py), with its
lists bounded, plus the queue's head, the running jobs, the last RECENT_JOBS
that ended and the jobs ended per second: the master keeps only O(1) a job
for it, and a page that polls costs it one snapshot per poll.
"""

import base64
import collections
import hashlib
import heapq
import itertools
import json
import re
import time
import weakref
from importlib import resources

from sieci.wire import protocol, status

PAGE_PATH = "/"
JSON_PATH = "/status.json"
RECENT_JOBS = 50
MAX_ROWS = 100  # workers, running jobs: more are counted, not listed
MAX_QUEUED = 20  # the head of the queue: the jobs that waited longest
MAX_TEXT = 200  # characters of a name or a reason from the network
THROUGHPUT_WINDOW = 10  # seconds over which jobs/s is averaged
FINISHED = ("done", "failed", "cancelled")

PAGE = resources.files(__package__).joinpath("dashboard.html").read_bytes()


def _inline_hash(tag):
    """The CSP source that allows the page's one inline <tag> and nothing injected beside it."""
    content = re.search(rb"<%s>(.*?)</%s>" % (tag, tag), PAGE, re.S)[1]
    return "'sha256-" + base64.b64encode(hashlib.sha256(content).digest()).decode() + "'"


PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", f"default-src 'none'; script-src {_inline_hash(b'script')}; "
                                f"style-src {_inline_hash(b'style')}; connect-src 'self'; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
]
JSON_HEADERS = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
]


class Throughput:
    """Jobs ended per second, averaged over the last ``window`` seconds: one count per whole second."""

    def __init__(self, window=THROUGHPUT_WINDOW):
        self.window = window
        self._seconds = collections.deque(maxlen=window)  # [whole second, jobs that ended in it]

    def count(self, now):
        second = int(now)
        if self._seconds and self._seconds[-1][0] == second:
            self._seconds[-1][1] += 1
        else:
            self._seconds.append([second, 1])

    def per_second(self, now):
        oldest = int(now) - self.window
        return sum(jobs for second, jobs in self._seconds if second > oldest) / self.window


class Dashboard:
    """What the page shows of ``master``, and the WSGI app that serves it; other paths go to ``fallback``."""

    def __init__(self, master, fallback):
        self.master = master
        self.fallback = fallback
        self.recent_jobs = collections.deque(maxlen=RECENT_JOBS)  # (when it ended, what the page shows)
        self.throughput = Throughput()
        self._worker_names = weakref.WeakKeyDictionary()  # link: the name its worker gave with its last results
        master.dispatcher.listeners.append(self.on_event)

    def on_event(self, event, job):
        if event not in FINISHED:
            return
        self.throughput.count(job.finished_at)
        if _worker_name(job):
            self._worker_names[job.worker] = _worker_name(job)
        self.recent_jobs.append((job.finished_at, _ended(event, job, self._known_name(job.worker))))

    def state(self, now=None):
        """The snapshot of the status request, bounded, with what only the page shows."""
        now = time.monotonic() if now is None else now
        state = status.snapshot(self.master, now)
        workers = state["workers"]
        names = {link.name: self._name_of(link) for link in self.master.links}
        state["workers"] = [dict(worker, name=names.get(worker["address"])) for worker in workers[:MAX_ROWS]]
        state["workers_linked"] = len(workers)
        state["worker_states"] = collections.Counter(worker["state"] for worker in workers)
        state["queued"] = [_queued(job, now) for job in itertools.islice(self.master.dispatcher.pending_jobs,
                                                                           MAX_QUEUED)]
        state["running"] = heapq.nlargest(MAX_ROWS, (self._running(link, now) for link in self.master.links
                                                     if link.job is not None), key=lambda job: job["running_for"])
        state["recent"] = [dict(job, ended_ago=round(now - finished_at, 3))
                           for finished_at, job in reversed(self.recent_jobs)]
        state["jobs_per_second"] = round(self.throughput.per_second(now), 3)
        return state

    def _name_of(self, link):
        """The name its worker gives: in its running job's results, else in an earlier job's."""
        return (_worker_name(link.job) if link.job is not None else None) or self._known_name(link)

    def _known_name(self, link):
        return self._worker_names.get(link) if link is not None else None

    def _running(self, link, now):
        job = link.job
        return {
            "job": job.id,
            "worker": link.name,
            "name": self._name_of(link),
            "client": job.client_name,
            "running_for": round(now - job.dispatched_at, 3),
        }

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or PAGE_PATH
        if path == PAGE_PATH:
            start_response("200 OK", PAGE_HEADERS)
            return [PAGE]
        if path == JSON_PATH:
            start_response("200 OK", JSON_HEADERS)
            return [json.dumps(self.state(), separators=(",", ":")).encode()]
        return self.fallback(environ, start_response)


def _text(raw):
    return raw.decode("utf-8", "replace")[:MAX_TEXT] if raw is not None else None


def _worker_name(job):
    """The name the worker gave in its results' header (worker=), if they came."""
    return _text(job.results_header.field(protocol.WORKER_FIELD)) if job.results_header is not None else None


def _ended(outcome, job, worker_name):
    dispatched = job.dispatched_at
    return {
        "job": job.id,
        "outcome": outcome,
        "reason": job.end_reason[:MAX_TEXT],
        "worker": job.worker.name if job.worker is not None else None,
        "name": worker_name,
        "client": job.client_name,
        "waited": round((dispatched or job.finished_at) - job.queued_at, 3),
        "ran": round(job.finished_at - dispatched, 3) if dispatched else None,
    }


def _queued(job, now):
    return {"job": job.id, "client": job.client_name, "waiting_for": round(now - job.queued_at, 3)}

