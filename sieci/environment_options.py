"""The options of jobs' environments (``--requirements``): the client's, and the worker's store and builds.
Declared as every option is (options.py, which lists them with the others); here only for room."""

# No import of sieci.options at the top: options.py imports this module while it is itself imported.
DEFAULT_MAX_SIZE = 4 << 30  # bytes of environments a worker's store keeps beyond those in use
DEFAULT_BUILD_NETWORK = "none"
DEFAULT_BUILD_TIMEOUT = 600.0
DEFAULT_SERVERS = 4  # environments' fork servers a worker keeps running


def client_options():
    from sieci.options import Option, text

    return [
        Option("--requirements", text, None,
               "run the job in a virtual environment of the packages this file lists (pip's requirements "
               "format), which each worker builds once and keeps (see docs/running-jobs.md)", "FILE"),
        Option("--with-wheels", text, None,
               "send the wheels (*.whl) in this folder with the job: its --requirements install from them alone, "
               "with no package index", "DIR"),
    ]


def job_options():
    from sieci.options import Option, positive_count, seconds, size, text

    return [
        Option("--environments-dir", text, None,
               "keep the environments of jobs' --requirements in this folder (shared by the workers that name it)",
               "DIR", shown="/var/tmp/sieci-environments-UID"),
        Option("--environments-size", size, DEFAULT_MAX_SIZE,
               "keep at most this many bytes of environments, beyond those in use; those used longest ago go first"),
        Option("--build-network", text, DEFAULT_BUILD_NETWORK,
               "the network an environment's build has: none (only wheels sent with --with-wheels install), or "
               "host (pip reaches its index; so does the code of what it builds)", choices=("none", "host")),
        Option("--build-timeout", seconds, DEFAULT_BUILD_TIMEOUT,
               "time limit of an environment's build, in seconds"),
        Option("--environment-servers", positive_count, DEFAULT_SERVERS,
               "fork servers of environments to keep running at once (one per environment; the one used longest "
               "ago stops first)", "N"),
    ]
