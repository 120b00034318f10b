"""The client: uploads one file, prints the job's output, exits with its status.

It is started once per job from shell loops, so it imports no gevent and
little else. Nothing but the job's own output goes to stdout.
"""

import os
import signal
import socket
import sys
import time

from . import protocol
from .address import AddressError, format_address, parse_address
from .connection import Connection, set_keepalive

DEFAULT_CONNECT_TIMEOUT = 10.0
FIRST_RETRY_PAUSE = 0.5
LAST_RETRY_PAUSE = 8.0
EXIT_FAILED = protocol.Status.EXIT_CODE_FAILED
PROG = "sieci-client"


class ClientError(Exception):
    """sieci could not get a result; the message says why."""

    exit_code = EXIT_FAILED


class NotAccepted(ClientError):
    """No worker accepted the job through this master: another may be tried."""


class JobLost(ClientError):
    """The job was accepted, then lost: it may have run, or run partly."""


class FdOutput:
    """Writes the job's streams to file descriptors, whole, as they arrive."""

    def __init__(self, stdout_fd=1, stderr_fd=2):
        self.fds = {protocol.STDOUT: stdout_fd, protocol.STDERR: stderr_fd}

    def write(self, stream, data):
        fd = self.fds[stream]
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]


class HeldOutput:
    """Keeps a job's output until it is known to be the one to show."""

    def __init__(self):
        self.events = []

    def write(self, stream, data):
        self.events.append((stream, data))

    def replay(self, output):
        for stream, data in self.events:
            output.write(stream, data)


def read_code(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror or error}") from None


def parse_masters(masters):
    """``"a:1,b:2"`` or a list of such texts, as a list of addresses."""
    texts = masters.split(",") if isinstance(masters, str) else list(masters)
    try:
        addresses = [parse_address(text, "127.0.0.1") for text in texts if text.strip()]
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
    wait included. ``secret`` (bytes) signs every upload; ``tls`` is an
    ssl.SSLContext for talking to the masters.
    """

    def __init__(self, masters, connect_timeout=DEFAULT_CONNECT_TIMEOUT, timeout=None, retries=0,
                 shuffle=False, secret=None, tls=None):
        self.addresses = parse_masters(masters)
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.retries = retries
        self.shuffle = shuffle
        self.secret = secret
        self.tls = tls

    def run(self, code, filename="job.py", output=None):
        """Run ``code``; returns the job's exit status.

        The job's output goes to ``output`` (default: this process's stdout
        and stderr) as it arrives; with retries, only once the job has
        ended, so a re-run never shows twice. Raises ClientError when sieci
        cannot get a result.
        """
        output = output or FdOutput()
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
                status = self._run_on(address, self._block(payload, fields), attempt_output, deadline)
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
            return status

    def _block(self, payload, fields):
        """The upload; signed afresh for every attempt, since a signature is good once."""
        if self.secret is not None:
            from .auth import sign_upload

            fields = [*fields, sign_upload(self.secret, payload)]
        return protocol.encode_block(payload, fields)

    def connect(self, address, timeout):
        where = format_address(address)
        try:
            sock = socket.create_connection(address, timeout=timeout)
        except TimeoutError:
            raise NotAccepted(f"cannot reach master {where} (timed out after {timeout:g} s)") from None
        except OSError as error:
            raise NotAccepted(f"cannot reach master {where} ({(error.strerror or str(error)).lower()})") from None
        set_keepalive(sock)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=address[0])
            except OSError as error:
                sock.close()
                raise NotAccepted(f"TLS with master {where} failed ({error})") from None
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
            conn = Connection(sock)
            conn.deadline = deadline
            conn.send(block)
            _await_acceptance(conn, where)
            accepted = True
            return _receive_results(conn, output, where)
        except protocol.RemoteProtocolError as error:
            lost = JobLost if accepted else NotAccepted
            raise lost(f"master {where} broke the protocol: {error}") from None
        except OSError as error:
            if isinstance(error, TimeoutError):
                raise
            lost = JobLost if accepted else NotAccepted
            raise lost(f"lost the connection to master {where} ({(error.strerror or str(error)).lower()})") from None
        finally:
            sock.close()


def run(masters, code, filename="job.py", output=None, **settings):
    """Run ``code`` once through ``masters``: ``Client(masters, **settings).run(...)``."""
    return Client(masters, **settings).run(code, filename, output)


def _next(conn, failure, doing):
    event = conn.next_event()
    if event is protocol.CONNECTION_CLOSED:
        raise failure(f"the master closed the connection {doing}")
    return event


def _await_acceptance(conn, where):
    line = _next(conn, NotAccepted, f"before a worker accepted the job (master {where})")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        raise NotAccepted(f"master {where} refused the job: {reason}")
    if line.word != protocol.RECEIVED:
        raise protocol.RemoteProtocolError(f"expected RECEIVED, got {line.raw[:80]!r}")


def _receive_results(conn, output, where):
    line = _next(conn, JobLost, f"before the job's results came (master {where})")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        raise JobLost(f"the job failed: {reason} (master {where})")
    header = conn.start_block(line.raw)
    if header.extended:
        return _receive_extended(conn, output, where)
    return _receive_classic(conn, output, where)


def _receive_classic(conn, output, where):
    """A plain block is the job's stdout; printed once whole, like the classic client."""
    parts = []
    doing = f"in the middle of the results (master {where})"
    while not isinstance(event := _next(conn, JobLost, doing), protocol.BlockEnd):
        parts.append(event.data)
    output.write(protocol.STDOUT, b"".join(parts))
    return 0


