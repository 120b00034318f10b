"""A job's files as one bundle: packed by the client, checked by the worker, unpacked into the job's folder.

A bundle is a zlib stream (RFC 1950) of::

    sieci-bundle 1\\n
    <kind> <size> <name length>\\n<name><size bytes>     one entry per folder or file
    ...
    end\\n

``kind`` is ``d`` (a folder, size 0), ``f`` (a file) or ``x`` (an executable
file); a name is a relative path, ``/`` between its parts, none of them empty,
``.`` or ``..``, and no NUL; a folder comes before what it holds, and no name
comes twice. Nothing else can be in one: no links, no devices, no owners, no
times. The same files packed in the same order make the same bytes, so the
same SHA-256 digest, which names the bundle on the wire.

Unpacking reads the stream a bounded piece at a time and stops at the first
thing out of bounds (``max_size`` bytes of files, MAX_ENTRIES entries), so a
bundle that inflates to far more than it says is refused without being
inflated. It creates everything with ``O_EXCL`` and ``O_NOFOLLOW`` through
folder fds, below a folder fd it is given.

Standard library only, and nothing on import but ``os`` and ``zlib``: the
fork server, which runs with the job's interpreter, imports it (jobs/zygote.py),
and the job's process unpacks the job's bundle with it, as the job user, before
the job starts.
"""

import os
import stat
import zlib

MAGIC = b"sieci-bundle 1\n"
END = b"end\n"
FOLDER, FILE, EXECUTABLE = b"d", b"f", b"x"
MAX_ENTRIES = 10_000
DEFAULT_MAX_SIZE = 2 << 30  # bytes of files, where nothing else bounds them
MAX_NAME = 4096  # bytes of a whole name
MAX_PART = 255  # bytes of one part of it, as most file systems allow
MAX_DEPTH = 64  # parts of a name (a job's folder deeper than workdir.MAX_DEPTH counts as over its disk limit)
MAX_ENTRY_LINE = 64
PIECE = 1 << 20  # bytes inflated, or read from a file, at once
COMPRESSION_LEVEL = 6
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class BadBundle(ValueError):
    """The bytes are no bundle, or one out of bounds; the message says what is wrong."""


class PackError(ValueError):
    """The client's files cannot be packed as asked; the message says why."""


def check_name(name):
    """The parts of an entry's ``name`` (bytes); BadBundle unless it is a plain relative path."""
    parts = name.split(b"/")
    if not name or len(name) > MAX_NAME or len(parts) > MAX_DEPTH:
        raise BadBundle(f"an empty, too long or too deep name: {name[:80]!r}")
    for part in parts:
        if part in (b"", b".", b"..") or b"\0" in part or len(part) > MAX_PART:
            raise BadBundle(f"a name that is not a plain relative path: {name[:80]!r}")
    return parts


# --- reading ------------------------------------------------------------------------------


class _Inflater:
    """The inflated bytes of the bundle at ``fd``, inflated no further than they are asked for."""

    def __init__(self, fd):
        self.fd = fd
        self.inflater = zlib.decompressobj()
        self.buffer = bytearray()

    def _inflate(self, wanted):
        """Inflate up to ``wanted`` bytes more into the buffer; False at the stream's end."""
        if self.inflater.eof:
            return False
        compressed = self.inflater.unconsumed_tail or os.read(self.fd, PIECE)
        if not compressed:
            raise BadBundle("the bundle is cut short")
        try:
            self.buffer += self.inflater.decompress(compressed, max(wanted, 1))
        except zlib.error as error:
            raise BadBundle(f"the bundle is not a zlib stream ({error})") from None
        return True

    def read_exactly(self, size):
        while len(self.buffer) < size:
            if not self._inflate(min(size - len(self.buffer), PIECE)):
                raise BadBundle("the bundle ends in the middle of an entry")
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    def read_line(self):
        while b"\n" not in self.buffer[:MAX_ENTRY_LINE]:
            if len(self.buffer) >= MAX_ENTRY_LINE or not self._inflate(MAX_ENTRY_LINE):
                raise BadBundle(f"a malformed entry: {bytes(self.buffer[:MAX_ENTRY_LINE])!r}")
        return self.read_exactly(self.buffer.index(b"\n") + 1)

    def copy(self, size, fd=None):
        """Pass the next ``size`` bytes to the file ``fd`` (None: drop them)."""
        while size:
            piece = self.read_exactly(min(size, PIECE))
            size -= len(piece)
            view = memoryview(piece)
            while fd is not None and view:
                view = view[os.write(fd, view):]

    def check_ended(self):
        while self._inflate(1):
            if self.buffer:
                break
        if self.buffer or self.inflater.unused_data or os.read(self.fd, 1):
            raise BadBundle("the bundle goes on after its end")


