"""Entry points of the daemons: sieci-master, sieci-worker and sieci-cluster.

Each patches the standard library for gevent first thing, then reads its
configuration. SIGTERM or SIGINT starts a graceful stop (exit 0 when done);
a second one stops at once (exit 1).
"""

import os
import shutil
import sys

from sieci import defaults
from sieci.options import UsageError


def _patch():
    from gevent import monkey

    monkey.patch_all()


def _raise_fd_limit():
    """A master holds a socket per queued client: allow as many as the system lets us."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _fail(prog, message):
    """A daemon that cannot start says why in one line, in the log's format; the exit status."""
    from sieci.logs import startup_error

    startup_error(prog, message)
    return defaults.EXIT_CANNOT_START


def _refused(error, argv):
    """A bad command line, config file or environment variable, said on stderr (as one JSON line
    when JSON logs were asked for); the exit status."""
    from sieci.config import log_format_asked
    from sieci.logs import startup_error

    startup_error(error.prog, error.message, log_format_asked(error.prog, argv) == "json", error.usage)
    return error.exit_code


def _start_logging(args):
    from sieci.logs import setup_logging

    setup_logging(args.log_level, args.log_format, args.log_time)


def _say_settings(args, name):
    """Once the daemon has started (a daemon that cannot start says only why): where each setting came from."""
    import logging

    from sieci.sources import describe

    logging.getLogger(name).info("%s", describe(args.setting_sources),
                                 extra={"settings": [setting.as_dict() for setting in args.setting_sources]})


def _stop_on_signals(stop, log):
    """From now on, SIGTERM or SIGINT stops the daemon through ``stop()`` (a second one at
    once); returns an event set once it has stopped. Called before the daemon listens, so
    that no signal finds it without its handler."""
    import os
    import signal

    import gevent
    import gevent.event

    stopped = gevent.event.Event()
    signals = []

    def on_signal():
        signals.append(True)
        if len(signals) > 1:
            log.warning("second signal: stopping at once")
            os._exit(defaults.EXIT_STOPPED_AT_ONCE)
        log.info("stopping (send the signal again to stop at once)")
        gevent.spawn(lambda: (stop(), stopped.set()))

    for number in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(number, on_signal)
    return stopped


def master_main(argv=None):
    _patch()
    import logging

    from sieci.wire.address import format_address
    from sieci.config import parse_master, warn_if_exposed
    from sieci.master.master import Master

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_master(argv)
    except UsageError as error:
        return _refused(error, argv)
    _start_logging(args)
    _raise_fd_limit()
    from sieci.master.state import StateRefused

    try:
        master = Master(args.workers_addr, args.clients_addr, max_upload=args.max_upload,
                    client_timeout=args.client_timeout, max_queue=args.max_queue, keepalive=args.keepalive,
                    names=args.names, max_unverified=args.max_unverified,
                    max_connections_per_address=args.max_connections_per_address,
                    max_new_connections=args.max_new_connections, files_store=args.files_store,
                    files_store_dir=args.files_store_dir, keep_output=args.keep_output,
                    max_kept_output=args.max_kept_output, pipelined=not args.classic_dispatch,
                    state_dir=args.state_dir, **args.security)
    except StateRefused as error:
        return _fail("sieci-master", str(error))
    warn_if_exposed([args.workers_addr[0], args.clients_addr[0]], args.security["secret"],
                    logging.getLogger("sieci.master"), "listening")
    stopped = _stop_on_signals(lambda: master.stop(args.grace), logging.getLogger("sieci.master"))
    try:
        master.start()
        if args.metrics:
            from sieci.metrics import MasterMetrics, serve

            serve(MasterMetrics(master).registry, args.metrics, logging.getLogger("sieci.master"), master=master,
                  peers=args.peer_dashboard or ())
    except OSError as error:
        where = f"{format_address(args.workers_addr)}, {format_address(args.clients_addr)} or the metrics address"
        return _fail("sieci-master", f"cannot listen on {where} ({(error.strerror or str(error)).lower()})")
    _say_settings(args, "sieci.master")
    stopped.wait()
    return 0


def worker_main(argv=None):
    _patch()
    import logging

    import gevent

    from sieci.wire.address import format_address
    from sieci.config import parse_worker, settle_isolation, warn_if_exposed, warn_if_jobs_reach_masters
    from sieci.worker.fork_server import ForkServerError
    from sieci.worker.worker import Worker

    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse_worker(argv)
    except UsageError as error:
        return _refused(error, argv)
    _start_logging(args)
    problem = settle_isolation(args.job_options)
    if problem:
        return _fail("sieci-worker", problem)
    worker = Worker(args.masters, max_upload=args.max_upload, reconnect_max=args.reconnect_max,
                    keepalive=args.keepalive, name=args.name, credit=args.credit, files_store=args.files_store,
                    files_store_dir=args.files_store_dir, **args.job_options, **args.security)
    warn_if_exposed([host for host, _ in args.masters], args.security["secret"],
                    logging.getLogger("sieci.worker"), "linking to masters")
    warn_if_jobs_reach_masters(args.job_options["isolation"], args.security["secret"],
                               logging.getLogger("sieci.worker"))
    if args.metrics:
        from sieci.metrics import WorkerMetrics, serve

        try:
            serve(WorkerMetrics(worker).registry, args.metrics, logging.getLogger("sieci.worker"))
        except OSError as error:
            return _fail("sieci-worker", f"cannot serve metrics on {format_address(args.metrics)} "
                                         f"({(error.strerror or str(error)).lower()})")
    stopped = _stop_on_signals(lambda: worker.stop(args.grace), logging.getLogger("sieci.worker"))
    try:
        worker.runner.start()
    except ForkServerError as error:
        if worker.stopping.is_set():  # a signal's stop closed the fork server while it started
            stopped.wait()
            return 0
        return _fail("sieci-worker", str(error))
    _say_settings(args, "sieci.worker")
    worker.start()
    gevent.wait([stopped, worker.stopping], count=1)
    if worker.broken:
        worker.stop(grace=0)
        return defaults.EXIT_CANNOT_START
    stopped.wait()
    return 0


