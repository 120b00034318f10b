"""Every option of every sieci program, declared once: flag, environment variable, type, default, help.

The daemons' parsers (config.py, on configargparse) and the client's quick
parser (client/arguments.py) are both built from these declarations. An
environment variable names one option: where programs share a flag with
different meanings (the worker's ``--timeout`` limits a job, the client's
bounds its wait), their variables differ. This module imports nothing heavy,
as the client loads it on every start.
"""

import sys

from sieci import defaults, environment_options
from sieci.option_values import count, credit, dashboard_urls, format_size, positive_count, seconds, size, switch, text


class UsageError(Exception):
    """A bad command line, config file or environment variable (click's UsageError): raised where it
    is found; only a program's entry point shows it and exits with ``exit_code``. ``usage`` is the
    program's usage (argparse's ``usage: ...`` lines) and ``prog`` its name, which come before the
    ``message`` as argparse's own errors have them."""

    exit_code = defaults.EXIT_USAGE

    def __init__(self, message, usage, prog):
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.prog = prog

    def show(self, file=None):
        (file or sys.stderr).write(f"{self.usage}{self.prog}: error: {self.message}\n")


class Option:
    """One option: ``--flag``, its environment variable, how its value is read, its default and help.

    ``kind`` is a value type above, or ``bool`` for a switch (``--flag``
    alone; ``1``/``0``, ``yes``/``no``... in the environment). ``shown`` is
    the default as help prints it, when the value itself would not say it.
    """

    def __init__(self, flag, kind, default, help, metavar=None, env=None, choices=None, shown=None, short=None,
                 repeat=False, dest=None):
        self.flag = flag
        self.kind = kind
        self.default = default
        self.help = help
        self.metavar = metavar
        self.dest = dest or flag[2:].replace("-", "_")  # --return's and --with's: Python's keywords
        self.env = "SIECI_" + self.dest.upper() if env is None else env  # False: none
        self.choices = choices
        self.shown = shown
        self.short = short
        self.repeat = repeat  # given again, it adds a value: the values are a list

    def with_default(self, default, shown=None):
        """The same option (same meaning, same variable) with another program's default."""
        return Option(self.flag, self.kind, default, self.help, self.metavar, self.env, self.choices, shown,
                      self.short, self.repeat, self.dest)

    def convert(self, value):
        value = switch(value) if self.kind is bool else self.kind(value)
        if self.choices and value not in self.choices and value != self.default:
            raise ValueError(f"invalid choice: {value!r} (choose from {', '.join(self.choices)})")
        return value

    def help_text(self):
        """The help line: what it does, its default, and its environment variable."""
        default = self.shown or self._default_text()
        shown = f" (default: {default})" if default else ""
        variable = f" [{self.env}]" if self.env else ""
        return f"{self.help}{shown}{variable}".replace("%", "%%")

    def _default_text(self):
        if self.default is None or self.kind is bool:
            return ""
        if self.kind is size:
            return format_size(self.default)
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)


def add_option(parser, option, dest=None, with_env=False):
    """Declare ``option`` on an argparse parser (on a configargparse one, ``with_env``: with its variable)."""
    settings = {"dest": dest or option.dest, "help": option.help_text()}
    if with_env and option.env:
        settings["env_var"] = option.env
    flags = [option.short, option.flag] if option.short else [option.flag]
    if option.kind is bool:
        parser.add_argument(*flags, action="store_true", **settings)
        return
    metavar = option.metavar or ("{" + ",".join(option.choices) + "}" if option.choices else None)
    parser.add_argument(*flags, type=_argparse_type(option), default=option.default, metavar=metavar,
                        action="append" if option.repeat else "store", **settings)


def _argparse_type(option):
    import argparse

    def convert(text):
        try:
            return option.convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


# Shared by the daemons (one meaning wherever they appear).
LOG_LEVEL = Option("--log-level", text, "info", "how much to log on stderr",
                   choices=("debug", "info", "warning", "error"))
LOG_FORMAT = Option("--log-format", text, "text", "text for people; json for log collectors (one object per line)",
                    choices=("text", "json"))
LOG_TIME = Option("--log-time", text, "utc", "log times in utc (...Z) or local time", choices=("utc", "local"))
GRACE = Option("--grace", seconds, defaults.GRACE, "on SIGTERM, how long running jobs may take to finish, in seconds")
METRICS = Option("--metrics", text, None, "serve Prometheus metrics over HTTP at this address (HOST:PORT or :PORT), "
                 "and on a master a live dashboard at /; no login: bind it to a trusted address; off by default",
                 "ADDR")
