"""How a worker fences its jobs in, and whether this host can.

Namespaces (``sandbox.py``, set up by the fork server's child) and a cgroup
per job (``cgroups.py``). A worker checks both at start: where one is not
to be had it says why in one line and does not start, unless the operator
turned that wall off (``--job-namespaces off``, ``--job-cgroups off``).
"""

import os
import subprocess
import sys

from sieci.jobs import cgroups, sandbox

# Run as a script by the job interpreter: it probes for namespaces, and checks reach.
PROBE = os.path.join(os.path.dirname(sandbox.__file__), "probe.py")


class Unavailable(Exception):
    """A wall this host cannot build; says why and how to go on."""


class Isolation:
    """``namespaces``, ``cgroups`` and ``network`` (off: a job has only loopback);
    ``hidden``: files and folders (the worker's secret, key, config) no job sees."""

    def __init__(self, namespaces=True, cgroups=True, network=False, hidden=()):
        self.namespaces = namespaces
        self.cgroups = cgroups
        self.network = network
        self.hidden = [os.path.abspath(path) for path in hidden if path]

    def walls(self, limits, user):
        """What the fork server needs to build them, for jobs with these limits, run as ``user``."""
        walls = {}
        if self.namespaces:
            walls["sandbox"] = {"disk": limits.disk, "network": self.network, "hide": self.hidden, "user": user}
        if self.cgroups:
            # The job's own processes, and two of sieci's that share its cgroup: the fork
            # server, and the init of the job's PID namespace.
            processes = limits.processes and limits.processes + 2
            walls["cgroup"] = {"memory": limits.memory, "processes": processes, "cpu": limits.cpu}
        return walls

    def check(self, python=None, optional=()):
        """Raise Unavailable unless each wall that is on can be built here. A wall
        named in ``optional`` is turned off instead; returns a note for each."""
        notes = []
        for wall, problem in (("namespaces", self._namespaces_problem), ("cgroups", self._cgroups_problem)):
            why = getattr(self, wall) and problem(python)
            if why and wall in optional:
                setattr(self, wall, False)
                notes.append(f"jobs run without {wall} of their own: {why}")
            elif why:
                raise Unavailable(why)
        if not self.namespaces:
            self.network = True
        return notes

    def _namespaces_problem(self, python):
        probe = subprocess.run([python or sys.executable, PROBE, "--probe", "on" if self.network else "off"],
                               capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return None
        reason = (probe.stderr.strip().splitlines() or ["it failed"])[-1]
        return (f"cannot give jobs namespaces of their own ({reason}); run the worker as root, allow user "
                "namespaces, or use --job-namespaces off")

    def unreadable_for(self, user, python=None):
        """A folder of the job interpreter's that ``user`` ``(uid, gid)`` cannot read in the jobs'
        view of the files (namespaced: where the way down to each is made for it), or None. A job
        forked as that user still imports the standard library from where the interpreter lives.
        Unavailable if the interpreter cannot tell."""
        view = "sandboxed" if self.namespaces else "host"
        reach = subprocess.run([python or sys.executable, PROBE, "--reach", "%d:%d" % user, view],
                               capture_output=True, text=True, timeout=30)
        if reach.returncode != 0:
            why = (reach.stderr.strip().splitlines() or [f"exit status {reach.returncode}"])[-1]
            raise Unavailable(f"cannot run jobs with {python or sys.executable} ({why})")
        return reach.stdout.strip() or None

    @staticmethod
    def _cgroups_problem(python):
        try:
            cgroups.discover().prepare()
        except (cgroups.Unusable, OSError) as why:
            return (f"cannot give jobs cgroups of their own ({why}); run the worker as root, or use "
                    "--job-cgroups off (memory and process limits then hold per process, not per job)")
        return None


def unavailable_walls(python=None):
    """The worker options that turn off each wall this host cannot build (for tools and tests)."""
    options = []
    for wall in ("namespaces", "cgroups"):
        try:
            Isolation(namespaces=wall == "namespaces", cgroups=wall == "cgroups").check(python)
        except Unavailable:
            options += [f"--job-{wall}", "off"]
    return options