def _entry(line):
    words = line.split()
    if len(words) != 3 or words[0] not in (FOLDER, FILE, EXECUTABLE) or not all(w.isdigit() for w in words[1:]):
        raise BadBundle(f"a malformed entry: {line[:80]!r}")
    kind, size, name_length = words[0], int(words[1]), int(words[2])
    if kind == FOLDER and size:
        raise BadBundle("a folder with content")
    return kind, size, name_length


def walk(fd, take, max_size, max_entries=MAX_ENTRIES):
    """Read the bundle at ``fd`` entry by entry, checking each: ``take(kind, parts, size, inflater)``
    must pass on the entry's ``size`` bytes (``inflater.copy``). Returns the top-level names."""
    inflater = _Inflater(fd)
    if inflater.read_exactly(len(MAGIC)) != MAGIC:
        raise BadBundle("not a sieci bundle")
    names, folders, total = set(), {()}, 0
    while (line := inflater.read_line()) != END:
        kind, size, name_length = _entry(line)
        if name_length > MAX_NAME:
            raise BadBundle("a name longer than names may be")
        name = inflater.read_exactly(name_length)
        parts = tuple(check_name(name))
        total += size
        if name in names or parts[:-1] not in folders:
            raise BadBundle(f"{name[:80]!r} comes twice, or before its folder")
        if total > max_size or len(names) >= max_entries:
            raise BadBundle(f"the files take more than {max_size} bytes, or are more than {max_entries}")
        names.add(name)
        if kind == FOLDER:
            folders.add(parts)
        take(kind, parts, size, inflater)
    inflater.check_ended()
    return {name for name in names if b"/" not in name}


def check(fd, max_size, max_entries=MAX_ENTRIES):
    """The top-level names of the bundle at ``fd``; BadBundle if it is malformed or out of bounds."""
    return walk(fd, lambda kind, parts, size, inflater: inflater.copy(size), max_size, max_entries)


def unpack(fd, folder_fd, max_size, max_entries=MAX_ENTRIES):
    """Create the bundle's folders and files below the folder open as ``folder_fd`` (fresh: no name of
    the bundle's may be there yet); BadBundle if it is malformed or out of bounds, OSError if it will not fit."""

    def place(kind, parts, size, inflater):
        parent = _open_folder(folder_fd, parts[:-1])
        try:
            if kind == FOLDER:
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
                return
            file_fd = os.open(parts[-1], _CREATE, 0o755 if kind == EXECUTABLE else 0o644, dir_fd=parent)
            try:
                inflater.copy(size, file_fd)
            finally:
                os.close(file_fd)
        except FileExistsError:
            raise BadBundle(f"{b'/'.join(parts)[:80]!r} is in the job's folder already") from None
        finally:
            if parent != folder_fd:
                os.close(parent)

    walk(fd, place, max_size, max_entries)


def copy_without(fd, out_fd, top_name, max_size, take_left_out=None):
    """Write to the file ``out_fd`` the bundle at ``fd`` without its top-level entry ``top_name`` (bytes)
    and all below it: the other entries, in their order. ``take_left_out(kind, parts, size, inflater)``,
    if given, is handed each entry left out, as walk's ``take``. BadBundle as walk says."""
    compressor = zlib.compressobj(COMPRESSION_LEVEL)

    def write(data):
        view = memoryview(data)
        while view:
            view = view[os.write(out_fd, view):]

    def take(kind, parts, size, inflater):
        if parts[0] == top_name:
            (take_left_out or _drop)(kind, parts, size, inflater)
            return
        name = b"/".join(parts)
        write(compressor.compress(b"%s %d %d\n%s" % (kind, size, len(name), name)))
        while size:
            piece = inflater.read_exactly(min(size, PIECE))
            size -= len(piece)
            write(compressor.compress(piece))

    write(compressor.compress(MAGIC))
    walk(fd, take, max_size)
    write(compressor.compress(END) + compressor.flush())


def _drop(kind, parts, size, inflater):
    inflater.copy(size)


def _open_folder(top_fd, parts):
    """The folder ``parts`` below ``top_fd``, opened one part at a time, never through a link."""
    fd = top_fd
    for part in parts:
        try:
            below = os.open(part, _FOLDER, dir_fd=fd)
        finally:
            if fd != top_fd:
                os.close(fd)
        fd = below
    return fd


# --- packing (the client's) ------------------------------------------------------------------


class Bundle:
    """A packed bundle: its bytes, their SHA-256 ``digest`` (hex), and what was left out and why."""

    def __init__(self, data, skipped=()):
        import hashlib

        self.data = data
        self.digest = hashlib.sha256(data).hexdigest()
        self.skipped = list(skipped)

    @property
    def size(self):
        return len(self.data)