FILES_STORE = Option("--files-store", size, defaults.FILES_STORE,
                     "keep at most this many bytes of jobs' files bundles (--with), so that jobs sharing files "
                     "get them without their travelling again; those unused longest make room")
FILES_STORE_DIR = Option("--files-store-dir", text, None,
                         "make the private folder of the files bundles in this folder", "DIR",
                         shown="the system's temp folder")
KEEPALIVE = Option("--keepalive", seconds, defaults.KEEPALIVE,
                   "give up on a peer that has vanished without a word after about this many seconds")
MAX_UPLOAD = Option("--max-upload", size, defaults.MAX_UPLOAD, "refuse a job whose code is larger than this")
SECRET_FILE = Option("--secret-file", text, None,
                     "the cluster's shared secret, read from this file: every worker link and every client upload "
                     "must prove it holds it, and so must a master to a client (never give a secret on the command "
                     "line)", "PATH")
# TLS as a peer of masters: workers and clients.
TLS = Option("--tls", bool, False, "talk to the masters over TLS (implied by --tls-ca and --tls-cert)")
TLS_CA = Option("--tls-ca", text, None, "verify the masters' certificates against this CA (default: the system's)",
                "PATH")
TLS_CERT = Option("--tls-cert", text, None, "present this certificate to masters that ask for one", "PATH")
TLS_KEY = Option("--tls-key", text, None, "the private key of --tls-cert", "PATH")

# The daemons' options are built only when asked: the client, which starts often, builds only its own.

def master_options():
    """sieci-master's options."""
    return [
        Option("--workers-addr", text, None, "where workers connect: HOST:PORT, :PORT or [IPV6]:PORT", "ADDR"),
        Option("--clients-addr", text, None, "where clients connect: HOST:PORT, :PORT or [IPV6]:PORT", "ADDR"),
        MAX_UPLOAD,
        Option("--client-timeout", seconds, defaults.CLIENT_TIMEOUT,
               "drop a client that sends nothing for this long while it uploads, and take back a job from a "
               "worker that has not accepted it this long after it was sent"),
        Option("--max-queue", positive_count, defaults.MAX_QUEUE, "answer 'ERROR queue full' once this many jobs wait"),
        Option("--max-unverified", size, defaults.MAX_UNVERIFIED,
               "bytes of uploads read and not yet checked, all clients together (one address: a quarter); an "
               "upload that would pass it is refused"),
        Option("--max-connections-per-address", positive_count, defaults.MAX_CONNECTIONS_PER_ADDRESS,
               "client connections one address may have open at once"),
        Option("--max-new-connections", positive_count, defaults.MAX_NEW_CONNECTIONS,
               "client connections that have yet to send their whole request, all addresses together (at most a "
               "quarter of the open-files limit); past it, the oldest from the address with the most is hung up"),
        SECRET_FILE,
        Option("--tls-ca", text, None, "with --tls-cert: accept only peers with a certificate signed by this CA",
               "PATH", env="SIECI_MASTER_TLS_CA"),
        Option("--tls-cert", text, None, "serve TLS on both ports with this certificate", "PATH",
               env="SIECI_MASTER_TLS_CERT"),
        Option("--tls-key", text, None, "the private key of the master's --tls-cert", "PATH",
               env="SIECI_MASTER_TLS_KEY"),
        Option("--names", text, None,
               "with --secret-file: other names clients and workers reach this master by (HOST, or HOST:PORT "
               "where a NAT changes the port), beyond its own addresses and host name; a signature meant for "
               "another master is refused", "NAME[,NAME...]"),
        FILES_STORE, FILES_STORE_DIR,
        Option("--keep-output", seconds, defaults.KEEP_OUTPUT,
               "keep a detached job's results this many seconds after it ended, for sieci-client --attach",
               "SECONDS"),
        Option("--max-kept-output", size, defaults.MAX_KEPT_OUTPUT,
               "keep at most this many bytes of detached jobs' results, all together, spooled in a private folder "
               "made in --files-store-dir; the oldest finished make room, and results that find none are cut"),
        Option("--state-dir", text, None, "keep detached and kept jobs (records, uploads, results) and the files "
               "store in this folder (0700, one master's), found again at a restart; off: lost at a restart", "DIR"),
        Option("--classic-dispatch", bool, False,
               "offer each job to workers with AVAILABLE only once they are free, as the classic master did (for "
               "comparison): no asking ahead, no standing offers"),
        GRACE, METRICS,
        Option("--peer-dashboard", dashboard_urls, None,
               "show these other masters' dashboards (the URLs of their --metrics, separated by commas) on this "
               "one's page, and let their pages read it: give every master the others", "URL[,URL...]"),
        KEEPALIVE, LOG_LEVEL, LOG_FORMAT, LOG_TIME,
    ]


