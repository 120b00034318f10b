"""What a job runs: its program, from a file, a zipapp, a folder or stdin, with the files that go
beside it (``--with``), and the upload header's fields that describe the job."""

import os
import sys

from sieci.client.errors import ClientError
from sieci.wire import protocol, upload_format


def read_code(path):
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ClientError(f"cannot read {path}: {error.strerror or error}") from None


# The file name a program that came on stdin has on a worker that runs it as a file (a classic one).
STDIN_FILENAME = "stdin.py"


class Program:
    """What a job runs: the program's ``code`` and ``filename``, its ``files`` (a bundle.Bundle,
    or None), and whether it is a folder of that bundle (``directory``), run as ``python3 FOLDER``.
    The ``filename`` ``-`` is code that came on stdin, run as ``python3 -`` runs it (``from_stdin``)."""

    def __init__(self, code, filename, files=None, directory=False):
        self.code = code
        self.from_stdin = filename == "-"
        self.filename = STDIN_FILENAME if self.from_stdin else filename
        self.files = files
        self.directory = directory
        self.environment_fields = []  # its requirements' (JobEnvironment.apply)

    @property
    def fields(self):
        """The upload header's fields that name the files, say the program is a folder or came on stdin,
        and give its environment's requirements."""
        fields = [upload_format.RUN_STDIN] if self.from_stdin else []
        if self.files is not None:
            fields.append(upload_format.FilesWanted(self.files.digest, self.files.size).field)
            fields += [upload_format.RUN_DIRECTORY] if self.directory else []
        return fields + self.environment_fields


def load_program(path, files=()):
    """The Program at ``path`` (a file, a zipapp, a folder with __main__.py, or - for stdin), with the
    files and folders at the paths ``files`` beside it, as ``--with`` places them (bundle.name_beside)."""
    if path != "-" and os.path.isdir(path):
        return _folder_program(path, files)
    beside = path if path != "-" else STDIN_FILENAME
    return Program(read_code(path), path, pack_files(files, beside) if files else None)


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
        fields.append(upload_format.NAME_FIELD + b"=" + name)
    try:
        fields += upload_format.encode_arguments(args, env or {})
    except protocol.LocalProtocolError as error:
        raise ClientError(str(error)) from None
    fields += returns
    if sum(len(field) + 1 for field in fields) > MAX_HEADER_FIELDS:
        raise ClientError(f"the arguments and environment are too long: at most {MAX_HEADER_FIELDS >> 10} KiB "
                          "travel with a job (each byte not a letter or digit counts three)")
    return fields


def return_fields(globs, max_return):
    """The upload header's fields that ask for the files matching ``globs`` back, at most ``max_return``
    bytes of them (``--return``)."""
    if not globs:
        return []
    from sieci.wire.returns import encode_returns

    try:
        return encode_returns(globs, max_return)
    except ValueError as error:
        raise ClientError(str(error)) from None


class JobEnvironment:
    """The environment a Client's jobs run in (``--requirements``, ``--with-wheels``): the requirements
    file's bytes, and the wheels that go in each job's files bundle (upload_format.WHEELS_FOLDER)."""

    def __init__(self, requirements=None, wheels=None):
        """``requirements``: a requirements file's path (or its text, as bytes); ``wheels``: a folder of wheels."""
        if wheels is not None and requirements is None:
            raise ClientError("--with-wheels goes with --requirements")
        self.requirements = requirements if isinstance(requirements, (bytes, type(None))) else _read(requirements)
        self.wheels = _wheels_in(wheels) if wheels is not None else []
        self.fields = []
        if self.requirements is not None:
            try:
                self.fields = upload_format.encode_requirements(self.requirements, bool(self.wheels))
            except protocol.LocalProtocolError as error:
                raise ClientError(f"--requirements: {error}") from None
        self._bundles = {}  # the digest of a program's bundle (or None): that bundle with the wheels

    def apply(self, program):
        """``program`` as it runs in this environment: its fields, and the wheels in its bundle."""
        if self.requirements is None:
            return program
        files = program.files
        if self.wheels:
            digest = files.digest if files is not None else None
            if digest not in self._bundles:
                self._bundles = {digest: _with_wheels(files, self.wheels)}
            files = self._bundles[digest]
        with_environment = Program(program.code, "-" if program.from_stdin else program.filename, files,
                                   program.directory)
        with_environment.environment_fields = self.fields
        return with_environment


def _read(path):
    try:
        with open(path, "rb") as file:
            return file.read(upload_format.MAX_REQUIREMENTS + 1)  # more is refused: /dev/zero must end
    except OSError as error:
        raise ClientError(f"cannot read --requirements {path}: {error.strerror or error}") from None


def _wheels_in(folder):
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(".whl"))
    except OSError as error:
        raise ClientError(f"cannot read --with-wheels {folder}: {error.strerror or error}") from None
    paths = [os.path.join(folder, name) for name in names if os.path.isfile(os.path.join(folder, name))]
    if not paths:
        raise ClientError(f"--with-wheels {folder}: no wheel (*.whl) there")
    return paths


def _with_wheels(files, wheels):
    """A bundle.Bundle of ``files`` (a Bundle, or None) and the ``wheels`` in its wheels folder."""
    import zlib

    from sieci.wire import bundle

    entries = b""
    if files is not None:
        inflated = zlib.decompress(files.data)
        entries = inflated[len(bundle.MAGIC):-len(bundle.END)]
        if b" %s\n%s" % (b"%d" % len(upload_format.WHEELS_FOLDER), upload_format.WHEELS_FOLDER.encode()) in entries:
            raise ClientError(f"--with: {upload_format.WHEELS_FOLDER} is the wheels' folder in the job's")
    folder = upload_format.WHEELS_FOLDER.encode()
    parts = [bundle.MAGIC, entries, b"%s 0 %d\n%s" % (bundle.FOLDER, len(folder), folder)]
    for path in wheels:
        name = folder + b"/" + os.fsencode(os.path.basename(path))
        try:
            with open(path, "rb") as wheel:
                data = wheel.read()
        except OSError as error:
            raise ClientError(f"cannot read {path}: {error.strerror or error}") from None
        parts += [b"%s %d %d\n%s" % (bundle.FILE, len(data), len(name), name), data]
    return bundle.Bundle(zlib.compress(b"".join(parts + [bundle.END]), bundle.COMPRESSION_LEVEL))
