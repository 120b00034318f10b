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
