"""The client library: runs jobs on a sieci cluster, through any of its masters.

The sieci-client command (client_command.py) is built on it. It is loaded
once per job from shell loops, so it imports no gevent and little else: the
bare ``_socket`` module rather than ``socket`` (unless something, such as
gevent's patching or TLS, has loaded ``socket`` already).
"""

import _socket
import os
import sys
import time

from . import defaults, protocol
from .address import AddressError, format_address, parse_address
from .connection import HEADER_READ, Connection, tune_socket
from .results import ResultDecoder

STATUS_TIMEOUT = 3.0
FIRST_RETRY_PAUSE = 0.5
LAST_RETRY_PAUSE = 8.0


class ClientError(Exception):
    """sieci could not get a result; the message says why."""

    exit_code = defaults.EXIT_FAILED


class NotAccepted(ClientError):
    """No worker accepted the job through this master: another may be tried."""


class JobLost(ClientError):
    """The job was accepted, then lost: it may have run, or run partly."""


class OutputFailed(ClientError):
    """The job's output could not be written where it goes (a full disk, say)."""


class FdOutput:
    """Writes the job's streams to file descriptors, whole, as they arrive."""

    BIG_WRITE = 1 << 16

    def __init__(self, stdout_fd=1, stderr_fd=2):
        self.fds = {protocol.STDOUT: stdout_fd, protocol.STDERR: stderr_fd}
        self._widened = set()
        self._pipes = {}

    def pipe_for(self, stream):
        """The stream's fd if it is a blocking pipe, which a socket can splice into; else None."""
        if stream not in self._pipes:
            from . import pipes

            fd = self.fds[stream]
            self._pipes[stream] = fd if pipes.is_blocking_pipe(fd) else None
            self._widen(fd)
        return self._pipes[stream]

    def write(self, stream, data):
        fd = self.fds[stream]
        if len(data) >= self.BIG_WRITE:
            self._widen(fd)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as error:
            raise OutputFailed(f"cannot write to {stream} ({(error.strerror or str(error)).lower()})") from None

    def _widen(self, fd):
        """Big output into a pipe: make the pipe hold more, so each side wakes less often."""
        if fd not in self._widened:
            from . import pipes

            self._widened.add(fd)
            pipes.widen(fd)


class HeldOutput:
    """Keeps a job's output until it is known to be the one to show."""

    def __init__(self):
        self.events = []

    def write(self, stream, data):
        self.events.append((stream, data))

    def replay(self, output):
        for stream, data in self.events:
            output.write(stream, data)


class CollectedOutput:
    """Keeps a job's stdout and stderr, each whole."""

    def __init__(self):
        self.parts = {protocol.STDOUT: [], protocol.STDERR: []}

    def write(self, stream, data):
        self.parts[stream].append(data)

    def bytes(self, stream):
        return b"".join(self.parts[stream])


class Result:
    """What became of one job.

    ``exit_status`` is the number the command-line client exits with (the
    job's own code, 128+N for signal N, 124 for the time limit, 137 for
    another limit). ``limit`` names the limit the job hit, if any, and
    ``message`` says so for people. ``stdout`` and ``stderr`` are the job's
    output (bytes) when the client collected it, else None. ``master`` is
    the address that ran it, ``worker`` the worker's name (None from a
    classic worker), ``seconds`` the wall time from upload to result.
    """

    def __init__(self, exit_status, status=None, master=None, worker=None, seconds=None, stdout=None, stderr=None):
        self.exit_status = exit_status
        self.status = status
        self.master = master
        self.worker = worker
        self.seconds = seconds
        self.stdout = stdout
        self.stderr = stderr

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
                f"worker={self.worker!r}, seconds={self.seconds!r})")


def read_code(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror or error}") from None


def load_secret(path):
    """The secret in the file at ``path``; a file other users can read is warned about on stderr."""
    from .auth import SecretError, read_secret

    try:
        secret, warning = read_secret(path)
    except SecretError as error:
        raise ClientError(str(error)) from None
    if warning:
        sys.stderr.write(f"sieci: warning: {warning}\n")
    return secret


