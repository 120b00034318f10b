"""An environment's build: pip run as a job, in the job's walls, then its packages copied into the store.

The build is a job of its own (BUILD_PROGRAM): forked by a fork server of its
own, with the jobs' namespaces, cgroup, limits and user, and the network the
operator allows builds (``--build-network``). It gets the job's files bundle
(the wheels shipped with ``--with-wheels`` are in it, and any local package a
requirement names) and the requirements on its stdin, and has pip install
them into a folder of its job's. The worker then copies what pip installed,
regular files and folders only, into a virtual environment it made itself:
nothing of the build (no link, no interpreter, no pyvenv.cfg) is trusted, and
nothing of what was installed runs outside a job (see serving.py: an
environment's fork server starts with ``-S``).
"""

import os
import stat
import subprocess

from sieci.wire.results import Status
from sieci.wire.upload_format import WHEELS_FOLDER
from sieci.worker.isolation import Isolation
from sieci.worker.limits import Limits

BUILD_FILENAME = "sieci_build_environment.py"
PACKAGES = ".sieci-packages"  # where, in the build's folder, pip installs
SUCCEEDED = Status(b"exit", b"0")
KEPT_OUTPUT = 64 * 1024  # bytes of a build's output kept for the job's stderr: its last, where pip says why

# Run as the build job: ``python BUILD_FILENAME NETWORK WHEELS``, the requirements on its stdin.
BUILD_PROGRAM = b"""\
import importlib.util, os, subprocess, sys
with open(".sieci-requirements.txt", "wb") as requirements:
    requirements.write(sys.stdin.buffer.read())
network, wheels = sys.argv[1:3]
python = sys.executable
if importlib.util.find_spec("pip") is None:  # ensurepip's pip, for this build alone
    subprocess.run([sys.executable, "-m", "venv", ".sieci-pip"], check=True, stdout=subprocess.DEVNULL)
    python = os.path.abspath(".sieci-pip/bin/python")
command = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--no-cache-dir",
           "--no-warn-script-location", "--target", "%s", "-r", ".sieci-requirements.txt"]
if wheels == "wheels":
    command += ["--no-index", "--find-links", "%s"]
elif network == "none":
    command += ["--no-index"]
sys.exit(subprocess.run(command).returncode)
""" % (PACKAGES.encode(), WHEELS_FOLDER.encode())


class BuildFailed(Exception):
    """The environment could not be built; ``output`` is what the build wrote (pip's messages), and
    the message says why, in a line; ``pips_answer``: pip itself said no (not a limit, a kill, ours)."""

    def __init__(self, why, output=b"", pips_answer=False):
        super().__init__(why)
        self.output = output
        self.pips_answer = pips_answer


def build_limits(limits, build_timeout):
    """A build's limits: the jobs' own, but its time limit."""
    return Limits(timeout=build_timeout, max_output=limits.max_output,
                  cpu=limits.cpu and max(limits.cpu, build_timeout), memory=limits.memory,
                  file_size=limits.file_size, disk=limits.disk,
                  open_files=limits.open_files, processes=limits.processes)


def build_isolation(isolation, build_network):
    """The jobs' walls, with the network the operator allows builds."""
    return Isolation(isolation.namespaces, isolation.cgroups, build_network == "host" or not isolation.namespaces,
                     isolation.hidden)


def run_build(run, requirements_folder):
    """Read the build's ``run`` (an entered JobRun) to its end; copy what pip installed into the
    environment ``requirements_folder``'s site-packages. BuildFailed, with pip's output, if it failed."""
    output = bytearray()
    for _, data in run.output():
        output += data
        del output[:-KEPT_OUTPUT]
    if run.status != SUCCEEDED:
        raise BuildFailed(f"pip could not install the requirements ({_describe(run.status)})", bytes(output),
                          pips_answer=run.status.kind == b"exit")
    folder = run.open_folder()
    try:
        packages = os.open(PACKAGES, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    except OSError as error:
        raise BuildFailed(f"pip left no packages ({error.strerror})", bytes(output)) from None
    finally:
        os.close(folder)
    try:
        copy_tree(packages, site_packages(requirements_folder), run.limits.disk or (2 << 30))
    finally:
        os.close(packages)


def _describe(status):
    if status.kind == b"exit":
        return f"pip exited {status.value.decode()}"
    return (status.message or b"%s %s" % (status.kind, status.value)).decode("utf-8", "replace")


def make_skeleton(python, folder):
    """A virtual environment of ``python`` (its own, without pip) in ``folder``, made by the worker."""
    made = subprocess.run([python, "-m", "venv", "--without-pip", folder], capture_output=True, timeout=60)
    if made.returncode != 0:
        why = (made.stderr.decode("utf-8", "replace").strip().splitlines() or ["it failed"])[-1]
        raise BuildFailed(f"cannot make a virtual environment with {python} ({why})")


def site_packages(folder):
    """The site-packages folder of the virtual environment in ``folder``."""
    lib = os.path.join(folder, "lib")
    versions = [name for name in os.listdir(lib) if name.startswith("python")]
    if len(versions) != 1:
        raise BuildFailed(f"the virtual environment in {folder} has no one lib/python* folder")
    return os.path.join(lib, versions[0], "site-packages")


def copy_tree(source_fd, target, max_bytes):
    """Copy the folders and regular files below the folder ``source_fd`` (a job's: hostile) into the
    folder ``target``, at most ``max_bytes`` of files: no links followed or copied, no hard-linked file,
    nothing but folders and files; a ``bin`` folder at its top (console scripts) is left out."""
    copied = 0
    for folder, folders, files, folder_fd in os.fwalk(".", dir_fd=source_fd):
        if folder == ".":
            folders[:] = [name for name in folders if name != "bin"]
        into = os.path.normpath(os.path.join(target, folder))
        os.makedirs(into, 0o755, exist_ok=True)
        for name in files:
            status = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
                continue
            copied += status.st_size
            if copied > max_bytes:
                raise BuildFailed(f"the packages take more than {max_bytes} bytes")
            _copy_file(name, folder_fd, os.path.join(into, name), status)


def _copy_file(name, folder_fd, target, status):
    # Non-blocking: a FIFO swapped in since the look (by another job of the job's user) must not block the worker.
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder_fd)
    try:
        opened = os.fstat(source)
        if not stat.S_ISREG(opened.st_mode) or not os.path.samestat(opened, status) or opened.st_nlink != 1:
            raise BuildFailed(f"a file of the build changed while it was copied ({name})")
        mode = 0o755 if status.st_mode & stat.S_IXUSR else 0o644
        copy = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.fchmod(copy, mode)  # the worker's umask aside
            left = status.st_size  # what was counted against the bound, though the file grew since
            while left > 0:
                sent = os.sendfile(copy, source, None, left)
                if not sent:
                    break
                left -= sent
        finally:
            os.close(copy)
    finally:
        os.close(source)

