"""The package as a process sees it."""

import subprocess
import sys

from tests.helpers import WAIT


def test_importing_sieci_is_light():
    code = "import sys, sieci; print(sorted(m for m in ('gevent', 'sieci.client.client', 'socket') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT).stdout == "[]\n"