def _cluster_secret(isolation, serving):
    """A secret for a cluster's own members, so that nothing else on this host (a job with the host's
    network, say) can join it as a worker or hand it jobs; and, ``serving`` other clients, a file of it
    that only this user can read (and no job sees), in a folder of its own: ``(secret, path or None)``."""
    import secrets
    import tempfile

    secret = secrets.token_hex(32).encode()
    if not serving:
        return secret, None
    path = os.path.join(tempfile.mkdtemp(prefix="sieci-cluster-"), "secret")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(secret + b"\n")
    isolation.hidden.append(path)
    return secret, path


def _parse_cluster_command_line(argv):
    """sieci-cluster's options, and the client's reading of the rest (None without PROG): see
    cluster_command.py. UsageError for a bad command line."""
    from sieci.cluster_command import job_arguments, split_command_line
    from sieci.config import cluster_parser, parse_cluster

    parser = cluster_parser()
    cluster_tokens, client_tokens, command = split_command_line(argv, parser)
    args = parse_cluster([*cluster_tokens, "--", *command] if command else cluster_tokens)
    if not command and client_tokens:
        raise UsageError(f"{client_tokens[0]} is for running PROG: give PROG (a file, or - for stdin)",
                         parser.format_usage(), "sieci-cluster")
    if command and args.port is not None:
        raise UsageError("--port serves other clients, which a cluster running PROG does not: give it without PROG",
                         parser.format_usage(), "sieci-cluster")
    return args, job_arguments(client_tokens, command, os.environ, parser) if command else None


def cluster_main(argv=None):
    _patch()
    import logging

    from sieci.config import settle_isolation

    argv = sys.argv[1:] if argv is None else argv
    try:
        args, job = _parse_cluster_command_line(argv)
    except UsageError as error:
        return _refused(error, argv)
    _start_logging(args)
    automatic = [wall for wall in ("namespaces", "cgroups") if getattr(args, f"job_{wall}") == "auto"]
    problem = settle_isolation(args.job_options, automatic)
    if problem:
        return _fail("sieci-cluster", problem)
    _raise_fd_limit()
    return _run_cluster(args, job, logging.getLogger("sieci.cluster"))


def _run_cluster(args, job, log):
    """Start the master and workers; run ``job`` (the client's Arguments) through them, or, without
    one, serve until a signal; the exit status."""
    from sieci.master.master import Master
    from sieci.wire.address import format_address
    from sieci.worker.fork_server import ForkServerError
    from sieci.worker.worker import Worker

    secret, secret_file = _cluster_secret(args.job_options["isolation"], serving=job is None)
    master = Master(("127.0.0.1", 0), ("127.0.0.1", args.port or 0), secret=secret)
    workers, metrics_servers = [], []

    def stop():
        for worker in workers:
            worker.stop(grace=1)
        for server in metrics_servers:
            server.stop()
        master.stop(grace=1)
        if secret_file:
            shutil.rmtree(os.path.dirname(secret_file), ignore_errors=True)

    stopped = _stop_on_signals(stop, log) if job is None else None
    try:
        master.start()
        if args.metrics:
            from sieci.metrics import MasterMetrics, serve

            metrics_servers.append(serve(MasterMetrics(master).registry, args.metrics, log, master=master))
    except OSError as error:
        stop()
        where = f"port {args.port}" if args.port else "a loopback port"
        if args.metrics:
            where += f" or {format_address(args.metrics)} (--metrics)"
        return _fail("sieci-cluster", f"cannot listen on {where} ({(error.strerror or str(error)).lower()})")
    workers += [Worker([master.workers_address], secret=secret, **args.job_options) for _ in range(args.workers)]
    try:
        for worker in workers:
            worker.runner.start()
    except ForkServerError as error:
        stop()
        return _fail("sieci-cluster", str(error))
    for worker in workers:
        worker.start()
    _say_settings(args, "sieci.cluster")
    if stopped is not None:
        _say_where(args.workers, master, metrics_servers, secret_file)
        stopped.wait()
        return 0
    try:
        return _run_job(job, master.clients_address, secret)
    finally:
        stop()


def _say_where(workers, master, metrics_servers, secret_file):
    from sieci.wire.address import format_address

    clients_address = format_address(master.clients_address)
    print(f"sieci cluster: {workers} worker(s); master on {clients_address} for clients, "
          f"{format_address(master.workers_address)} for workers", flush=True)
    for server in metrics_servers:
        print(f"dashboard on http://{format_address(server.address)}/, metrics at /metrics", flush=True)
    print(f"run a job with: sieci-client --secret-file {secret_file} {clients_address} FILE", flush=True)


def _run_job(job, clients_address, secret):
    """What sieci-client would do with the command line ``job`` (its Arguments), through this cluster."""
    from sieci.client.command import client_for, run_arguments
    from sieci.client.errors import ClientError

    try:
        client = client_for(job, masters=[clients_address], secret=secret)
    except ClientError as error:
        sys.stderr.write(f"sieci-cluster: error: {error}\n")
        return error.exit_code
    return run_arguments(client, job, prog="sieci-cluster")
