"""The client's side: the library (sieci.Client, sieci.Executor), the sieci-client command,
its batches, and the link to a master."""

# The public names of sieci.client when it was a module (docs/python-api.md named pack_files there).
_FORMER_NAMES = {"Client": "client", "run": "client", "load_program": "program", "pack_files": "program"}


def __getattr__(name):
    if name not in _FORMER_NAMES:
        raise AttributeError(f"module 'sieci.client' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"sieci.client.{_FORMER_NAMES[name]}"), name)
