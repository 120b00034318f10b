"""Configuration of the daemons, from the declarations in options.py.

Every option can be given on the command line, as an environment variable
(options.py names it), or in a config file (``-c FILE``, or the program's
own ``SIECI_<PROGRAM>_CONFIG``; ``key = value`` lines); that is also the
order of precedence, then the built-in default.
"""

import argparse
import logging
import os
import shlex

import configargparse

from sieci import defaults, options, sources
from sieci.options import UsageError
from sieci.wire.address import AddressError, parse_address
from sieci.worker.isolation import Isolation, Unavailable
from sieci.worker.limits import Limits


class _Parser(configargparse.ArgParser):
    """configargparse's parser, whose refusals (an unknown flag, a bad value) are UsageErrors as our own
    checks' are: the entry point shows them as text, or as one JSON line under --log-format json."""

    def error(self, message):
        raise UsageError(message, self.format_usage(), self.prog)


def _parser(prog, description, declared, positionals=()):
    """A parser for ``prog`` with the options ``declared``; ``positionals`` are
    options that may also be given bare on the command line (the addresses)."""
    parser = _Parser(
        prog=prog,
        description=description,
        args_for_setting_config_path=["-c", "--config"],
        add_config_file_help=False,
        add_env_var_help=False,
        config_arg_help_message=f"read options from this file (key = value lines; see conf/) "
                                f"[{options.CONFIG_ENV[prog]}]",
    )
    parser.add_argument("--version", action="version", version=f"{prog} {_version()}")
    for option in declared:
        if option.flag in positionals:
            name = option.dest
            nargs, metavar = ("*", "MASTER_ADDR") if name == "masters" else ("?", name.upper())
            parser.add_argument(name, nargs=nargs, metavar=metavar,
                                help=f"{option.help} (or {option.flag})")
            options.add_option(parser, option, dest=f"{name}_option", with_env=True)
        else:
            options.add_option(parser, option, with_env=True)
    return parser


def _refusal(parser, message):
    """What ``parser.error`` would say, as a UsageError for the program's entry point to show."""
    return UsageError(message, parser.format_usage(), parser.prog)


def _version():
    from sieci import __version__

    return __version__


def parse(parser, argv, env):
    """``parser.parse_args``, with the program's config file from its environment variable,
    and a config file's unknown keys named as such; ``setting_sources`` on the result says
    where each setting that is not a default came from (see sources.py). A bad command line,
    config file or variable raises UsageError."""
    env = os.environ if env is None else env
    argv = list(argv)
    path = _config_path(argv)
    config_source = "command line"
    if path is None and env.get(options.CONFIG_ENV[parser.prog]):
        path = env[options.CONFIG_ENV[parser.prog]]
        config_source = options.CONFIG_ENV[parser.prog]
        argv = ["--config", path] + argv
    config_items = _check_config_keys(parser, path) if path is not None else {}
    args = parser.parse_args(argv, env_vars=env)
    args.setting_sources = sources.setting_sources(parser, args, argv, env, config_items, config_source)
    return args


def log_format_asked(prog, argv, env=None):
    """The --log-format the command line, the environment or the config file asks for (text if
    none), as well as it can be told before the command line is read: a refusal is said in it."""
    env = os.environ if env is None else env
    for token, value in zip(argv, list(argv[1:]) + [None]):
        if token == "--":
            break
        if token.startswith("--log-format="):
            return token.partition("=")[2]
        if token == "--log-format" and value:
            return value
    if env.get(options.LOG_FORMAT.env):
        return env[options.LOG_FORMAT.env]
    path = _config_path(list(argv)) or env.get(options.CONFIG_ENV.get(prog, ""))
    try:
        with open(path, encoding="utf-8") as stream:
            return configargparse.DefaultConfigFileParser().parse(stream).get("log-format", "text")
    except (TypeError, OSError, UnicodeDecodeError, configargparse.ConfigFileParserException):
        return "text"


def _config_path(argv):
    for index, token in enumerate(argv):
        if token in ("-c", "--config") and index + 1 < len(argv):
            return argv[index + 1]
        if token.startswith("--config="):
            return token.partition("=")[2]
        if token == "--":
            break
    return None


