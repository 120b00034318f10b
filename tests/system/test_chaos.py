"""A small run of bench/chaos.py: jobs through 2 masters and 4 workers while they are SIGKILLed."""

import os
import subprocess
import sys

from tests.helpers import REPO

CHAOS = os.path.join(REPO, "bench", "chaos.py")


def test_no_wrong_answer_and_no_hung_client_while_daemons_are_killed():
    # More retries than the full run's 3: on a machine busy with the rest of the suite, a job can
    # (rarely) meet a killed daemon on four tries in a row; a failure here must mean a real fault.
    done = subprocess.run([sys.executable, CHAOS, "--jobs", "60", "--clients", "8", "--retries", "6",
                           "--chaos-every", "0.4", "--hang-after", "60", "--max-seconds", "120", "--seed", "5"],
                          capture_output=True, text=True, timeout=300)
    report = done.stdout
    explained = report + done.stderr[-2000:]
    assert "jobs submitted: 60" in report, explained
    assert "wrong answers:  0" in report and "hung clients:   0" in report, explained
    assert "60/60 right: yes" in report, explained  # with retries, every job ends right
    assert done.returncode == 0 and "acceptance: PASS" in report, explained
