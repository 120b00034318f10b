"""The sieci-client command: run a Python program on the cluster, like ``python3 PROG ARG...``.

It is started once per job from shell loops, so its start-up is kept short:
the usual command line is parsed here directly, from the declarations in
options.py, and argparse (slow to import) is loaded only to print help
or to explain a mistake. With ``:::`` (GNU parallel's), ``-a FILE``,
``--joblog`` or ``--retry-failed`` it runs a batch: see batch.py.
"""

import os
import sys

from sieci import defaults, options
from sieci.options import UsageError
from sieci.client.client import Client, ClientError, FdOutput, load_program, parse_masters, shown_on_terminal, streams_merged
from sieci.wire.protocol import STDOUT, parse_job_id

PROG = "sieci-client"
USAGE = f"{PROG} [options] MASTER[,MASTER...] PROG [ARG...] [::: VALUE...]"


BATCH_SEPARATOR = ":::"  # GNU parallel's: the values after it make one job each
_BY_FLAG = {flag: option for option in options.CLIENT for flag in (option.flag, option.short) if flag}


class Arguments:
    def __init__(self, values, positionals, batch_values):
        self.__dict__.update(values)
        self.positionals = positionals
        self.batch_values = batch_values  # after ':::', or None


class _AskArgparse(Exception):
    """Help, or a mistake: argparse knows best how to say it, from ``tokens`` (the options)."""

    def __init__(self, tokens):
        super().__init__()
        self.tokens = tokens


def parse_args(argv, environ=None):
    """The command line, as ``python3`` reads its own: options, MASTER, then PROG and its ARGs
    (everything after PROG is the job's), then, for a batch, ``:::`` and one value per job."""
    environ = os.environ if environ is None else environ
    masters_from_environment = environ.get(options.CLIENT_MASTERS.env)
    try:
        values, positionals, batch_values = _parse_quickly(argv, masters_from_environment)
    except _AskArgparse as mistake:
        raise _explain_with_argparse(mistake.tokens) from None
    for option in options.CLIENT:
        if option.dest not in values:
            values[option.dest] = _from_environment(option, environ)
    args = Arguments(values, positionals, batch_values)
    if args.json and not (args.status or args.list):
        raise _refusal("--json goes with --status or --list")
    args.env = _job_environment(args.env or [], environ)
    if _asks_masters_only(args):
        args = _status_arguments(args, masters_from_environment)
    else:
        args.masters, args.command = _masters_and_command(args, masters_from_environment)
        args.batch = bool(batch_values is not None or args.arg_file or args.retry_failed or args.joblog)
        _check_resuming(args)
        if args.batch and "-" in args.command[:1]:
            raise _refusal("- (stdin) can only be the PROG of one job, not a batch's")
        if args.tty and (args.batch or "-" in args.command[:1]):
            raise _refusal("-t is for one job, whose stdin is this terminal (not a batch, nor PROG -)")
        if args.tty and not os.isatty(0):
            raise _refusal("-t needs a terminal, and stdin is not one")
        if args.detach and (args.batch or args.tty or args.returns or "-" in args.command[:1]):
            raise _refusal("--detach is for one job, whose stdin is empty (not a batch, -t, --return nor PROG -)")
        _check_globs(args.returns or [])
    try:
        args.masters = parse_masters(args.masters)
    except ClientError as error:
        raise _refusal(str(error)) from None
    return args


def _check_resuming(args):
    if args.retry_failed and not args.joblog:
        raise _refusal("--retry-failed needs --joblog (the joblog of the run to retry)")
    for flag, given in (("--resume", args.resume), ("--resume-failed", args.resume_failed)):
        if given and not args.joblog:
            raise _refusal(f"{flag} needs --joblog (the joblog of the run to resume)")
        if given and args.batch_values is None and not args.arg_file:
            raise _refusal(f"{flag} needs the batch's values (':::' VALUE... or -a FILE), as the run it resumes "
                           "had them")