def _check_config_keys(parser, path):
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
        items = configargparse.DefaultConfigFileParser().parse(lines)
    except (OSError, UnicodeDecodeError) as error:
        why = getattr(error, "strerror", None) or error
        raise _refusal(parser, f"cannot read the config file {path}: {why}") from None
    except configargparse.ConfigFileParserException:  # its message quotes the line, which may be a secret's
        raise _refusal(parser, f"cannot read the config file {path}: a line is not 'key = value'") from None
    known = {key for action in parser._actions for key in parser.get_possible_config_keys(action)}
    unknown = [key for key in items if key not in known]
    if unknown:
        raise _refusal(parser, f"{sources.unknown_settings(path, unknown, lines)} (see {parser.prog} --help)")
    return items


def _address(parser, args, name, default_host=""):
    text = getattr(args, name) or getattr(args, f"{name}_option")
    if not text:
        env = next(option.env for option in options.master_options() if option.dest == name)
        flag = f"--{name.replace('_', '-')}"
        raise _refusal(parser, f"{name.upper()} is missing: give it as an argument, with {flag}, or in {env}")
    try:
        return parse_address(text, default_host)
    except AddressError as error:
        raise _refusal(parser, str(error)) from None


def job_options(parser, args):
    """The keyword arguments of Worker that say how it runs jobs."""
    limits = Limits(timeout=args.timeout, max_output=args.max_output, cpu=args.max_cpu,
                    memory=args.max_memory, file_size=args.max_file_size, disk=args.max_disk,
                    open_files=args.max_open_files, processes=args.max_processes)
    python = getattr(args, "python", None)
    if args.job_network == "off" and args.job_namespaces == "off":
        raise _refusal(parser, "--job-network off needs --job-namespaces on")
    hidden = [getattr(args, name, None) for name in ("secret_file", "tls_key", "config")]
    network = args.job_network == "on" or args.job_namespaces == "off"
    isolation = Isolation(args.job_namespaces != "off", args.job_cgroups != "off", network, hidden)
    return {"limits": limits, "python": python, "job_user": _job_user(parser, args.job_user),
            "command_prefix": shlex.split(args.sandbox_command), "fresh_interpreter": args.fresh_interpreter,
            "isolation": isolation, "environments": _environments(args)}


def _environments(args):
    """How the worker builds and keeps jobs' environments (--requirements)."""
    from sieci.worker.environments import EnvironmentOptions, default_folder

    return EnvironmentOptions(args.environments_dir or default_folder(), args.environments_size, args.build_network,
                              args.build_timeout, args.environment_servers)


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
        raise _refusal(parser, f"--job-user: no such user {name!r}") from None
    if entry.pw_uid == 0:
        raise _refusal(parser, "a worker running as root never runs jobs as root: name an unprivileged "
                               "--job-user (the default is nobody)")
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
        user = job_options["job_user"]
        blocked = user and isolation.unreadable_for(user, job_options["python"])
    except Unavailable as why:
        return str(why)
    if blocked:
        fix = ("make it readable for that user (chmod o+rX), or install sieci and its interpreter where it can "
               "(--python)")
        if not isolation.namespaces:
            fix += ", or keep --job-namespaces on (the way down to each folder is then made for jobs)"
        return f"the job user cannot read {blocked}, which jobs need to run Python: {fix}"
    return None


def security_options(parser, args, role, log):
    """``secret`` and ``tls`` for Master or Worker, from the options; warnings logged."""
    from sieci.wire import auth, tls

    options = {"secret": None, "tls": None}
    if args.secret_file:
        try:
            options["secret"], warning = auth.read_secret(args.secret_file)
        except auth.SecretError as error:
            raise _refusal(parser, str(error)) from None
        if warning:
            log.warning(warning)
    try:
        options["tls"] = tls.context(role, args.tls_ca, args.tls_cert, args.tls_key, getattr(args, "tls", False))
    except tls.TLSError as error:
        raise _refusal(parser, str(error)) from None
    return options