def parse_masters(masters):
    """``"a:1,b:2"``, or a list of such texts or of (host, port) addresses, as a list of addresses."""
    texts = masters.split(",") if isinstance(masters, str) else list(masters)
    try:
        addresses = [text if isinstance(text, tuple) else parse_address(text, "127.0.0.1")
                     for text in texts if isinstance(text, tuple) or text.strip()]
    except AddressError as error:
        raise ClientError(str(error)) from None
    if not addresses:
        raise ClientError("no master address given")
    return addresses


def job_fields(filename):
    """The upload header's fields: extended results, and the file's name."""
    fields = [protocol.EXTENDED]
    name = os.path.basename(filename).encode("utf-8", "replace")
    if name and not any(c in name for c in b" \t\r\n\x0b\x0c"):
        fields.append(b"name=" + name)
    return fields


class Client:
    """Runs jobs on a sieci cluster through the masters it is given.

    ``masters`` are tried in order (in random order with ``shuffle``): one
    that cannot be reached, refuses, or is lost before a worker accepted the
    job is passed over for the next. When every master has failed so, or a
    job was accepted and then lost (it may have run, or run partly), the
    job is tried again only ``retries`` times (by default never), after a
    short pause if no master took it. ``timeout`` bounds a whole job, queue
    wait included.

    With a shared secret (``secret`` bytes, or ``secret_file`` to read it
    from) every upload is signed. ``tls`` is an ssl.SSLContext for talking
    to the masters, or True to build one from ``tls_ca`` (default: the
    system's CAs), ``tls_cert`` and ``tls_key``; giving any of those turns
    TLS on too.
    """

    def __init__(self, masters, connect_timeout=defaults.CONNECT_TIMEOUT, timeout=None, retries=0,
                 shuffle=False, secret=None, secret_file=None, tls=None, tls_ca=None, tls_cert=None, tls_key=None):
        self.addresses = parse_masters(masters)
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.retries = retries
        self.shuffle = shuffle
        self.secret = secret if secret_file is None else load_secret(secret_file)
        if tls is True or tls_ca or tls_cert:  # else no need to load ssl, slow to import
            from . import tls as tls_module

            try:
                tls = tls_module.context("peer", tls_ca, tls_cert, tls_key, on=True)
            except tls_module.TLSError as error:
                raise ClientError(str(error)) from None
        self.tls = tls or None

    def run(self, code, filename="job.py", output=None):
        """Run ``code`` (bytes or str); returns its Result.

        Without ``output`` the job's stdout and stderr are collected into the
        Result. With one (anything with ``write(stream, data)``, such as
        FdOutput) they go there as they arrive; with retries, only once the
        job has ended, so a re-run never shows twice. Raises ClientError
        when sieci cannot get a result.
        """
        if isinstance(code, str):
            code = code.encode()
        collected = CollectedOutput() if output is None else None
        result = self._run(code, filename, output or collected)
        if collected is not None:
            result.stdout, result.stderr = collected.bytes(protocol.STDOUT), collected.bytes(protocol.STDERR)
        return result

    def _run(self, code, filename, output):
        started = time.monotonic()
        addresses = list(self.addresses)
        if self.shuffle:
            import random

            random.shuffle(addresses)
        payload, fields = protocol.as_payload(code), job_fields(filename)
        deadline = time.monotonic() + self.timeout if self.timeout else None
        failures, retries_left, position, passed_over = [], self.retries, 0, 0
        pause = FIRST_RETRY_PAUSE
        while True:
            address = addresses[position % len(addresses)]
            position += 1
            attempt_output = HeldOutput() if self.retries else output
            try:
                result = self._run_on(address, self._block(payload, fields, address), attempt_output, deadline)
            except TimeoutError:
                raise ClientError(f"no result within the --timeout of {self.timeout:g} s") from None
            except NotAccepted as error:
                failures.append(str(error))
                passed_over += 1
                if passed_over < len(addresses):
                    continue
                if retries_left == 0:
                    if len(failures) == 1:
                        raise
                    raise NotAccepted("no master took the job: " + "; ".join(failures)) from None
                retries_left, passed_over = retries_left - 1, 0
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())) if deadline else pause)
                pause = min(2 * pause, LAST_RETRY_PAUSE)
                continue
            except JobLost as error:
                if retries_left == 0:
                    raise
                retries_left, passed_over = retries_left - 1, 0
                failures.append(str(error))
                continue
            if self.retries:
                attempt_output.replay(output)
            result.seconds = time.monotonic() - started
            return result

    def status(self):
        """Ask every master for its status: a list of (address, dict or ClientError)."""
        answers = []
        for address in self.addresses:
            try:
                answers.append((format_address(address), self._status_of(address)))
            except ClientError as error:
                answers.append((format_address(address), error))
        return answers

    def _status_of(self, address):
        import json

        from .status import JSON, SIGNED_PAYLOAD

        where = format_address(address)
        fields = [JSON]
        if self.secret is not None:
            from .auth import audience, sign_upload

            fields.append(audience(address))
            fields.append(sign_upload(self.secret, fields, SIGNED_PAYLOAD))
        sock = self.connect(address, self.connect_timeout)
        try:
            conn = Connection(sock, protocol.client_conversation(protocol.CLIENT))
            conn.deadline = time.monotonic() + min(self.connect_timeout, STATUS_TIMEOUT)
            conn.send_command(protocol.STATUS, b" ".join(fields))
            line = conn.next_event()
        except TimeoutError:
            raise ClientError(f"master {where} did not answer the status request "
                              "(a classic master does not support it)") from None
        except OSError as error:
            raise ClientError(f"lost the connection to master {where} ({error})") from None
        finally:
            sock.close()
        if line is protocol.CONNECTION_CLOSED:
            raise ClientError(f"master {where} closed the connection without answering the status request")
        if line.word == protocol.ERROR:
            raise ClientError(f"master {where} refused the status request: {line.reason.decode('utf-8', 'replace')}")
        try:
            return json.loads(line.raw)
        except ValueError:
            raise ClientError(f"master {where} answered the status request with something other than JSON") from None

    def _block(self, payload, fields, address):
        """The upload to the master at ``address``; signed afresh for every attempt, since
        a signature is good once, and at the master it names only."""
        if self.secret is not None:
            from .auth import audience, sign_upload

            fields = [*fields, audience(address)]
            fields.append(sign_upload(self.secret, fields, payload))
        return protocol.encode_block(payload, fields)

    def connect(self, address, timeout):
        where = format_address(address)
        try:
            sock = _dial(address, timeout)
        except TimeoutError:
            raise NotAccepted(f"cannot reach master {where} (timed out after {timeout:g} s)") from None
        except OSError as error:
            raise NotAccepted(f"cannot reach master {where} ({(error.strerror or str(error)).lower()})") from None
        tune_socket(sock)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=address[0])
            except OSError as error:
                from .tls import describe_failure

                sock.close()
                raise NotAccepted(f"TLS with master {where} failed: {describe_failure(error)}") from None
        sock.settimeout(None)
        return sock

    def _run_on(self, address, block, output, deadline):
        """One attempt through the master at ``address``."""
        connect_timeout = self.connect_timeout
        if deadline is not None:
            connect_timeout = min(connect_timeout, deadline - time.monotonic())
            if connect_timeout <= 0:
                raise TimeoutError
        sock = self.connect(address, connect_timeout)
        where = format_address(address)
        accepted = False
        try:
            conn = Connection(sock, protocol.client_conversation(protocol.CLIENT))
            # A master answers at once, if only with QUEUED; a classic one once a worker takes the job.
            conn.deadline = time.monotonic() + connect_timeout
            conn.send(block, completes=protocol.JOB)
            _await_acceptance(conn, where, deadline)
            accepted = True
            splice = self.tls is None and isinstance(sock, _socket.socket) and hasattr(os, "splice")
            return _receive_results(conn, output, where, splice)
        except protocol.RemoteProtocolError as error:
            lost = JobLost if accepted else NotAccepted
            raise lost(f"master {where} broke the protocol: {error}") from None
        except OSError as error:
            if isinstance(error, TimeoutError):
                if accepted or (deadline is not None and time.monotonic() >= deadline):
                    raise
                raise NotAccepted(f"master {where} did not answer within the --connect-timeout of "
                                  f"{connect_timeout:g} s") from None
            lost = JobLost if accepted else NotAccepted
            raise lost(f"lost the connection to master {where} ({(error.strerror or str(error)).lower()})") from None
        finally:
            sock.close()


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


