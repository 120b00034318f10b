"""One cgroup per job: the job's memory and processes limited as a whole, its CPU
counted, and the kernel's own counters saying which limit ended it.

cgroup v2 (the unified tree) where the host has it, else v1 with the memory,
pids and cpuacct controllers. Job cgroups are made under the cgroup the
fork server runs in. Stdlib only: the zygote loads this file by path.
"""

import os

CONTROLLERS_V1 = ("memory", "pids", "cpuacct")
CONTROLLERS_V2 = ("memory", "pids", "cpu")
# v2 allows no processes in a cgroup whose controllers are handed to children:
# the daemons move to this leaf beside the jobs' cgroups.
DAEMONS_LEAF = "sieci-daemons"


class Unusable(Exception):
    """No cgroup this process can make job cgroups in; says why."""


def discover(mountinfo="/proc/self/mountinfo", membership="/proc/self/cgroup"):
    """The job cgroups of this host, or Unusable."""
    mounts = _cgroup_mounts(mountinfo)
    paths = _own_cgroups(membership)
    if "" in mounts and not all(controller in mounts for controller in ("memory", "pids")):
        return _V2(os.path.join(mounts[""], paths.get("", "/").lstrip("/")))
    missing = [controller for controller in CONTROLLERS_V1 if controller not in mounts]
    if missing:
        raise Unusable(f"no cgroup v2 tree and no cgroup v1 {', '.join(missing)} controller mounted")
    return _V1({c: os.path.join(mounts[c], paths.get(c, "/").lstrip("/")) for c in CONTROLLERS_V1})


def _cgroup_mounts(mountinfo):
    """Controller name (v1) or "" (v2) -> where its hierarchy is mounted."""
    mounts = {}
    with open(mountinfo) as file:
        for line in file:
            ours, theirs = line.split(" - ", 1)
            mount_point = ours.split()[4]
            fstype, _, options = theirs.split()[:3]
            if fstype == "cgroup2":
                mounts.setdefault("", mount_point)
            elif fstype == "cgroup":
                for option in options.split(","):
                    mounts.setdefault(option, mount_point)
    return mounts


def _own_cgroups(membership):
    """Controller name (v1) or "" (v2) -> this process's cgroup path."""
    paths = {}
    with open(membership) as file:
        for line in file:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                paths[controller] = path
    return paths


def _write(path, text):
    with open(path, "w") as file:
        file.write(text)


def _read_fields(path):
    """A flat keyed file ("oom_kill 3\\n...") as a dict of ints."""
    fields = {}
    with open(path) as file:
        for line in file:
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                fields[key] = int(value)
    return fields


class _V1:
    version = 1

    def __init__(self, bases):
        self.bases = bases

    def prepare(self):
        """Check that job cgroups can be made here (raises Unusable)."""
        for base in self.bases.values():
            if not os.access(base, os.W_OK):
                raise Unusable(f"cannot make cgroups in {base} (run the worker as root)")

    def job(self, name):
        return JobCgroup([os.path.join(self.bases[c], name) for c in CONTROLLERS_V1], self._counters)

    def create(self, name, memory, processes):
        cgroup = self.job(name)
        memory_folder, pids_folder, _ = cgroup.folders
        for folder in cgroup.folders:
            os.mkdir(folder)
        if memory:
            _write(os.path.join(memory_folder, "memory.limit_in_bytes"), str(memory))
            swap = os.path.join(memory_folder, "memory.memsw.limit_in_bytes")
            if os.path.exists(swap):
                _write(swap, str(memory))
        if processes:
            _write(os.path.join(pids_folder, "pids.max"), str(processes))
        return cgroup

    @staticmethod
    def _counters(folders):
        memory, pids, cpuacct = folders
        with open(os.path.join(cpuacct, "cpuacct.usage")) as file:
            cpu = int(file.read()) / 1e9
        return {"cpu": cpu, "memory": _read_fields(os.path.join(memory, "memory.oom_control")).get("oom_kill", 0),
                "processes": _read_fields(os.path.join(pids, "pids.events")).get("max", 0)}


class _V2:
    version = 2

    def __init__(self, base):
        self.base = base

    def prepare(self):
        """Hand the memory, pids and cpu controllers to job cgroups (raises Unusable)."""
        try:
            with open(os.path.join(self.base, "cgroup.controllers")) as file:
                available = file.read().split()
            missing = [c for c in CONTROLLERS_V2 if c not in available]
            if missing:
                raise Unusable(f"the cgroup {self.base} lacks the {', '.join(missing)} controller(s) "
                               "(with systemd: Delegate=yes in the worker's unit)")
            if self.base.rstrip("/") != "/sys/fs/cgroup":
                leaf = os.path.join(self.base, DAEMONS_LEAF)
                os.makedirs(leaf, exist_ok=True)
                with open(os.path.join(self.base, "cgroup.procs")) as file:
                    for pid in file.read().split():
                        _write(os.path.join(leaf, "cgroup.procs"), pid)
            _write(os.path.join(self.base, "cgroup.subtree_control"), " ".join(f"+{c}" for c in CONTROLLERS_V2))
        except OSError as error:
            raise Unusable(f"cannot make cgroups in {self.base} ({error.strerror or error})") from None

    def job(self, name):
        return JobCgroup([os.path.join(self.base, name)], self._counters)

    def create(self, name, memory, processes):
        cgroup = self.job(name)
        (folder,) = cgroup.folders
        os.mkdir(folder)
        if memory:
            _write(os.path.join(folder, "memory.max"), str(memory))
            if os.path.exists(os.path.join(folder, "memory.swap.max")):
                _write(os.path.join(folder, "memory.swap.max"), "0")
        if processes:
            _write(os.path.join(folder, "pids.max"), str(processes))
        return cgroup

    @staticmethod
    def _counters(folders):
        (folder,) = folders
        return {"cpu": _read_fields(os.path.join(folder, "cpu.stat")).get("usage_usec", 0) / 1e6,
                "memory": _read_fields(os.path.join(folder, "memory.events")).get("oom_kill", 0),
                "processes": _read_fields(os.path.join(folder, "pids.events")).get("max", 0)}


class JobCgroup:
    """One job's cgroup (a folder per v1 controller, or one v2 folder)."""

    def __init__(self, folders, counters):
        self.folders = folders
        self._counters = counters

    def join(self, pid=0):
        for folder in self.folders:
            _write(os.path.join(folder, "cgroup.procs"), str(pid))

    def counters(self):
        """CPU seconds, and how often the memory and process limits were hit."""
        return self._counters(self.folders)

    def remove(self):
        for folder in self.folders:
            try:
                os.rmdir(folder)
            except OSError:
                pass
