"""What one job asks of the worker that runs it, as one value: made where its upload is read,
passed whole to its run (executor.JobRun), which turns it into the fork server's request."""

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Tuple, Union

from sieci import defaults

# A job's stdin: empty (None), these bytes, or STREAMED by the caller while the job runs (JobRun.write_stdin).
STREAMED = "streamed"


@dataclass(frozen=True)
class JobSettings:
    """One job's settings.

    ``code`` runs as the file ``filename`` (with ``directory``, ``filename``
    is a folder of the files bundle, run as ``python3 FOLDER``, and ``code``
    is not used), with ``args``, and ``env`` over the job's environment.
    ``stdin``: None, bytes, or STREAMED. ``terminal_size``: ``(columns,
    rows)`` of the pseudo-terminal the job runs on, or None. ``line_buffered``:
    its stdout is, as Python has it on a terminal; ``merged``: its stdout and
    stderr are one pipe, so that their writes keep their order; ``fresh``: it
    asked for an interpreter of its own. ``files``: an fd of its files bundle
    (bundle.py), which the run closes, or None. ``returns``: the files it asks
    back, ``(globs, max_bytes)`` as returns.decode_returns has them, or None.
    """

    code: bytes
    filename: str = defaults.JOB_FILENAME
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: Union[None, bytes, str] = None
    terminal_size: Optional[Tuple[int, int]] = None
    line_buffered: bool = False
    merged: bool = False
    fresh: bool = False
    directory: bool = False
    files: Optional[int] = None
    returns: Optional[tuple] = None
