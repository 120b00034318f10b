"""A taken job's client, watched until the job ends: one that leaves cancels its job (a kept job runs on a
while for a client to attach), and a job whose stdin streams has it relayed meanwhile (stdin_relay.py)."""

import logging

import gevent

from sieci.master.job import Cancellation
from sieci.wire import conversation, protocol

log = logging.getLogger("sieci.master")


class ClientWatch:
    """Watches the clients of ``dispatcher``'s jobs. A kept job whose client left runs on for
    ``client_timeout`` seconds for one to attach; a client that has acknowledged nothing for
    ``keepalive`` seconds is taken for gone."""

    def __init__(self, dispatcher, client_timeout, keepalive):
        self.dispatcher = dispatcher
        self.client_timeout = client_timeout
        self.keepalive = keepalive

    def wait_while_watching(self, job):
        """Wait for the job to end, relaying its stdin if it streams; cancel it if its client hangs up first."""
        job.client.settimeout(None)
        if job.stdin is None:
            self._watch_client(job)
        else:
            relay = gevent.spawn(self._relay_stdin, job)
            try:
                gevent.wait([job.finished, relay], count=1)
            finally:
                relay.kill()
        if job.client is not None:  # not left to run on: see _client_left
            job.finished.wait()

    def _watch_client(self, job):
        """Until the job ends, or its client leaves."""
        try:
            while self._readable_while_alive(job) and not self._hung_up(job.client):
                pass
        except (OSError, protocol.ProtocolError):
            pass
        if not job.ended:
            self._client_left(job)

    @staticmethod
    def _hung_up(client):
        """Read what a client whose socket is readable sent (nothing more is expected; what comes
        anyway is ignored): whether it has hung up. Never waits past that read, so that the job's
        end finds the watch in _readable_while_alive."""
        client.receive_more()
        while (event := client.next_buffered_event()) is not protocol.NEED_DATA:
            if event is protocol.CONNECTION_CLOSED:
                return True
        return False

    def _client_left(self, job):
        """A kept job runs on for ``client_timeout`` seconds for its client to re-attach; any other is cancelled."""
        if job.spool is None:
            self.dispatcher.cancel(job, Cancellation.CLIENT_LEFT)
            return
        log.info("client %s left job %s, which runs on for %g s for a client to attach", job.client_name, job.id,
                 self.client_timeout, extra={"job": job.id})
        job.detach()
        gevent.spawn_later(self.client_timeout, self._cancel_unless_attached, job)

    def attacher_left(self, job):
        """The last client attached to a ``keep`` job (not a detached one) has left: as its first did."""
        if not job.detached_at_upload and not job.ended:
            gevent.spawn_later(self.client_timeout, self._cancel_unless_attached, job)

    def _cancel_unless_attached(self, job):
        if not job.ended and not job.spool.attached:
            log.info("job %s: no client attached within %g s", job.id, self.client_timeout, extra={"job": job.id})
            self.dispatcher.cancel(job, Cancellation.REQUESTED)

    def _relay_stdin(self, job):
        """Relay the job's stdin to its worker (stdin_relay.py), then watch the client as for any job.
        A client that leaves meanwhile stops the job at once, even while the relay reads nothing from
        it (its worker's job takes no stdin): its hang-up waits behind the stdin it sent before."""
        job.client.conversation.ignored = conversation.STREAMING_CLIENT_IGNORED
        leaving = gevent.spawn(self._cancel_at_hang_up, job)
        try:
            relayed = job.stdin.relay(job.client, lambda: self._readable_while_alive(job))
        except protocol.ProtocolError as error:
            log.warning("client %s: the stdin of job %s is malformed (%s): the job is stopped", job.client_name, job.id,
                        error, extra={"job": job.id})
            relayed = False
        except OSError:
            relayed = False
        finally:
            leaving.kill()
        if relayed:
            self._watch_client(job)
        else:
            self._cancel_unless_ended(job)

    def _cancel_at_hang_up(self, job):
        job.client.wait_for_hang_up()
        self._cancel_unless_ended(job)

    def _cancel_unless_ended(self, job):
        """Its client has left: cancel the job, unless it has ended, for the client too (its results have
        all been sent, and the client may leave before the master has seen the rest of the job's end)."""
        results_sent = job.client is not None and job.client.conversation.state == conversation.CLOSED
        if not (job.ended or job.cancellation is not None or results_sent):
            self.dispatcher.cancel(job, Cancellation.CLIENT_LEFT)

    def _readable_while_alive(self, job):
        """Whether the client's socket became readable before its client vanished, or the job ended."""
        readable = job.client.readable_while_acknowledged(self.keepalive, unless=job.finished)
        if readable is False:
            log.info("client %s has acknowledged nothing for %g s: taken for gone", job.client_name, self.keepalive)
        return bool(readable)
