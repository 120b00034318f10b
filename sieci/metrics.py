"""Prometheus metrics of a master or a worker, with the official prometheus_client.

Each daemon gets a registry of its own (so that several can live in one
process, as in sieci-cluster and the tests) and serves it over HTTP with
gevent's WSGI server when ``--metrics ADDR`` is given.
"""

from gevent.pywsgi import WSGIServer
from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
                               ProcessCollector, make_wsgi_app)
from prometheus_client.core import GaugeMetricFamily

from sieci import __version__
from sieci.master import endings
from sieci.master.dashboard import Dashboard
from sieci.master.dashboard_view import worker_name_of
from sieci.wire.address import format_address
from sieci.wire.conversation import LINK_STATES

FINISHED = ("done", "failed", "cancelled")
MAX_WORKER_LABELS = 256
OTHER_WORKERS = "other"


def new_registry(daemon):
    """A registry of its own for one daemon (``daemon``: "master" or "worker"), with the client library's
    process and platform collectors (process_*, python_info) and sieci_build_info."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    Gauge("sieci_build_info", "The sieci version that runs, always 1", ["version", "daemon"],
          registry=registry).labels(__version__, daemon).set(1)
    return registry


class LinkedWorkers:
    """sieci_worker_linked: 1 for each worker linked to ``master``, labelled by the name it gives (a classic
    worker, which gives none, by its address), and the state of its link."""

    def __init__(self, master):
        self.master = master

    def collect(self):
        family = GaugeMetricFamily("sieci_worker_linked", "Workers linked to this master, by name and link state",
                                   labels=["worker", "state"])
        for link in self.master.links:
            family.add_metric([worker_name_of(link), link.state.state], 1)
        yield family


class MasterMetrics:
    def __init__(self, master):
        self.registry = new_registry("master")
        self.jobs = Counter("sieci_jobs", "Jobs that ended, by outcome", ["outcome"], registry=self.registry)
        self.endings = Counter("sieci_job_endings", "Jobs that ended, by how (the class of their exit status: "
                               + ", ".join(endings.CLASSES) + ")", ["status"], registry=self.registry)
        self.worker_labels = set()
        self.worker_endings = Counter("sieci_worker_job_endings", "Jobs that ended on a worker, by its name and how",
                                      ["worker", "status"], registry=self.registry)
        self.registry.register(LinkedWorkers(master))
        self.wait = Histogram("sieci_job_wait_seconds", "Time jobs waited in the queue", registry=self.registry)
        self.run = Histogram("sieci_job_run_seconds", "Time from dispatch to the end of a job's results",
                             registry=self.registry)
        self.relayed = Counter("sieci_bytes_relayed", "Bytes of results relayed to clients", registry=self.registry)
        Gauge("sieci_queue_length", "Jobs waiting for a worker",
              registry=self.registry).set_function(lambda: len(master.dispatcher.pending_jobs))
        workers = Gauge("sieci_workers", "Linked workers, by the state of their link", ["state"],
                        registry=self.registry)
        for state in LINK_STATES:
            workers.labels(state).set_function(
                lambda state=state: sum(link.state.state == state for link in master.links))
        for outcome in FINISHED:
            self.jobs.labels(outcome)
        for status in endings.CLASSES:
            self.endings.labels(status)
        master.dispatcher.listeners.append(self.on_event)

    def _worker_label(self, name):
        """The worker's name, or "other" past MAX_WORKER_LABELS names: workers name themselves, and
        each name is a series kept for the master's life."""
        if name not in self.worker_labels and len(self.worker_labels) >= MAX_WORKER_LABELS:
            return OTHER_WORKERS
        self.worker_labels.add(name)
        return name

    def on_event(self, event, job):
        if event not in FINISHED:
            return
        self.jobs.labels(event).inc()
        status = endings.ending_class(event, job.status, job.dispatched_at is not None)
        self.endings.labels(status).inc()
        if job.worker is not None:
            self.worker_endings.labels(self._worker_label(worker_name_of(job.worker, job)), status).inc()
        self.relayed.inc(job.bytes_relayed)
        if job.dispatched_at is not None:
            self.wait.observe(job.dispatched_at - job.queued_at)
            if event == "done":
                self.run.observe(job.finished_at - job.dispatched_at)


class WorkerMetrics:
    def __init__(self, worker):
        self.registry = new_registry("worker")
        self.jobs = Counter("sieci_worker_jobs", "Jobs run, by how they ended (exit, signal, limit, error)",
                            ["outcome"], registry=self.registry)
        self.endings = Counter("sieci_worker_endings", "Jobs run, by the class of their exit status ("
                               + ", ".join(endings.OF_A_STATUS) + ")", ["status"], registry=self.registry)
        for status in endings.OF_A_STATUS:
            self.endings.labels(status)
        self.seconds = Histogram("sieci_worker_job_seconds", "Time jobs ran", registry=self.registry)
        Gauge("sieci_worker_busy", "1 while a job runs",
              registry=self.registry).set_function(lambda: any(link.running_job for link in worker.links))
        Gauge("sieci_worker_masters_linked", "Masters this worker holds a link to",
              registry=self.registry).set_function(lambda: sum(link.conn is not None for link in worker.links))
        worker.listeners.append(self.on_job_ended)

    def on_job_ended(self, status, seconds):
        self.jobs.labels(status.kind.decode()).inc()
        self.endings.labels(endings.ending_class("done", status, True)).inc()
        self.seconds.observe(seconds)


def serve(registry, address, log, master=None, peers=()):
    """Start serving ``registry`` at ``address`` (/metrics, or any path), and log where (port 0: the
    one the system chose); with ``master``, its dashboard at / too, listing ``peers`` (other masters'
    dashboards' URLs: see dashboard.py)."""
    app = make_wsgi_app(registry)
    if master is not None:
        app = Dashboard(master, fallback=app, peers=peers)
    server = WSGIServer(address, app, log=None, error_log=None)
    server.start()
    log.info("serving metrics on http://%s/metrics", format_address(server.address))
    if master is not None:
        log.info("serving the dashboard on http://%s/", format_address(server.address))
    return server
