"""The environments' store folder is made and checked through its own fd: a link planted where it
goes (in a shared /var/tmp, by anyone) is refused and never followed."""

import os
import stat

import pytest

from sieci.worker import environments
from sieci.worker.environments import EnvironmentStore, StoreUnusable


def test_the_folder_is_made_open_to_jobs_and_writable_by_the_worker_only(tmp_path):
    folder = tmp_path / "deep" / "store"
    EnvironmentStore(str(folder), 1 << 20)
    status = os.lstat(folder)
    assert stat.S_ISDIR(status.st_mode) and stat.S_IMODE(status.st_mode) == 0o755


def test_a_link_planted_where_the_folder_goes_is_refused_and_its_target_left_as_it_was(tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (tmp_path / "store").symlink_to(private)
    looks, isdir = [], os.path.isdir

    def planted_after_the_first_look(path):  # that look finds nothing there; later ones find the link
        looks.append(path)
        return len(looks) > 1 and isdir(path)

    monkeypatch.setattr(environments.os.path, "isdir", planted_after_the_first_look)
    with pytest.raises(StoreUnusable, match="environments' folder"):
        EnvironmentStore(str(tmp_path / "store"), 1 << 20)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700


def test_a_folder_others_may_write_to_is_refused(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(StoreUnusable, match="only it may write to"):
        EnvironmentStore(str(folder), 1 << 20)