def _asks_masters_only(args):
    """The request the command line makes that takes no PROG (--status, --list, --attach, --cancel), or None;
    a usage error for more than one, or for an id that is not one."""
    asked = [flag for flag, value in (("--status", args.status), ("--list", args.list), ("--attach", args.attach),
                                      ("--cancel", args.cancel)) if value]
    if len(asked) > 1 or (asked and args.detach):
        raise _refusal(f"{' and '.join(asked + ['--detach'] * args.detach)} do not go together")
    for job_id in (args.attach, args.cancel):
        if job_id is not None and parse_job_id(job_id) is None:
            raise _refusal(f"{job_id!r} is not a job id (16 hex digits, as --detach prints)")
    return asked[0] if asked else None


def _status_arguments(args, masters_from_environment):
    asked = _asks_masters_only(args)
    if len(args.positionals) > 1 or args.batch_values is not None:
        raise _refusal(f"{asked} takes the masters only: MASTER[,MASTER...]")
    args.masters = args.positionals[0] if args.positionals else masters_from_environment
    if not args.masters:
        raise _refusal(f"{asked} needs MASTER[,MASTER...] (or {options.CLIENT_MASTERS.env})")
    args.batch, args.command = False, []
    return args


def _masters_and_command(args, masters_from_environment):
    """MASTER, then the job's command line: PROG and its ARGs."""
    positionals = args.positionals
    alone = len(positionals) == 1 and bool(masters_from_environment)
    if positionals and not (alone or _names_program(positionals[0], masters_from_environment)):
        masters, command = positionals[0], positionals[1:]
    elif masters_from_environment:
        masters, command = masters_from_environment, positionals
    else:
        masters, command = None, []
    listed = args.batch_values is not None or args.arg_file or args.retry_failed
    if masters is None or not (command or listed):
        raise _refusal("expected MASTER[,MASTER...] PROG [ARG...] (or PROG alone with SIECI_MASTERS set; "
                       "a batch: ... ::: VALUE... or -a FILE)")
    return masters, command


def _names_program(first, masters_from_environment):
    """Whether the first argument is PROG rather than MASTER: only where SIECI_MASTERS names
    the masters, and then when it is - (stdin) or names a file or folder (or, see above, stands alone)."""
    return bool(masters_from_environment) and (first == "-" or os.path.exists(first))


def _parse_quickly(argv, masters_from_environment):
    """Options up to PROG; from PROG on, the job's arguments; after ':::', a batch's values."""
    values, positionals, tokens, rest = {}, [], [], list(argv)
    options_ended = False
    while rest:
        token = rest.pop(0)
        if token == BATCH_SEPARATOR:
            return values, positionals, rest
        if _program_reached(positionals, masters_from_environment):
            positionals.append(token)
            continue
        if options_ended or token == "-" or not token.startswith("-"):
            positionals.append(token)
            continue
        if token == "--":
            options_ended = True
            continue
        tokens.append(token)
        if token[1] != "-" and token[:2] in _BY_FLAG:  # a short option and its value: -eNAME=VALUE
            flag, has_value, value = token[:2], len(token) > 2, token[2:]
        else:
            flag, has_value, value = token.partition("=")
        option = _BY_FLAG.get(flag)
        if option is None or (option.kind is bool and has_value):  # also --help and --version
            raise _AskArgparse(tokens)
        if option.kind is bool:
            values[option.dest] = True
            continue
        if not has_value:
            if not rest:
                raise _AskArgparse(tokens)
            value = rest.pop(0)
            tokens.append(value)
        try:
            converted = option.convert(value)
        except ValueError:
            raise _AskArgparse(tokens) from None
        if option.repeat:
            values.setdefault(option.dest, []).append(converted)
        else:
            values[option.dest] = converted
    return values, positionals, None


def _program_reached(positionals, masters_from_environment):
    """Whether PROG has been read: what follows it is the job's, options or not."""
    return len(positionals) >= 2 or (len(positionals) == 1 and _names_program(positionals[0], masters_from_environment))


