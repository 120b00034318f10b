"""The client's side of one master: dial it, run one attempt at a job through it, ask its status.

Like client.py, which fails over between masters with it, it imports no
gevent and little else.
"""

import _socket
import os
import sys
import time

from sieci import defaults
from sieci.wire import conversation, protocol, upload_format
from sieci.wire.address import format_address
from sieci.wire.connection import Connection, tune_socket
from sieci.wire.results import ResultDecoder

STATUS_TIMEOUT = 3.0
REATTACH_PAUSE = 0.2  # seconds before attaching again to a job whose connection broke; doubled each time
LAST_REATTACH_PAUSE = 4.0


class ClientError(Exception):
    """sieci could not get a result; the message says why."""

    exit_code = defaults.EXIT_FAILED


class NotAccepted(ClientError):
    """No worker accepted the job through this master: another may be tried."""


class NeedsInline(NotAccepted):
    """A classic master stands in the way of the job's stdin or files: they must go in the upload."""


class JobLost(ClientError):
    """The job was accepted, then lost: it may have run, or run partly."""


class ConnectionBroke(JobLost):
    """The connection to the master broke while the job's results came."""


class ReattachFailed(JobLost):
    """The connection broke, and the master could not be reached again to attach to the job, which may run
    on there: it is not run again."""


class Refused(ClientError):
    """The master answered a request with ERROR."""


class Result:
    """What became of one job.

    ``exit_status`` is the number the command-line client exits with (the
    job's own code, 128+N for signal N, 124 for the time limit, 137 for
    another limit). ``limit`` names the limit the job hit, if any, and
    ``message`` says so for people. ``stdout`` and ``stderr`` are the job's
    output (bytes) when the client collected it, else None. ``master`` is
    the address that ran it, ``worker`` the worker's name (None from a
    classic worker), ``seconds`` the wall time from upload to result.
    ``returned`` lists the names of the files the job returned that were
    written, ``not_returned`` ``(name, why)`` for each that could not be.
    ``job_id`` is the id the master gave the job (16 hex digits; None from a
    classic master).
    """

    def __init__(self, exit_status, status=None, master=None, worker=None, seconds=None, stdout=None, stderr=None,
                 job_id=None):
        self.exit_status = exit_status
        self.job_id = job_id
        self.status = status
        self.master = master
        self.worker = worker
        self.seconds = seconds
        self.stdout = stdout
        self.stderr = stderr
        self.returned = []
        self.not_returned = []

    @property
    def limit(self):
        if self.status is not None and self.status.kind == b"limit":
            return self.status.value.decode()
        return None

    @property
    def message(self):
        return self.status.message.decode("utf-8", "replace") if self.status is not None else ""

    def __repr__(self):
        return (f"Result(exit_status={self.exit_status}, limit={self.limit!r}, master={self.master!r}, "
                f"worker={self.worker!r}, seconds={self.seconds!r}, job_id={self.job_id!r})")


