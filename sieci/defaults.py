"""Every setting's default and every exit status, in one place.

Settings are declared (flag, environment name, help) in options.py; the
classes that take them as keyword arguments default to the same values.
This module imports nothing, so the client's start-up does not pay for it.
"""

# Exit statuses, of the client (a job's own status passes through) and of the daemons.
EXIT_OK = 0
EXIT_CANNOT_START = 1  # a daemon that cannot listen or build its job walls
EXIT_STOPPED_AT_ONCE = 1  # a daemon that got a second SIGTERM or SIGINT
EXIT_USAGE = 2  # a bad command line, config file or environment variable
EXIT_TIME_LIMIT = 124  # as timeout(1)
EXIT_OTHER_LIMIT = 128 + 9  # output, memory, CPU, disk: the job was killed (SIGKILL)
EXIT_INTERRUPTED = 128 + 2  # Ctrl-C
EXIT_FAILED = 255  # sieci could not get a result (or a file the job returned); the reason is on stderr
MOST_FAILURES_COUNTED = 100  # a batch exits with its failures' count, at most this plus one

# Master.
MAX_UPLOAD = 16 << 20
CLIENT_TIMEOUT = 60.0
GRACE = 30.0
MAX_QUEUE = 100_000
MAX_UNVERIFIED = 64 << 20  # bytes of uploads read and not yet checked, all clients together
MAX_CONNECTIONS_PER_ADDRESS = 256  # client connections from one address at once
MAX_NEW_CONNECTIONS = 1024  # client connections yet to send a whole request, all addresses together
FILES_STORE = 1 << 30  # bytes of files bundles a master, or a worker, keeps
KEEP_OUTPUT = 3600.0  # seconds a detached job's results are kept after it ended, for clients that attach
MAX_KEPT_OUTPUT = 1 << 30  # bytes of detached jobs' results a master keeps, all together
KEEPALIVE = 45.0  # seconds before a peer that vanished (no FIN, no RST), idle or not, is taken for gone

# Worker, and each job it runs.
RECONNECT_MIN = 0.1
RECONNECT_MAX = 5.0
JOB_TIMEOUT = 3600.0
MAX_OUTPUT = 1 << 30
MAX_CPU = 3600.0
MAX_MEMORY = 8 << 30
MAX_FILE_SIZE = 1 << 30
MAX_DISK = 2 << 30
MAX_OPEN_FILES = 1024
MAX_PROCESSES = 256
JOB_FILENAME = "job.py"

# Client.
CONNECT_TIMEOUT = 10.0
MAX_RETURN = 1 << 30  # bytes of the files a job returns (--return)
# Bytes of stdin a job may get through a classic master, which relays one block: it goes inline, with the code.
MAX_INLINE_STDIN = 64 << 10
CREDIT = None  # jobs a worker holds at once, the one running included (--credit); None: auto
MAX_CREDIT = 32
# A master sends a job to a worker that holds another of its jobs only if its upload is no larger (the
# worker buffers such codes while its job runs): bigger ones, and those that stream stdin or bring files,
# wait until the worker holds nothing of this master's.
MAX_UPLOAD_AHEAD = 1 << 20
JOBS_AT_ONCE = 8  # a batch's --jobs, and the Python API's max_workers
