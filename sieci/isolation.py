"""How a worker fences its jobs in, and whether this host can.

Namespaces (``sandbox.py``, set up by the fork server's child) and a cgroup
per job (``cgroups.py``). A worker checks both at start: where one is not
to be had it says why in one line and does not start, unless the operator
turned that wall off (``--job-namespaces off``, ``--job-cgroups off``).
"""

import os
import subprocess
import sys

from . import cgroups

SANDBOX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox.py")


class Unavailable(Exception):
    """A wall this host cannot build; says why and how to go on."""


class Isolation:
    """``namespaces``, ``cgroups`` and ``network`` (off: a job has only loopback);
    ``hidden``: files and folders (the worker's secret, key, config) no job sees."""

    def __init__(self, namespaces=True, cgroups=True, network=True, hidden=()):
        self.namespaces = namespaces
        self.cgroups = cgroups
        self.network = network
        self.hidden = [os.path.abspath(path) for path in hidden if path]

    def request(self, limits):
        """What the fork server's child needs to build the job's namespaces."""
        return {"disk": limits.disk, "network": self.network, "hide": self.hidden}

    def check(self, python=None):
        """Raise Unavailable unless each wall that is on can be built here."""
        if self.namespaces:
            probe = subprocess.run([python or sys.executable, SANDBOX, "--probe", "off" if not self.network else "on"],
                                   capture_output=True, text=True, timeout=30)
            if probe.returncode != 0:
                reason = probe.stderr.strip().splitlines()[-1:] or ["it failed"]
                raise Unavailable(f"cannot give jobs namespaces of their own ({reason[0]}); "
                                  "run the worker as root, allow user namespaces, or use --job-namespaces off")
        if self.cgroups:
            try:
                cgroups.discover().prepare()
            except (cgroups.Unusable, OSError) as why:
                raise Unavailable(f"cannot give jobs cgroups of their own ({why}); "
                                  "run the worker as root, or use --job-cgroups off (then memory and process "
                                  "limits hold per process, not per job)") from None
