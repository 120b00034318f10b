"""The client's side of one master: dial it, have it prove that it holds the secret, sign what goes
to it, and run one attempt at a job through it (master_requests.py asks it the rest).

Like client.py, which fails over between masters with it, it imports no
gevent and little else.
"""

import _socket
import os
import sys
import time

from sieci.client.errors import (ClientError, ConnectionBroke, JobLost, MasterRefused, NeedsInline, NotAccepted,
                                 ReattachFailed)
from sieci.wire import conversation, protocol, upload_format
from sieci.wire.address import format_address
from sieci.wire.connection import Connection, tune_socket

STATUS_TIMEOUT = 3.0
REATTACH_PAUSE = 0.2  # seconds before attaching again to a job whose connection broke; doubled each time
LAST_REATTACH_PAUSE = 4.0


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
        takes the files the job returns. ``stdin`` (a stdin.JobStdin) streams once
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
            # A master answers at once, if only with QUEUED; a classic one once a worker takes the job.
            conn = self.converse(sock, connect_timeout)
            signed = self._signed(fields, payload)
            conn.send(protocol.encode_block(payload, signed), completes=protocol.JOB)
            from sieci.client.result import ResultsReading  # loaded while the job travels, not before it leaves

            job_id = _await_acceptance(conn, self.where, deadline, files)
            accepted = True
            seal = self._seal_for(signed)
            # A sealed job's output must pass through here, to be checked: no splicing past Python.
            splice = self.tls is None and seal is None and isinstance(sock, _socket.socket) and hasattr(os, "splice")
            reading = ResultsReading(conn, output, self.where, splice, returned, job_id, seal)
            try:
                if stdin is None:
                    return self._read_reattaching(reading, reattach)
                from sieci.client.stdin import read_while_pumping

                return read_while_pumping(reading, stdin)
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
            from sieci.wire.tls import describe_os_error

            lost = JobLost if accepted else NotAccepted
            raise lost(f"lost the connection to master {self.where} ({describe_os_error(error)})") from None
        finally:
            sock.close()

    def converse(self, sock, timeout):
        """A Connection to the master over ``sock``, whose answers are due within ``timeout`` seconds;
        with a secret, once the master has proved that it holds it."""
        conn = Connection(sock, conversation.client_conversation(protocol.CLIENT))
        conn.deadline = time.monotonic() + timeout
        self._check_master(conn, timeout)
        return conn

    def request(self, sock, word, fields, payload, what):
        """Send a request's line, signed over ``payload`` when there is a secret; the connection
        and the master's first answer, or ClientError (with ``what`` the request, for people)."""
        try:
            conn = self.converse(sock, min(self.connect_timeout, STATUS_TIMEOUT))
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
            raise MasterRefused(f"master {self.where} refused {what}: {line.reason.decode('utf-8', 'replace')}")
        return conn, line

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
                except MasterRefused as error:  # it no longer has the job (it restarted, say): lost there
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
            conn, _ = self.request(sock, protocol.ATTACH, [job_id, protocol.AT_FIELD + b"=%d" % reading.offset],
                                    protocol.ATTACH + b" " + job_id, "the request to attach again")
        except BaseException:
            sock.close()
            raise
        conn.deadline = reading.conn.deadline  # the job's --timeout, if any, still counts
        if conn.deadline is None:
            conn.settimeout(None)
        return conn

    def _check_master(self, conn, timeout):
        """With a secret: send nothing more until the master proves that it holds it (whatever listens
        at its address may be another: see auth.py); NotAccepted if it does not."""
        if self.secret is None:
            return
        from sieci.client.result import next_answer
        from sieci.wire.auth import Unauthorized, challenge_master, check_master

        nonce, challenge = challenge_master(self.address)
        try:
            conn.send_command(protocol.CHALLENGE, challenge)
            line = next_answer(conn, NotAccepted, f"before it proved that it holds the secret (master {self.where})")
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
    """getaddrinfo's answers; for an IP address, without getaddrinfo, which would load NSS, slow to load,
    for nothing."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, _socket.SOCK_STREAM, 0, "", (host, port))]
    return getaddrinfo(host, port, 0, _socket.SOCK_STREAM)


def _await_acceptance(conn, where, deadline, files=None):
    """Wait for RECEIVED; from the master's first answer on, only ``deadline`` (the job's) counts.
    The master's first answer may be NEED, for the job's ``files``. The job's id, if the master
    said it (``job=`` on QUEUED or RECEIVED), else None."""
    from sieci.client.result import next_answer

    line = next_answer(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    conn.deadline = deadline
    if deadline is None:
        conn.settimeout(None)
    if line.word == protocol.NEED:  # the master lacks the job's files
        send_files(conn, line, files)
        line = next_answer(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    job_id = protocol.job_id_of(line.raw)
    if line.word == protocol.QUEUED:  # the master is there, and the job waits for a worker
        line = next_answer(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        refused = NeedsInline if upload_format.needs_inline(line.reason) else NotAccepted
        raise refused(f"master {where} refused the job: {reason}")
    return protocol.job_id_of(line.raw) or job_id


def send_files(conn, need, files):
    """Send the job's ``files`` (a bundle.Bundle) that the master's ``need`` (NEED) asks for."""
    from sieci.wire.files_transfer import check_need, encode_bundle_block

    wanted = None if files is None else upload_format.FilesWanted(files.digest, files.size)
    check_need(need, wanted)
    conn.send(encode_bundle_block(wanted, files.data), completes=protocol.JOB)
