"""The master: takes jobs from clients, queues them, hands each to a worker.

Its parts: the client port (intake.py) takes and verifies uploads; the
dispatcher (dispatch.py) queues jobs and offers them to idle workers; each
worker link is served by its own greenlet (worker_links.py): a job it takes
is handed over, its results relayed (worker_link.py), and the job finished.
"""

import logging
import socket
import time

import gevent
import gevent.socket
from gevent.server import StreamServer

from sieci import defaults, splice
from sieci.files_store import FilesStore
from sieci.master import dispatch, ports
from sieci.master.intake import Intake
from sieci.master.kept_jobs import KeptJobs
from sieci.master.restore import Restoration
from sieci.master.state import Recorder, StateDir
from sieci.master.worker_links import WorkerLinks
from sieci.wire import auth, status
from sieci.wire.address import format_address

log = logging.getLogger("sieci.master")

class Master:
    def __init__(self, workers_address, clients_address, max_upload=defaults.MAX_UPLOAD,
                 client_timeout=defaults.CLIENT_TIMEOUT, max_queue=defaults.MAX_QUEUE, keepalive=defaults.KEEPALIVE,
                 secret=None, tls=None, names=(), max_unverified=defaults.MAX_UNVERIFIED,
                 max_connections_per_address=defaults.MAX_CONNECTIONS_PER_ADDRESS, files_store=defaults.FILES_STORE,
                 files_store_dir=None, keep_output=defaults.KEEP_OUTPUT, max_kept_output=defaults.MAX_KEPT_OUTPUT,
                 pipelined=True, max_new_connections=defaults.MAX_NEW_CONNECTIONS, state_dir=None):
        """``secret`` (bytes) makes every worker and client prove they hold it, in
        signatures meant for this master (reached at its own address or host name,
        or at one of ``names``: see auth.Identity); ``tls`` (an ssl.SSLContext for
        servers) encrypts both ports. Uploads not yet verified may hold at most
        ``max_unverified`` bytes together (their first lines too), one address may have at most
        ``max_connections_per_address`` client connections open, and at most
        ``max_new_connections`` (and a quarter of the open-files limit) may wait for their request at
        once, all addresses together (see intake.Newcomers). Jobs' files bundles
        are kept, ``files_store`` bytes of them at most, in a private folder made in
        ``files_store_dir`` (default: the system's temp folder). Detached jobs' results are kept
        ``keep_output`` seconds after they end, ``max_kept_output`` bytes of them at most, in a
        private folder made there too (see kept_jobs.py). ``pipelined``: keep workers from idling a round
        trip between jobs (see wire/conversation.py); off, jobs are dispatched as the classic master did.
        ``state_dir``: keep kept jobs, their results and the files store there, and find them again at the
        next start (see state.py); state.StateRefused if the folder cannot be used."""
        self.client_timeout = client_timeout
        self.keepalive = keepalive
        self.verifier = auth.Verifier(secret) if secret else None
        self.names = names
        self.tls = tls
        self.started_at = time.monotonic()
        self.dispatcher = dispatch.Dispatcher(max_queue, pipelined, client_timeout)
        self.state = StateDir(state_dir) if state_dir else None
        self.recorder = Recorder(self.state) if self.state else None
        self.files = FilesStore(files_store, files_store_dir, lasting_folder=self.state and self.state.files_folder)
        self.dispatcher.listeners.append(self._release_files)
        self.kept = KeptJobs(max_kept_output, keep_output, files_store_dir,
                             folder=self.state and self.state.kept_folder, recorder=self.recorder)
        self.intake = Intake(self.dispatcher, lambda: status.snapshot(self), max_upload, max_unverified,
                             max_connections_per_address, client_timeout, keepalive, self.verifier,
                             plaintext_only=tls is None, files=self.files, kept=self.kept,
                             max_newcomers=min(max_new_connections, _open_files_limit() // 4))
        # TLS bytes are not ours to splice
        self.splice_pipes = splice.SplicePipes() if splice.AVAILABLE and not tls else None
        self.worker_links = WorkerLinks(self.dispatcher, self.verifier, self.files, self.splice_pipes, client_timeout,
                                        keepalive, plaintext_only=tls is None)
        self.links = self.worker_links.links
        if self.state is not None:
            Restoration(self.state, self.kept, self.files, self.dispatcher, self.intake.watch).run()
            self.recorder.commit()
        self.worker_server = StreamServer(workers_address, ports.behind_tls(self.worker_links.handle_worker, "worker",
                                                                            tls, client_timeout))
        self.client_server = TunedServer(clients_address, ports.behind_tls(self.intake.handle_client, "client", tls,
                                                                           client_timeout), self.intake.tune_listener)

    @property
    def workers_address(self):
        return self.worker_server.address

    @property
    def clients_address(self):
        return self.client_server.address

    @property
    def name(self):
        return format_address(self.clients_address)

    def wait_for_workers(self, count, timeout, exactly=False):
        """True once ``count`` workers (at least, or ``exactly``) are linked; False after ``timeout``."""
        return self.worker_links.wait_for(count, timeout, exactly)

    def start(self):
        host_names = [socket.gethostname(), socket.getfqdn()]  # before listening: a lookup may take a while
        self.worker_server.start()
        self.client_server.start()
        self.intake.identity = auth.Identity(self.client_server.address[1], self.names, host_names)
        self.worker_links.identity = auth.Identity(self.worker_server.address[1], self.names, host_names)
        log.info("master listening for workers on %s and for clients on %s",
                 format_address(self.workers_address), format_address(self.clients_address))

    def stop(self, grace=defaults.GRACE):
        """Stop taking jobs, fail the queued ones, let running ones finish."""
        self.client_server.close()
        self.worker_server.close()
        if self.recorder is not None:
            self._leave_detached_queued()
        self.dispatcher.stop(grace)
        for link in list(self.links):
            link.hang_up()
        gevent.joinall([link.greenlet for link in self.links], timeout=grace)
        if self.splice_pipes is not None:
            self.splice_pipes.close()
        self.files.close()
        self.kept.close()
        if self.recorder is not None:
            self.recorder.close()

    def _leave_detached_queued(self):
        """Queued jobs that no client waits for stay queued in the state folder, for the next start."""
        dispatcher = self.dispatcher
        staying = [job for job in dispatcher.pending_jobs if job.client is None and job.spool is not None]
        for job in staying:
            dispatcher.pending_jobs.remove(job)
            dispatcher.active_jobs.discard(job)
            dispatcher.jobs_by_id.pop(job.id, None)
        log.info("%d queued job(s) stay in %s for the next start", len(staying), self.state.path)

    def _release_files(self, event, job):
        """A job that has ended no longer needs its files bundle kept."""
        if event in ("done", "failed", "cancelled") and job.files is not None:
            self.files.release(job.files.digest)


class TunedServer(StreamServer):
    """A StreamServer whose listening socket ``tune(sock)`` sets options on before it listens: on Linux,
    each connection accepted inherits them, which spares their system calls on every connection."""

    def __init__(self, address, handle, tune):
        super().__init__(address, handle)
        self._tune = tune

    def get_listener(self, address, backlog=None, family=None):
        """As gevent's own, tuned."""
        sock = gevent.socket.socket(family=family)
        if self.reuse_addr is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, self.reuse_addr)
        self._tune(sock)
        try:
            sock.bind(address)
        except OSError as error:
            if error.strerror is not None:
                error.strerror += ": " + repr(address)
            sock.close()
            raise
        sock.listen(self.backlog if backlog is None else backlog)
        sock.setblocking(False)
        return sock


def _open_files_limit():
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
