"""The client: uploads one file, prints the job's output, exits with its status.

It is started once per job from shell loops, so it imports no gevent and
little else. Nothing but the job's own output goes to stdout.
"""

import os
import signal
import socket
import sys

from . import protocol
from .address import AddressError, format_address, parse_address
from .connection import Connection

DEFAULT_CONNECT_TIMEOUT = 10.0
EXIT_FAILED = protocol.Status.EXIT_CODE_FAILED
PROG = "sieci-client"


class ClientError(Exception):
    """sieci could not get a result; the message says why."""

    exit_code = EXIT_FAILED


class FdOutput:
    """Writes the job's streams to file descriptors, whole, as they arrive."""

    def __init__(self, stdout_fd=1, stderr_fd=2):
        self.fds = {protocol.STDOUT: stdout_fd, protocol.STDERR: stderr_fd}

    def write(self, stream, data):
        fd = self.fds[stream]
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]


def read_code(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror or error}") from None


def connect(master, timeout=DEFAULT_CONNECT_TIMEOUT):
    try:
        address = parse_address(master, "127.0.0.1")
    except AddressError as error:
        raise ClientError(str(error)) from None
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except socket.timeout:
        raise ClientError(f"cannot reach master {format_address(address)} (timed out after {timeout:g} s)") from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise ClientError(f"cannot reach master {format_address(address)} ({reason})") from None
    sock.settimeout(None)
    return sock


def run(master, code, filename="job.py", output=None, connect_timeout=DEFAULT_CONNECT_TIMEOUT):
    """Run ``code`` on the cluster behind ``master``; returns the exit status.

    The job's output goes to ``output`` (default: this process's stdout and
    stderr) as it arrives. Raises ClientError when sieci cannot get a result.
    """
    output = output or FdOutput()
    fields = [protocol.EXTENDED]
    name = os.path.basename(filename).encode("utf-8", "replace")
    if name and not any(c in name for c in b" \t\r\n\x0b\x0c"):
        fields.append(b"name=" + name)
    sock = connect(master, connect_timeout)
    try:
        conn = Connection(sock)
        conn.send(protocol.encode_block(code, fields))
        _await_acceptance(conn)
        return _receive_results(conn, output)
    except protocol.RemoteProtocolError as error:
        raise ClientError(f"the master broke the protocol: {error}") from None
    except ConnectionError as error:
        raise ClientError(f"lost the connection to the master ({(error.strerror or str(error)).lower()})") from None
    finally:
        sock.close()


def _next(conn, doing):
    event = conn.next_event()
    if event is protocol.CONNECTION_CLOSED:
        raise ClientError(f"the master closed the connection {doing}")
    return event


def _await_acceptance(conn):
    line = _next(conn, "before a worker accepted the job")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        raise ClientError(f"the master refused the job: {reason}")
    if line.word != protocol.RECEIVED:
        raise protocol.RemoteProtocolError(f"expected RECEIVED, got {line.raw[:80]!r}")


def _receive_results(conn, output):
    line = _next(conn, "before the job's results came")
    if line.word == protocol.ERROR:
        reason = line.reason.decode("utf-8", "replace") or "no reason given"
        raise ClientError(f"the job failed: {reason}")
    header = conn.start_block(line.raw)
    if header.extended:
        return _receive_extended(conn, output)
    return _receive_classic(conn, output)


def _receive_classic(conn, output):
    """A plain block is the job's stdout; printed once whole, like the classic client."""
    parts = []
    while not isinstance(event := _next(conn, "in the middle of the results"), protocol.BlockEnd):
        parts.append(event.data)
    output.write(protocol.STDOUT, b"".join(parts))
    return 0


def _receive_extended(conn, output):
    decoder = protocol.ResultDecoder()
    while not isinstance(event := _next(conn, "in the middle of the results"), protocol.BlockEnd):
        for stream, data in decoder.feed(event.data):
            output.write(stream, data)
    status = decoder.status
    if status is None:
        raise ClientError("the results ended without the job's exit status")
    message = status.message.decode("utf-8", "replace")
    if status.kind == b"error":
        raise ClientError(f"the job failed: {message or status.value.decode()}")
    if status.kind == b"limit":
        output.write(protocol.STDERR, f"{PROG}: {message}\n".encode())
    return status.exit_code


def parse_args(argv):
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a Python file on a sieci cluster and print its output.",
        epilog="Exit status: the job's own; 128+N if signal N ended it; 124 if it hit its time limit; "
               "255 if sieci could not get a result.",
    )
    parser.add_argument("master", metavar="MASTER", help="the master's client address: HOST:PORT, :PORT or PORT")
    parser.add_argument("file", metavar="FILE", help="the Python file to run, or - to read the code from stdin")
    parser.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
                        help="give up on a master that does not answer within this time (default: %(default)g)")
    return parser.parse_args(argv)


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `client ... | head` ends quietly, like cat
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        code = read_code(args.file)
        status = run(args.master, code, args.file if args.file != "-" else "stdin.py",
                     connect_timeout=args.connect_timeout)
    except ClientError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