def _job_options():
    """How a worker runs jobs: sieci-worker's and sieci-cluster's."""
    return [
        Option("--timeout", seconds, defaults.JOB_TIMEOUT,
               "wall-clock time limit of each job, in seconds (the client exits 124)", env="SIECI_JOB_TIMEOUT"),
        Option("--max-output", size, defaults.MAX_OUTPUT, "stop a job whose stdout and stderr pass this many bytes"),
        Option("--max-cpu", seconds, defaults.MAX_CPU,
               "CPU seconds a job may use, all its processes together (with --job-cgroups off: each process)"),
        Option("--max-memory", size, defaults.MAX_MEMORY,
               "memory a job may use, all its processes together (with --job-cgroups off: address space each "
               "process may map)"),
        Option("--max-file-size", size, defaults.MAX_FILE_SIZE, "largest file a job may write"),
        Option("--max-disk", size, defaults.MAX_DISK,
               "size of a job's /tmp, where its working directory is (with --job-namespaces off: stop a job whose "
               "working directory grows past this)"),
        Option("--max-open-files", positive_count, defaults.MAX_OPEN_FILES, "files a job's process may hold open"),
        Option("--max-processes", positive_count, defaults.MAX_PROCESSES,
               "processes a job may have at once (with --job-cgroups off: processes the job user may have)"),
        Option("--job-user", text, None,
               "run jobs as this user ('' names the worker's own user; a worker running as root never runs jobs "
               "as root)", "USER", shown="nobody when running as root, else your own user"),
        Option("--job-namespaces", text, "on",
               "run each job in PID, mount, IPC and UTS namespaces of its own: a read-only tree, a private /tmp on "
               "a tmpfs of --max-disk, its own /proc, the worker's secrets hidden; nothing it starts outlives it "
               "(off: a host folder, rlimits)", choices=("on", "off")),
        Option("--job-cgroups", text, "on",
               "hold each job's memory and processes to --max-memory and --max-processes as a whole, in a cgroup "
               "of its own (off: per process, with rlimits)", choices=("on", "off")),
        Option("--job-network", text, None,
               "off: each job gets a network namespace with only a loopback of its own (needs --job-namespaces "
               "on); on: jobs share the host's network, its loopback services and the masters included",
               choices=("on", "off"), shown="off; on with --job-namespaces off"),
        Option("--sandbox-command", text, "",
               "a command to prefix every job with, e.g. 'bwrap --ro-bind / / --dev /dev --bind \"$PWD\" \"$PWD\" "
               "--unshare-all --die-with-parent'; the job's 'python FILE' is appended", "COMMAND"),
        Option("--fresh-interpreter", bool, False,
               "start a new interpreter for every job instead of forking a pre-started one (slower; for jobs that "
               "need a fresh hash seed or interpreter flags)"),
    ] + environment_options.job_options()


def worker_options():
    """sieci-worker's options."""
    return [
        Option("--masters", text, None, "the masters' worker addresses (in --masters, comma-separated)",
               "ADDR[,ADDR...]", env="SIECI_WORKER_MASTERS"),
        Option("--python", text, None, "the interpreter that runs jobs", "PATH", shown="the worker's own"),
        Option("--name", text, None, "the name clients are told ran their job", shown="HOST:PID:N"),
        *_job_options(),
        MAX_UPLOAD,
        Option("--credit", credit, defaults.CREDIT,
               f"jobs this worker may hold for a master, the running one included (at most {defaults.MAX_CREDIT}): "
               "above 1, a far master sends the next jobs while one runs, though they wait here even if another "
               "worker frees up first; auto: 1 with several masters or a near one (a round trip under a quarter of "
               "a job), else enough for the round trip and half a job more", "N|auto", shown="auto"),
        Option("--reconnect-max", seconds, defaults.RECONNECT_MAX,
               "longest wait between attempts to redial a lost master, in seconds"),
        FILES_STORE, FILES_STORE_DIR,
        SECRET_FILE, TLS, TLS_CA, TLS_CERT, TLS_KEY,
        GRACE, METRICS, KEEPALIVE, LOG_LEVEL, LOG_FORMAT, LOG_TIME,
    ]


def cluster_options():
    """sieci-cluster's options."""
    return [
        Option("--workers", positive_count, None, "how many workers to start", "N", shown="the number of CPUs"),
        *[option.with_default("auto", "on where this host can build it")
          if option.flag in ("--job-namespaces", "--job-cgroups") else option for option in _job_options()],
        LOG_LEVEL.with_default("warning"), LOG_FORMAT, LOG_TIME,
    ]


