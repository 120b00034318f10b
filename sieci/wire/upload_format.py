"""What an upload carries besides its code, with no I/O: the header's fields that say how the job
runs (its arguments, environment, terminal, interpreter, stdin and files; --return's globs are
returns.py's) and the parts of its payload that a classic master forces inline. See
docs/protocol.md, "Header fields" and "Upload parts"; protocol.py has the messages and their order.
"""

import os

from sieci.wire.protocol import DIGEST_DIGITS, LocalProtocolError, RemoteProtocolError


# A job's arguments and environment travel as header fields, ``arg=`` and ``env=``, each a
# text percent-encoded (its bytes as the job's system would give them: os.fsencode).
ARG_FIELD = b"arg"
NAME_FIELD = b"name"  # the program's file name, as the client has it
ENV_FIELD = b"env"
# Where the client shows the job's output: on a terminal (the job's stdout is then line-buffered,
# as Python has it there), and in one file for both streams (the job gets one pipe for both).
STDOUT_ON_TERMINAL = b"stdout=tty"
STDERR_WITH_STDOUT = b"stderr=stdout"
# The client asks for an interpreter started for this job alone, not forked from the worker's fork server.
FRESH_INTERPRETER = b"fresh"
# The client will stream the job's stdin once the job is accepted; the program's files (a bundle,
# ``files=<sha256>.<size>``). A sieci worker needs a sieci master (RELAY) for either, unless the
# upload carries them inline (``code=``: see encode_upload_payload). Its refusals when it lacks one
# (ERROR <reason>, to a classic master) tell the client to upload again with them inline.
STDIN_STREAM = b"stdin=stream"
# The job runs on a pseudo-terminal of ``tty=<cols>x<rows>`` (its stdin streams too: keystrokes).
TTY_FIELD = b"tty"
STDIN_NEEDS_RELAY = b"stdin cannot stream through a classic master"
FILES_FIELD = b"files"
CODE_FIELD = b"code"
# An upload the client leaves at once: the master answers DETACHED job=<id>, runs it, and keeps its results.
DETACH_FIELD = b"detach"
# An upload whose client re-attaches if its connection breaks (sieci-client --retries): the master keeps its
# results as for a detached job, and, if the client leaves, runs it on for --client-timeout seconds for it.
KEEP_FIELD = b"keep"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~/:,@+=")
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")


def quote(text):
    """``text`` as a header field's value: no space, no control character, nothing but ASCII."""
    return b"".join(bytes((byte,)) if byte in _UNRESERVED else b"%%%02X" % byte for byte in os.fsencode(text))


def unquote(value):
    """The text a quoted field's value holds; RemoteProtocolError if it is not one."""
    pieces = value.split(b"%")
    data = bytearray(pieces[0])
    for piece in pieces[1:]:
        if len(piece) < 2 or not all(byte in _HEX_DIGITS for byte in piece[:2]):
            raise RemoteProtocolError(f"a malformed %-escape in {value[:80]!r}")
        data.append(int(piece[:2], 16))
        data += piece[2:]
    return os.fsdecode(bytes(data))


def encode_arguments(args, env):
    """The ``arg=`` and ``env=`` fields of a job's arguments and environment (a dict);
    LocalProtocolError for what no process could be given."""
    fields = [ARG_FIELD + b"=" + quote(arg) for arg in args]
    fields += [ENV_FIELD + b"=" + quote(f"{variable}={value}") for variable, value in env.items()]
    _check_arguments(args, env, LocalProtocolError)
    return fields


def decode_arguments(header):
    """The job's arguments (a list) and the variables its client adds to its environment (a dict)."""
    args = [unquote(value) for value in header.fields_named(ARG_FIELD)]
    env = {}
    for value in header.fields_named(ENV_FIELD):
        variable, equals, text = unquote(value).partition("=")
        if not equals:
            raise RemoteProtocolError(f"not an environment variable: {value[:80]!r}")
        env[variable] = text
    _check_arguments(args, env, RemoteProtocolError)
    return args, env


def _check_arguments(args, env, error):
    if any("\0" in arg for arg in args):
        raise error("an argument with a NUL byte")
    for variable, value in env.items():
        if not variable or "=" in variable or "\0" in variable + value:
            raise error(f"not an environment variable: {variable[:80]!r}")


_PLAIN_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def is_plain_name(name):
    """Whether ``name`` (text) is a plain, harmless file name, which a worker keeps for the job's file."""
    return bool(name) and set(name) <= _PLAIN_NAME_CHARACTERS and not name.startswith(".")


# A directory program: the bundle holds the folder (``name=``), whose __main__.py runs, as ``python3 DIR``.
RUN_DIRECTORY = b"run=dir"
# The program's code came on the client's stdin: it runs as ``python3 -`` runs it (argv[0] '-', '<stdin>').
RUN_STDIN = b"run=stdin"
MISSING_FILES = b"missing files"  # + the digest


class FilesWanted:
    """An upload's ``files=<sha256>.<size>``: the bundle's SHA-256 ``digest`` (64 lower-case hex digits,
    as text) and its ``size`` in bytes."""

    def __init__(self, digest, size):
        self.digest = digest
        self.size = size

    @property
    def field(self):
        return FILES_FIELD + b"=%s.%d" % (self.digest.encode("ascii"), self.size)

    def __eq__(self, other):
        return isinstance(other, FilesWanted) and (self.digest, self.size) == (other.digest, other.size)

    def __repr__(self):
        return f"FilesWanted({self.digest!r}, {self.size})"


