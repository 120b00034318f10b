"""The sieci-client command: run a Python program on the cluster, like ``python3 PROG ARG...``.

Its command line is read in arguments.py. With ``:::`` (GNU parallel's),
``-a FILE``, ``--joblog`` or ``--retry-failed`` it runs a batch: see batch.py.
"""

import _signal
import os
import sys

from sieci import defaults
from sieci.client.arguments import PROG, parse_args
from sieci.client.client import Client
from sieci.client.errors import ClientError
from sieci.client.output import FdOutput, shown_on_terminal, streams_merged
from sieci.client.program import load_program
from sieci.options import UsageError
from sieci.wire.protocol import STDOUT


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
    """One master's jobs, a line each, for people: id, state, exit status, age, whether a client is
    attached, worker, program and its arguments' count (a master older than these fields gives no more
    than the age and worker). Control characters show escaped: a program's name is any client's, and
    a worker's its own."""
    from sieci.logs import escaped

    lines = [f"master {listing['master']}  jobs {len(listing['jobs'])}"]
    lines += [_job_line(job) for job in listing["jobs"]]
    return "\n".join(map(escaped, lines)) + "\n"


def _job_line(job):
    exit_status = job.get("exit_status")
    program = f"{job['program']} ({job.get('arguments', 0)} args)" if job.get("program") else ""
    return (f"  {job['id']}  {job['state']:<9} {'-' if exit_status is None else exit_status:>4} {job['age']:>10.1f} s"
            f"  {'detached' if job['detached'] else 'attached'}  {job['worker'] or '-':<21}  {program}").rstrip()


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
    """Queue the job of ``command`` and print its id; exit status 0 once a master has it. Its stdin is
    this process's, read whole first, unless that is empty as for a job run here (see _job_stdin)."""
    program = load_program(command[0], files)
    stdin = _job_stdin(command[0], tty=False)
    job_id = client.detach(program, command[1:], env, stdin=None if stdin is None else detached_stdin(stdin))
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
    from sieci.client.result import not_returned_lines

    output.write("stderr", os.fsencode("".join(not_returned_lines(result, prog))))
    return defaults.EXIT_FAILED if result.not_returned else result.exit_status


def _job_stdin(path, tty):
    """The job's stdin (a stdin.JobStdin), or None for an empty one: when PROG came on
    stdin, as python3's own stdin; when stdin is a terminal without -t, which a job that only
    prints would otherwise wait on; and for /dev/null, which costs nothing to leave out."""
    if tty:
        from sieci.client.stdin import JobStdin

        return JobStdin(0, tuple(os.get_terminal_size(0)))
    if path == "-" or os.isatty(0) or _is_null_device(0):
        return None
    from sieci.client.stdin import JobStdin

    return JobStdin(0)


def detached_stdin(stdin):
    """The bytes of ``stdin`` (a stdin.JobStdin) for a detached job, which take them with its code;
    StdinCannotGo past MAX_INLINE_STDIN."""
    from sieci.client.errors import StdinCannotGo

    try:
        data = stdin.read_inline(defaults.MAX_INLINE_STDIN)
    finally:
        stdin.close()
    if data is None:
        raise StdinCannotGo(f"--detach: stdin is longer than the {defaults.MAX_INLINE_STDIN >> 10} KiB a detached "
                            "job takes with its code (give it a file with --with, or </dev/null for none)")
    return data


def _is_null_device(fd):
    try:
        status = os.fstat(fd)
    except OSError:
        return True  # no stdin at all (closed): as good as an empty one
    return status.st_rdev != 0 and status.st_rdev == os.stat(os.devnull).st_rdev


def client_for(args, **settings):
    """The Client the command line ``args`` (parse_args's) asks for; ``settings``, keyword arguments
    of Client, in place of what it says (sieci-cluster's own master and secret)."""
    asked = dict(connect_timeout=args.connect_timeout, timeout=args.timeout, fresh=args.fresh, retries=args.retries,
                 shuffle=args.shuffle, secret_file=args.secret_file, tls=args.tls, tls_ca=args.tls_ca,
                 tls_cert=args.tls_cert, tls_key=args.tls_key, max_return=args.max_return,
                 requirements=args.requirements, wheels=args.with_wheels)
    masters = settings.pop("masters", args.masters)
    return Client(masters, **{**asked, **settings})


def main(argv=None):
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)  # `sieci-client ... | head` ends quietly, like cat
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        error.show()
        return error.exit_code
    try:
        client = client_for(args)
    except ClientError as error:
        sys.stderr.write(f"{PROG}: error: {error}\n")
        return error.exit_code
    return run_arguments(client, args)


def run_arguments(client, args, prog=PROG):
    """Do what the command line ``args`` (parse_args's) asks, through ``client``; the exit status."""
    try:
        if args.status:
            return show_status(client, args.json)
        if args.list:
            return show_jobs(client, args.json)
        if args.attach:
            return attach(client, args.attach, prog)
        if args.cancel:
            client.cancel(args.cancel)
            return 0
        if args.detach:
            return detach(client, args.command, args.env, args.files or ())
        if args.batch:
            from sieci.client import batch  # threads and spool files: loaded only for a batch

            return batch.run(client, args, prog)
        return run_program(client, args.command, args.env, prog, args.files or (), args.returns or (), args.results,
                           args.tty)
    except ClientError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return defaults.EXIT_INTERRUPTED


def run_and_exit():
    """The sieci-client program: ``main()``, then leave without Python's finalization.

    Finalization would be a share of a hello-world run from the shell worth
    saving (bench/README.md, "Latest figures", the Latency paragraph of
    stdin.py (issue 15)), and it does nothing here: the job's output and the
    status table are written straight to the fds (FdOutput), a batch closes
    its joblog itself, and the sockets close with the process. Only sys.stderr may
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
