"""The master's client port: uploads taken and verified, status requests answered, clients watched.

Until an upload is verified it is held in bounded memory (UnverifiedUploads);
once taken, its job goes to the dispatcher, and its client is watched until
the job ends: a client that leaves cancels its job.
"""

import collections
import logging
import sys

import gevent.event

from sieci import defaults
from sieci.files_store import Mismatch, StoreFull
from sieci.master import job_control, kept_jobs, ports
from sieci.master.client_watch import ClientWatch
from sieci.wire import auth, conversation, files_transfer, protocol, status, upload_format
from sieci.wire.address import format_address
from sieci.wire.connection import Connection, SpeaksTLS, tune_socket

log = logging.getLogger("sieci.master")

# Linux gives an accepted TCP connection the options of its listening socket (TCP_NODELAY, keepalive).
ACCEPTED_INHERIT_OPTIONS = sys.platform.startswith("linux")

# Bytes: a longer first line is refused, and a longer line of code is passed on, not held
# back while it might still end in the terminator (a classic client's glued one included).
# Each client connection may buffer this much beyond what UnverifiedUploads counts.
UPLOAD_LINE_LIMIT = 64 << 10


class TooMuchUnverified(Exception):
    """Taking more bytes of an upload would pass the share of unverified uploads."""


class UnverifiedUploads:
    """Bytes of uploads read but not yet verified, in all and per peer address. An
    upload that would take more than ``limit`` in all, or a quarter of it from one
    address, is refused: strangers cannot fill the master's memory, and one address
    alone cannot keep out the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.total = 0
        self.by_address = collections.Counter()

    def resize(self, address, before, after):
        """One upload from ``address`` now holds ``after`` bytes, not ``before``."""
        grow = after - before
        if grow > 0 and (self.total + grow > self.limit or self.by_address[address] + grow > self.limit // 4):
            raise TooMuchUnverified(f"too many unverified uploads at once (over {self.limit >> 20} MiB); "
                                    "try again later")
        self.total += grow
        self.by_address[address] += grow
        if not self.by_address[address]:
            del self.by_address[address]
        return after


class Newcomers:
    """Client connections that have yet to send a whole request: at most ``limit`` at once, all
    addresses together. One past it takes the place of the oldest newcomer from the address that has
    the most, which is hung up: a flood from a few addresses (a job's 127.x.y.z among them) can
    neither use up the master's descriptors nor keep other clients out."""

    def __init__(self, limit):
        self.limit = limit
        self.waiting = {}  # Connection: its peer's address, oldest first

    def arrive(self, conn, address):
        if len(self.waiting) >= self.limit:
            crowd = collections.Counter(self.waiting.values()).most_common(1)[0][0]
            oldest = next(waiting for waiting, where in self.waiting.items() if where == crowd)
            del self.waiting[oldest]
            log.warning("client connections waiting for their request pass %d: hanging up the oldest from %s",
                        self.limit, crowd)
            oldest.shutdown()
        self.waiting[conn] = address

    def leave(self, conn):
        self.waiting.pop(conn, None)


def tune_client_socket(sock, keepalive):
    tune_socket(sock, keepalive, user_timeout=False)  # a slow reader is no dead one: see client_watch.py


class Intake:
    """Serves the master's client port for ``dispatcher``. ``describe`` gives the
    master's status (see status.py); ``verifier`` (an auth.Verifier) checks signed
    requests, at this port's ``identity`` (set once the port is bound)."""

    def __init__(self, dispatcher, describe, max_upload, max_unverified, max_connections_per_address,
                 client_timeout, keepalive, verifier=None, plaintext_only=True, files=None, kept=None,
                 max_newcomers=defaults.MAX_NEW_CONNECTIONS):
        self.dispatcher = dispatcher
        self.bundles = BundleIntake(files, max_upload, client_timeout)  # files: a FilesStore
        self.describe = describe
        self.max_upload = max_upload
        self.unverified = UnverifiedUploads(max_unverified)
        self.max_connections_per_address = max_connections_per_address
        self.connections = collections.Counter()  # open ones, per address
        self.newcomers = Newcomers(max_newcomers)
        self.client_timeout = client_timeout
        self.keepalive = keepalive
        self.verifier = verifier
        self.identity = None
        self.accepted_tuned = False  # the connections' options come from the listening socket's
        self.plaintext_only = plaintext_only
        self.kept = kept  # a kept_jobs.KeptJobs: detached jobs
        self.watch = ClientWatch(dispatcher, client_timeout, keepalive)
        self.control = job_control.JobControl(dispatcher, kept, lambda: describe()["master"], self.watch.attacher_left)

    def tune_listener(self, sock):
        """Give the port's listening socket the options of a client connection, which on Linux every
        connection accepted inherits (elsewhere, handle_client sets them on each)."""
        tune_client_socket(sock, self.keepalive)
        self.accepted_tuned = ACCEPTED_INHERIT_OPTIONS

    def handle_client(self, sock, address):
        name = format_address(address)
        if not self.accepted_tuned:
            tune_client_socket(sock, self.keepalive)
        conn = Connection(sock, conversation.client_conversation(protocol.MASTER),
                          max_line=min(self.max_upload, UPLOAD_LINE_LIMIT))
        conn.recv_size = UPLOAD_LINE_LIMIT  # smaller reads while the upload is not yet verified: less held per client
        conn.plaintext_only = self.plaintext_only
        self.connections[address[0]] += 1
        try:
            if self.connections[address[0]] > self.max_connections_per_address:
                return self._refuse(conn, name, f"too many connections from {address[0]} "
                                                f"(at most {self.max_connections_per_address} at once)")
            self.newcomers.arrive(conn, address[0])
            try:
                job = self._receive_job(conn, name, address[0])
            finally:
                self.newcomers.leave(conn)
            if job is not None and job.detached_at_upload:
                self._detach(conn, name, job)
            elif job is not None:
                self.dispatcher.enqueue(job)
                self.watch.wait_while_watching(job)
        except SpeaksTLS:
            ports.tell_speaks_tls(conn, "client", name)
        except OSError as error:
            log.debug("client %s: %s", name, error)
        except Exception:
            log.exception("client %s: unexpected error", name)
        finally:
            self.connections[address[0]] -= 1
            if not self.connections[address[0]]:
                del self.connections[address[0]]
            sock.close()

    def _receive_job(self, conn, name, peer):
        """The job uploaded, verified and admitted; or None, once the client is answered."""
        conn.settimeout(self.client_timeout)
        try:
            line = self._first_line(conn, peer)
            if line is not protocol.CONNECTION_CLOSED and line.word == protocol.CHALLENGE:
                if self.verifier is None:
                    return self._refuse(conn, name, "the client asks for a secret and this master has none")
                self._prove_secret(conn, line.reason)
                line = self._first_line(conn, peer)
            if line is protocol.CONNECTION_CLOSED:
                log.debug("client %s left without sending a job", name)
                return None
            if line.word == protocol.STATUS or line.word in job_control.REQUESTS:
                return self._answer_request(conn, name, line)
            header = conn.start_block(line.raw, max_size=self.max_upload, accept_glued=True)
            if self.verifier is not None:  # before the payload: nothing unsigned is read whole
                self._check_signed_header(conn, header.fields)
            code, end = self._receive_code(conn, peer)
        except (protocol.RemoteProtocolError, TooMuchUnverified) as error:
            return self._refuse(conn, name, str(error))
        except TimeoutError:
            return self._refuse(conn, name, f"nothing received for {self.client_timeout:g} s")
        except auth.Unauthorized as why:
            return self._refuse(conn, name, "unauthorized", why)
        if self.verifier is not None:
            try:
                self.verifier.verify_upload(header.fields, b"".join(code))
            except auth.Unauthorized as why:
                return self._refuse(conn, name, "unauthorized", why)
        refusal = self.dispatcher.refusal()
        if refusal is not None:
            return self._refuse(conn, name, refusal)
        if not self._hold_files(conn, name, header):
            return None
        job = self.dispatcher.new_job(line.raw + b"".join(code) + end.raw, conn, name, header)
        if job.results_kept:
            try:
                self.kept.keep(job)
            except (kept_jobs.NoRoom, OSError) as error:
                if job.files is not None:
                    self.bundles.files.release(job.files.digest)
                return self._refuse(conn, name, str(error) if isinstance(error, kept_jobs.NoRoom)
                                    else f"cannot keep the job: {error.strerror or error}")
        return job

    def _detach(self, conn, name, job):
        """Queue a detached job, and tell its client the job's id: it leaves, and may attach later."""
        job.detach()
        self.dispatcher.enqueue(job)
        conn.send_command(protocol.DETACHED, protocol.job_id_field(job.id))
        conn.finish_sending()
        log.info("client %s detached from job %s", name, job.id, extra={"job": job.id})

    def _hold_files(self, conn, name, header):
        """The upload's files bundle, if it names one, held in the store for its job: asked of the
        client first if the store lacks it. False once the client has been refused."""
        try:
            self.bundles.hold(conn, header)
        except (protocol.RemoteProtocolError, Mismatch, StoreFull) as error:
            return self._refuse(conn, name, str(error))
        except TimeoutError:
            return self._refuse(conn, name, f"nothing received for {self.client_timeout:g} s")
        return True

    def _prove_secret(self, conn, challenge):
        """Answer a client that asks this master to prove it holds the secret before it sends anything."""
        conn.send_command(protocol.AUTH, auth.prove_master(self.verifier.secret, challenge, self.identity,
                                                           conn.local_host))

    def _first_line(self, conn, peer):
        """The client's first line (or its end); what it holds of it meanwhile counts as unverified."""
        held = 0
        try:
            while (event := conn.next_buffered_event()) is protocol.NEED_DATA:
                conn.receive_more()
                held = self.unverified.resize(peer, held, conn.receiver.buffered)
            return event
        finally:
            self.unverified.resize(peer, held, 0)

    def _receive_code(self, conn, peer):
        """The upload's payload, in pieces, and its end; what is held counts as unverified."""
        code, size, held = [], 0, 0
        try:
            while not isinstance(event := conn.next_event(), protocol.BlockEnd):
                if event is protocol.CONNECTION_CLOSED:
                    raise protocol.RemoteProtocolError("the upload ended before its terminator line")
                code.append(event.data)
                size += len(event.data)
                held = self.unverified.resize(peer, held, size + conn.receiver.buffered)
        except BaseException:
            code.clear()  # before the refusal, which may take a second to send: its bytes no longer count
            raise
        finally:
            self.unverified.resize(peer, held, 0)
        return code, event

    def _answer_request(self, conn, name, line):
        """STATUS, or ATTACH, CANCEL or JOBS (see job_control.py), once its signature, if needed, is checked."""
        fields = line.arguments
        asks_status = line.word == protocol.STATUS
        if self.verifier is not None:
            try:
                self._check_signed_header(conn, fields)
                self.verifier.verify_upload(fields, status.SIGNED_PAYLOAD if asks_status
                                            else job_control.signed_payload(line))
            except auth.Unauthorized as why:
                return self._refuse(conn, name, "unauthorized", why)
        if asks_status:
            state = self.describe()
            reply = status.encode_json(state) if status.JSON in fields else status.format_text(state).encode() + b".\n"
            conn.send(reply, completes=protocol.STATUS_REPLY)
            log.debug("client %s: answered a status request", name)
            return None
        conn.settimeout(None)  # an attached client may wait as long as the job takes
        try:
            self.control.answer(conn, name, line)
        except job_control.UnanswerableRequest as why:
            return self._refuse(conn, name, str(why))
        conn.finish_sending()
        return None

    def _check_signed_header(self, conn, fields):
        self.identity.check(fields, conn.local_host)
        self.verifier.check_header(fields)

    @staticmethod
    def _refuse(conn, name, reason, detail=None):
        log.warning("client %s: refused: %s%s", name, reason, f" ({detail})" if detail else "")
        conn.refuse(reason.encode())
        conn.finish_sending()
        return None


class BundleIntake:
    """Bundles into ``files`` (a FilesStore), at most ``max_upload`` bytes each, each client given
    ``client_timeout`` seconds."""

    def __init__(self, files, max_upload, client_timeout):
        self.files = files
        self.max_upload = max_upload
        self.client_timeout = client_timeout
        self.arriving = {}  # digest: an Event set when a client has finished sending that bundle

    def hold(self, conn, header):
        """The bundle the upload's ``header`` names, if any, held in the store for its job.
        RemoteProtocolError, files_store.Mismatch or StoreFull, or TimeoutError if it cannot be."""
        wanted = upload_format.files_wanted(header)
        if wanted is None:
            return
        if wanted.size > self.max_upload:
            raise protocol.RemoteProtocolError(f"a files bundle of {wanted.size} bytes is larger than this "
                                               f"master's --max-upload of {self.max_upload} bytes")
        self._obtain(conn, wanted)
        self.files.hold(wanted.digest)

    def _obtain(self, conn, wanted):
        """The bundle in the store: asked of this client, unless another is sending it already (the
        jobs of a batch come together), whose sending is waited for, as long as a client may take."""
        while not self.files.has(wanted.digest):
            arriving = self.arriving.get(wanted.digest)
            if arriving is not None and arriving.wait(self.client_timeout):
                continue
            self.arriving[wanted.digest] = arriving = gevent.event.Event()
            try:
                files_transfer.fetch(conn, self.files, wanted)
            finally:
                if self.arriving.get(wanted.digest) is arriving:
                    del self.arriving[wanted.digest]
                arriving.set()
