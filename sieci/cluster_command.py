"""sieci-cluster's command line: its own options and every option of sieci-client, told apart token by token.

The cluster's options are config.py's cluster_parser's; any other option the
client's parser takes (client/arguments.py) is the client's, so an option
added to the client is the cluster's too. A flag both take (``--timeout``)
is the cluster's. PROG and everything after it is the job's, as with
sieci-client; the client's options are then read by the client's own
parser, with a stand-in master (the real one does not exist yet).
"""

from sieci import options
from sieci.client.arguments import option_width, parse_args, refuse_gnu_option
from sieci.options import UsageError

PROG = "sieci-cluster"
STAND_IN_MASTER = "127.0.0.1:1"

_NO_TLS = "the cluster talks on loopback, without TLS"
_ASK_A_SERVING_ONE = "ask a serving cluster (sieci-cluster --port PORT) with sieci-client"
# Client options that make no sense against the cluster's own master, and why.
NOT_FOR_A_CLUSTER = {
    "--secret-file": "the cluster's members share a secret of their own",
    "--tls": _NO_TLS, "--tls-ca": _NO_TLS, "--tls-cert": _NO_TLS, "--tls-key": _NO_TLS,
    "--status": _ASK_A_SERVING_ONE, "--list": _ASK_A_SERVING_ONE, "--attach": _ASK_A_SERVING_ONE,
    "--cancel": _ASK_A_SERVING_ONE,
    "--detach": "the cluster stops once PROG has run, so the job would be lost; serve with sieci-cluster --port "
                "PORT and detach with sieci-client",
}


def split_command_line(argv, cluster_parser):
    """``(cluster_tokens, client_tokens, command)``: the cluster's options (and any token neither
    program knows, for the cluster's parser to name), the client's options, and PROG with its ARGs."""
    own = cluster_parser._option_string_actions
    cluster_tokens, client_tokens, rest = [], [], list(argv)
    while rest:
        token = rest.pop(0)
        if token == "--":
            return cluster_tokens, client_tokens, rest
        if token == "-" or not token.startswith("-"):
            return cluster_tokens, client_tokens, [token, *rest]
        width = option_width(token, own, lambda action: action.nargs == 0)
        destination = cluster_tokens
        if not width:
            width = option_width(token)
            destination = client_tokens if width else cluster_tokens
        if not width:
            refuse_gnu_option(token.partition("=")[0], PROG)
        destination.append(token)
        if width == 2 and rest:
            destination.append(rest.pop(0))
    return cluster_tokens, client_tokens, []


def job_arguments(client_tokens, command, environ, cluster_parser):
    """The client's reading (parse_args's Arguments) of ``client_tokens`` and ``command`` (PROG and its
    ARGs), its masters a stand-in; the client's variables in ``environ`` count, but for those of options
    the cluster has its own meaning for or does not take. UsageError, as sieci-cluster's."""
    usage = cluster_parser.format_usage()
    for token in client_tokens:
        flag = token.partition("=")[0]
        if flag in NOT_FOR_A_CLUSTER:
            raise UsageError(f"{flag} is not for sieci-cluster: {NOT_FOR_A_CLUSTER[flag]}", usage, PROG)
    try:
        return parse_args([*client_tokens, "--", STAND_IN_MASTER, *command],
                          _client_environment(environ, cluster_parser._option_string_actions))
    except UsageError as error:
        raise UsageError(error.message, usage, PROG) from None


def _client_environment(environ, cluster_flags):
    """``environ`` without the client's variables that sieci-cluster does not take."""
    dropped = {options.CLIENT_MASTERS.env}
    dropped |= {option.env for option in options.CLIENT
                if option.env and (option.flag in NOT_FOR_A_CLUSTER or option.flag in cluster_flags)}
    return {name: value for name, value in environ.items() if name not in dropped}