def _explain_with_argparse(tokens):
    """Let argparse print the help, the version, or what is wrong with the options, and exit; the
    UsageError to raise for a mistake it lets through."""
    import argparse

    from sieci import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, usage=USAGE, allow_abbrev=False,
        description="Run a Python program on a sieci cluster as python3 would run it here: print its output "
                    "and exit with its status. With ':::' VALUE... (or -a FILE), run a batch: one job per "
                    "value, --jobs at a time, {} in PROG and its ARGs replaced by the value (or the value "
                    "added at the end).",
        epilog=f"Exit status: the job's own; 128+N if signal N ended it; {defaults.EXIT_TIME_LIMIT} if it ran "
               f"past its time limit; {defaults.EXIT_OTHER_LIMIT} if it hit another limit; {defaults.EXIT_FAILED} "
               f"if sieci could not get a result (the reason is on stderr); {defaults.EXIT_USAGE} for a bad "
               "command line. A batch exits 0 if every job exited 0, else with the number of jobs that did not "
               f"({defaults.MOST_FAILURES_COUNTED + 1} for more than {defaults.MOST_FAILURES_COUNTED}), or "
               f"{defaults.EXIT_FAILED} if sieci could not run it at all. "
               "Each option can also be set in the environment variable named in brackets.")
    parser.add_argument("positionals", nargs="*", metavar="MASTER[,MASTER...] PROG [ARG...]",
                        help="the masters' client addresses (HOST:PORT, :PORT or PORT; or SIECI_MASTERS), then "
                             "the Python program (a file; - for stdin) and its arguments; options go before PROG")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    for option in options.CLIENT:
        options.add_option(parser, option)
        parser.set_defaults(**{option.dest: None})
    parser.parse_args(tokens)  # help, or a mistake: it exits
    return _refusal(f"cannot read the options {' '.join(tokens)!r}")


def _check_globs(globs):
    if globs:
        from sieci.wire.returns import split_glob

        try:
            for glob in globs:
                split_glob(glob)
        except ValueError as error:
            raise _refusal(str(error)) from None


def _job_environment(assignments, environ):
    """``-e NAME=VALUE`` and ``-e NAME`` (this shell's value) as a dict."""
    env = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not name or "\0" in assignment:
            raise _refusal(f"-e {assignment!r}: expected NAME=VALUE or NAME")
        if not equals:
            if name not in environ:
                raise _refusal(f"-e {name}: {name} is not set here (give NAME=VALUE)")
            value = environ[name]
        env[name] = value
    return env


def _from_environment(option, environ):
    text = environ.get(option.env) if option.env else None
    if text is None:
        return option.default
    try:
        return option.convert(text)
    except ValueError as error:
        raise _refusal(f"{option.env} (for {option.flag}): {error}") from None


def _refusal(message):
    """A UsageError, said as argparse would say it, for main() to show."""
    return UsageError(message, f"usage: {USAGE}\n", PROG)


def show_status(client, as_json):
    """Print each master's status; exit status 255 if any did not give it."""
    from sieci.wire.status import format_text

    return _show_each(client.status(), as_json, lambda states: "\n".join(map(format_text, states)))


def show_jobs(client, as_json):
    """Print each master's jobs (queued, running, kept); exit status 255 if any did not list them."""
    return _show_each(client.jobs(), as_json, lambda listings: "".join(map(format_jobs, listings)))


def _show_each(answers, as_json, format_text):
    """Print what each master answered (``(address, dict or ClientError)``), as JSON or through
    ``format_text`` (of the dicts); each failure on stderr, and exit status 255 if any."""
    if as_json:
        import json

        text = json.dumps({address: answer if isinstance(answer, dict) else {"error": str(answer)}
                           for address, answer in answers}, indent=2) + "\n"
    else:
        text = format_text([answer for _, answer in answers if isinstance(answer, dict)])
    FdOutput().write(STDOUT, text.encode())
    failures = [answer for _, answer in answers if not isinstance(answer, dict)]
    for failure in failures:
        sys.stderr.write(f"{PROG}: error: {failure}\n")
    return defaults.EXIT_FAILED if failures else 0


def format_jobs(listing):
    """One master's jobs, a line each, for people."""
    lines = [f"master {listing['master']}  jobs {len(listing['jobs'])}"]
    lines += [f"  {job['id']}  {job['state']:<9} {job['age']:>10.1f} s  {'detached' if job['detached'] else 'attached'}"
              f"  {job['worker'] or '-'}" for job in listing["jobs"]]
    return "\n".join(lines) + "\n"


