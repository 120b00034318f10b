"""One cgroup per job: the job's memory and processes limited as a whole, its CPU
counted, and the kernel's own counters saying which limit ended it.

cgroup v2 (the unified tree) where the host has it, else v1 with the memory,
pids and cpuacct controllers. Job cgroups are made under the cgroup the
fork server runs in. Stdlib only, as all of sieci/jobs: the fork server runs with the job interpreter.
"""

import os
import signal
import time

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
        own = paths.get("", "/").rstrip("/")
        if own.endswith("/" + DAEMONS_LEAF):  # where prepare() moved us: our jobs go beside it
            own = os.path.dirname(own)
        return _V2(os.path.join(mounts[""], own.lstrip("/")))
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


def _field(text, key):
    """The number after ``key`` in a flat keyed file ("oom_kill 3\\n..."), or the file's
    only number for a ``key`` of None."""
    if key is None:
        return int(text)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


class _Tree:
    def remove_stale(self, prefix, alive):
        """Remove the cgroups named ``prefix`` + a pid that is no longer ``alive`` (a
        fork server that was killed could not remove its own), killing what was left in them."""
        for base in self._bases():
            for name in os.listdir(base):
                pid = name[len(prefix):]
                if name.startswith(prefix) and pid.isdigit() and not alive(int(pid)):
                    _kill_all_in(os.path.join(base, name))


def _kill_all_in(folder, rounds=100):
    """SIGKILL what is in the cgroup ``folder`` until it is empty (a second at most), and remove it."""
    try:
        for _ in range(rounds):
            with open(os.path.join(folder, "cgroup.procs")) as file:
                left = [int(pid) for pid in file.read().split()]
            if not left:
                os.rmdir(folder)
                return
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)  # a killed process leaves the cgroup once it has run to its end
    except OSError:
        pass


class _V1(_Tree):
    version = 1

    def __init__(self, bases):
        self.bases = bases

    def _bases(self):
        return list(self.bases.values())

    def prepare(self):
        """Check that job cgroups can be made here (raises Unusable)."""
        for base in self.bases.values():
            if not os.access(base, os.W_OK):
                raise Unusable(f"cannot make cgroups in {base} (run the worker as root)")

    def job(self, name):
        return JobCgroup([os.path.join(self.bases[c], name) for c in CONTROLLERS_V1], self.COUNTERS)

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

    # What each counter is: (name, folder (of CONTROLLERS_V1), file, key, scale).
    COUNTERS = [("cpu", 2, "cpuacct.usage", None, 1e-9), ("memory", 0, "memory.oom_control", "oom_kill", 1),
                ("processes", 1, "pids.events", "max", 1)]


class _V2(_Tree):
    version = 2

    def __init__(self, base):
        self.base = base

    def _bases(self):
        return [self.base]

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
        return JobCgroup([os.path.join(self.base, name)], self.COUNTERS)

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

    COUNTERS = [("cpu", 0, "cpu.stat", "usage_usec", 1e-6), ("memory", 0, "memory.events", "oom_kill", 1),
                ("processes", 0, "pids.events", "max", 1)]


class JobCgroup:
    """One job's cgroup (a folder per v1 controller, or one v2 folder)."""

    def __init__(self, folders, counters):
        self.folders = folders
        self._counters = counters
        self._counter_fds = []

    def join(self):
        """Move this process in (its children are then born in it)."""
        for folder in self.folders:
            _write(os.path.join(folder, "cgroup.procs"), "0")

    def counters(self):
        """CPU seconds, and how often the memory and process limits were hit, so far."""
        if not self._counter_fds:  # kept open: a job's end reads them all
            self._counter_fds = [os.open(os.path.join(self.folders[folder], file), os.O_RDONLY | os.O_CLOEXEC)
                                 for _, folder, file, _, _ in self._counters]
        return {name: _field(os.pread(fd, 4096, 0).decode(), key) * scale
                for fd, (name, _, _, key, scale) in zip(self._counter_fds, self._counters)}

    def remove(self):
        """Remove it, once this process has moved back to the cgroup above (if it was in)."""
        for fd in self._counter_fds:
            os.close(fd)
        self._counter_fds = []
        for folder in self.folders:
            try:
                _write(os.path.join(os.path.dirname(folder), "cgroup.procs"), "0")
                os.rmdir(folder)
            except OSError:
                pass
