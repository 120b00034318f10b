"""Configuration of the daemons: each option declared once, here.

Every option can be given on the command line, in a config file
(``-c FILE``, ``key = value`` lines) or as an environment variable
``SIECI_<OPTION>``; that is also the order of precedence.
"""

import json
import logging
import math
import os
import shlex

import configargparse

from . import defaults, executor
from .address import AddressError, parse_address
from .isolation import Isolation, Unavailable
from .limits import Limits

LOG_LEVELS = ["debug", "info", "warning", "error"]
LOG_FORMATS = ["text", "json"]
_SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size(text):
    """A byte count such as ``65536``, ``64K``, ``16M`` or ``1G``."""
    text = text.strip().lower().removesuffix("b")
    factor = _SIZE_SUFFIXES.get(text[-1:], 1)
    number = text[:-1] if factor > 1 else text
    try:
        value = int(float(number) * factor)
    except (ValueError, OverflowError):
        raise configargparse.ArgumentTypeError(f"not a size: {text!r} (try 65536, 64K, 16M or 1G)") from None
    if value <= 0:
        raise configargparse.ArgumentTypeError("a size must be positive")
    return value


def _listen_address(text):
    try:
        return parse_address(text, "")
    except AddressError as error:
        raise configargparse.ArgumentTypeError(str(error)) from None


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise configargparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise configargparse.ArgumentTypeError(f"not a finite number of seconds: {text!r}")
    if value <= 0:
        raise configargparse.ArgumentTypeError("a time must be positive")
    return value


def _parser(prog, description):
    parser = configargparse.ArgParser(
        prog=prog,
        description=description,
        auto_env_var_prefix="SIECI_",
        args_for_setting_config_path=["-c", "--config"],
        config_arg_help_message="read options from this file (key = value lines; see conf/)",
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="how much to log on stderr")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text for people; json for log collectors (one object per line)")
    return parser


def _add_address(parser, name, help_text):
    """An address given as a positional argument or, in config and env, as an option."""
    parser.add_argument(name, nargs="?", metavar=name.upper(), help=f"{help_text} (or --{name.replace('_', '-')})")
    parser.add_argument(f"--{name.replace('_', '-')}", dest=f"{name}_option", metavar="ADDR", help=help_text)


def _address(parser, args, name, default_host=""):
    text = getattr(args, name) or getattr(args, f"{name}_option")
    if not text:
        parser.error(f"{name.upper()} is missing: give it as an argument, with --{name.replace('_', '-')}, "
                     f"or in SIECI_{name.upper()}")
    try:
        return parse_address(text, default_host)
    except AddressError as error:
        parser.error(str(error))


def _add_job_options(parser):
    """How a worker runs jobs: limits, user, sandbox. Every limit is per job."""
    parser.add_argument("--timeout", type=positive_seconds, default=defaults.JOB_TIMEOUT,
                        help="wall-clock time limit of each job, in seconds (the client exits 124)")
    parser.add_argument("--max-output", type=size, default=defaults.MAX_OUTPUT,
                        help="stop a job whose stdout and stderr pass this many bytes")
    parser.add_argument("--max-cpu", type=positive_seconds, default=defaults.MAX_CPU,
                        help="CPU seconds a job may use")
    parser.add_argument("--max-memory", type=size, default=defaults.MAX_MEMORY,
                        help="memory a job may use, all its processes together (with --job-cgroups off: "
                             "address space each process may map)")
    parser.add_argument("--max-file-size", type=size, default=defaults.MAX_FILE_SIZE,
                        help="largest file a job may write")
    parser.add_argument("--max-disk", type=size, default=defaults.MAX_DISK,
                        help="size of a job's /tmp, where its working directory is (with --job-namespaces "
                             "off: stop a job whose working directory grows past this)")
    parser.add_argument("--max-open-files", type=int, default=defaults.MAX_OPEN_FILES,
                        help="files a job's process may hold open")
    parser.add_argument("--max-processes", type=int, default=defaults.MAX_PROCESSES,
                        help="processes a job may have at once (with --job-cgroups off: processes the job "
                             "user may have)")
    parser.add_argument("--job-user", default=None, metavar="USER",
                        help="run jobs as this user; default: 'nobody' when the worker runs as root, "
                             "else the worker's own user ('' names it; a root worker never runs jobs as root)")
    parser.add_argument("--job-namespaces", choices=["on", "off"], default="on",
                        help="run each job in PID, mount, IPC and UTS namespaces of its own: a read-only "
                             "tree, a private /tmp on a tmpfs of --max-disk, its own /proc, the worker's "
                             "secrets hidden; nothing it starts outlives it (off: a host folder, rlimits)")
    parser.add_argument("--job-cgroups", choices=["on", "off"], default="on",
                        help="hold each job's memory and processes to --max-memory and --max-processes as a "
                             "whole, in a cgroup of its own (off: per process, with rlimits)")
    parser.add_argument("--job-network", choices=["on", "off"], default="on",
                        help="off: jobs get a network namespace with only loopback (needs --job-namespaces on)")
    parser.add_argument("--sandbox-command", default="", metavar="COMMAND",
                        help="a command to prefix every job with, e.g. 'bwrap --ro-bind / / --dev /dev "
                             "--bind \"$PWD\" \"$PWD\" --unshare-all --die-with-parent'; the job's "
                             "'python FILE' is appended")
    parser.add_argument("--fresh-interpreter", action="store_true",
                        help="start a new interpreter for every job instead of forking a pre-started one "
                             "(slower; for jobs that need a fresh hash seed or interpreter flags)")