def attach(client, job_id, prog=PROG):
    """Print the detached job's output, so far and as it comes; its exit status (255 if sieci cannot get it)."""
    output = FdOutput()
    try:
        result = client.attach(job_id, output)
    except ClientError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return error.exit_code
    if result.limit:
        output.write("stderr", f"{prog}: {result.message}\n".encode())
    return result.exit_status


def detach(client, command, env=None, files=()):
    """Queue the job of ``command`` and print its id; exit status 0 once a master has it."""
    job_id = client.detach(load_program(command[0], files), command[1:], env)
    FdOutput().write(STDOUT, job_id.encode() + b"\n")
    return 0


def run_program(client, command, env=None, prog=PROG, files=(), returns=(), results=".", tty=False):
    """Run ``command`` (PROG, a file, a zipapp, a folder with __main__.py or ``-`` for stdin, and
    its ARGs) as ``python3 PROG ARG...`` would, with the files and folders at ``files`` beside
    PROG (``--with``); returns the exit status. The files it writes that match ``returns``
    (globs) come back into ``results``.

    The job's output goes to this process's stdout and stderr as it comes;
    sieci's own failures are one line on stderr and exit status 255, as is
    each returned file that could not be written. Its stdin is this
    process's, unless that is a terminal (then it is empty: see
    docs/running-jobs.md) or PROG is ``-``; with ``tty`` (-t) the job runs
    on a terminal of its own, typed on from this one (see terminal.py).
    """
    path, args = command[0], command[1:]
    output = FdOutput()
    try:
        program = load_program(path, files)
        stdin = _job_stdin(path, tty)

        def run():
            return client.run_program(program, output, args, env, shown_on_terminal(), streams_merged(),
                                      returns=returns, results=results, stdin=stdin)

        if tty:
            from sieci.client.terminal import raw_while

            result = raw_while(run, stdin)
        else:
            result = run()
    except ClientError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return error.exit_code
    if result.limit:
        output.write("stderr", f"{prog}: {result.message}\n".encode())
    output.write("stderr", os.fsencode("".join(not_returned_lines(result, prog))))
    return defaults.EXIT_FAILED if result.not_returned else result.exit_status


def not_returned_lines(result, prog=PROG, where=""):
    """A line for people for each file the job returned that could not be written (``where``: before
    its name, the job's in a batch)."""
    return [f"{prog}: error: {where}{'' if name is None else _shown(name) + ': '}{why}\n"
            for name, why in result.not_returned]


def _shown(name):
    """A name as one line can show it: a job chose it, control characters and all."""
    return name if name.isprintable() else repr(name)


def _job_stdin(path, tty):
    """The job's stdin (a client_stdin.JobStdin), or None for an empty one: when PROG came on
    stdin, as python3's own stdin; when stdin is a terminal without -t, which a job that only
    prints would otherwise wait on; and for /dev/null, which costs nothing to leave out."""
    if tty:
        from sieci.client.stdin import JobStdin

        return JobStdin(0, tuple(os.get_terminal_size(0)))
    if path == "-" or os.isatty(0) or _is_null_device(0):
        return None
    from sieci.client.stdin import JobStdin

    return JobStdin(0)


def _is_null_device(fd):
    try:
        status = os.fstat(fd)
    except OSError:
        return True  # no stdin at all (closed): as good as an empty one
    return status.st_rdev != 0 and status.st_rdev == os.stat(os.devnull).st_rdev


def main(argv=None):
    import _signal

    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)  # `sieci-client ... | head` ends quietly, like cat
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        error.show()
        return error.exit_code
    try:
        client = Client(args.masters, connect_timeout=args.connect_timeout, timeout=args.timeout, fresh=args.fresh,
                        retries=args.retries, shuffle=args.shuffle, secret_file=args.secret_file, tls=args.tls,
                        tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key, max_return=args.max_return)
        if args.status:
            return show_status(client, args.json)
        if args.list:
            return show_jobs(client, args.json)
        if args.attach:
            return attach(client, args.attach)
        if args.cancel:
            client.cancel(args.cancel)
            return 0
        if args.detach:
            return detach(client, args.command, args.env, args.files or ())
        if args.batch:
            from sieci.client import batch

            return batch.run(client, args, PROG)
        return run_program(client, args.command, args.env, PROG, args.files or (), args.returns or (), args.results,
                           args.tty)
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
