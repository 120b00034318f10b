"""The fork server's main file (``python zygote.py FD WALLS``; its work is serving.py's): each job's
program runs at its top level, as ``python3 PROG`` runs PROG.

It is small on purpose: Python keeps a main file's syntax tree until the file has run to its end,
which for this one is each job's end, and each job's process would free it again (copying the pages
it touches from the fork server's); a module's tree is freed once the module is compiled.
"""

import sys

if sys.flags.no_site:  # an environment's fork server (serving.enter_environment): site's builtins, not its paths
    import site

    site.setquit()
    site.setcopyright()
    site.sethelper()

# The interpreter as ``python3 FILE`` has it at its start: each job finds it so (job_process.py).
MODULES_AT_START = frozenset(sys.modules)
PATH_AT_START = list(sys.path)
PATH_IMPORTER_CACHE_AT_START = dict(sys.path_importer_cache)

import importlib.util  # noqa: E402
import os  # noqa: E402

# sieci's package, from the folder above this one alone: its parent (site-packages, say) on sys.path
# would come before the standard library's folders. The job's process forgets it (job_process.py).
_SIECI = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("sieci", os.path.join(_SIECI, "__init__.py"),
                                               submodule_search_locations=[_SIECI])
sys.modules["sieci"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sys.modules["sieci"])
from sieci.jobs import job_process, serving  # noqa: E402

if __name__ == "__main__":
    program = serving.main(MODULES_AT_START, PATH_AT_START, PATH_IMPORTER_CACHE_AT_START)
    if program is not None:  # a job's process: its program runs here, as python3 runs a main file
        job_globals, path, source, quick_ending = job_process.take_interpreter(program)
        del program
        serving.add_environment_packages()
        try:
            try:
                if source is None:  # a zipapp or a folder
                    import runpy

                    runpy._run_module_as_main("__main__", alter_argv=False)
                else:
                    exec(compile(source, path, "exec", dont_inherit=True), job_globals)
            finally:  # our globals are frozen, never collected: they must not keep the job's alive past its end
                del job_globals, path, source
        except BaseException as error:
            error.__traceback__ = error.__traceback__.tb_next  # this frame is the fork server's, not the job's
            job_process.program_ended(quick_ending, error)
            raise
        else:
            job_process.program_ended(quick_ending, None)
        finally:
            del quick_ending  # the interpreter frees it, last, at its end (ending.py)
