"""What a master's dashboard shows of it, as plain data: the status request's snapshot (status.py), its
lists bounded, plus the workers by the names they give, those gone missing lately, the queue's head,
the running jobs and the last RECENT_JOBS that ended (each with its program, how it ended and its
times), the jobs ended per second, and how many ended in each class of endings.py (an exit status
other than 0 is "failed", where the status request's totals count it "done"). The master keeps only
O(1) a job for it, and a page that polls costs it one snapshot per poll.
"""

import collections
import heapq
import itertools
import time

from sieci.master import endings
from sieci.wire import protocol, status

RECENT_JOBS = 50
MAX_ROWS = 100  # workers, running jobs, missing workers: more are counted, not listed
MAX_QUEUED = 20  # the head of the queue: the jobs that waited longest
MAX_TEXT = 200  # characters of a name, a program or a reason from the network
THROUGHPUT_WINDOW = 10  # seconds over which jobs/s is averaged
MISSING_FOR = 600.0  # seconds a worker that went away is listed as missing, unless it comes back
FINISHED = ("done", "failed", "cancelled")


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


class MissingWorkers:
    """Workers whose link went away, by name, for ``MISSING_FOR`` seconds or until one of that name links
    again; at most MAX_ROWS, the oldest forgotten first."""

    def __init__(self):
        self._gone = collections.OrderedDict()  # name: (address, when it went, jobs it had done)

    def went(self, name, address, now, jobs_done):
        self._gone.pop(name, None)
        self._gone[name] = (address, now, jobs_done)
        while len(self._gone) > MAX_ROWS:
            self._gone.popitem(last=False)

    def listed(self, present_names, now):
        """The missing workers, the latest gone first, none of ``present_names``."""
        while self._gone and now - next(iter(self._gone.values()))[1] > MISSING_FOR:
            self._gone.popitem(last=False)
        return [{"name": name, "address": address, "state": "missing", "gone_for": round(now - when, 3),
                 "jobs_done": jobs_done}
                for name, (address, when, jobs_done) in reversed(self._gone.items()) if name not in present_names]


class MasterView:
    """What the page shows of ``master``; ``peers``: the other masters' dashboards it lists (URLs)."""

    def __init__(self, master, peers=()):
        self.master = master
        self.peers = list(peers)
        self.recent_jobs = collections.deque(maxlen=RECENT_JOBS)  # (when it ended, what the page shows)
        self.throughput = Throughput()
        self.endings = collections.Counter()  # jobs ended, by the class of their ending (endings.py)
        self.missing = MissingWorkers()
        master.dispatcher.listeners.append(self.on_event)
        master.worker_links.departures.append(self.worker_went)

    def on_event(self, event, job):
        if event not in FINISHED:
            return
        self.throughput.count(job.finished_at)
        ended = _ended(event, job)
        self.endings[ended["status"]] += 1
        self.recent_jobs.append((job.finished_at, ended))

    def worker_went(self, link):
        self.missing.went(worker_name_of(link), link.name, time.monotonic(), link.jobs_done)

    def state(self, now=None):
        """The snapshot of the status request, bounded, with what only the page shows."""
        now = time.monotonic() if now is None else now
        state = status.snapshot(self.master, now)
        workers = state["workers"]
        names = {link.name: worker_name_of(link) for link in self.master.links}
        state["workers"] = [dict(worker, name=names.get(worker["address"])) for worker in workers[:MAX_ROWS]]
        state["workers_linked"] = len(workers)
        state["worker_states"] = collections.Counter(worker["state"] for worker in workers)
        state["missing"] = self.missing.listed(set(names.values()), now)
        state["queued"] = [_queued(job, now) for job in itertools.islice(self.master.dispatcher.pending_jobs,
                                                                           MAX_QUEUED)]
        state["running"] = heapq.nlargest(MAX_ROWS, (_running(link, now) for link in self.master.links
                                                     if link.job is not None), key=lambda job: job["running_for"])
        state["recent"] = [dict(job, ended_ago=round(now - finished_at, 3))
                           for finished_at, job in reversed(self.recent_jobs)]
        state["jobs_per_second"] = round(self.throughput.per_second(now), 3)
        state["endings"] = {ending: self.endings[ending] for ending in endings.CLASSES}
        state["peers"] = self.peers
        return state


def worker_name_of(link, job=None):
    """The name a worker gives (on READY, or in ``job``'s results); a classic worker's address."""
    return link.worker_name or _results_name(job) or _results_name(link.job) or link.name


def _results_name(job):
    """The name the worker gave in ``job``'s results' header (worker=), if they came."""
    if job is None or job.results_header is None:
        return None
    return _text(job.results_header.field(protocol.WORKER_FIELD))


def _text(raw):
    return raw.decode("utf-8", "replace")[:MAX_TEXT] if raw is not None else None


def _seconds(value):
    return round(value, 3) if value is not None else None


def _ended(outcome, job):
    dispatched, worker = job.dispatched_at, job.worker
    return {
        "job": job.id,
        "program": (job.program or "")[:MAX_TEXT] or None,
        "outcome": outcome,
        "ending": endings.ending_text(outcome, job.status, job.end_reason)[:MAX_TEXT],
        "status": endings.ending_class(outcome, job.status, dispatched is not None),
        "exit_status": endings.exit_status(job.status),
        "reason": job.end_reason[:MAX_TEXT],
        "worker": worker.name if worker is not None else None,
        "name": worker_name_of(worker, job) if worker is not None else None,
        "client": job.client_name,
        "submitted": _seconds(job.submitted), "started": _seconds(job.started), "ended": _seconds(job.ended_wall),
        "waited": round((dispatched or job.finished_at) - job.queued_at, 3),
        "ran": round(job.finished_at - dispatched, 3) if dispatched else None,
    }


def _queued(job, now):
    return {"job": job.id, "program": (job.program or "")[:MAX_TEXT] or None, "client": job.client_name,
            "submitted": _seconds(job.submitted), "waiting_for": round(now - job.queued_at, 3)}


def _running(link, now):
    job = link.job
    return {
        "job": job.id,
        "program": (job.program or "")[:MAX_TEXT] or None,
        "worker": link.name,
        "name": worker_name_of(link),
        "client": job.client_name,
        "submitted": _seconds(job.submitted),
        "started": _seconds(job.started),
        "running_for": round(now - job.dispatched_at, 3),
    }
