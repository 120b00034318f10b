"""The environments' locks against another user: a process of another uid (a job as --job-user, anyone
on the host) cannot open them, so cannot hold one and stall every job needing that environment."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from sieci.worker.environments import EnvironmentStore


@pytest.mark.skipif(os.geteuid() != 0, reason="a process as another user needs root")
@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no system python3 for another user")
def test_another_user_cannot_hold_an_environments_lock():
    top = tempfile.mkdtemp(dir="/var/tmp")
    try:
        os.chmod(top, 0o755)
        store = EnvironmentStore(os.path.join(top, "store"), 1 << 20)
        store.lease("a" * 64, lambda staging: None, time.monotonic() + 5).release()
        hold = ("import fcntl, sys\ntry:\n    fcntl.flock(open(sys.argv[1]), fcntl.LOCK_EX)\n"
                "except PermissionError:\n    sys.exit(13)\n")
        holding = subprocess.run(["/usr/bin/python3", "-I", "-c", hold, store.path("a" * 64) + ".lock"],
                                 user=pwd.getpwnam("nobody").pw_uid, capture_output=True, timeout=60)
        assert holding.returncode == 13, holding.stderr
    finally:
        shutil.rmtree(top)


@pytest.mark.skipif(os.geteuid() != 0, reason="a process as another user needs root")
@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no system python3 for another user")
def test_another_user_reaches_an_environment_by_its_key_but_cannot_list_the_store():
    # An environment may hold a user's private packages (--with-wheels): its key, a digest of them, is
    # the way in, which the store's listing must not give to another user's job.
    top = tempfile.mkdtemp(dir="/var/tmp")
    try:
        os.chmod(top, 0o755)
        store = EnvironmentStore(os.path.join(top, "store"), 1 << 20)
        store.lease("a" * 64, lambda staging: open(os.path.join(staging, "private.py"), "w").close(),
                    time.monotonic() + 5).release()
        look = ("import os, sys\nprint(os.path.exists(os.path.join(sys.argv[1], 'a' * 64, 'private.py')))\n"
                "try:\n    print(os.listdir(sys.argv[1]))\nexcept PermissionError:\n    print('not listed')\n")
        looked = subprocess.run(["/usr/bin/python3", "-I", "-c", look, store.folder],
                                user=pwd.getpwnam("nobody").pw_uid, capture_output=True, timeout=60)
        assert (looked.stdout, looked.returncode) == (b"True\nnot listed\n", 0), looked.stderr
    finally:
        shutil.rmtree(top)
