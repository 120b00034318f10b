"""A job a master hands this worker over its link: the upload read into JobSettings (or the job
refused), the job run, its results sent, and the master watched (or its stdin fed in) meanwhile."""

import logging
import time

import gevent

from sieci import defaults
from sieci.wire import auth, protocol, returns, stdin_stream, upload_format
from sieci.worker.executor import STREAMED, JobSettings
from sieci.worker.files import JobRefused
from sieci.worker.fork_server import ForkServerError
from sieci.worker.job_results import send_classic, send_extended
from sieci.worker.job_stdin import StdinFeeder

log = logging.getLogger("sieci.worker")

HEARTBEAT = 5.0  # seconds: the longest a running job's results stay silent (a quiet job: see protocol.HEARTBEAT_ITEM)


class LinkLost(Exception):
    """The master went away, or broke the protocol; the link is redialled."""


def read_code(conn):
    """The rest of the upload block whose header ``conn`` has started."""
    parts = []
    while True:
        event = conn.next_event()
        if isinstance(event, protocol.BlockData):
            parts.append(event.data)
        elif isinstance(event, protocol.BlockEnd):
            return b"".join(parts)
        else:
            raise LinkLost("the master closed the link in the middle of the code")


class TakenJob:
    """One job that ``link`` (a MasterLink, holding the worker) takes: ``raw_header`` is its upload's
    header line; ``relay``: the RELAY line a sieci master said before the code (it can stream stdin,
    send files, and names the job: see link_log.JobName), or None."""

    def __init__(self, link, raw_header, relay):
        self.link = link
        self.worker = link.worker
        self.conn = link.conn
        self.name = link.name
        self.raw_header = raw_header
        self.relay = relay
        self.job_name = link.job_numbers.next(relay)
        if self.job_name.malformed is not None:
            log.warning("master %s gave job %s the id %r, which is no job's id: its lines name it by its number",
                        self.name, self.job_name.link_job, self.job_name.malformed, extra=self.job_name.fields)

    def take(self):
        """Read the upload; refuse it, or run it and send its results."""
        relayed = self.relay is not None
        try:
            header = self.conn.start_block(self.raw_header, max_size=self.worker.max_upload)
            payload = read_code(self.conn)
        except protocol.RemoteProtocolError as error:
            self.conn.refuse(str(error).encode())
            raise
        try:
            settings = self._settings_of(header, payload)
        except JobRefused as why:
            log.warning("job %s for %s refused: %s", self.job_name.label, self.name, why, extra=self.job_name.fields)
            if relayed:
                self.conn.send_command(protocol.ERROR, why.reason)
            else:  # a classic master: it relays one block after our answer, whatever it was
                self.conn.send(protocol.encode_command(protocol.ERROR, why.reason),
                               completes=protocol.REFUSAL_TO_CLASSIC)
                self.conn.send(protocol.encode_block(b""), completes=protocol.JOB)
            return
        try:
            self.worker.runner.start()
        except ForkServerError as error:
            self.worker.break_down(str(error))
            raise LinkLost(str(error)) from None
        self.conn.send_command(protocol.RECEIVED)
        self.link.running_job = True
        try:
            self.link.offer()  # with credit: the next job comes while this one runs
            self._run(header, settings)
        except ForkServerError as error:
            raise LinkLost(f"{error}; it starts afresh for the next job") from None
        finally:
            self.link.running_job = False

    def _settings_of(self, header, payload):
        """The JobSettings of an upload; JobRefused, with the reason to answer, if it cannot run."""
        relayed = self.relay is not None
        if self.worker.verifier is not None:
            try:
                self.worker.verifier.verify_upload(header.fields, payload, sent=auth.sent_on(self.relay))
            except auth.Unauthorized as why:
                raise JobRefused(auth.UNAUTHORIZED, f"unauthorized ({why})") from None
        try:
            upload = upload_format.decode_upload_payload(header, payload)
            tty = stdin_stream.terminal_size(header)
        except protocol.RemoteProtocolError as why:
            raise JobRefused(str(why).encode()) from None
        try:
            args, env = upload_format.decode_arguments(header)
        except protocol.RemoteProtocolError as why:
            raise JobRefused(b"bad arguments or environment", str(why)) from None
        try:
            wanted = returns.decode_returns(header)
        except protocol.RemoteProtocolError as why:
            raise JobRefused(b"bad --return", str(why)) from None
        try:
            requirements, wheels = upload_format.decode_requirements(header)
        except protocol.RemoteProtocolError as why:
            raise JobRefused(b"bad --requirements", str(why)) from None
        streamed = upload_format.STDIN_STREAM in header.fields and upload.stdin is None
        if streamed and not relayed:
            raise JobRefused(upload_format.STDIN_NEEDS_RELAY)
        files = self.worker.files.open_for(self.conn, header, upload, relayed)
        return JobSettings(
            upload.code, header.field(upload_format.NAME_FIELD, b"").decode("ascii", "replace"), args, env,
            stdin=STREAMED if streamed else upload.stdin, terminal_size=tty,
            line_buffered=upload_format.STDOUT_ON_TERMINAL in header.fields,
            merged=upload_format.STDERR_WITH_STDOUT in header.fields,
            fresh=upload_format.FRESH_INTERPRETER in header.fields,
            directory=upload_format.RUN_DIRECTORY in header.fields, from_stdin=upload_format.RUN_STDIN in header.fields,
            files=files, returns=wanted,
            requirements=requirements, wheels=wheels, job_name=self.job_name)

    def _run(self, header, settings):
        """Run the job, sending its results as they come (with a STREAMED stdin, fed in by the master
        in a block after RECEIVED)."""
        started = time.monotonic()
        feeder = StdinFeeder(self.conn) if settings.stdin is STREAMED else None
        if feeder is not None:
            feeder.open(self.worker.keepalive)
        with self.worker.runner.run(settings) as run:
            watcher = gevent.spawn(self._watch_master) if feeder is None else gevent.spawn(self._feed, feeder, run)
            watcher.link(lambda _: run.kill())
            try:
                if header.extended:
                    send_extended(self.conn, run, self.worker.name, min(HEARTBEAT, self.worker.keepalive / 3),
                                  settings.returns, self._seal_for(header))
                else:
                    send_classic(self.conn, run, self.worker.name)
                if feeder is not None:
                    self._await_end_of_stdin(feeder, watcher)
            finally:
                watcher.unlink_all()
                master_gone = watcher.ready()
                watcher.kill()
        seconds = time.monotonic() - started
        for listener in self.worker.listeners:
            listener(run.status, seconds)
        stopped = "; its master hung up, so it was stopped" if master_gone else ""
        log.info("job %s for %s %s after %.3f s%s", self.job_name.label, self.name, run.status.describe(), seconds,
                 stopped, extra=self.job_name.fields)
        if master_gone:
            raise LinkLost(f"the master hung up while its job {self.job_name.label} ran; the job was stopped")

    def _seal_for(self, header):
        """The seal of a signed job's results (see auth.ResultsSeal), or None."""
        nonce = auth.nonce_of(header.fields)
        return auth.ResultsSeal(self.worker.secret, nonce) if self.worker.secret and nonce else None

    def _feed(self, feeder, run):
        """Feed the job its stdin, then watch the master as for any job; returns when the master has gone."""
        try:
            if feeder.feed(run):
                self._watch_master()
        except protocol.RemoteProtocolError as error:
            log.warning("dropping master %s: the stdin of job %s is malformed: %s", self.name, self.job_name.label,
                        error, extra=self.job_name.fields)
        except OSError:
            pass

    def _await_end_of_stdin(self, feeder, watcher):
        """The master ends the stdin block once the results have ended, if its client has not ended it
        before: the next line of the link comes after it."""
        gevent.wait([feeder.ended, watcher], count=1, timeout=self.worker.keepalive)
        if not feeder.ended.is_set() and not watcher.ready():
            raise LinkLost(f"the master did not end the job's stdin within {self.worker.keepalive:g} s")

    def _watch_master(self):
        """Returns when the master hangs up, or vanishes, while a job runs.

        What the master says meanwhile (a classic master may send the next
        AVAILABLE) is kept for after the job, as a classic worker would.
        """
        try:
            while self.conn.readable_while_acknowledged(self.worker.keepalive) and self.conn.receive_more():
                if self.conn.receiver.buffered > self._most_buffered():
                    return  # a flood, not a protocol
        except OSError:
            pass

    def _most_buffered(self):
        """What a master may have sent us while a job ran: a line, and the codes of our standing offers."""
        offers = self.conn.conversation.offers if self.conn.conversation.takes_offers else 0
        return protocol.DEFAULT_MAX_LINE + offers * (defaults.MAX_UPLOAD_AHEAD + protocol.DEFAULT_MAX_LINE)