def _receive_extended(conn, output, where):
    decoder = protocol.ResultDecoder()
    doing = f"in the middle of the results (master {where})"
    while not isinstance(event := _next(conn, JobLost, doing), protocol.BlockEnd):
        for stream, data in decoder.feed(event.data):
            output.write(stream, data)
    status = decoder.status
    if status is None:
        raise JobLost(f"the results ended without the job's exit status (master {where})")
    message = status.message.decode("utf-8", "replace")
    if status.kind == b"error":
        raise JobLost(f"the job failed: {message or status.value.decode()} (master {where})")
    if status.kind == b"limit":
        output.write(protocol.STDERR, f"{PROG}: {message}\n".encode())
    return status.exit_code


def _env_number(name, kind):
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ClientError(f"{name}={text!r} is not a number") from None


def parse_args(argv):
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [options] MASTER[,MASTER...] FILE",
        description="Run a Python file on a sieci cluster; print its output and exit with its status.",
        epilog="Exit status: the job's own; 128+N if signal N ended it; 124 if it ran past its time limit; "
               "255 if sieci could not get a result (the reason is on stderr). "
               "Each option can also be set in the environment variable named in brackets.",
    )
    parser.add_argument("args", nargs="+", metavar="MASTER[,MASTER...] FILE",
                        help="the masters' client addresses (HOST:PORT, :PORT or PORT; or SIECI_MASTERS), "
                             "then the Python file to run, or - for stdin")
    parser.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                        default=_env_number("SIECI_CONNECT_TIMEOUT", float) or DEFAULT_CONNECT_TIMEOUT,
                        help="pass over a master that does not answer within this time "
                             "(default: %(default)g) [SIECI_CONNECT_TIMEOUT]")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", default=_env_number("SIECI_TIMEOUT", float),
                        help="give up if the job has no result within this time, queue wait included "
                             "(default: none) [SIECI_TIMEOUT]")
    parser.add_argument("--retries", type=int, metavar="N", default=_env_number("SIECI_RETRIES", int) or 0,
                        help="when no master took the job, or one took it and then lost it, try again, up to N "
                             "times; a lost job may have run partly, so only for jobs that may safely run twice "
                             "(default: 0) [SIECI_RETRIES]")
    parser.add_argument("--shuffle", action="store_true", default=bool(os.environ.get("SIECI_SHUFFLE")),
                        help="try the masters in random order [SIECI_SHUFFLE]")
    parser.add_argument("--secret-file", metavar="PATH", default=os.environ.get("SIECI_SECRET_FILE"),
                        help="sign the job with the cluster's shared secret, read from this file "
                             "[SIECI_SECRET_FILE]")
    parser.add_argument("--tls", action="store_true", default=bool(os.environ.get("SIECI_TLS")),
                        help="talk to the masters over TLS (implied by --tls-ca) [SIECI_TLS]")
    parser.add_argument("--tls-ca", metavar="PATH", default=os.environ.get("SIECI_TLS_CA"),
                        help="verify the master's certificate against this CA (default: the system's) "
                             "[SIECI_TLS_CA]")
    parser.add_argument("--tls-cert", metavar="PATH", default=os.environ.get("SIECI_TLS_CERT"),
                        help="present this certificate to masters that ask for one [SIECI_TLS_CERT]")
    parser.add_argument("--tls-key", metavar="PATH", default=os.environ.get("SIECI_TLS_KEY"),
                        help="the private key of --tls-cert [SIECI_TLS_KEY]")
    args = parser.parse_args(argv)
    if len(args.args) == 1 and os.environ.get("SIECI_MASTERS"):
        args.masters, args.file = os.environ["SIECI_MASTERS"], args.args[0]
    elif len(args.args) == 2:
        args.masters, args.file = args.args
    else:
        parser.error("expected MASTER[,MASTER...] FILE (or SIECI_MASTERS and FILE)")
    if args.retries < 0:
        parser.error("--retries cannot be negative")
    return args


def security_settings(args):
    """The secret and TLS context the options ask for, as Client takes them."""
    settings = {}
    if args.secret_file:
        from .auth import SecretError, read_secret

        try:
            settings["secret"], warning = read_secret(args.secret_file)
        except SecretError as error:
            raise ClientError(str(error)) from None
        if warning:
            sys.stderr.write(f"{PROG}: warning: {warning}\n")
    if args.tls or args.tls_ca or args.tls_cert:
        from .tls import TLSError, client_context

        try:
            settings["tls"] = client_context(args.tls_ca, args.tls_cert, args.tls_key)
        except TLSError as error:
            raise ClientError(str(error)) from None
    return settings


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `client ... | head` ends quietly, like cat
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        code = read_code(args.file)
        client = Client(args.masters, connect_timeout=args.connect_timeout, timeout=args.timeout,
                        retries=args.retries, shuffle=args.shuffle, **security_settings(args))
        return client.run(code, args.file if args.file != "-" else "stdin.py")
    except ClientError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
