"""A job is ``python3 PROG``: each program of tests/corpus runs locally and through a cluster,
with the same interpreter and environment, and must end the same way, byte for byte.

Both ways of starting a job are checked: the worker's fork server (the default) and a fresh
interpreter, which a client asks for per job; each on a plain worker and on one that runs
jobs in namespaces of their own (where this host allows it). A difference that cannot be helped
is listed in KNOWN_DIFFERENCES with its reason (the README lists the same ones); the test then
expects it, strictly, so a fixed difference shows up too. Some programs also run as code from
stdin, against ``python3 -`` given them on its stdin (FROM_STDIN).
"""

import os
import re
import shutil
import signal
import subprocess
import sys

import gevent
import pytest

from sieci.client import client
from sieci.wire.address import format_address
from sieci.worker.fork_server import job_environment
from sieci.worker.spawn import CATCHABLE

from tests.helpers import WAIT, Captured, Cluster, isolation

CORPUS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "corpus")
PROGRAMS = sorted(name[:-3] for name in os.listdir(CORPUS) if name.endswith(".py"))

FORK_SERVER = "fork server"
FRESH = "fresh interpreter"
# (program, way) -> why it differs from a local run, and must (the README lists these).
ONE_FRAME_BELOW = ("one frame of the fork server's sits below the program's: python3 runs a main file from C, "
                   "a forked interpreter can only run it from Python")
KNOWN_DIFFERENCES = {
    ("stack_depth", FORK_SERVER): ONE_FRAME_BELOW,
    ("recursion_depth", FORK_SERVER): ONE_FRAME_BELOW,
    ("faulthandler_dump", FORK_SERVER): ONE_FRAME_BELOW,
    ("gc_state", FORK_SERVER): "the fork server's objects stay frozen (gc.get_freeze_count()): a job that unfroze "
                               "them would copy them all when it ends, at ~4 ms a job",
}
if sys.version_info < (3, 11):
    KNOWN_DIFFERENCES.update(dict.fromkeys(
        [(program, FORK_SERVER) for program in ("input_at_eof", "keyboard_interrupt", "last_exception_in_atexit",
                                                "print_after_closing_stdout", "program_names", "uncaught_exception")],
        "Python 3.10 keeps a re-raised exception's traceback apart from it, so a traceback starts with the line "
        "of the fork server's frame, which 3.11 onwards lets it drop"))


@pytest.fixture(scope="module", params=["plain", "sandboxed"])
def master(request):
    """A worker of each kind: jobs in the worker's own view of the system, or in namespaces of their own."""
    walls = isolation(cgroups="if any") if request.param == "sandboxed" else None
    cluster = Cluster()
    try:
        master = cluster.master()
        cluster.worker(master, isolation=walls)
        yield format_address(master.clients_address)
    finally:
        cluster.stop()


def test_the_corpus_covers_what_the_issue_lists():
    assert len(PROGRAMS) >= 40


@pytest.mark.parametrize("way", [FORK_SERVER, FRESH])
@pytest.mark.parametrize("program", PROGRAMS)
def test_a_job_ends_as_it_does_locally(program, way, master, tmp_path, request):
    code = corpus_program(program, way, request)
    filename = program + ".py"
    assert remotely(master, code, filename, fresh=way == FRESH) == locally(code, filename, tmp_path)


# Corpus programs also run as ``python3 -`` runs code from its stdin (sieci-client M -): PROG ``-``.
FROM_STDIN = ["argv_and_path", "cwd_listing", "exit_3_plainly", "input_at_eof", "main_attributes", "program_names",
              "stdin_empty", "uncaught_exception"]


@pytest.mark.parametrize("way", [FORK_SERVER, FRESH])
@pytest.mark.parametrize("program", FROM_STDIN)
def test_a_program_from_stdin_ends_as_python3_dash_runs_it(program, way, master, tmp_path, request):
    code = corpus_program(program, way, request)
    assert remotely(master, code, "-", fresh=way == FRESH) == locally(code, "-", tmp_path)


def corpus_program(program, way, request):
    """The corpus program's code; a difference KNOWN_DIFFERENCES lists is expected, strictly."""
    known = KNOWN_DIFFERENCES.get((program, way))
    if known:
        request.applymarker(pytest.mark.xfail(reason=known, strict=True))
    with open(os.path.join(CORPUS, program + ".py"), "rb") as source:
        return source.read()


def locally(code, filename, folder):
    """``python3 FILENAME`` in ``folder``, its stdin empty; for ``-``, ``python3 -`` given the code on its stdin."""
    if filename != "-":
        with open(folder / filename, "wb") as prog:
            prog.write(code)
    done = subprocess.run([sys.executable, filename], cwd=folder, capture_output=True,
                          **({"input": code} if filename == "-" else {"stdin": subprocess.DEVNULL}),
                          env=job_environment(str(folder), sys.executable), preexec_fn=as_from_a_shell, timeout=WAIT)
    status = 128 - done.returncode if done.returncode < 0 else done.returncode
    shutil.rmtree(folder)
    return status, normalised(done.stdout, filename), normalised(done.stderr, filename)


def as_from_a_shell():
    """Every signal at its default, none blocked, as a shell at a terminal starts a program (this
    test may run under one that ignores SIGINT, as a script's background job does)."""
    for number in CATCHABLE:
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def remotely(master, code, filename, fresh):
    output = Captured()
    with gevent.Timeout(WAIT, AssertionError(f"{filename} got no result within {WAIT} s")):
        status = client.run(master, code, filename=filename, output=output, fresh=fresh)
    return status, normalised(output.stdout, filename), normalised(output.stderr, filename)


def normalised(output, filename):
    """``output`` with the folder the program ran in (any absolute path to it) and the
    addresses of objects left out."""
    output = re.sub(rb" at 0x[0-9a-f]+", b" at 0x...", output)
    return re.sub(rb"/[^\s'\"]*/" + re.escape(filename.encode()), b"<folder>/" + filename.encode(), output)


@pytest.mark.parametrize("env", [{"PYTHONHASHSEED": "7"}, {"PYTHONIOENCODING": "latin-1"}, {"LC_ALL": "C"}])
def test_a_job_that_sets_how_python_starts_gets_an_interpreter_of_its_own(env, master, tmp_path):
    """The fork server started with the job environment's own; these change how Python starts."""
    code = (b"import os, sys\nprint(os.environ.get('PYTHONHASHSEED') and hash('sieci'), sys.stdout.encoding,\n"
            b"      sys.stdout.errors, sys.flags.hash_randomization)\n")
    output = Captured()
    with gevent.Timeout(WAIT, AssertionError("no result")):
        status = client.run(master, code, filename="seed.py", output=output, env=env)
    with open(tmp_path / "seed.py", "wb") as prog:
        prog.write(code)
    local = subprocess.run([sys.executable, "seed.py"], cwd=tmp_path, capture_output=True, timeout=WAIT,
                           env={**job_environment(str(tmp_path), sys.executable), **env}, preexec_fn=as_from_a_shell)
    assert (status, output.stdout) == (0, local.stdout)
