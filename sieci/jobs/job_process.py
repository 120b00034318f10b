"""How a fork server's child becomes the job, exactly as ``python FILE`` would run it.

Its streams, limits, user, folder and environment (``start_job``); then, for
a Python file, the interpreter is handed back as ``python FILE`` would find
it (``MainProgram``): the modules, ``sys.path``, ``sys.argv``, a fresh
``__main__``, the standard streams Python made at its start, now on the
job's pipes. The fork server runs the program at
its top level, so that the job ends through the interpreter's own ending
(threads, atexit, flushing, finalizers, exit status; ending.py skips its
last part when nothing could tell). Or it execs a command,
when the request gives one. The fork server (zygote.py) imports this file:
the standard library only; the job's process forgets it (prepare_interpreter).
"""

import _signal  # signal's C functions, without its enum wrapping
import atexit
import builtins
import os
import resource
import sys
import weakref

from sieci.jobs import ending

LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "memory": resource.RLIMIT_AS,
    "file_size": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "processes": resource.RLIMIT_NPROC,
}


FILES_FD = 3  # the job's files bundle, until it is unpacked


def start_job(request, fds, workdir, sandbox=None, unpack=None):
    """Become the job of ``request`` (a fork_channel.Request): its streams (``fds``), limits,
    user, folder (``workdir``) and environment; never returns. ``sandbox``: sandbox.py, loaded,
    when the job is in namespaces of its own, where it drops the job's privileges. ``fds[3]``,
    when the request has files, is their bundle, which ``unpack(fd, folder_fd, max_size)``
    (bundle.unpack) places in the folder, as the job user, before the job starts."""
    try:
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        if request.files is not None:
            os.dup2(fds[3], FILES_FD)
        os.closerange(FILES_FD + (request.files is not None), 1 << 16)
        if request.tty:  # as a login does: the job leads its own session, and this is its terminal
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        for name, value in request.limits.items():
            if value:
                resource.setrlimit(LIMITS[name], (value, value + 1 if name == "cpu" else value))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.umask(0o022)  # as a login shell has it; the job's folder is its own (0700)
        user = request.user
        if sandbox:
            sandbox.drop_privileges(user)
        elif user:
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])
        os.chdir(workdir)
        set_environment(request.env)
        if request.files is not None:
            _unpack_files(unpack, request.files)
    except BaseException as error:
        os.write(2, f"sieci: cannot start the job: {error}\n".encode())
        os._exit(127)
    if request.command:
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)  # as a shell leaves it for a program it starts
        try:
            os.execvp(request.command[0], request.command)
        except OSError as error:
            os.write(2, f"sieci: cannot run {request.command[0]}: {error}\n".encode())
            os._exit(127)
    raise MainProgram(os.path.join(workdir, request.filename), request.args, request.line_buffered,
                      request.from_stdin and not request.directory)


class MainProgram(BaseException):
    """Raised in a job's process, up to the fork server's top level, which runs the program there
    (see ``take_interpreter``): ``path`` with ``args``; ``line_buffered``: its stdout is, as
    Python has it on a terminal; ``from_stdin``: the code at ``path`` came on the client's stdin, and
    runs as ``python3 -`` runs it. A BaseException, so that nothing on the way catches it."""

    def __init__(self, path, args, line_buffered, from_stdin=False):
        super().__init__(path)
        self.path = path
        self.args = args
        self.line_buffered = line_buffered
        self.from_stdin = from_stdin


def _unpack_files(unpack, max_size):
    folder = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        unpack(FILES_FD, folder, max_size)
    finally:
        os.close(folder)
        os.close(FILES_FD)


