"""The sieci-client command line, read: options, MASTER, PROG and its ARGs, and a batch's values.

The command is started once per job from shell loops, so its start-up is
kept short: the usual command line is parsed here directly, from the
declarations in options.py, and argparse (slow to import) is loaded only to
print help or to explain a mistake. A mistake of ours is a UsageError, which
command.main() shows.
"""

import os

from sieci import defaults, options
from sieci.client.client import parse_masters
from sieci.client.errors import ClientError
from sieci.options import Option, UsageError, positive_count
from sieci.wire.protocol import parse_job_id

PROG = "sieci-client"
USAGE = f"{PROG} [options] MASTER[,MASTER...] PROG [ARG...] [::: VALUE...]"


BATCH_SEPARATORS = (":::", ":::+", "::::", "::::+")  # GNU parallel's: input sources follow (batch_syntax.py)


def _halt(text):
    from sieci.client.halt import parse_halt  # only for a batch that halts

    return parse_halt(text)


# GNU parallel's, for batches (see docs/batches.md; those it does not take: gnu_options.py).
GNU_OPTIONS = [
    Option("-j", positive_count, defaults.JOBS_AT_ONCE, "batches: the same as --jobs", "N", env=False, dest="jobs"),
    Option("--keep-order", bool, False, "batches: show the jobs' output in the order of their values, as a batch "
           "does unless --ungroup (GNU parallel's -k)", env=False, short="-k"),
    Option("--tag", bool, False, "batches: put each job's values, a space apart, and a tab before each line of "
           "its output"),
    Option("--halt", _halt, None, "batches: stop starting jobs (soon) or stop at once (now) once N jobs, or N% of "
           "them, failed, succeeded or ended: WHEN,fail=N, WHEN,success=N, WHEN,done=N (GNU parallel's)",
           "WHEN,WHAT=N", shown="never"),
    Option("--dry-run", bool, False, "batches: print the command of each job the batch would run, and run none",
           env=False),
]
CLIENT_OPTIONS = options.CLIENT + GNU_OPTIONS
_BY_FLAG = {flag: option for option in CLIENT_OPTIONS for flag in (option.flag, option.short) if flag}


class Arguments:
    def __init__(self, values, positionals, batch_words):
        self.__dict__.update(values)
        self.positionals = positionals
        self.batch_words = batch_words  # from the first ':::' or '::::' on, or None


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
        values, positionals, batch_words = _parse_quickly(argv, masters_from_environment)
    except _AskArgparse as mistake:
        raise _explain_with_argparse(mistake.tokens) from None
    given = set(values)  # on the command line, not from the environment
    for option in CLIENT_OPTIONS:
        if option.dest not in values:
            values[option.dest] = _from_environment(option, environ)
    args = Arguments(values, positionals, batch_words)
    if args.json and not (args.status or args.list):
        raise _refusal("--json goes with --status or --list")
    args.env = _job_environment(args.env or [], environ)
    if _asks_masters_only(args):
        _check_masters_only(given, args)
        args = _status_arguments(args, masters_from_environment)
    else:
        args.masters, args.command = _masters_and_command(args, masters_from_environment)
        args.batch = bool(batch_words is not None or args.arg_file or args.retry_failed or args.joblog
                          or args.dry_run)
        if args.keep_order and args.ungroup:
            raise _refusal("-k (--keep-order) and --ungroup do not go together")
        _check_resuming(args)
        _check_batch_only(given, args.batch)
        _check_goes_with(given, args)
        if args.batch and "-" in args.command[:1]:
            raise _refusal("- (stdin) can only be the PROG of one job, not a batch's")
        if args.tty and (args.batch or "-" in args.command[:1]):
            raise _refusal("-t is for one job, whose stdin is this terminal (not a batch, nor PROG -)")
        if args.tty and not os.isatty(0):
            raise _refusal("-t needs a terminal, and stdin is not one")
        if args.detach and (args.batch or args.tty or args.returns or "-" in args.command[:1]):
            raise _refusal("--detach is for one job (not a batch, -t, --return nor PROG -)")
        _check_globs(args.returns or [])
        if args.with_wheels and not args.requirements:
            raise _refusal("--with-wheels goes with --requirements")
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
        if given and args.batch_words is None and not args.arg_file:
            raise _refusal(f"{flag} needs the batch's values (':::' VALUE... or -a FILE), as the run it resumes "
                           "had them")


def _check_batch_only(given, batch):
    """A batch's option (its help says "batches:") on the command line of one job is a mistake,
    not to be let pass: ``--jobs 4 M job.py a b`` runs no batch."""
    if batch:
        return
    for option in CLIENT_OPTIONS:
        if option.dest in given and option.help.startswith("batches:"):
            raise _refusal(f"{option.flag} is for a batch (':::' VALUE... or -a FILE), and this command line runs "
                           "one job")


