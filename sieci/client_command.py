"""The sieci-client command: run a Python file on the cluster, like ``python3 FILE``.

It is started once per job from shell loops, so its start-up is kept short:
the usual command line is parsed here directly, from the declarations in
options.py, and argparse (slow to import) is loaded only to print help
or to explain a mistake. Given many files (or ``--files-from``, ``--joblog``,
``--retry-failed``) it runs them as a batch: see batch.py.
"""

import os
import sys

from . import defaults, options
from .client import Client, ClientError, FdOutput, parse_masters, read_code
from .protocol import STDOUT

PROG = "sieci-client"
USAGE = f"{PROG} [options] MASTER[,MASTER...] FILE [FILE...]"
_BY_FLAG = {option.flag: option for option in options.CLIENT}


class Arguments:
    def __init__(self, values, positionals):
        self.__dict__.update(values)
        self.positionals = positionals


class _AskArgparse(Exception):
    """Help, or a mistake: argparse knows best how to say it."""


def parse_args(argv, environ=None):
    environ = os.environ if environ is None else environ
    try:
        values, positionals = _parse_quickly(argv)
    except _AskArgparse:
        values, positionals = _parse_with_argparse(argv)
    for option in options.CLIENT:
        if option.dest not in values:
            values[option.dest] = _from_environment(option, environ)
    args = Arguments(values, positionals)
    if args.json and not args.status:
        _usage_error("--json goes with --status")
    if args.status:
        args = _status_arguments(args, environ)
    else:
        listed = bool(args.files_from or args.retry_failed)
        args.masters, args.files = _masters_and_files(positionals, environ.get(options.CLIENT_MASTERS.env), listed)
        args.batch = bool(len(args.files) != 1 or listed or args.joblog)
        args.file = None if args.batch else args.files[0]
        if args.retry_failed and not args.joblog:
            _usage_error("--retry-failed needs --joblog (the joblog of the run to retry)")
        if args.batch and "-" in args.files:
            _usage_error("- (stdin) can only be the one FILE, not one of a batch")
    try:
        args.masters = parse_masters(args.masters)
    except ClientError as error:
        _usage_error(str(error))
    return args


def _status_arguments(args, environ):
    if len(args.positionals) > 1:
        _usage_error("--status takes the masters only: MASTER[,MASTER...]")
    args.masters = args.positionals[0] if args.positionals else environ.get(options.CLIENT_MASTERS.env)
    if not args.masters:
        _usage_error(f"--status needs MASTER[,MASTER...] (or {options.CLIENT_MASTERS.env})")
    args.batch, args.file = False, None
    return args


def _masters_and_files(positionals, masters_from_environment, listed):
    """The masters, then the files: MASTER comes first when the command line has room for it.

    That is with two or more arguments, or one when the files come from
    elsewhere (--files-from, --retry-failed); else SIECI_MASTERS names them.
    """
    if len(positionals) >= 2 or (listed and positionals):
        return positionals[0], positionals[1:]
    if masters_from_environment and (positionals or listed):
        return masters_from_environment, positionals
    _usage_error("expected MASTER[,MASTER...] FILE [FILE...] (or SIECI_MASTERS and FILE...; "
                 "or MASTER and --files-from)")


def _parse_quickly(argv):
    values, positionals, rest = {}, [], list(argv)
    while rest:
        token = rest.pop(0)
        if token == "--":
            positionals.extend(rest)
            break
        if token == "-" or not token.startswith("-"):
            positionals.append(token)
            continue
        flag, has_value, value = token.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None or (option.kind is bool and has_value):  # also --help and --version
            raise _AskArgparse
        if option.kind is bool:
            values[option.dest] = True
            continue
        if not has_value:
            if not rest:
                raise _AskArgparse
            value = rest.pop(0)
        try:
            values[option.dest] = option.convert(value)
        except ValueError:
            raise _AskArgparse from None
    return values, positionals


