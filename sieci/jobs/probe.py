"""What this host lets a worker's jobs have, asked with the job interpreter in a throwaway process.

The worker runs this file as a script (see worker/isolation.py):

- ``python probe.py --probe on|off``: can jobs get namespaces (and, off, a network of their own)?
- ``python probe.py --reach UID:GID sandboxed|host``: which folder of this Python can't that user read?

It fails with the reason, in its last line on stderr.
"""

import importlib.util
import os
import sys

# sieci's package, from the folder above this one alone (as zygote.py imports it): the interpreter's
# path stays as ``python3 FILE`` has it, which unreadable_folder reads.
_SIECI = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("sieci", os.path.join(_SIECI, "__init__.py"),
                                               submodule_search_locations=[_SIECI])
sys.modules["sieci"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["sieci"])
from sieci.jobs.file_view import unreadable_folder  # noqa: E402
from sieci.jobs.sandbox import build_template, enter_jobs_user_namespace, enter_namespaces, finish_namespaces  # noqa: E402


def _probe(network):
    """Build, in this throwaway process, the walls a job gets; fails with the reason."""
    build_template({"user": None, "network": network})
    enter_namespaces({"disk": 4096}, new_pid=True)
    child = os.fork()
    if child == 0:
        try:
            finish_namespaces({})
            if os.geteuid() == 0:
                enter_jobs_user_namespace()
        except OSError as error:
            print(error, file=sys.stderr)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if status != 0:
        raise OSError("cannot finish a job's namespaces in a new PID namespace")


def _reach(user, in_template):
    """Print the folder the job user cannot read (see unreadable_folder), in the job's view of
    the files (``in_template``) or the host's."""
    if in_template:
        build_template({"user": user})
    print(unreadable_folder(user) or "")


if __name__ == "__main__":
    try:
        if sys.argv[1] == "--reach":
            _reach(tuple(int(n) for n in sys.argv[2].split(":")), sys.argv[3] == "sandboxed")
        else:
            _probe(network=sys.argv[2:] != ["off"])
    except OSError as error:
        sys.exit(str(error))
