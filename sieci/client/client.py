"""The client library: runs jobs on a sieci cluster, through any of its masters.

Client fails over between masters; client_link.ClientLink makes one attempt
through one master and reads its results.

The sieci-client command (client_command.py) is built on it. It is loaded
once per job from shell loops, so it imports no gevent and little else: the
bare ``_socket`` module rather than ``socket`` (unless something, such as
gevent's patching or TLS, has loaded ``socket`` already).
"""

import os
import sys
import time

from sieci import defaults
from sieci.wire import protocol, upload_format
from sieci.wire.address import AddressError, parse_address
from sieci.client.link import ClientError, ClientLink, JobLost, NeedsInline, NotAccepted, ReattachFailed

FIRST_RETRY_PAUSE = 0.5
LAST_RETRY_PAUSE = 8.0


class OutputFailed(ClientError):
    """The job's output could not be written where it goes (a full disk, say)."""


class StdinCannotGo(ClientError):
    """The job's stdin cannot reach it: a classic master stands in the way of a long or a terminal one."""

    exit_code = defaults.EXIT_USAGE


def shown_on_terminal(fd=1):
    return os.isatty(fd)


def streams_merged(stdout_fd=1, stderr_fd=2):
    """Whether stdout and stderr go to one place (``2>&1``, one terminal), where their order shows."""
    try:
        out, err = os.fstat(stdout_fd), os.fstat(stderr_fd)
    except OSError:
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)


class FdOutput:
    """Writes the job's streams to file descriptors, whole, as they arrive."""

    BIG_WRITE = 1 << 16

    def __init__(self, stdout_fd=1, stderr_fd=2):
        self.fds = {protocol.STDOUT: stdout_fd, protocol.STDERR: stderr_fd}
        self._widened = set()
        self._pipes = {}

    def pipe_for(self, stream):
        """The stream's splice.OutputPipe if its fd is a blocking pipe, which a socket can splice into; else None."""
        if stream not in self._pipes:
            from sieci import pipes, splice

            fd = self.fds[stream]
            self._pipes[stream] = splice.OutputPipe(fd) if pipes.is_blocking_pipe(fd) else None
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
            from sieci import pipes

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


def read_code(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror or error}") from None


class Program:
    """What a job runs: the program's ``code`` and ``filename``, its ``files`` (a bundle.Bundle,
    or None), and whether it is a folder of that bundle (``directory``), run as ``python3 FOLDER``."""

    def __init__(self, code, filename, files=None, directory=False):
        self.code = code
        self.filename = filename
        self.files = files
        self.directory = directory

    @property
    def fields(self):
        """The upload header's fields that name the files, and say the program is a folder."""
        if self.files is None:
            return []
        wanted = upload_format.FilesWanted(self.files.digest, self.files.size)
        return [wanted.field] + ([upload_format.RUN_DIRECTORY] if self.directory else [])


def load_program(path, files=()):
    """The Program at ``path`` (a file, a zipapp, a folder with __main__.py, or - for stdin), with the
    files and folders at the paths ``files`` beside it, as ``--with`` places them (bundle.name_beside)."""
    if path != "-" and os.path.isdir(path):
        return _folder_program(path, files)
    filename = path if path != "-" else "stdin.py"
    return Program(read_code(path), filename, pack_files(files, filename) if files else None)


def _folder_program(path, files):
    """A folder with __main__.py: the bundle holds it, under its name, and ``files`` beside it."""
    if not os.path.isfile(os.path.join(path, "__main__.py")):
        raise ClientError(f"can't find '__main__' module in {path!r}")
    folder = os.path.abspath(path)
    name = os.path.basename(folder)
    if not upload_format.is_plain_name(name):
        raise ClientError(f"{path}: a program folder travels under its name, which must be plain "
                          "(letters, digits, '.', '_' and '-', not starting with '.')")
    return Program(b"", name, _pack([folder, *files], os.path.dirname(folder)), directory=True)


def pack_files(paths, filename):
    """The bundle.Bundle of the files and folders at ``paths``, as they lie beside the program
    ``filename`` (whose own file is left out)."""
    return _pack(paths, os.path.dirname(filename) or ".", [os.path.basename(filename)])