CLIENT = [
    Option("--connect-timeout", seconds, defaults.CONNECT_TIMEOUT,
           "pass over a master that does not answer within this many seconds", "SECONDS"),
    Option("--timeout", seconds, None,
           "give up if the job has no result within this many seconds, queue wait included", "SECONDS",
           shown="none"),
    Option("--retries", count, 0,
           "when no master took the job, or one took it and then lost it, try again, up to N times; a lost job "
           "may have run partly, so only for jobs that may safely run twice", "N"),
    Option("--shuffle", bool, False, "try the masters in random order"),
    SECRET_FILE, TLS, TLS_CA, TLS_CERT, TLS_KEY,
    Option("--jobs", positive_count, defaults.JOBS_AT_ONCE, "batches: run up to N jobs at once", "N"),
    Option("--arg-file", text, None,
           "batches: an input source of this file's lines (- for stdin), the first one, as ':::: PATH' is", "PATH",
           short="-a"),
    Option("--env", text, None,
           "set NAME to VALUE in the job's environment; NAME alone passes this shell's own value (repeatable)",
           "NAME[=VALUE]", env=False, short="-e", repeat=True),
    Option("--fresh", bool, False,
           "run the job in a Python started for it, not one forked from the worker's fork server: slower to start, "
           "and nothing shared with the worker's other jobs (not even the hash seed)"),
    Option("--return", text, None,
           "bring back the files the job writes in its folder whose path matches GLOB (*, ?, [...] within a "
           "name; ** for any folders: 'out/**/*.csv'; a leading dot only where GLOB has one, as the shell "
           "has it), into --results (repeatable)", "GLOB", env=False,
           repeat=True, dest="returns"),
    Option("--results", text, ".",
           "where the files of --return go (made if missing); a batch's job number N's go to DIR/N", "DIR"),
    Option("--max-return", size, defaults.MAX_RETURN,
           "bytes of files --return may bring back, a job's all together, each file counting 512 more", "SIZE"),
    Option("--with", text, None,
           "place this file or folder beside PROG in the job's folder: as its path from PROG's folder when it is "
           "inside it, else by its base name (repeatable; in a batch, for every job)", "PATH", env=False,
           repeat=True, dest="files"),
    Option("--ungroup", bool, False,
           "batches: show each job's output as soon as it ends, not in the order of the files"),
    Option("--joblog", text, None, "batches: write a line per job to this file (tab-separated, with a header)",
           "PATH"),
    Option("--resume", bool, False,
           "batches: run only the jobs --joblog does not list (an interrupted batch's unfinished ones), with the "
           "same PROG, ':::' values and -a file as the run it resumes, and rewrite the joblog"),
    Option("--resume-failed", bool, False,
           "batches: as --resume, and run again the jobs --joblog lists as failed (exit status not 0)"),
    Option("--retry-failed", bool, False,
           "batches: run again the jobs that failed in --joblog, and rewrite it; with ':::' or -a, the same as "
           "--resume-failed; without, only the joblog's jobs (those an interrupted batch never finished are "
           "not in it: use --resume)"),
    Option("--tty", bool, False,
           "run the job on a pseudo-terminal sized like this one, typed on from here (as ssh -t); stdin must be "
           "a terminal", env=False, short="-t"),
    Option("--status", bool, False, "show each master's queue, workers and totals instead of running a file"),
    Option("--json", bool, False, "with --status or --list: print JSON"),
    Option("--detach", bool, False, "queue the job, print its id and exit 0: the master runs it and keeps its output "
           "(see --attach)"),
    Option("--attach", text, None, "print the output of the job with this id (so far, then as it comes) and exit "
           "with its status", "ID", env=False),
    Option("--cancel", text, None, "cancel the queued or running job with this id", "ID", env=False),
    Option("--list", bool, False, "list each master's queued, running and kept jobs, with their ids and ages"),
] + environment_options.client_options()
CLIENT_MASTERS = Option("--masters", text, None, "the masters' client addresses", "MASTER[,MASTER...]",
                        env="SIECI_MASTERS")

# Which config file a daemon reads when no -c is given; each program has its own.
CONFIG_ENV = {"sieci-master": "SIECI_MASTER_CONFIG", "sieci-worker": "SIECI_WORKER_CONFIG",
              "sieci-cluster": "SIECI_CLUSTER_CONFIG"}
PROGRAMS = {"sieci-master": master_options, "sieci-worker": worker_options, "sieci-cluster": cluster_options,
            "sieci-client": lambda: CLIENT + [CLIENT_MASTERS]}