class ClientLink:
    """One master, as a client talks to it: at ``address``, dialled within
    ``connect_timeout``, through ``tls`` (an ssl.SSLContext) if given, with
    every request signed with ``secret`` if given."""

    def __init__(self, address, connect_timeout, tls=None, secret=None):
        self.address = address
        self.where = format_address(address)
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.secret = secret

    def run_job(self, payload, fields, output, deadline, files=None, returned=None, stdin=None, reattach=0):
        """One attempt at a job; NotAccepted if no worker took it here, JobLost if
        it was lost after, TimeoutError once ``deadline`` (the job's) has passed.
        ``files``: the job's bundle.Bundle, which the upload names (``files=``) and
        the master asks for if it lacks it. ``returned`` (a results_folder.ResultsFolder)
        takes the files the job returns. ``stdin`` (a client_stdin.JobStdin) streams once
        the job is accepted. NeedsInline: a classic master stands in the way of either. A connection
        that breaks while the results come is replaced up to ``reattach`` times, attaching again to
        the job (an upload with ``keep``: the master keeps its results), from the byte where it broke;
        ReattachFailed if that fails."""
        connect_timeout = self.connect_timeout
        if deadline is not None:
            connect_timeout = min(connect_timeout, deadline - time.monotonic())
            if connect_timeout <= 0:
                raise TimeoutError
        sock = self.dial(connect_timeout)
        accepted = False
        try:
            conn = Connection(sock, conversation.client_conversation(protocol.CLIENT))
            # A master answers at once, if only with QUEUED; a classic one once a worker takes the job.
            conn.deadline = time.monotonic() + connect_timeout
            self._check_master(conn, connect_timeout)
            signed = self._signed(fields, payload)
            conn.send(protocol.encode_block(payload, signed), completes=protocol.JOB)
            job_id = _await_acceptance(conn, self.where, deadline, files)
            accepted = True
            seal = self._seal_for(signed)
            # A sealed job's output must pass through here, to be checked: no splicing past Python.
            splice = self.tls is None and seal is None and isinstance(sock, _socket.socket) and hasattr(os, "splice")
            reading = ResultsReading(conn, output, self.where, splice, returned, job_id, seal)
            try:
                if stdin is None:
                    return self._read_reattaching(reading, reattach)
                from sieci.client.stdin import StdinPump

                pump = StdinPump(conn, stdin).start()
                try:
                    return reading.read()
                finally:
                    pump.stop()
            finally:
                reading.close_returned()
                reading.conn.close()
        except protocol.RemoteProtocolError as error:
            lost = JobLost if accepted else NotAccepted
            raise lost(f"master {self.where} broke the protocol: {error}") from None
        except OSError as error:
            if isinstance(error, TimeoutError):
                if accepted or (deadline is not None and time.monotonic() >= deadline):
                    raise
                raise NotAccepted(f"master {self.where} did not answer within the --connect-timeout of "
                                  f"{connect_timeout:g} s") from None
            lost = JobLost if accepted else NotAccepted
            raise lost(f"lost the connection to master {self.where} "
                       f"({(error.strerror or str(error)).lower()})") from None
        finally:
            sock.close()

    def status(self):
        """The master's status, as a dict; ClientError if it gives none."""
        from sieci.wire.status import JSON, SIGNED_PAYLOAD

        return self._json_request(protocol.STATUS, [JSON], SIGNED_PAYLOAD, "the status request")

    def jobs(self):
        """The master's jobs, queued, running and kept, as a dict; ClientError if it gives none."""
        return self._json_request(protocol.JOBS, [], protocol.JOBS, "--list")

    def _json_request(self, word, fields, payload, what):
        sock = self.dial(self.connect_timeout)
        try:
            _, line = self._request(sock, word, fields, payload, what)
        finally:
            sock.close()
        import json

        try:
            return json.loads(line.raw)
        except ValueError:
            raise ClientError(f"master {self.where} answered {what} with something other than JSON") from None

    def _request(self, sock, word, fields, payload, what):
        """Send a request's line, signed over ``payload`` when there is a secret; the connection
        and the master's first answer, or ClientError (with ``what`` the request, for people)."""
        try:
            conn = Connection(sock, conversation.client_conversation(protocol.CLIENT))
            conn.deadline = time.monotonic() + min(self.connect_timeout, STATUS_TIMEOUT)
            self._check_master(conn, min(self.connect_timeout, STATUS_TIMEOUT))
            conn.send_command(word, b" ".join(self._signed(fields, payload)))
            line = conn.next_event()
        except TimeoutError:
            raise ClientError(f"master {self.where} did not answer {what} "
                              "(a classic master does not support it)") from None
        except OSError as error:
            raise ClientError(f"lost the connection to master {self.where} ({error})") from None
        except protocol.RemoteProtocolError as error:
            raise NotAccepted(f"master {self.where} broke the protocol: {error}") from None
        if line is protocol.CONNECTION_CLOSED:
            raise ClientError(f"master {self.where} closed the connection without answering {what}")
        if line.word == protocol.ERROR:
            raise Refused(f"master {self.where} refused {what}: {line.reason.decode('utf-8', 'replace')}")
        return conn, line

    def cancel(self, job_id):
        """Cancel job ``job_id``; ClientError if this master cannot."""
        sock = self.dial(self.connect_timeout)
        try:
            self._request(sock, protocol.CANCEL, [job_id.encode()], protocol.CANCEL + b" " + job_id.encode(),
                          "--cancel")
        finally:
            sock.close()

    def attach(self, job_id, output):
        """The Result of kept job ``job_id``, its output written to ``output`` as it comes;
        ClientError if this master does not keep it, JobLost if its results are cut short."""
        sock = self.dial(self.connect_timeout)
        try:
            conn, _ = self._request(sock, protocol.ATTACH, [job_id.encode()],
                                    protocol.ATTACH + b" " + job_id.encode(), "--attach")
            conn.deadline = None
            conn.settimeout(None)
            return ResultsReading(conn, output, self.where, job_id=job_id).read()
        except OSError as error:
            raise JobLost(f"lost the connection to master {self.where} "
                          f"({(error.strerror or str(error)).lower()})") from None
        finally:
            sock.close()

    def _read_reattaching(self, reading, tries):
        pause = REATTACH_PAUSE
        while True:
            try:
                return reading.read()
            except (ConnectionBroke, OSError) as error:
                if isinstance(error, TimeoutError) or not tries or reading.job_id is None:
                    raise
                why = error
            while True:
                tries -= 1
                time.sleep(pause)
                pause = min(2 * pause, LAST_REATTACH_PAUSE)
                try:
                    reading.resume(self._attach_again(reading))
                    break
                except Refused as error:  # it no longer has the job (it restarted, say): the job was lost there
                    raise JobLost(f"lost the connection to master {self.where} ({why}), and then the job: "
                                  f"{error}") from None
                except ClientError as error:
                    if not tries:
                        raise ReattachFailed(f"lost the connection to master {self.where} ({why}), and could not "
                                             f"attach to job {reading.job_id} again: {error}") from None

    def _attach_again(self, reading):
        """A new connection to the job that ``reading`` reads, whose results the master sends again from
        the byte where the old one broke; ClientError if it does not."""
        sock = self.dial(self.connect_timeout)
        job_id = reading.job_id.encode()
        try:
            conn, _ = self._request(sock, protocol.ATTACH, [job_id, b"at=%d" % reading.offset],
                                    protocol.ATTACH + b" " + job_id, "the request to attach again")
        except BaseException:
            sock.close()
            raise
        conn.deadline = reading.conn.deadline  # the job's --timeout, if any, still counts
        if conn.deadline is None:
            conn.settimeout(None)
        return conn

    def detach(self, payload, fields, files=None):
        """Queue a job that runs with no client: its id, once the master has it; NotAccepted if it
        has not (a classic master cannot detach a job: ClientError)."""
        sock = self.dial(self.connect_timeout)
        try:
            conn = Connection(sock, conversation.client_conversation(protocol.CLIENT))
            conn.deadline = time.monotonic() + self.connect_timeout
            self._check_master(conn, self.connect_timeout)
            conn.send(self.upload(payload, [*fields, upload_format.DETACH_FIELD]), completes=protocol.JOB)
            line = _next(conn, NotAccepted, f"before it took the job (master {self.where})")
            if line.word == protocol.NEED:
                _send_files(conn, line, files)
                line = _next(conn, NotAccepted, f"before it took the job (master {self.where})")
        except OSError as error:
            raise NotAccepted(f"lost the connection to master {self.where} "
                              f"({(error.strerror or str(error)).lower()})") from None
        except protocol.RemoteProtocolError as error:
            raise NotAccepted(f"master {self.where} broke the protocol: {error}") from None
        finally:
            sock.close()
        if line.word == protocol.ERROR:
            raise NotAccepted(f"master {self.where} refused the job: {line.reason.decode('utf-8', 'replace')}")
        job_id = protocol.job_id_of(line.raw)
        if line.word != protocol.DETACHED or job_id is None:
            raise ClientError(f"master {self.where} cannot detach a job (a classic master?); the job may run "
                              "there all the same, with its output lost")
        return job_id

    def _check_master(self, conn, timeout):
        """With a secret: send nothing more until the master proves that it holds it (whatever listens
        at its address may be another: see auth.py); NotAccepted if it does not."""
        if self.secret is None:
            return
        from sieci.wire.auth import Unauthorized, challenge_master, check_master

        nonce, challenge = challenge_master(self.address)
        try:
            conn.send_command(protocol.CHALLENGE, challenge)
            line = _next(conn, NotAccepted, f"before it proved that it holds the secret (master {self.where})")
        except TimeoutError:
            raise NotAccepted(f"master {self.where} did not prove within {timeout:g} s that it holds the secret "
                              "(a classic master cannot: a client with a secret needs sieci masters)") from None
        if line.word == protocol.ERROR:
            raise NotAccepted(f"master {self.where} refused: {line.reason.decode('utf-8', 'replace')}")
        try:
            check_master(self.secret, nonce, self.address, line.reason)
        except Unauthorized as why:
            raise NotAccepted(f"master {self.where}: {why}; nothing was sent to it (is something else listening "
                              "at its address?)") from None

    def upload(self, payload, fields):
        """The job's upload, signed afresh for every attempt: a signature is good once,
        and at this master only."""
        return protocol.encode_block(payload, self._signed(fields, payload))

    def _seal_for(self, signed_fields):
        """With a secret: what checks the seal of the results of the upload signed with ``signed_fields``."""
        if self.secret is None:
            return None
        from sieci.wire.auth import ResultsSeal, nonce_of

        return ResultsSeal(self.secret, nonce_of(signed_fields))

    def _signed(self, fields, payload):
        """A request's header fields, signed with the secret if there is one."""
        if self.secret is None:
            return fields
        from sieci.wire.auth import audience, sign_upload

        fields = [*fields, audience(self.address)]
        return [*fields, sign_upload(self.secret, fields, payload)]

    def dial(self, timeout):
        """A connected socket (TLS-wrapped with ``tls``), blocking; NotAccepted if there is none."""
        try:
            sock = _dial(self.address, timeout)
        except TimeoutError:
            raise NotAccepted(f"cannot reach master {self.where} (timed out after {timeout:g} s)") from None
        except OSError as error:
            raise NotAccepted(f"cannot reach master {self.where} "
                              f"({(error.strerror or str(error)).lower()})") from None
        tune_socket(sock)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
            except OSError as error:
                from sieci.wire.tls import describe_failure

                sock.close()
                raise NotAccepted(f"TLS with master {self.where} failed: {describe_failure(error)}") from None
        sock.settimeout(None)
        return sock