def name_beside(path, folder):
    """The name the file or folder at ``path`` gets beside a program in ``folder``: its path relative
    to ``folder`` when it is inside it (``sub/x.csv``), else its base name (``../data/x.csv``: ``x.csv``);
    ``""`` for ``folder`` itself, whose contents then lie beside the program."""
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    relative = os.path.relpath(path, folder)
    if relative == ".":
        return ""
    if relative == ".." or relative.startswith(".." + os.sep):
        return os.path.basename(path)
    return relative.replace(os.sep, "/")


class _Packer:
    def __init__(self, leave_out, max_size):
        self.compressor = zlib.compressobj(COMPRESSION_LEVEL)
        self.pieces = [self.compressor.compress(MAGIC)]
        self.sources = {}  # name: the real path it was packed from
        self.leave_out = leave_out
        self.max_size = max_size
        self.total = 0
        self.skipped = []

    def add(self, path, name):
        """The file or folder at ``path``, as ``name``; "" puts a folder's contents at the top."""
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            if name:
                self._entry(FOLDER, name, path)
            self._add_contents(path, name)
        elif stat.S_ISREG(status.st_mode):
            self._file(path, name, status)
        else:
            raise PackError(f"{path}: not a file or folder")

    def _add_contents(self, folder, name):
        for top, folders, files in os.walk(folder):
            folders.sort()
            below = os.path.relpath(top, folder).replace(os.sep, "/")
            prefix = "/".join(part for part in (name, below) if part and part != ".")
            for entry in sorted(files + [f for f in folders if os.path.islink(os.path.join(top, f))]):
                path = os.path.join(top, entry)
                if os.path.islink(path) and not os.path.isfile(path):
                    self.skipped.append((path, "a link to something other than a file"))
                    continue
                status = os.stat(path)
                if not stat.S_ISREG(status.st_mode):
                    self.skipped.append((path, "not a regular file"))
                    continue
                self._file(path, f"{prefix}/{entry}" if prefix else entry, status)
            folders[:] = [f for f in folders if not os.path.islink(os.path.join(top, f))]
            for entry in folders:
                self._entry(FOLDER, f"{prefix}/{entry}" if prefix else entry, os.path.join(top, entry))

    def _file(self, path, name, status):
        if name in self.leave_out:
            return
        kind = EXECUTABLE if status.st_mode & stat.S_IXUSR else FILE
        if not self._entry(kind, name, path, status.st_size):
            return
        with open(path, "rb") as file:
            copied = 0
            while piece := file.read(min(PIECE, status.st_size - copied)):
                copied += len(piece)
                self.pieces.append(self.compressor.compress(piece))
        if copied != status.st_size:
            raise PackError(f"{path} changed while it was packed")

    def _entry(self, kind, name, path, size=0):
        """Add the entry's line (and, first, its folders'); False if it is there already."""
        encoded = os.fsencode(name)
        try:
            check_name(encoded)
        except BadBundle:
            raise PackError(f"{path}: cannot be sent as {name!r}") from None
        parent = name.rpartition("/")[0]
        if parent and parent not in self.sources:
            self._entry(FOLDER, parent, os.path.dirname(path))
        source = os.path.realpath(path)
        if name in self.sources:
            if self.sources[name] != source and kind != FOLDER:
                raise PackError(f"{path} and {self.sources[name]} would both be {name!r} in the job's folder")
            return False
        self.sources[name] = source
        self.total += size
        if self.total > self.max_size or len(self.sources) > MAX_ENTRIES:
            raise PackError(f"the files are more than {self.max_size} bytes or {MAX_ENTRIES} files and folders")
        self.pieces.append(self.compressor.compress(b"%s %d %d\n%s" % (kind, size, len(encoded), encoded)))
        return True

    def finish(self):
        return Bundle(b"".join(self.pieces) + self.compressor.compress(END) + self.compressor.flush(), self.skipped)


def pack(paths, beside=".", leave_out=(), max_size=DEFAULT_MAX_SIZE):
    """The Bundle of the files and folders at ``paths``, each named as ``name_beside`` says for a
    program in the folder ``beside``. Files inside folders are taken in sorted order; links to
    files are followed, other links and special files are left out (``Bundle.skipped`` says which).
    Names in ``leave_out`` (the program's own file) are not packed. PackError if it cannot be done."""
    packer = _Packer(set(leave_out), max_size)
    for path in paths:
        try:
            packer.add(path, name_beside(path, beside))
        except OSError as error:
            raise PackError(f"cannot read {path}: {error.strerror or error}") from None
    return packer.finish()
