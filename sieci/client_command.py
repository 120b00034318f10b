"""The sieci-client command: run a Python file on the cluster, like ``python3 FILE``.

It is started once per job from shell loops, so its start-up is kept short:
the usual command line is parsed here directly, from the one table of
options below, and argparse (slow to import) is loaded only to print help
or to explain a mistake.
"""

import os
import sys

from .client import DEFAULT_CONNECT_TIMEOUT, Client, ClientError, FdOutput, read_code

PROG = "sieci-client"
USAGE = f"{PROG} [options] MASTER[,MASTER...] FILE"
EXIT_USAGE = 2


class Option:
    """One option: its flag, how its value is read, its default and help.

    Its environment variable is ``SIECI_`` and the flag in upper case.
    """

    def __init__(self, flag, kind, default, help, metavar=None):
        self.flag = flag
        self.kind = kind
        self.default = default
        self.help = help
        self.metavar = metavar
        self.dest = flag[2:].replace("-", "_")
        self.env = "SIECI_" + self.dest.upper()

    def convert(self, text):
        if self.kind is bool:
            return text.strip().lower() not in ("", "0", "no", "false", "off")
        return self.kind(text)


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_non_negative_int.__name__ = "whole number (0 or more)"  # how argparse names it in errors


OPTIONS = [
    Option("--connect-timeout", float, DEFAULT_CONNECT_TIMEOUT,
           "pass over a master that does not answer within this time (default: %(default)g)", "SECONDS"),
    Option("--timeout", float, None,
           "give up if the job has no result within this time, queue wait included (default: none)", "SECONDS"),
    Option("--retries", _non_negative_int, 0,
           "when no master took the job, or one took it and then lost it, try again, up to N times; a lost "
           "job may have run partly, so only for jobs that may safely run twice (default: 0)", "N"),
    Option("--shuffle", bool, False, "try the masters in random order"),
    Option("--secret-file", str, None, "sign the job with the cluster's shared secret, read from this file",
           "PATH"),
    Option("--tls", bool, False, "talk to the masters over TLS (implied by --tls-ca and --tls-cert)"),
    Option("--tls-ca", str, None, "verify the master's certificate against this CA (default: the system's)",
           "PATH"),
    Option("--tls-cert", str, None, "present this certificate to masters that ask for one", "PATH"),
    Option("--tls-key", str, None, "the private key of --tls-cert", "PATH"),
]
_BY_FLAG = {option.flag: option for option in OPTIONS}


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
    for option in OPTIONS:
        if option.dest not in values:
            values[option.dest] = _from_environment(option, environ)
    args = Arguments(values, positionals)
    if len(positionals) == 1 and environ.get("SIECI_MASTERS"):
        args.masters, args.file = environ["SIECI_MASTERS"], positionals[0]
    elif len(positionals) == 2:
        args.masters, args.file = positionals
    else:
        _usage_error("expected MASTER[,MASTER...] FILE (or SIECI_MASTERS and FILE)")
    return args


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
        if option is None or (option.kind is bool and has_value):
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

    parser = argparse.ArgumentParser(
        prog=PROG, usage=USAGE,
        description="Run a Python file on a sieci cluster; print its output and exit with its status.",
        epilog="Exit status: the job's own; 128+N if signal N ended it; 124 if it ran past its time limit; "
               "137 if it hit another limit; 255 if sieci could not get a result (the reason is on stderr). "
               "Each option can also be set in the environment variable named in brackets.")
    parser.add_argument("positionals", nargs="*", metavar="MASTER[,MASTER...] FILE",
                        help="the masters' client addresses (HOST:PORT, :PORT or PORT; or SIECI_MASTERS), "
                             "then the Python file to run, or - for stdin")
    for option in OPTIONS:
        help_text = f"{option.help} [{option.env}]"
        if option.kind is bool:
            parser.add_argument(option.flag, action="store_true", default=None, help=help_text)
        else:
            parser.add_argument(option.flag, type=option.kind, default=None, metavar=option.metavar,
                                help=help_text.replace("%(default)g", f"{option.default:g}")
                                if isinstance(option.default, float) else help_text)
    namespace = parser.parse_args(argv)
    values = {option.dest: getattr(namespace, option.dest) for option in OPTIONS
              if getattr(namespace, option.dest) is not None}
    return values, namespace.positionals


def _from_environment(option, environ):
    text = environ.get(option.env)
    if text is None:
        return option.default
    try:
        return option.convert(text)
    except ValueError:
        _usage_error(f"{option.env}={text!r} is not a valid value for {option.flag}")


def _usage_error(message):
    sys.stderr.write(f"usage: {USAGE}\n{PROG}: error: {message}\n")
    sys.exit(EXIT_USAGE)


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
                        retries=args.retries, shuffle=args.shuffle, **security_settings(args))
        return run_file(client, args.file)
    except ClientError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