def job_options(parser, args):
    """The keyword arguments of Worker that say how it runs jobs."""
    limits = Limits(timeout=args.timeout, max_output=args.max_output, cpu=args.max_cpu,
                    memory=args.max_memory, file_size=args.max_file_size, disk=args.max_disk,
                    open_files=args.max_open_files, processes=args.max_processes)
    python = getattr(args, "python", None)
    if args.job_network == "off" and args.job_namespaces == "off":
        parser.error("--job-network off needs --job-namespaces on")
    hidden = [getattr(args, name, None) for name in ("secret_file", "tls_key", "config")]
    isolation = Isolation(args.job_namespaces != "off", args.job_cgroups != "off", args.job_network == "on", hidden)
    return {"limits": limits, "python": python, "job_user": _job_user(parser, args.job_user),
            "command_prefix": shlex.split(args.sandbox_command), "fresh_interpreter": args.fresh_interpreter,
            "isolation": isolation}


def _job_user(parser, name):
    """``(uid, gid)`` to run jobs as, or None for the worker's own user (never root's)."""
    import pwd

    if name is None:
        name = "nobody" if os.geteuid() == 0 else ""
    if not name and os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name or "root")
    except KeyError:
        parser.error(f"--job-user: no such user {name!r}")
    if entry.pw_uid == 0:
        parser.error("a worker running as root never runs jobs as root: name an unprivileged --job-user "
                     "(the default is nobody)")
    return entry.pw_uid, entry.pw_gid


def settle_isolation(job_options, optional=()):
    """Check that this host can build the job walls that are on (see isolation.py).

    A wall in ``optional`` that cannot be built is turned off, with a line at
    info; any other is an error, returned as one line (None when all is well).
    """
    isolation = job_options["isolation"]
    try:
        for note in isolation.check(job_options["python"], optional):
            logging.getLogger("sieci.worker").info("%s", note)
    except Unavailable as why:
        return str(why)
    user = job_options["job_user"]
    blocked = user and not isolation.namespaces and executor.unreadable_for(user, job_options["python"])
    if blocked:
        return (f"the job user cannot read {blocked}, which jobs need to run Python: install the interpreter "
                "where it can (--python), or keep --job-namespaces on (it is then made readable for jobs)")
    return None


def _add_security_options(parser, role):
    parser.add_argument("--secret-file", metavar="PATH",
                        help="the cluster's shared secret: every worker link and every client upload must "
                             "prove it holds it (never give a secret on the command line)")
    parser.add_argument("--tls-ca", metavar="PATH",
                        help="with --tls-cert: accept only peers with a certificate signed by this CA"
                        if role == "master" else "verify the masters' certificates against this CA")
    parser.add_argument("--tls-cert", metavar="PATH",
                        help="serve TLS on both ports with this certificate" if role == "master"
                        else "present this certificate to masters that ask for one")
    parser.add_argument("--tls-key", metavar="PATH", help="the private key of --tls-cert")
    if role == "worker":
        parser.add_argument("--tls", action="store_true",
                            help="talk to the masters over TLS (implied by --tls-ca and --tls-cert)")


def security_options(parser, args, role, log):
    """``secret`` and ``tls`` for Master or Worker, from the options; warnings logged."""
    from . import auth, tls

    options = {"secret": None, "tls": None}
    if args.secret_file:
        try:
            options["secret"], warning = auth.read_secret(args.secret_file)
        except auth.SecretError as error:
            parser.error(str(error))
        if warning:
            log.warning(warning)
    try:
        if role == "master" and args.tls_cert:
            options["tls"] = tls.server_context(args.tls_cert, args.tls_key, args.tls_ca)
        elif role == "master" and (args.tls_ca or args.tls_key):
            parser.error("--tls-ca and --tls-key need --tls-cert")
        elif role == "worker" and (args.tls or args.tls_ca or args.tls_cert):
            options["tls"] = tls.client_context(args.tls_ca, args.tls_cert, args.tls_key)
    except tls.TLSError as error:
        parser.error(str(error))
    return options


def warn_if_exposed(hosts, secret, log, what):
    """A loud warning for a daemon that talks beyond loopback with no secret."""
    exposed = [host for host in hosts if not _is_loopback(host)]
    if exposed and secret is None:
        log.warning("!" * 72)
        where = ", ".join(host or "all interfaces" for host in exposed)
        log.warning("%s on %s WITHOUT A SECRET: anyone who can reach it can run code on the workers. "
                    "Give every daemon and client --secret-file.", what, where)
        log.warning("!" * 72)


