"""How a fork server's child becomes the job, exactly as ``python FILE`` would run it.

Its streams, limits, user, folder and environment, then a fresh ``__main__``
and ``sys.argv``, Python's own ending (threads, atexit, flushing), or an exec
of a command when the request gives one. The fork server (zygote.py) loads
this file by path: the standard library only, and nothing here may be seen
by a job as an importable module.
"""

import _signal  # signal's C functions, without its enum wrapping
import atexit
import builtins
import io
import os
import resource
import signal
import sys
import types

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
        _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)  # a file past the size limit ends the job
        for name, value in request.limits.items():
            if value:
                resource.setrlimit(LIMITS[name], (value, value + 1 if name == "cpu" else value))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.umask(0o077)
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
        try:
            os.execvp(request.command[0], request.command)
        except OSError as error:
            os.write(2, f"sieci: cannot run {request.command[0]}: {error}\n".encode())
            os._exit(127)
    os._exit(run_as_main(os.path.join(workdir, request.filename), request.args, request.line_buffered))


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


def run_as_main(path, args=(), line_buffered=False):
    """Run the file at ``path`` as ``python path ARGS...`` would; returns the exit code.
    ``line_buffered``: its stdout is, as Python has it on a terminal."""
    atexit._clear()
    sys.stdin = sys.__stdin__ = io.open(0, "r", encoding="utf-8", errors="strict", closefd=False)
    sys.stdout = sys.__stdout__ = io.open(1, "w", buffering=1 if line_buffered else -1, encoding="utf-8",
                                          errors="strict", closefd=False)
    sys.stderr = sys.__stderr__ = io.open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                                          closefd=False)
    sys.argv = [os.path.basename(path), *args]
    sys.orig_argv = [sys.executable, *sys.argv]
    source = None
    if not os.path.isdir(path):  # a folder's __main__ runs as a zipapp's does
        with open(path, "rb") as file:
            source = file.read()
    zipapp = source is None or (b"\0" in source and _is_zip(path))  # no Python source holds a NUL byte
    sys.path.insert(0, path if zipapp else os.path.dirname(path))
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    main.__cached__ = None
    sys.modules["__main__"] = main
    try:
        if zipapp:  # as python3 runs one (or a folder): the archive's __main__ module, through runpy
            import runpy

            runpy._run_module_as_main("__main__", alter_argv=False)
        else:
            exec(compile(source, path, "exec", dont_inherit=True), main.__dict__)
        status = 0
    except SystemExit as exit:
        status = _exit_status(exit)
    except KeyboardInterrupt as interrupt:
        _report(interrupt)
        _finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Python ends on SIGINT itself, for the shell
        os.kill(os.getpid(), signal.SIGINT)
        status = 130
    except BaseException as error:
        _report(error)
        status = 1
    return _finish(status)


def _is_zip(path):
    import zipimport

    try:
        zipimport.zipimporter(path)
    except zipimport.ZipImportError:
        return False
    return True


def _report(error):
    if error.__traceback__ is not None:
        error.__traceback__ = error.__traceback__.tb_next  # our own frame is not the job's
    sys.excepthook(type(error), error, error.__traceback__)


def _exit_status(exit):
    code = exit.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _finish(status=0):
    """Python's own ending: threads, atexit, flushing (exit 120 if stdout cannot be flushed)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    try:
        atexit._run_exitfuncs()
    except SystemExit as exit:
        status = _exit_status(exit)
    try:
        sys.stdout.flush()
    except Exception:
        status = 120
    try:
        sys.stderr.flush()
    except Exception:
        pass
    return status
