"""An environment's key, and which environments a full store removes: decisions with no I/O.

An environment is named by the SHA-256 of what it is built from: the
interpreter that runs it, its requirements file's bytes, the wheels
shipped with it (each by name and digest) and the digest of the job's whole
files bundle, which the build sees (a requirement may name a file of it). The store (environments.py) keeps
at most so many bytes of them; past that, those used longest ago go first,
never one in use.
"""

import hashlib
from dataclasses import dataclass

# Changed whenever a build makes something else of the same requirements: old environments are not reused.
RECIPE = b"sieci-environment 1"
KEY_DIGITS = frozenset("0123456789abcdef")


def environment_key(interpreter, requirements, wheels=(), files=""):
    """The key of an environment: ``interpreter`` (text naming the interpreter, its version included),
    ``requirements`` (bytes), ``wheels`` (``(name, sha256 hex)`` pairs, in any order), ``files`` (the
    SHA-256 hex of the files bundle the build is given, "" for none)."""
    digest = hashlib.sha256()
    parts = [RECIPE, interpreter.encode(), requirements, files.encode(),
             *[f"{name}\0{sha}".encode() for name, sha in sorted(wheels)]]
    for part in parts:  # each part's length first: no two lists of parts hash the same bytes
        digest.update(b"%d:" % len(part))
        digest.update(part)
    return digest.hexdigest()


def is_key(name):
    """Whether ``name`` (a folder's name in the store) is an environment's key."""
    return len(name) == 64 and set(name) <= KEY_DIGITS


@dataclass(frozen=True)
class StoredEnvironment:
    """One environment in the store: its ``size`` in bytes, when it was ``last_used`` (seconds, any
    clock that only grows), and whether it is ``in_use`` (a fork server or a job holds it)."""

    key: str
    size: int
    last_used: float
    in_use: bool = False


def to_remove(environments, max_size):
    """The keys to remove so that the rest take at most ``max_size`` bytes: the least recently used
    first, never one in use (so the store may stay over its bound while they are)."""
    total = sum(environment.size for environment in environments)
    removed = []
    for environment in sorted(environments, key=lambda environment: (environment.last_used, environment.key)):
        if total <= max_size:
            break
        if not environment.in_use:
            removed.append(environment.key)
            total -= environment.size
    return removed