def _is_loopback(host):
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _add_common_daemon_options(parser, grace, what):
    parser.add_argument("--grace", type=positive_seconds, default=grace,
                        help=f"on SIGTERM, how long {what} may take to finish")
    parser.add_argument("--metrics", type=_listen_address, default=None, metavar="ADDR",
                        help="serve Prometheus metrics over HTTP at this address (HOST:PORT or :PORT); off by default")
    parser.add_argument("--keepalive", type=positive_seconds, default=defaults.KEEPALIVE,
                        help="give up on a peer that has vanished without a word after about this many seconds")


def master_parser():
    parser = _parser("sieci-master", "Queue jobs from sieci clients and hand them to workers.")
    _add_address(parser, "workers_addr", "where workers connect: HOST:PORT, :PORT or [IPV6]:PORT")
    _add_address(parser, "clients_addr", "where clients connect")
    parser.add_argument("--max-upload", type=size, default=defaults.MAX_UPLOAD,
                        help="refuse a job whose code is larger than this")
    parser.add_argument("--client-timeout", type=positive_seconds, default=defaults.CLIENT_TIMEOUT,
                        help="drop a client that sends nothing for this long while it uploads")
    parser.add_argument("--max-queue", type=int, default=defaults.MAX_QUEUE,
                        help="answer 'ERROR queue full' once this many jobs wait")
    parser.add_argument("--max-unverified", type=size, default=defaults.MAX_UNVERIFIED,
                        help="bytes of uploads read and not yet checked, all clients together (one address: "
                             "a quarter); an upload that would pass it is refused")
    parser.add_argument("--max-connections-per-address", type=int,
                        default=defaults.MAX_CONNECTIONS_PER_ADDRESS,
                        help="client connections one address may have open at once")
    _add_security_options(parser, "master")
    parser.add_argument("--names", type=_names, default=[], metavar="NAME[,NAME...]",
                        help="with --secret-file: other names clients and workers reach this master by "
                             "(HOST, or HOST:PORT where a NAT changes the port), beyond its own addresses "
                             "and host name; a signature meant for another master is refused")
    _add_common_daemon_options(parser, defaults.GRACE, "running jobs")
    return parser


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_master(argv, env=None):
    parser = master_parser()
    args = parser.parse_args(argv, env_vars=os.environ if env is None else env)
    args.workers_addr = _address(parser, args, "workers_addr")
    args.clients_addr = _address(parser, args, "clients_addr")
    args.security = security_options(parser, args, "master", logging.getLogger("sieci.master"))
    return args


def worker_parser():
    parser = _parser("sieci-worker", "Run jobs for one or more sieci masters.")
    parser.add_argument("masters", nargs="*", metavar="MASTER_ADDR",
                        help="the masters' worker addresses (or --masters A,B)")
    parser.add_argument("--masters", dest="masters_option", metavar="ADDR[,ADDR...]",
                        help="the masters' worker addresses, comma-separated")
    parser.add_argument("--python", default=None, metavar="PATH",
                        help="the interpreter that runs jobs (default: the worker's own)")
    parser.add_argument("--name", default=None,
                        help="the name clients are told ran their job (default: HOST:PID:N)")
    _add_job_options(parser)
    parser.add_argument("--max-upload", type=size, default=defaults.MAX_UPLOAD,
                        help="refuse a job whose code is larger than this")
    parser.add_argument("--reconnect-max", type=positive_seconds, default=defaults.RECONNECT_MAX,
                        help="longest wait between attempts to redial a lost master, in seconds")
    _add_security_options(parser, "worker")
    _add_common_daemon_options(parser, defaults.GRACE, "a running job")
    return parser


def parse_worker(argv, env=None):
    parser = worker_parser()
    args = parser.parse_args(argv, env_vars=os.environ if env is None else env)
    texts = args.masters or [text for text in (args.masters_option or "").split(",") if text.strip()]
    if not texts:
        parser.error("no master given: name at least one MASTER_ADDR, or set --masters or SIECI_MASTERS")
    try:
        args.masters = [parse_address(text, "127.0.0.1") for text in texts]
    except AddressError as error:
        parser.error(str(error))
    args.job_options = job_options(parser, args)
    args.security = security_options(parser, args, "worker", logging.getLogger("sieci.worker"))
    return args


def cluster_parser():
    parser = _parser("sieci-cluster", "Start a master and workers on loopback; run FILE on them, or serve.")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="run this Python file (- for stdin), print its output and exit with its status; "
                             "without it, serve until Ctrl-C")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="how many workers to start (default: the number of CPUs)")
    _add_job_options(parser)
    # A local tool: jobs run as you (as nobody when you are root), each wall where this host has it.
    parser.set_defaults(log_level="warning", job_namespaces="auto", job_cgroups="auto")
    return parser


def parse_cluster(argv, env=None):
    parser = cluster_parser()
    args = parser.parse_args(argv, env_vars=os.environ if env is None else env)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    args.job_options = job_options(parser, args)
    return args


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a job's id and event when there is one."""

    def format(self, record):
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        for field in ("job", "event"):
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level, log_format="text"):
    # Neither format shows where a call was made, nor thread or process: skip finding them
    # for every record (the logging HOWTO's "Optimization"; under load a sixth of the
    # master's Python time went to its three log lines per job).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