def parse_files_value(value):
    """The FilesWanted that a ``files=`` value names; RemoteProtocolError unless it is exactly
    64 lower-case hex digits, a dot and a size (the digest names a file in a store: nothing else may)."""
    digest, dot, size = value.partition(b".")
    if len(digest) != 64 or not set(digest) <= DIGEST_DIGITS or not dot or not size.isdigit() or len(size) > 15:
        raise RemoteProtocolError(f"a malformed files= field: {value[:80]!r}")
    return FilesWanted(digest.decode("ascii"), int(size))


def needs_inline(reason):
    """Whether a worker's refusal asks for the upload again with its stdin and files inline."""
    return reason.endswith(STDIN_NEEDS_RELAY) or MISSING_FILES + b" " in reason


def files_wanted(header):
    """The upload's FilesWanted, or None; RemoteProtocolError if its ``files=`` is malformed."""
    value = header.field(FILES_FIELD)
    return None if value is None else parse_files_value(value)


# Parts of an upload's payload after its code (with ``code=<length>``): ``<tag> <length>[ <more>]``,
# then that many bytes. The payload ends with one newline more, so its last line is whole.
STDIN_PART = b"i"
FILES_PART = b"f"


class UploadPayload:
    """What an upload's payload holds: the code, and, inline, the job's stdin and its files' bundle."""

    def __init__(self, code, stdin=None, bundle=None, bundle_digest=None):
        self.code = code
        self.stdin = stdin
        self.bundle = bundle
        self.bundle_digest = bundle_digest  # hex, as the part names it

    def __eq__(self, other):
        return isinstance(other, UploadPayload) and vars(self) == vars(other)

    def __repr__(self):
        return f"UploadPayload({vars(self)!r})"


def encode_upload_payload(code, stdin=None, bundle=None, bundle_digest=None):
    """``(fields, payload)``: an upload's ``code=`` field and payload, with ``stdin`` and ``bundle``
    inline; with neither, no field and the code alone, as classic peers expect."""
    if stdin is None and bundle is None:
        return [], code
    parts = [code]
    if stdin is not None:
        parts += [b"%s %d\n" % (STDIN_PART, len(stdin)), stdin]
    if bundle is not None:
        parts += [b"%s %d %s\n" % (FILES_PART, len(bundle), bundle_digest.encode("ascii")), bundle]
    return [CODE_FIELD + b"=%d" % len(code)], b"".join(parts) + b"\n"


def decode_upload_payload(header, payload):
    """The UploadPayload of an upload with ``header``; RemoteProtocolError if the parts are malformed."""
    length = header.field(CODE_FIELD)
    if length is None:
        return UploadPayload(payload)
    if not length.isdigit() or int(length) > len(payload) or not payload.endswith(b"\n"):
        raise RemoteProtocolError("the upload's parts do not add up")
    at = int(length)
    upload = UploadPayload(payload[:at])
    while at < len(payload) - 1:
        line_end = payload.find(b"\n", at)
        words = payload[at:line_end].split(b" ")
        if line_end < 0 or len(words) < 2 or not words[1].isdigit():
            raise RemoteProtocolError(f"a malformed part of the upload: {payload[at:at + 80]!r}")
        start, at = line_end + 1, line_end + 1 + int(words[1])
        if at > len(payload) - 1:
            raise RemoteProtocolError("a part of the upload runs past its end")
        _take_part(upload, words, payload[start:at])
    return upload


def _take_part(upload, words, data):
    if words[0] == STDIN_PART and len(words) == 2 and upload.stdin is None:
        upload.stdin = data
    elif words[0] == FILES_PART and len(words) == 3 and upload.bundle is None:
        upload.bundle, upload.bundle_digest = data, words[2].decode("ascii", "replace")
    else:
        raise RemoteProtocolError(f"an unknown or repeated part of the upload: {b' '.join(words)[:80]!r}")


# The job runs in a virtual environment of packages: ``requirements=<text>`` is a requirements file's whole
# text (pip's format), written as arg='s; with ``wheels``, the job's files bundle holds wheels in the folder
# WHEELS_FOLDER, which the environment installs from, with no index. See docs/protocol.md, "Environments".
REQUIREMENTS_FIELD = b"requirements"
WHEELS_FLAG = b"wheels"
WHEELS_FOLDER = ".sieci-wheels"
MAX_REQUIREMENTS = 32 * 1024  # bytes of a requirements file: the header line holds it


def encode_requirements(requirements, wheels=False):
    """The fields of a job that runs in an environment of ``requirements`` (bytes), with the bundle's wheels
    if ``wheels``; LocalProtocolError if they cannot travel."""
    _check_requirements(requirements, LocalProtocolError)
    return [REQUIREMENTS_FIELD + b"=" + quote(os.fsdecode(requirements))] + ([WHEELS_FLAG] if wheels else [])


def decode_requirements(header):
    """``(requirements, wheels)``: the bytes of the job's requirements file and whether its bundle holds
    wheels; ``(None, False)`` for a job with no environment; RemoteProtocolError if the fields are malformed."""
    value = header.field(REQUIREMENTS_FIELD)
    wheels = WHEELS_FLAG in header.fields
    if value is None:
        if wheels:
            raise RemoteProtocolError("wheels without requirements")
        return None, False
    if wheels and header.field(FILES_FIELD) is None:
        raise RemoteProtocolError("wheels without a files bundle")
    requirements = os.fsencode(unquote(value))
    _check_requirements(requirements, RemoteProtocolError)
    return requirements, wheels


def _check_requirements(requirements, error):
    if len(requirements) > MAX_REQUIREMENTS:
        raise error(f"a requirements file of more than {MAX_REQUIREMENTS} bytes")
    if b"\0" in requirements:
        raise error("a requirements file with a NUL byte")
    try:
        requirements.decode("utf-8")
    except UnicodeDecodeError:
        raise error("a requirements file that is not UTF-8") from None
