"""Files a job returns (``--return GLOB``): which ones the client asks for, and which names it writes.

No I/O. The client asks with one ``return=<quoted glob>`` header field per
glob and ``max-return=<bytes>``, the most it takes; the worker matches the
relative path of each regular file in the job's folder against the globs
(``glob_matches``), and sends the files inside the results (their items:
results.py). The client writes a file only under a name ``name_parts``
accepts: relative, with no ``.``, ``..`` or empty component.
"""

import os
from fnmatch import fnmatchcase

from sieci.wire.protocol import RemoteProtocolError
from sieci.wire.upload_format import quote, unquote

RETURN_FIELD = b"return"
MAX_RETURN_FIELD = b"max-return"
ANY_FOLDERS = "**"  # a glob's component that matches zero or more components
# Bytes of a returned file's relative path (PATH_MAX): its item's header line stays far below a line's limit.
MAX_NAME = 4096
# What each returned file costs of --max-return besides its bytes (as a tar header does), so that many
# empty files are not free. Both ends count it.
ENTRY_BYTES = 512
# Entries of the job's folder a worker lists for --return, however many it has: past them it returns nothing
# more (the listing is the worker's memory, not the job's).
MAX_LISTED = 100_000


def split_glob(glob):
    """A glob's components (``out/**/*.csv``: ``("out", "**", "*.csv")``); ValueError, for people, if it
    could name something outside the job's folder or nothing at all."""
    if "\0" in glob:
        raise ValueError(f"--return {glob!r}: a glob cannot hold a NUL byte")
    parts = tuple(glob.split("/"))
    if glob.startswith("/"):
        raise ValueError(f"--return {glob!r}: a glob is relative to the job's folder, not absolute")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"--return {glob!r}: a glob's parts cannot be empty, '.' or '..'")
    return parts


def encode_returns(globs, max_bytes):
    """The upload header's fields that ask for the files matching ``globs``, ``max_bytes`` at most."""
    for glob in globs:
        split_glob(glob)
    return [RETURN_FIELD + b"=" + quote(glob) for glob in globs] + [MAX_RETURN_FIELD + b"=%d" % max_bytes]


def decode_returns(header):
    """``(globs, max_bytes)`` an upload asks for: each glob as its components, and the most its client
    takes (None: no bound given); RemoteProtocolError if a field is malformed."""
    try:
        globs = [split_glob(unquote(value)) for value in header.fields_named(RETURN_FIELD)]
    except ValueError as error:
        raise RemoteProtocolError(str(error)) from None
    max_bytes = header.field(MAX_RETURN_FIELD)
    if max_bytes is not None and not max_bytes.isdigit():
        raise RemoteProtocolError(f"malformed {MAX_RETURN_FIELD.decode()}= field {max_bytes[:80]!r}")
    return globs, None if max_bytes is None else int(max_bytes)


def glob_matches(glob, path):
    """Whether ``path`` (a relative path's components) matches ``glob`` (split_glob's): component by
    component with the shell's rules (``*``, ``?``, ``[...]``; a leading dot only where the glob's
    component starts with one), ``**`` matching zero or more whole components (none hidden, as bash's
    globstar)."""
    return _reachable(glob, path)[-1]


def may_match_below(glob, folder):
    """Whether a path below ``folder`` (components) may match ``glob``: a walk need not enter a folder
    for which no glob says so."""
    return any(_reachable(glob, folder)[:-1])


def _reachable(glob, path):
    """For each place in ``glob`` (0 to its length), whether ``glob`` up to there can match all of
    ``path``: the states of the automaton the glob is, after reading ``path``. Time grows as their
    lengths' product, however many ``**`` there are."""
    reachable = _past_any_folders(glob, [True] + [False] * len(glob))
    for name in path:
        following = [False] * (len(glob) + 1)
        for place, part in enumerate(glob):
            if reachable[place] and (not name.startswith(".") or part.startswith(".")):
                if part == ANY_FOLDERS:
                    following[place] = True
                elif fnmatchcase(name, part):
                    following[place + 1] = True
        reachable = _past_any_folders(glob, following)
    return reachable


def _past_any_folders(glob, reachable):
    """A ``**`` matches zero components too: a place before one reaches the place after it."""
    for place, part in enumerate(glob):
        if part == ANY_FOLDERS and reachable[place]:
            reachable[place + 1] = True
    return reachable


def name_parts(name):
    """The components of a returned file's name (a relative path with ``/``), if the client may write a
    file under it in its results folder; else ValueError saying why not."""
    if "\0" in name:
        raise ValueError("a name with a NUL byte")
    if name.startswith("/"):
        raise ValueError("an absolute name")
    if len(os.fsencode(name)) > MAX_NAME:
        raise ValueError(f"a name longer than {MAX_NAME} bytes")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("a name with an empty, '.' or '..' part")
    return parts