def run(masters, code, filename="job.py", output=None, **settings):
    """Run ``code`` through ``masters``, output to ``output``; returns the exit status."""
    return Client(masters, **settings).run(code, filename, output or FdOutput()).exit_status


def _next(conn, failure, doing):
    event = conn.next_event()
    if event is protocol.CONNECTION_CLOSED:
        raise failure(f"the master closed the connection {doing}")
    return event


def _await_acceptance(conn, where, deadline):
    """Wait for RECEIVED; from the master's first answer on, only ``deadline`` (the job's) counts."""
    line = _next(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    conn.deadline = deadline
    if deadline is None:
        conn.settimeout(None)
    if line.word == protocol.QUEUED:  # the master is there, and the job waits for a worker
        line = _next(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        raise NotAccepted(f"master {where} refused the job: {reason}")


def _receive_results(conn, output, where, splice=False):
    line = _next(conn, JobLost, f"before the job's results came (master {where})")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        raise JobLost(f"the job failed: {reason} (master {where})")
    header = conn.start_block(line.raw, results=True)
    worker = header.field(b"worker")
    worker = worker.decode("utf-8", "replace") if worker else None
    if header.extended:
        status = _receive_extended(conn, output, where, splice)
        return Result(status.exit_code, status, where, worker)
    _receive_classic(conn, output, where)
    return Result(0, None, where, worker)


def _splice_raw(conn, decoder, pipe_fd):
    """The rest of a raw chunk, from the socket straight into the output pipe.

    From then on reads are small, so that they take little more than the
    next chunk's header and leave its bytes to ``splice``.
    """
    if pipe_fd is None:
        return
    conn.recv_size = HEADER_READ
    moved = conn.splice_into(pipe_fd, conn.receiver.raw_pending)
    if moved == 0:
        conn.receiver.receive_data(b"")  # the peer closed: the next event says so
    conn.receiver.took_raw(moved)
    decoder.took_raw(moved)


def _receive_classic(conn, output, where):
    """A plain block is the job's stdout; written once whole, like the classic client."""
    parts = []
    doing = f"in the middle of the results (master {where})"
    while not isinstance(event := _next(conn, JobLost, doing), protocol.BlockEnd):
        parts.append(event.data)
    output.write(protocol.STDOUT, b"".join(parts))


def _receive_extended(conn, output, where, splice):
    decoder = ResultDecoder()
    doing = f"in the middle of the results (master {where})"
    pipe_for = getattr(output, "pipe_for", None) if splice else None
    while not isinstance(event := _next(conn, JobLost, doing), protocol.BlockEnd):
        for stream, data in decoder.feed(event.data):
            output.write(stream, data)
        if pipe_for is not None and conn.receiver.raw_pending:
            _splice_raw(conn, decoder, pipe_for(decoder.raw_stream))
    status = decoder.status
    if status is None or not decoder.complete:
        raise JobLost(f"the results were cut short: the worker or master was lost (master {where})")
    if status.kind == b"error":
        message = status.message.decode("utf-8", "replace")
        raise JobLost(f"the job failed: {message or status.value.decode()} (master {where})")
    return status
