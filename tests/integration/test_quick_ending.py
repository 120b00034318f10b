"""ending.py decides, when a program's top level ends, whether its process may leave before the rest
of the interpreter's teardown: each case runs in a Python of its own, stderr on a pipe."""

import re
import subprocess
import sys

import pytest

SCRIPT = """
import gc, os, sys, weakref
from sieci.jobs import ending
gc.freeze()  # as the fork server leaves its own objects
streams = (weakref.ref(sys.stdout), weakref.ref(sys.stderr))
quick = ending.start()
{setup}
ending.end(quick, {error}, streams)
os.write(1, b"\\nverdict: %s\\n" % str(quick.status).encode())
"""


def decided(setup="", error="None"):
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(setup=setup, error=error)], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert b"Traceback" not in done.stderr, done.stderr
    return re.search(rb"^verdict: (.*)$", done.stdout, re.M).group(1).decode()


@pytest.mark.parametrize("error, status", [("None", "0"), ("SystemExit()", "0"), ("SystemExit(3)", "3"),
                                           ("SystemExit(255)", "255"), ("SystemExit(256)", "None"),
                                           ("SystemExit(-1)", "None"), ("SystemExit(True)", "None"),
                                           ("SystemExit('bye')", "None"), ("KeyboardInterrupt()", "None"),
                                           ("ValueError()", "None")])
def test_only_a_plain_end_or_a_small_int_code_ends_quickly(error, status):
    assert decided(error=error) == status


@pytest.mark.parametrize("setup", [
    "import atexit; atexit.register(print)",
    "class Noisy:\n    def __del__(self): pass\nkeep = Noisy()",
    "class Noisy:\n    __slots__ = ()\n    def __del__(self): pass",
    "import weakref\nclass Box: pass\nbox = Box(); ref = weakref.ref(box, print)",
    "import gc; gc.callbacks.append(print)",
    "import signal; signal.signal(signal.SIGUSR1, print)",
    "import io; sys.stdout = io.StringIO()",
    "import threading, time; threading.Thread(target=time.sleep, args=(0.5,)).start()",
    "import os; os.system('true')",
    "import ctypes",
    "sys.addaudithook(print)",
    "import sqlite3",
    "gen = (n for n in [1])",
    "kept = open(os.devnull, 'w'); kept.write('buffered, flushed when freed')",  # (a job's own file, returned)
])
def test_anything_of_the_program_that_could_still_run_or_be_seen_keeps_the_whole_ending(setup):
    assert decided(setup) == "None"