def _parse_with_argparse(argv):
    import argparse

    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, usage=USAGE,
        description="Run a Python file on a sieci cluster; print its output and exit with its status. "
                    "Given several files (or --files-from), run them as a batch, --jobs at a time.",
        epilog=f"Exit status: the job's own; 128+N if signal N ended it; {defaults.EXIT_TIME_LIMIT} if it ran "
               f"past its time limit; {defaults.EXIT_OTHER_LIMIT} if it hit another limit; {defaults.EXIT_FAILED} "
               f"if sieci could not get a result (the reason is on stderr); {defaults.EXIT_USAGE} for a bad "
               "command line. A batch exits 0 if every job exited 0, else with the number of jobs that did not "
               f"({defaults.MOST_FAILURES_COUNTED + 1} for more than {defaults.MOST_FAILURES_COUNTED}), or "
               f"{defaults.EXIT_FAILED} if sieci could not run it at all. "
               "Each option can also be set in the environment variable named in brackets.")
    parser.add_argument("positionals", nargs="*", metavar="MASTER[,MASTER...] FILE [FILE...]",
                        help="the masters' client addresses (HOST:PORT, :PORT or PORT; or SIECI_MASTERS), "
                             "then the Python file(s) to run; a single FILE may be - for stdin")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    for option in options.CLIENT:
        options.add_option(parser, option)
        parser.set_defaults(**{option.dest: None})
    namespace = parser.parse_args(argv)
    values = {option.dest: getattr(namespace, option.dest) for option in options.CLIENT
              if getattr(namespace, option.dest) is not None}
    return values, namespace.positionals


def _from_environment(option, environ):
    text = environ.get(option.env)
    if text is None:
        return option.default
    try:
        return option.convert(text)
    except ValueError as error:
        _usage_error(f"{option.env} (for {option.flag}): {error}")


def _usage_error(message):
    sys.stderr.write(f"usage: {USAGE}\n{PROG}: error: {message}\n")
    sys.exit(defaults.EXIT_USAGE)


def show_status(client, as_json):
    """Print each master's status; exit status 255 if any did not give it."""
    answers = client.status()
    if as_json:
        import json

        text = json.dumps({address: state if isinstance(state, dict) else {"error": str(state)}
                           for address, state in answers}, indent=2) + "\n"
    else:
        from .status import format_text

        text = "\n".join(format_text(state) for _, state in answers if isinstance(state, dict))
    FdOutput().write(STDOUT, text.encode())
    failures = [state for _, state in answers if not isinstance(state, dict)]
    for failure in failures:
        sys.stderr.write(f"{PROG}: error: {failure}\n")
    return defaults.EXIT_FAILED if failures else 0


def run_file(client, path, prog=PROG):
    """Run the file at ``path`` (``-``: stdin) as ``python3 FILE`` would; returns the exit status.

    The job's output goes to this process's stdout and stderr as it comes;
    sieci's own failures are one line on stderr and exit status 255.
    """
    output = FdOutput()
    try:
        code = read_code(path)
        result = client.run(code, path if path != "-" else "stdin.py", output)
    except ClientError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return error.exit_code
    if result.limit:
        output.write("stderr", f"{prog}: {result.message}\n".encode())
    return result.exit_status


def main(argv=None):
    import _signal

    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)  # `sieci-client ... | head` ends quietly, like cat
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        client = Client(args.masters, connect_timeout=args.connect_timeout, timeout=args.timeout,
                        retries=args.retries, shuffle=args.shuffle, secret_file=args.secret_file, tls=args.tls,
                        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key)
        if args.status:
            return show_status(client, args.json)
        if args.batch:
            from . import batch

            return batch.run(client, args, PROG)
        return run_file(client, args.file)
    except ClientError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return defaults.EXIT_INTERRUPTED


def run_and_exit():
    """The sieci-client program: ``main()``, then leave without Python's finalization.

    Finalization costs about 2 ms, an eighth of a hello-world run from the
    shell, and does nothing here: the job's output and the status table are
    written straight to the fds (FdOutput), a batch closes its joblog
    itself, and the sockets close with the process. Only sys.stderr may
    still hold something (a progress bar's last update), so it is flushed.
    """
    status = main()
    try:
        sys.stderr.flush()
    except Exception:
        pass  # as at Python's own end: a stderr that cannot be written is let be
    os._exit(status)


if __name__ == "__main__":
    run_and_exit()