def _dial(address, timeout):
    # The socket module, once loaded, may be gevent's: then its sockets and
    # its resolver must be used, or the whole process would wait.
    sockets = sys.modules.get("socket", _socket)
    error = OSError(f"no address for {address[0]}")
    for family, kind, proto, _, where in _addresses(*address, sockets.getaddrinfo):
        sock = sockets.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(where)
            return sock
        except OSError as failure:
            sock.close()
            error = failure
    raise error


def _addresses(host, port, getaddrinfo):
    """getaddrinfo's answers; for an IP address, without getaddrinfo (which loads NSS: ~15 ms)."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, _socket.SOCK_STREAM, 0, "", (host, port))]
    return getaddrinfo(host, port, 0, _socket.SOCK_STREAM)


def _next(conn, failure, doing):
    event = conn.next_event()
    if event is protocol.CONNECTION_CLOSED:
        raise failure(f"the master closed the connection {doing}")
    return event


def _await_acceptance(conn, where, deadline, files=None):
    """Wait for RECEIVED; from the master's first answer on, only ``deadline`` (the job's) counts.
    The master's first answer may be NEED, for the job's ``files``. The job's id, if the master
    said it (``job=`` on QUEUED or RECEIVED), else None."""
    line = _next(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    conn.deadline = deadline
    if deadline is None:
        conn.settimeout(None)
    if line.word == protocol.NEED:  # the master lacks the job's files
        _send_files(conn, line, files)
        line = _next(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    job_id = protocol.job_id_of(line.raw)
    if line.word == protocol.QUEUED:  # the master is there, and the job waits for a worker
        line = _next(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        refused = NeedsInline if upload_format.needs_inline(line.reason) else NotAccepted
        raise refused(f"master {where} refused the job: {reason}")
    return protocol.job_id_of(line.raw) or job_id


def _send_files(conn, need, files):
    from sieci.wire.files_transfer import check_need, encode_bundle_block

    wanted = None if files is None else upload_format.FilesWanted(files.digest, files.size)
    check_need(need, wanted)
    conn.send(encode_bundle_block(wanted, files.data), completes=protocol.JOB)


class ResultsReading:
    """One job's results, read as they come from ``conn`` and written to ``output`` (with ``splice``,
    a raw chunk bound for a blocking pipe goes there past Python: see relay.py; returned files go to
    ``returned``, those not asked for nowhere). If the connection breaks (ConnectionBroke), ``resume``
    goes on with a new one, where the master sends the results again from ``offset``: the bytes of
    them read so far, whatever framing state they left, so every byte is taken once."""

    def __init__(self, conn, output, where, splice=False, returned=None, job_id=None, seal=None):
        self.conn = conn
        self.seal = seal  # an auth.ResultsSeal: the results must be sealed with the secret
        self.output = output
        self.where = where
        self.pipe_for = getattr(output, "pipe_for", None) if splice else None
        self.returned = returned
        self.job_id = job_id
        self.header = None
        self.decoder = ResultDecoder()
        self.parts = []  # plain results: written once whole, like the classic client
        self.unsealed = False  # the seal did not match: nothing of the results is to be trusted
        self._read_before = 0  # bytes of the results read on earlier connections
        self._start = conn.received - conn.receiver.buffered  # where they begin on this one

    @property
    def offset(self):
        return self._read_before + self.conn.received - self._start

    def resume(self, conn):
        """Go on with ``conn``, on which the master has just said ATTACHED: what follows continues the results."""
        self._read_before = self.offset
        self._start = conn.received - conn.receiver.buffered
        self.conn.receiver.resume_from(conn.receiver)
        conn.receiver = self.conn.receiver
        self.conn.close()
        self.conn = conn

    def read(self):
        """The job's Result; ConnectionBroke if the connection breaks first."""
        if self.header is None:
            line = _next(self.conn, ConnectionBroke, f"before the job's results came (master {self.where})")
            if line.word == protocol.ERROR:
                reason = line.reason.decode("utf-8", "replace") or "no reason given"
                raise JobLost(f"the job failed: {reason} (master {self.where})")
            self.header = self.conn.start_block(line.raw, results=True)
        worker = self.header.field(b"worker")
        worker = worker.decode("utf-8", "replace") if worker else None
        if self.header.extended:
            status = self._read_extended()
            return Result(status.exit_code, status, self.where, worker, job_id=self.job_id)
        self._read_classic()
        return Result(0, None, self.where, worker, job_id=self.job_id)

    def _read_classic(self):
        while not isinstance(event := self._next_event(), protocol.BlockEnd):
            self.parts.append(event.data)
        self.output.write(protocol.STDOUT, b"".join(self.parts))

    def _next_event(self):
        return _next(self.conn, ConnectionBroke, f"in the middle of the results (master {self.where})")

    def _read_extended(self):
        decoder = self.decoder
        while not isinstance(event := self._next_event(), protocol.BlockEnd):
            for stream, data in decoder.feed(event.data):
                if self.seal is not None:
                    self.seal.add(stream, data)
                if stream != protocol.RETURNED:
                    self.output.write(stream, data)
                elif self.returned is not None:
                    self.returned.write(data)
            if (self.pipe_for is not None and self.conn.receiver.raw_pending
                    and decoder.raw_stream != protocol.RETURNED and (pipe := self.pipe_for(decoder.raw_stream))):
                for moved in self.conn.splice_raw(pipe):
                    decoder.took_raw(moved)
        where = self.where
        status = decoder.status
        if status is None or not decoder.complete:
            raise JobLost(f"the results were cut short: the worker or master was lost (master {where})")
        if self.seal is not None:
            from sieci.wire.auth import Unauthorized

            try:
                self.seal.check(decoder.seal, decoder.status_line)
            except Unauthorized as why:
                self.unsealed = True
                raise JobLost(f"{why} (master {where}); the files it returned are removed") from None
        if status.kind == b"error":
            message = status.message.decode("utf-8", "replace")
            raise JobLost(f"the job failed: {message or status.value.decode()} (master {where})")
        return status

    def close_returned(self):
        """Done with the files the job returned: whole if the results ended well, none if their seal failed."""
        if self.returned is not None:
            if self.unsealed:
                self.returned.discard()
            self.returned.close(complete=self.decoder.status is not None and self.decoder.complete)