def warn_if_exposed(hosts, secret, log, what):
    """A loud warning for a daemon that talks beyond loopback with no secret; a note on loopback, which
    every process of this host reaches (a job of a worker here with --job-network on among them)."""
    if secret is not None:
        return
    exposed = [host for host in hosts if not _is_loopback(host)]
    if not exposed:
        log.info("%s on loopback without a secret: every process on this host can join as a worker or a "
                 "client, jobs of a worker here with --job-network on among them (--secret-file)", what)
        return
    log.warning("!" * 72)
    where = ", ".join(host or "all interfaces" for host in exposed)
    log.warning("%s on %s WITHOUT A SECRET: anyone who can reach it can run code on the workers. "
                "Give every daemon and client --secret-file.", what, where)
    log.warning("!" * 72)


def warn_if_jobs_reach_masters(isolation, secret, log):
    """A loud warning for a worker whose jobs share its network while its masters take anyone."""
    if isolation.network and secret is None:
        log.warning("!" * 72)
        log.warning("jobs share this host's network (--job-network on) and there is NO SECRET: a job can dial "
                    "its masters, take other users' jobs as a worker and forge their results. Give every daemon "
                    "and client --secret-file, or use --job-network off.")
        log.warning("!" * 72)


def _is_loopback(host):
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def master_parser():
    return _parser("sieci-master", "Queue jobs from sieci clients and hand them to workers.",
                   options.master_options(),
                   positionals=("--workers-addr", "--clients-addr"))


def parse_master(argv, env=None):
    parser = master_parser()
    args = parse(parser, argv, env)
    args.workers_addr = _address(parser, args, "workers_addr")
    args.clients_addr = _address(parser, args, "clients_addr")
    args.names = [name.strip() for name in (args.names or "").split(",") if name.strip()]
    _daemon_options(parser, args, "master")
    return args


def worker_parser():
    return _parser("sieci-worker", "Run jobs for one or more sieci masters.", options.worker_options(),
                   positionals=("--masters",))


def parse_worker(argv, env=None):
    parser = worker_parser()
    args = parse(parser, argv, env)
    texts = args.masters or [text for text in (args.masters_option or "").split(",") if text.strip()]
    if not texts:
        raise _refusal(parser, "no master given: name at least one MASTER_ADDR, or set --masters or "
                               "SIECI_WORKER_MASTERS")
    try:
        args.masters = [parse_address(text, "127.0.0.1") for text in texts]
    except AddressError as error:
        raise _refusal(parser, str(error)) from None
    if args.credit is not None and args.credit > defaults.MAX_CREDIT:
        raise _refusal(parser, f"--credit: at most {defaults.MAX_CREDIT}, not {args.credit}")
    args.job_options = job_options(parser, args)
    _daemon_options(parser, args, "worker")
    return args


def _daemon_options(parser, args, role):
    if args.metrics is not None:
        try:
            args.metrics = parse_address(args.metrics, "")
        except AddressError as error:
            raise _refusal(parser, f"--metrics: {error}") from None
    args.security = security_options(parser, args, role, logging.getLogger(f"sieci.{role}"))


def cluster_parser():
    parser = _parser("sieci-cluster", "Start a master and workers on loopback; run FILE on them, or serve.",
                     options.cluster_options())
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="PROG [ARG...]",
                        help="run this Python program (a file; - for stdin) with its arguments as python3 would, "
                             "print its output and exit with its status; without it, serve until Ctrl-C. Every "
                             "option of sieci-client (--with, --return, -e, -t, ':::' batches...) may come before "
                             "PROG, as with sieci-client; --timeout is the jobs' time limit (exit status 124)")
    parser.add_argument("--port", type=_port_number, metavar="PORT",
                        help="serve other clients: the master takes them on this port of 127.0.0.1 (without PROG "
                             "only; default: a free port)")
    parser.add_argument("--metrics", type=_metrics_address, metavar="[HOST:]PORT",
                        help="serve the master's Prometheus metrics at /metrics and its live dashboard at / over "
                             "HTTP on this port (of 127.0.0.1 unless HOST is given; no login)")
    return parser


def _port_number(text):
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"not a port (1 to 65535): {text!r}")
    return int(text)


def _metrics_address(text):
    try:
        return parse_address(text, "127.0.0.1")
    except AddressError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_cluster(argv, env=None):
    parser = cluster_parser()
    args = parse(parser, argv, env)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command  # argparse keeps a first --
    args.workers = args.workers or os.cpu_count() or 1
    args.job_options = job_options(parser, args)
    return args