def _check_goes_with(given, args):
    """Options on the command line that would do nothing there, refused rather than let pass."""
    for dest, flag in (("results", "--results"), ("max_return", "--max-return")):
        if dest in given and not args.returns:
            raise _refusal(f"{flag} goes with --return (the files to bring back)")
    if "timeout" in given and args.detach:
        raise _refusal("--timeout bounds the wait for a result, which --detach does not wait for (the worker's "
                       "own --timeout limits the job)")


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


# What a request that runs no job (--status, --list, --attach, --cancel) takes besides: how to reach the masters.
_MASTERS_ONLY_TAKE = {"connect_timeout", "secret_file", "tls", "tls_ca", "tls_cert", "tls_key", "json",
                      "status", "list", "attach", "cancel", "detach"}


def _check_masters_only(given, args):
    """A job's option on the command line of a request that runs no job would do nothing: refused, naming it.
    --timeout bounds --attach's wait for the job's result."""
    asked = _asks_masters_only(args)
    if "timeout" in given and asked != "--attach":
        raise _refusal(f"--timeout bounds the wait for a job's result (with --attach), and {asked} waits for none")
    for option in CLIENT_OPTIONS:
        if option.dest in given and option.dest not in _MASTERS_ONLY_TAKE | {"timeout"}:
            flags = [flag for each in CLIENT_OPTIONS if each.dest == option.dest for flag in (each.flag, each.short)
                     if flag]
            named = flags[0] + (f" ({', '.join(flags[1:])})" if flags[1:] else "")
            raise _refusal(f"{named} is for running a job, and {asked} runs none")


def _status_arguments(args, masters_from_environment):
    asked = _asks_masters_only(args)
    if len(args.positionals) > 1 or args.batch_words is not None:
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
    listed = args.batch_words is not None or args.arg_file or args.retry_failed
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
        if token in BATCH_SEPARATORS:
            return values, positionals, [token, *rest]
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
        if option is None:
            refuse_gnu_option(flag)
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
        elif option.dest == "arg_file" and option.dest in values:
            raise _refusal("-a (--arg-file) once only: GNU parallel would read each as an input source; give the "
                           "others after PROG as ':::: FILE...'")
        else:
            values[option.dest] = converted
    return values, positionals, None


def option_width(token, by_flag=None, takes_no_value=lambda option: option.kind is bool):
    """How many tokens the client option that ``token`` starts takes up (1, or 2 with its value apart),
    read as the parser above reads it; 0 when ``token`` is not one of the client's options (for
    sieci-cluster, which takes them all and must tell them from its own). ``by_flag`` and
    ``takes_no_value``: another program's options by flag, and which of them take no value."""
    by_flag = _BY_FLAG if by_flag is None else by_flag
    if token[:1] != "-" or token in ("-", "--"):
        return 0
    if token[1] != "-" and token[:2] in by_flag:
        option, has_value = by_flag[token[:2]], len(token) > 2
    else:
        flag, equals, _ = token.partition("=")
        option, has_value = by_flag.get(flag), bool(equals)
    if option is None:
        return 0
    return 1 if takes_no_value(option) or has_value else 2


def refuse_gnu_option(flag, prog=PROG):
    """A UsageError of one line for GNU parallel's options that sieci-client does not take."""
    from sieci.client.gnu_options import NOT_TAKEN

    if flag in NOT_TAKEN:
        raise UsageError(f"{flag} is GNU parallel's, and {prog} does not take it: {NOT_TAKEN[flag]}", "", prog)


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
               f"past its time limit or --timeout passed; {defaults.EXIT_OTHER_LIMIT} if it hit another limit; "
               f"{defaults.EXIT_FAILED} "
               f"if sieci could not get a result (the reason is on stderr); {defaults.EXIT_USAGE} for a bad "
               "command line. A batch exits 0 if every job exited 0, else with the number of jobs that did not "
               f"({defaults.MOST_FAILURES_COUNTED + 1} for more than {defaults.MOST_FAILURES_COUNTED}), or "
               f"{defaults.EXIT_FAILED} if sieci could not run it at all. "
               "Each option can also be set in the environment variable named in brackets.")
    parser.add_argument("positionals", nargs="*", metavar="MASTER[,MASTER...] PROG [ARG...]",
                        help="the masters' client addresses (HOST:PORT, :PORT or PORT; or SIECI_MASTERS), then "
                             "the Python program (a file; - for stdin) and its arguments; options go before PROG")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    for option in CLIENT_OPTIONS:
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