def set_environment(env):
    """Make os.environ exactly ``env``, touching only what differs (the zygote's own is nearly it)."""
    for key in [key for key in os.environ if key not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


# The interpreter as ``python3 FILE`` has it at its start (see prepare_interpreter): sys.modules' names,
# sys.path and sys.path_importer_cache's entries.
_AT_START = {}
# The fork server's own modules, out of sys.modules (prepare_interpreter), alive here.
_FORK_SERVERS_MODULES = {}


def prepare_interpreter(modules, path, path_importer_cache):
    """Once, in the fork server, after its last import: sys.modules and sys.path_importer_cache as
    ``python3 FILE`` has them at its start (``modules``, names, and ``path_importer_cache``), so that
    each job finds them so without a change; ``path``, sys.path then (its first entry the fork
    server's folder). The fork server's code holds its modules, not sys.modules: it imports no more."""
    for name in set(sys.modules) - modules:
        _FORK_SERVERS_MODULES[name] = sys.modules.pop(name)
    sys.path_importer_cache.clear()
    sys.path_importer_cache.update(path_importer_cache)
    atexit._clear()
    _AT_START.update(modules=modules, path=path, path_importer_cache=path_importer_cache,
                     streams=(weakref.ref(sys.stdout), weakref.ref(sys.stderr)))


def take_interpreter(program):
    """Give the interpreter to ``program`` (a MainProgram) as it was at its start (see
    prepare_interpreter). Returns the globals to run its code in, its path, its source (None for a
    zipapp or a folder, which runs through runpy as python3 runs them), and its ending.QuickEnding."""
    _forget_imports_since_start()
    atexit._clear()
    _streams_on_job_pipes(program.line_buffered)
    if program.from_stdin:
        return _take_for_stdin(program)
    file = program.path
    sys.argv = [os.path.basename(file), *program.args]
    sys.orig_argv = [sys.orig_argv[0], *sys.argv]
    source = None
    if not os.path.isdir(file):  # a folder's __main__ runs as a zipapp's does
        with open(file, "rb") as opened:
            source = opened.read()
    runs_as_module = source is None or (b"\0" in source and _is_zip(file))  # no Python source holds a NUL byte
    sys.path[:] = [file if runs_as_module else os.path.dirname(file), *_AT_START["path"][1:]]
    main = _fresh_main_module()
    if not runs_as_module:
        main.__loader__ = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", file)
        main.__file__ = file
        main.__cached__ = None
    return main.__dict__, file, None if runs_as_module else source, ending.start()


STDIN_NAME = "<stdin>"  # python3 -'s name for its program: its __file__, and its tracebacks' file name


def _take_for_stdin(program):
    """take_interpreter's part for code that came on stdin, as ``python3 -`` has it: sys.argv[0] '-',
    sys.path[0] '' (the folder it runs in), ``__file__`` '<stdin>' (no source lines in tracebacks), and no
    file of it in its folder."""
    sys.argv = ["-", *program.args]
    sys.orig_argv = [sys.orig_argv[0], *sys.argv]
    with open(program.path, "rb") as opened:
        source = opened.read()
    try:
        os.unlink(program.path)
    except OSError:
        pass  # a folder the job may not change: the file stays, which only a listing of it shows
    sys.path[:] = ["", *_AT_START["path"][1:]]
    main = _fresh_main_module()
    main.__file__ = STDIN_NAME
    main.__cached__ = None
    return main.__dict__, STDIN_NAME, source, ending.start()


def program_ended(quick_ending, error):
    """The program's top level has ended, by ``error`` (None: plainly); see ending.py."""
    ending.end(quick_ending, error, _AT_START["streams"])


def _forget_imports_since_start():
    """What the job's process imported to start the job (a terminal's modules), out again."""
    modules, path_importer_cache = _AT_START["modules"], _AT_START["path_importer_cache"]
    if len(sys.modules) != len(modules):
        for name in set(sys.modules) - modules:
            del sys.modules[name]
    if len(sys.path_importer_cache) != len(path_importer_cache):
        sys.path_importer_cache.clear()
        sys.path_importer_cache.update(path_importer_cache)


def _streams_on_job_pipes(line_buffered):
    """The streams Python made at the fork server's start (on /dev/null: see fork_server.py)
    now write to the job's pipes, which are its fds 0 to 2; buffered as Python buffers them
    there (line by line on a terminal, or when the client shows stdout on one)."""
    sys.stdin.reconfigure(line_buffering=os.isatty(0))
    sys.stdout.reconfigure(line_buffering=line_buffered or os.isatty(1))


def _fresh_main_module():
    """``__main__`` as Python makes it at its start, in the same order."""
    main = type(sys)("__main__")
    main.__loader__ = sys.modules["_frozen_importlib"].BuiltinImporter
    main.__annotations__ = {}
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    return main


def _is_zip(path):
    import zipimport

    try:
        zipimport.zipimporter(path)
    except zipimport.ZipImportError:
        return False
    return True
