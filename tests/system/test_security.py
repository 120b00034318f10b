"""The client command takes its secret from a file only."""

import os
import subprocess
import sys

from tests.helpers import REPO, WAIT


def test_the_client_reads_its_secret_from_a_file_only(tmp_path):
    missing = tmp_path / "none"
    done = subprocess.run([sys.executable, os.path.join(REPO, "bin", "client"), "--secret-file", str(missing),
                           "1", "-"], input=b"", capture_output=True, timeout=WAIT)
    assert done.returncode == 255 and done.stdout == b""
    assert done.stderr.decode().startswith("sieci-client: error: cannot read the secret file")
    assert "--secret " not in subprocess.run([sys.executable, os.path.join(REPO, "bin", "client"), "--help"],
                                             capture_output=True, text=True, timeout=WAIT).stdout
