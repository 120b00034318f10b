"""The suite itself: what an earlier run left in pytest's shared temporary folder does not fail this one."""

import getpass
import subprocess
import sys

from tests.helpers import REPO
from tests.helpers.processes import clean_env

A_TEST_WITH_TMP_PATH = "tests/unit/test_bundle.py::test_only_the_executable_bit_is_kept"


def make_deep_tree(top, levels):
    """``levels`` nested folders under ``top``, made by a process of its own walking down (no path grows
    that long, and this process, gevent's, would hold every folder's fd until its loop ran)."""
    code = ("import os, sys\nos.chdir(sys.argv[1])\n"
            "for _ in range(int(sys.argv[2])):\n    os.mkdir('d')\n    os.chdir('d')\n")
    subprocess.run([sys.executable, "-c", code, str(top), str(levels)], check=True, timeout=60)


def test_a_tree_deeper_than_the_recursion_limit_left_by_an_earlier_run_fails_nothing(tmp_path):
    # pytest keeps a user's last three numbered folders and removes older ones at the end of a run,
    # recursively: a run killed with such a tree in its folder used to fail every later run.
    earlier = tmp_path / f"pytest-of-{getpass.getuser()}"
    for number in range(1, 5):
        (earlier / f"pytest-{number}").mkdir(parents=True)
    make_deep_tree(earlier / "pytest-1", sys.getrecursionlimit() + 200)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", A_TEST_WITH_TMP_PATH],
                          cwd=REPO, env=clean_env(PYTEST_DEBUG_TEMPROOT=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
