"""A job's quick ending: its process leaves once Python has run all of the program that would ever
run, skipping the rest of the interpreter's teardown, only when that is sure to change nothing seen.

python3 ends a main file so (Py_FinalizeEx, 3.10 to 3.13): non-daemon threads joined, atexit
handlers, flush of sys.stdout and sys.stderr (a failure exits 120: stdout's says so through
sys.unraisablehook, stderr's is silent), garbage collected, modules wiped (their objects' __del__),
then the interpreter's own state cleared: the audit event cpython.PyInterpreterState_Clear, each
thread state, the audit hooks' list, codecs, fork handlers, warnings, a last collection (gc.callbacks
called), and the rest, which no Python code sees. The job's process leaves with os._exit when the
hooks' list frees this module's hook (``QuickEnding.__del__``), after every hook saw every event,
and only if, when the program's top level ended (``end``):

- it ended plainly, or by SystemExit with None or an int from 0 to 255 as its code;
- none of the program can run again: no atexit handler, thread, Python signal handler, gc callback,
  weakref callback, and no live object whose type has a finalizer (``__del__``, which C types with
  one show too): so nothing is freed later that anyone sees, and nothing can touch stderr before
  python3 flushes it;
- sys.stdout and sys.stderr are the streams Python made; stderr is closed, or still the job's
  pipe, blocking, so its last flush cannot fail;
- the program added no audit hook, started no process, no thread, no profiler or tracer, used no
  ctypes, loaded no extension module but the standard library's (a few of those excepted);
- and, until the hook is freed, no exception went to sys.unraisablehook (a failed flush of stdout
  included) and nothing was imported.

Otherwise the interpreter ends as python3's does.
"""

import _imp
import _signal
import _thread
import atexit
import gc
import os
import stat
import sys
import weakref

# After one of these the process may hold what the checks below cannot see (another hook, a thread,
# a child sharing stderr, C code, a tracer).
RISKY_EVENTS = frozenset({
    "sys.addaudithook", "sys.unraisablehook", "sys.setprofile", "sys.settrace",
    "sys.monitoring.register_callback", "_thread.start_new_thread", "_thread.start_joinable_thread",
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system", "os.exec", "subprocess.Popen",
})
# Standard extension modules whose objects do something when freed (close a database, a terminal).
FREED_WITH_EFFECTS = frozenset({"_sqlite3", "_dbm", "_gdbm", "_curses", "_curses_panel", "_tkinter", "readline"})
_EXTENSION_SUFFIXES = tuple(_imp.extension_suffixes())
_DYNLOAD = tuple(entry + os.sep for entry in sys.path if os.path.basename(entry) == "lib-dynload")
_SURE_INTERPRETER = not (sys.flags.dev_mode or sys.flags.verbose or hasattr(sys, "gettotalrefcount")
                         or os.environ.get("PYTHONMALLOCSTATS"))
_TYPE_MRO = type.__dict__["__mro__"].__get__
_TYPE_DICT = type.__dict__["__dict__"].__get__
_MODULE_DICT = type(sys).__dict__["__dict__"].__get__
_CALLBACK = weakref.ref.__dict__["__callback__"].__get__


class QuickEnding:
    """The job's audit hook: notes what the ending must know, and leaves when freed (see above)."""

    __slots__ = ("status", "risky", "imported", "stderr_pipe", "_exit")

    def __init__(self):
        self.status = None  # once the program ended, if the quick ending is sure
        self.risky = not _SURE_INTERPRETER
        self.imported = []
        self.stderr_pipe = _pipe(2)
        self._exit = os._exit  # the os module is wiped when this is freed

    def __call__(self, event, args):
        if event in RISKY_EVENTS or event.startswith("ctypes."):
            self.risky = True
        elif event == "import":
            if self.status is not None:
                self.risky = True
            else:
                self.imported.append(args[0])

    def __del__(self):
        if self.status is not None and not self.risky:
            self._exit(self.status)


def start():
    """The job's QuickEnding, its hook added: after the job's start, before the program's code."""
    ending = QuickEnding()
    sys.addaudithook(ending)
    return ending


def end(ending, error, streams):
    """The program's top level has ended, by ``error`` (None: plainly): let ``ending`` leave quickly
    if sure; ``streams``: weak references to the sys.stdout and sys.stderr Python made."""
    try:
        status = _status(error)
        if status is not None and not ending.risky and _nothing_runs_after(ending, streams):
            ending.status = status
    except Exception:  # whatever the program made of the interpreter: it ends as python3's does
        pass


def _status(error):
    if error is None:
        return 0
    if type(error) is not SystemExit:
        return None
    code = error.code
    if code is None:
        return 0
    return code if type(code) is int and 0 <= code <= 255 else None


def _nothing_runs_after(ending, streams):
    return (atexit._ncallbacks() == 0 and _thread._count() == 0 and not gc.callbacks and not gc.garbage
            and _standard_streams(ending, streams) and _no_signal_handlers()
            and _standard_extensions(ending.imported) and _no_finalizers(ending))


def _standard_streams(ending, streams):
    stdout, stderr = (stream() for stream in streams)
    if stdout is None or sys.stdout is not stdout or sys.stderr is not stderr:
        return False
    try:
        stdout.buffer, stderr.buffer  # noqa: B018 (raises once detached)
        return stderr.closed or (ending.stderr_pipe is not None and _pipe(2) == ending.stderr_pipe
                                 and os.get_blocking(2))
    except (ValueError, OSError):
        return False


def _pipe(fd):
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISFIFO(info.st_mode) else None


def _no_signal_handlers():
    for number in range(1, _signal.NSIG):
        try:
            handler = _signal.getsignal(number)
        except ValueError:
            continue
        if not (handler is None or type(handler) is int or handler is _signal.default_int_handler):
            return False
    return True


def _standard_extensions(imported):
    for name in imported:
        module = sys.modules.get(name)
        if type(module) is not type(sys):
            return False
        path = _MODULE_DICT(module).get("__file__")
        if type(path) is str and path.endswith(_EXTENSION_SUFFIXES):
            if not path.startswith(_DYNLOAD) or name.rpartition(".")[2] in FREED_WITH_EFFECTS:
                return False
    return True


def _no_finalizers(ending):
    """No object the collector tracks (the fork server's frozen ones aside) has a finalizer or is a
    weak reference with a callback; no class has a finalizer (its instances may not be tracked)."""
    verdicts = {id(QuickEnding): False}
    for obj in gc.get_objects():
        kind = type(obj)
        verdict = verdicts.get(id(kind))
        if verdict is None:
            verdict = verdicts[id(kind)] = _finalizes(kind)
        if verdict or (issubclass(kind, type) and obj is not QuickEnding and _finalizes(obj)):
            return False
        if issubclass(kind, weakref.ref) and _CALLBACK(obj) is not None:
            return False
    return True


def _finalizes(kind):
    return any("__del__" in _TYPE_DICT(base) for base in _TYPE_MRO(kind))
