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