def _pack(paths, beside, leave_out=()):
    from sieci.wire.bundle import PackError, pack

    try:
        files = pack(paths, beside, leave_out)
    except PackError as error:
        raise ClientError(f"--with: {error}") from None
    for path, why in files.skipped:
        sys.stderr.write(f"sieci: warning: --with: left out {path} ({why})\n")
    return files


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


# Room for the fields in an upload's first line, which a master takes up to 64 KiB long.
MAX_HEADER_FIELDS = 60 << 10


def job_fields(filename, args=(), env=None, terminal=False, merged=False, fresh=False, returns=()):
    """The upload header's fields: extended results, the file's name, its arguments and environment,
    whether its output is shown on a ``terminal`` and with stdout and stderr ``merged``, whether it
    asks for a ``fresh`` interpreter, and the fields that ask for files back (``returns``)."""
    fields = [protocol.EXTENDED]
    fields += [upload_format.STDOUT_ON_TERMINAL] if terminal else []
    fields += [upload_format.STDERR_WITH_STDOUT] if merged else []
    fields += [upload_format.FRESH_INTERPRETER] if fresh else []
    name = os.path.basename(filename).encode("utf-8", "replace")
    if name and not any(c in name for c in b" \t\r\n\x0b\x0c"):
        fields.append(b"name=" + name)
    try:
        fields += upload_format.encode_arguments(args, env or {})
    except protocol.LocalProtocolError as error:
        raise ClientError(str(error)) from None
    fields += returns
    if sum(len(field) + 1 for field in fields) > MAX_HEADER_FIELDS:
        raise ClientError(f"the arguments and environment are too long: at most {MAX_HEADER_FIELDS >> 10} KiB "
                          "travel with a job (each byte not a letter or digit counts three)")
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

    With ``fresh``, every job asks for an interpreter of its own (see ``run``).
    """

    def __init__(self, masters, connect_timeout=defaults.CONNECT_TIMEOUT, timeout=None, retries=0,
                 shuffle=False, secret=None, secret_file=None, tls=None, tls_ca=None, tls_cert=None, tls_key=None,
                 max_return=defaults.MAX_RETURN, fresh=False):
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
        collected = CollectedOutput() if output is None else None
        fresh = self.fresh if fresh is None else fresh
        fields = [*job_fields(program.filename, args, env, terminal, merged, fresh, self._return_fields(returns)),
                  *program.fields]
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

    def detach(self, program, args=(), env=None, fresh=None):
        """Queue a Program (load_program's) to run with no client attached, its stdin empty; its
        id (16 hex digits), with which ``attach`` gets its output later. ClientError if no
        master took it."""
        fresh = self.fresh if fresh is None else fresh
        fields = [*job_fields(program.filename, args, env, fresh=fresh), *program.fields]
        failures = []
        for master in self._masters():
            try:
                return master.detach(protocol.as_payload(program.code), fields, program.files)
            except NotAccepted as error:
                failures.append(str(error))
        raise NotAccepted("no master took the job: " + "; ".join(failures))

    def attach(self, job_id, output=None):
        """The Result of the detached job ``job_id``, from the master that keeps it; its output
        goes to ``output`` as it comes (else into the Result). ClientError if no master keeps it."""
        collected = CollectedOutput() if output is None else None
        result = self._first_master(lambda master: master.attach(job_id, output or collected))
        if collected is not None:
            result.stdout, result.stderr = collected.bytes(protocol.STDOUT), collected.bytes(protocol.STDERR)
        return result

    def cancel(self, job_id):
        """Cancel the queued or running job ``job_id``, at whichever master has it."""
        self._first_master(lambda master: master.cancel(job_id))

    def jobs(self):
        """Ask every master for its jobs: a list of (address, dict or ClientError)."""
        return self._ask_each(ClientLink.jobs)

    def _first_master(self, request):
        """``request(master)`` at each master in turn, until one answers; ClientError if none does."""
        failures = []
        for master in self._masters():
            try:
                return request(master)
            except JobLost:
                raise
            except ClientError as error:
                failures.append(str(error))
        raise ClientError("; ".join(failures))

    def _return_fields(self, globs):
        if not globs:
            return []
        from sieci.wire.returns import encode_returns

        try:
            return encode_returns(globs, self.max_return)
        except ValueError as error:
            raise ClientError(str(error)) from None

    def _run(self, code, fields, output, files=None, wanted=None, stdin=None):
        """``files``: the program's bundle.Bundle; ``wanted``: ``(folder, globs)``, where the files it
        returns go and which it may return; ``stdin``: a client_stdin.JobStdin."""
        started = time.monotonic()
        masters = self._masters()
        if self.shuffle:
            import random

            random.shuffle(masters)
        payload = protocol.as_payload(code)
        if self.retries and stdin is None:  # a broken connection attaches again to the job: see ClientLink.run_job
            fields = [*fields, upload_format.KEEP_FIELD]
        deadline = time.monotonic() + self.timeout if self.timeout else None
        failures, retries_left, position, passed_over = [], self.retries, 0, 0
        pause = FIRST_RETRY_PAUSE
        while True:
            master = masters[position % len(masters)]
            position += 1
            attempt_output = HeldOutput() if self.retries else output
            returned = self._results_folder(wanted)
            try:
                result = master.run_job(payload, fields, attempt_output, deadline, files, returned, stdin,
                                        reattach=self.retries)
            except TimeoutError:
                raise ClientError(f"no result within the --timeout of {self.timeout:g} s") from None
            except NeedsInline as error:
                fields, payload = _inline(code, fields, stdin, files, error)
                stdin, files, position = None, None, position - 1  # the same master again
                continue
            except NotAccepted as error:
                failures.append(str(error))
                passed_over += 1
                if passed_over < len(masters):
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
                if retries_left == 0 or (stdin is not None and stdin.started) or isinstance(error, ReattachFailed):
                    raise
                retries_left, passed_over = retries_left - 1, 0
                failures.append(str(error))
                continue
            if self.retries:
                attempt_output.replay(output)
            result.seconds = time.monotonic() - started
            if returned is not None:
                _note_files(result, returned)
            return result

    def _results_folder(self, wanted):
        """Where an attempt writes the files its job returns (each attempt afresh), or None."""
        if wanted is None:
            return None
        from sieci.client.results_folder import ResultsFolder

        return ResultsFolder(*wanted, self.max_return)

    def status(self):
        """Ask every master for its status: a list of (address, dict or ClientError)."""
        return self._ask_each(ClientLink.status)

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


def _inline(code, fields, stdin, files, refusal):
    """The upload's fields and payload with ``stdin`` (a JobStdin, or None) and ``files`` (a
    bundle.Bundle, or None) inline, for a classic master, which relays one block only (``refusal``
    says it stands in the way); StdinCannotGo if stdin cannot go so."""
    if stdin is None and files is None:
        raise NotAccepted(str(refusal))  # they went inline already: the worker is not making sense
    data = None if stdin is None else _inline_stdin(stdin, refusal)
    bundle = {} if files is None else {"bundle": files.data, "bundle_digest": files.digest}
    inline_fields, payload = upload_format.encode_upload_payload(code, stdin=data, **bundle)
    return [field for field in fields if field != upload_format.STDIN_STREAM] + inline_fields, payload


def _inline_stdin(stdin, refusal):
    if stdin.terminal:
        raise StdinCannotGo(f"-t needs a sieci master all the way to the worker ({refusal})")
    data = stdin.read_inline(defaults.MAX_INLINE_STDIN)
    if data is None:
        raise StdinCannotGo(f"stdin is longer than the {defaults.MAX_INLINE_STDIN >> 10} KiB that can go with the "
                            f"code through a classic master ({refusal}); use a sieci master to stream it")
    return data


def _note_files(result, files):
    result.returned, result.not_returned = files.written, files.failed
    if result.status is None:
        result.not_returned.append((None, "the job ran on a classic worker, which returns no files"))


def run(masters, code, filename="job.py", output=None, args=(), env=None, stdin=None, **settings):
    """Run ``code`` through ``masters``, output to ``output``; returns the exit status."""
    return Client(masters, **settings).run(code, filename, output or FdOutput(), args, env, stdin=stdin).exit_status
