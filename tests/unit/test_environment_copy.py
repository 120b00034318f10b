"""What the worker copies of a build's folder (a job's: hostile, and another job of the job's user may
change it under the copy): folders and regular files only, and a file swapped for a FIFO after the
worker looked at it neither blocks the worker nor is copied."""

import os
import signal

import pytest

from sieci.worker import environment_build
from sieci.worker.environment_build import BuildFailed, copy_tree


def _copied(source, target):
    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy_tree(fd, str(target), 1 << 20)
    finally:
        os.close(fd)


def test_folders_and_regular_files_are_copied_links_and_fifos_are_not(tmp_path):
    source = tmp_path / "packages"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (source / "pkg" / "link.py").symlink_to("/etc/passwd")
    os.mkfifo(source / "pkg" / "fifo")
    _copied(source, tmp_path / "site")
    assert sorted(os.listdir(tmp_path / "site" / "pkg")) == ["__init__.py"]


def test_a_file_swapped_for_a_fifo_after_the_look_neither_blocks_nor_is_copied(tmp_path, monkeypatch):
    source = tmp_path / "packages"
    source.mkdir()
    (source / "mod.py").write_text("x = 1\n")
    looked = os.stat

    def swapped_after_the_look(name, **where):
        status = looked(name, **where)
        if name == "mod.py":
            os.unlink(name, dir_fd=where["dir_fd"])
            os.mkfifo(source / "mod.py")
        return status

    monkeypatch.setattr(environment_build.os, "stat", swapped_after_the_look)

    def blocked(*_):
        raise TimeoutError("the copy blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, blocked)  # a blocked open ends with EINTR, then this raises
    signal.alarm(5)
    try:
        with pytest.raises(BuildFailed, match=r"changed while it was copied \(mod.py\)"):
            _copied(source, tmp_path / "site")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert not os.path.exists(tmp_path / "site" / "mod.py")
