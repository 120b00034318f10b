"""The fork server's walls for its jobs, built once at its start: the view of the files every job's
mount namespace starts from (sandbox.py), and the one cgroup its jobs run in, in turn (cgroups.py)."""

import os

from sieci.jobs import cgroups, sandbox

# This fork server's walls for its jobs (see build_walls): "sandbox", the settings of
# the jobs' namespaces, "cgroup", the one cgroup each job in turn runs in, "used",
# its counters when the last job ended, and "cpu", the CPU seconds a job may use there.
WALLS = {}
NAME_PREFIX = "sieci-jobs-of-"  # + the fork server's pid: its jobs' cgroup


def build_walls(walls):
    """Once, in the fork server: the cgroup each job runs in (one at a time), and the view of the
    files every job's mount namespace starts from (see sandbox.py)."""
    if walls.get("sandbox"):
        WALLS["sandbox"] = walls["sandbox"]
        sandbox.build_template(walls["sandbox"])
    if walls.get("cgroup"):
        # The zygote moves into the cgroup itself, so that its children are born there (moving
        # each would cost more than a job's namespaces).
        job_cgroups = cgroups.discover()
        job_cgroups.remove_stale(NAME_PREFIX, alive=lambda pid: os.path.exists(f"/proc/{pid}"))
        limits = walls["cgroup"]
        WALLS["cgroup"] = job_cgroups.create(f"{NAME_PREFIX}{os.getpid()}", limits["memory"], limits["processes"])
        WALLS["cpu"] = limits.get("cpu")
        WALLS["cgroup"].join()
        WALLS["used"] = WALLS["cgroup"].counters()
