"""A small run of bench/chaos.py: jobs through 2 masters and 4 workers while they are SIGKILLed."""

import os
import subprocess
import sys

from conftest import REPO

CHAOS = os.path.join(REPO, "bench", "chaos.py")


def test_no_wrong_answer_and_no_hung_client_while_daemons_are_killed():
    done = subprocess.run([sys.executable, CHAOS, "--jobs", "60", "--clients", "8", "--retries", "3",
                           "--chaos-every", "0.3", "--hang-after", "60", "--max-seconds", "120", "--seed", "5"],
                          capture_output=True, text=True, timeout=300)
    report = done.stdout
    assert "jobs submitted: 60" in report, report + done.stderr[-2000:]
    assert "wrong answers:  0" in report and "hung clients:   0" in report
    assert "right answers:  60" in report  # with retries, every job ends right
    assert done.returncode == 0 and "acceptance: PASS" in report
