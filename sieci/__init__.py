"""sieci: run Python files on a pool of machines and get their output back.

The Python API::

    import sieci

    client = sieci.Client("master:2001")             # or a list of masters
    result = client.run("print('hello')")           # a sieci.Result
    result.stdout, result.stderr, result.exit_status

    with sieci.Executor("master:2001", max_workers=16, secret_file="secret") as pool:
        futures = [pool.submit(code) for code in codes]    # each a Future of a Result
        values = list(pool.map(fit, seeds))                # fit(seed), called on the workers

Names are loaded on first use, so that ``import sieci.client.command``
(the command-line client, started once per job) stays quick.
"""

__version__ = "0.2.0"  # CHANGELOG.md's newest release

_EXPORTS = {
    "Client": "client.client", "run": "client.client", "Result": "client.result", "ClientError": "client.errors",
    "NotAccepted": "client.errors", "JobLost": "client.errors", "ReattachFailed": "client.errors",
    "OutputFailed": "client.errors", "StdinCannotGo": "client.errors", "TimedOut": "client.errors",
    "ConnectionBroke": "client.errors", "MasterRefused": "client.errors", "Executor": "client.futures",
    "load_program": "client.program", "pack_files": "client.program", "CannotPickle": "client.call_errors",
    "PythonVersionMismatch": "client.call_errors", "CallFailed": "client.call_errors",
    "RemoteError": "client.call_errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sieci' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"sieci.{_EXPORTS[name]}"), name)
