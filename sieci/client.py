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


def connect(address, timeout=DEFAULT_CONNECT_TIMEOUT):
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except TimeoutError:
        raise NotAccepted(f"cannot reach master {format_address(address)} (timed out after {timeout:g} s)") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise NotAccepted(f"cannot reach master {format_address(address)} ({reason})") from None
    sock.settimeout(None)
    set_keepalive(sock)
    return sock


def job_fields(filename):
    """The upload header's fields: extended results, and the file's name."""
    fields = [protocol.EXTENDED]
    name = os.path.basename(filename).encode("utf-8", "replace")
    if name and not any(c in name for c in b" \t\r\n\x0b\x0c"):
        fields.append(b"name=" + name)
    return fields


def run(masters, code, filename="job.py", output=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        timeout=None, retries=0, shuffle=False):
    """Run ``code`` on a sieci cluster; returns the job's exit status.

    ``masters`` are tried in order (in random order with ``shuffle``): one
    that cannot be reached, refuses, or is lost before a worker accepted the
    job is passed over for the next. When every master has failed so, or a
    job was accepted and then lost (it may have run, or run partly), the
    job is tried again only ``retries`` times (by default never), after a
    short pause if no master took it. ``timeout`` bounds the whole job,
    queue wait included.

    The job's output goes to ``output`` (default: this process's stdout and
    stderr) as it arrives; with retries, only once the job has ended, so a
    re-run never shows twice. Raises ClientError when sieci cannot get a
    result.
    """
    output = output or FdOutput()
    addresses = parse_masters(masters)
    if shuffle:
        import random

        random.shuffle(addresses)
    block = protocol.encode_block(code, job_fields(filename))
    deadline = time.monotonic() + timeout if timeout else None
    failures, retries_left, position, passed_over = [], retries, 0, 0
    pause = FIRST_RETRY_PAUSE
    while True:
        address = addresses[position % len(addresses)]
        position += 1
        attempt_output = HeldOutput() if retries else output
        try:
            status = _run_on(address, block, attempt_output, connect_timeout, deadline)
        except TimeoutError:
            raise ClientError(f"no result within the --timeout of {timeout:g} s") from None
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
        if retries:
            attempt_output.replay(output)
        return status


def _run_on(address, block, output, connect_timeout, deadline):
    """One attempt through the master at ``address``."""
    if deadline is not None:
        connect_timeout = min(connect_timeout, deadline - time.monotonic())
        if connect_timeout <= 0:
            raise TimeoutError
    sock = connect(address, connect_timeout)
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


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `client ... | head` ends quietly, like cat
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        code = read_code(args.file)
        return run(args.masters, code, args.file if args.file != "-" else "stdin.py",
                   connect_timeout=args.connect_timeout, timeout=args.timeout,
                   retries=args.retries, shuffle=args.shuffle)
    except ClientError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
