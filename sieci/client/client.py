"""The client library: runs jobs on a sieci cluster, through any of its masters.

Client hands each job to failover.Failover, which tries its masters in turn;
link.ClientLink makes one attempt through one master, and
master_requests.py asks one master the rest (status, jobs, cancel, attach,
detach): loaded only then, as running a job needs none of it.

The sieci-client command (command.py) is built on it. It is loaded
once per job from shell loops, so it imports no gevent and little else: the
bare ``_socket`` module rather than ``socket`` (unless something, such as
gevent's patching or TLS, has loaded ``socket`` already).
"""

import sys

from sieci import defaults
from sieci.client.errors import ClientError, JobLost, NotAccepted, TimedOut
from sieci.client.failover import Failover
from sieci.client.link import ClientLink
from sieci.client.output import CollectedOutput, FdOutput
from sieci.client.program import JobEnvironment, Program, job_fields, load_program, pack_files, return_fields
from sieci.wire import protocol
from sieci.wire.address import AddressError, parse_address


def load_secret(path):
    """The secret in the file at ``path``; a file other users can read is warned about on stderr."""
    from sieci.wire.auth import SecretError, read_secret

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

    With ``fresh``, every job asks for an interpreter of its own (see ``run``). With ``requirements``
    (a requirements file's path, or its text as bytes), every job runs in a virtual environment of
    those packages, built on the worker, from the wheels in the folder ``wheels`` alone if given
    (``--requirements``, ``--with-wheels``: see docs/running-jobs.md).
    """

    def __init__(self, masters, connect_timeout=defaults.CONNECT_TIMEOUT, timeout=None, retries=0,
                 shuffle=False, secret=None, secret_file=None, tls=None, tls_ca=None, tls_cert=None, tls_key=None,
                 max_return=defaults.MAX_RETURN, fresh=False, requirements=None, wheels=None):
        self.addresses = parse_masters(masters)
        self.max_return = max_return
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.retries = retries
        self.shuffle = shuffle
        self.secret = secret if secret_file is None else load_secret(secret_file)
        if tls is True or tls_ca or tls_cert:  # else no need to load ssl, slow to import
            from sieci.wire import tls as tls_module

            try:
                tls = tls_module.context("peer", tls_ca, tls_cert, tls_key, on=True)
            except tls_module.TLSError as error:
                raise ClientError(str(error)) from None
        self.tls = tls or None
        self.fresh = fresh
        self.environment = JobEnvironment(requirements, wheels)

    def run(self, code, filename="job.py", output=None, args=(), env=None, terminal=False, merged=False,
            files=None, returns=(), results=".", fresh=None, stdin=None):
        """Run ``code`` (bytes or str) as ``python3 FILENAME ARGS...``, with the variables of
        ``env`` (a dict) added to the job's environment; returns its Result. ``terminal``: its
        stdout is line-buffered, as on a terminal; ``merged``: its stdout and stderr are one pipe,
        whose writes keep their order (then all its output comes as stdout). ``files``: the
        paths of files and folders to place beside the program, as ``--with`` does (from the
        folder of ``filename``), or a bundle.Bundle packed once for many jobs (pack_files).
        ``fresh``: the job runs in an interpreter started for it, not one forked from the worker's
        fork server (slower to start; see docs/running-jobs.md for what differs); None: the
        Client's setting.

        ``returns``: globs (``out/*.csv``, ``**/*.png``) of files the job writes in its folder
        to bring back, under the folder ``results`` (made when the first file comes), at most
        ``max_return`` bytes of them; Result.returned and Result.not_returned say how it went.

        ``stdin`` (bytes, or a binary file object read as the job runs) is the job's stdin,
        streamed while it runs; without it the job's stdin is empty. Through a classic master
        it goes with the code, up to MAX_INLINE_STDIN bytes (StdinCannotGo beyond). A job
        whose stdin has started to stream is not run again (``retries``) once it is lost.

        Without ``output`` the job's stdout and stderr are collected into the
        Result. With one (anything with ``write(stream, data)``, such as
        FdOutput) they go there as they arrive; with retries, only once the
        job has ended, so a re-run never shows twice. Raises ClientError
        when sieci cannot get a result.
        """
        if isinstance(code, str):
            code = code.encode()
        from sieci.wire.bundle import Bundle

        if files is not None and not isinstance(files, Bundle):
            files = pack_files(files, filename)
        return self.run_program(Program(code, filename, files), output, args, env, terminal, merged,
                                returns=returns, results=results, fresh=fresh, stdin=stdin)

    def run_path(self, path, args=(), env=None, files=(), output=None, terminal=False, merged=False, **settings):
        """Run the program at ``path`` as ``python3 PATH ARGS...`` would: a file, a zipapp, a folder
        with __main__.py, or - for stdin; with the files and folders at ``files`` beside it; the
        other ``settings`` as ``run``'s."""
        return self.run_program(load_program(path, files), output, args, env, terminal, merged, **settings)

    def run_program(self, program, output=None, args=(), env=None, terminal=False, merged=False, returns=(),
                    results=".", fresh=None, stdin=None):
        """Run a Program (load_program's); as ``run``."""
        program = self.environment.apply(program)
        collected = CollectedOutput() if output is None else None
        fresh = self.fresh if fresh is None else fresh
        asked_back = return_fields(returns, self.max_return)
        fields = [*job_fields(program.filename, args, env, terminal, merged, fresh, asked_back), *program.fields]
        wanted = (results, list(returns)) if returns else None
        if stdin is None:
            result = self._run(program.code, fields, output or collected, program.files, wanted)
        else:
            from sieci.client.stdin import JobStdin

            stdin = stdin if isinstance(stdin, JobStdin) else JobStdin(stdin)
            try:
                result = self._run(program.code, fields + stdin.fields(), output or collected, program.files,
                                   wanted, stdin)
            finally:
                stdin.close()
        if collected is not None:
            result.stdout, result.stderr = collected.bytes(protocol.STDOUT), collected.bytes(protocol.STDERR)
        return result

    def detach(self, program, args=(), env=None, fresh=None, stdin=None):
        """Queue a Program (load_program's) to run with no client attached, its stdin ``stdin``
        (bytes, which go with the code) or empty; its id (16 hex digits), with which ``attach``
        gets its output later. ClientError if no master took it."""
        from sieci.client import master_requests

        fresh = self.fresh if fresh is None else fresh
        program = self.environment.apply(program)
        fields = [*job_fields(program.filename, args, env, fresh=fresh), *program.fields]
        payload = protocol.as_payload(program.code)
        if stdin is not None:
            from sieci.wire.upload_format import encode_upload_payload

            inline_fields, payload = encode_upload_payload(program.code, stdin=stdin)
            fields += inline_fields
        failures = []
        for master in self._masters():
            try:
                return master_requests.detach(master, payload, fields, program.files)
            except NotAccepted as error:
                failures.append(str(error))
        raise NotAccepted("no master took the job: " + "; ".join(failures))

    def attach(self, job_id, output=None):
        """The Result of the detached job ``job_id``, from the master that keeps it; its output
        goes to ``output`` as it comes (else into the Result). ClientError if no master keeps it; TimedOut if
        the job has no result within the Client's ``timeout``."""
        from sieci.client import master_requests

        collected = CollectedOutput() if output is None else None
        result = self._first_master(lambda master: master_requests.attach(master, job_id, output or collected,
                                                                          self.timeout))
        if collected is not None:
            result.stdout, result.stderr = collected.bytes(protocol.STDOUT), collected.bytes(protocol.STDERR)
        return result

    def cancel(self, job_id):
        """Cancel the queued or running job ``job_id``, at whichever master has it."""
        from sieci.client import master_requests

        self._first_master(lambda master: master_requests.cancel(master, job_id))

    def jobs(self):
        """Ask every master for its jobs: a list of (address, dict or ClientError)."""
        from sieci.client import master_requests

        return self._ask_each(master_requests.jobs)

    def _first_master(self, request):
        """``request(master)`` at each master in turn, until one answers; ClientError if none does."""
        failures = []
        for master in self._masters():
            try:
                return request(master)
            except (JobLost, TimedOut):
                raise
            except ClientError as error:
                failures.append(str(error))
        raise ClientError("; ".join(failures))

    def _run(self, code, fields, output, files=None, wanted=None, stdin=None):
        masters = self._masters()
        if self.shuffle:
            import random

            random.shuffle(masters)
        return Failover(masters, self.retries, self.timeout, self.max_return).run(code, fields, output, files,
                                                                                  wanted, stdin)

    def status(self):
        """Ask every master for its status: a list of (address, dict or ClientError)."""
        from sieci.client import master_requests

        return self._ask_each(master_requests.status)

    def _ask_each(self, request):
        answers = []
        for master in self._masters():
            try:
                answers.append((master.where, request(master)))
            except ClientError as error:
                answers.append((master.where, error))
        return answers

    def _masters(self):
        return [ClientLink(address, self.connect_timeout, self.tls, self.secret) for address in self.addresses]


def run(masters, code, filename="job.py", output=None, args=(), env=None, stdin=None, **settings):
    """Run ``code`` through ``masters``, output to ``output``; returns the exit status."""
    return Client(masters, **settings).run(code, filename, output or FdOutput(), args, env, stdin=stdin).exit_status
