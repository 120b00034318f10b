"""The environments' store folder is made and checked through its own fd: a link planted where it
goes (in a shared /var/tmp, by anyone) is refused and never followed."""

import os
import stat
import time

import pytest

from sieci.worker import environments
from sieci.worker.environments import EnvironmentStore, StoreUnusable


def test_the_folder_is_made_open_to_jobs_by_their_keys_and_writable_by_the_worker_only(tmp_path):
    folder = tmp_path / "deep" / "store"
    EnvironmentStore(str(folder), 1 << 20)
    status = os.lstat(folder)
    assert stat.S_ISDIR(status.st_mode) and stat.S_IMODE(status.st_mode) == 0o711


def test_a_folder_others_may_list_is_made_so_no_longer(tmp_path):
    folder = tmp_path / "store"
    folder.mkdir(mode=0o755)
    EnvironmentStore(str(folder), 1 << 20)
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o711


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


def _leased_once(folder, key):
    store = EnvironmentStore(str(folder), 1 << 20)
    store.lease(key, lambda staging: None, time.monotonic() + 5).release()
    store.make_room()
    return store


def test_the_locks_are_the_workers_alone(tmp_path):
    # A lock that another user (a job as --job-user, anyone on the host) may open, it may hold: every
    # job needing that environment would wait for it, to its time limit.
    _leased_once(tmp_path / "store", "a" * 64)
    modes = {name: stat.S_IMODE(os.lstat(tmp_path / "store" / name).st_mode)
             for name in os.listdir(tmp_path / "store") if not os.path.isdir(tmp_path / "store" / name)}
    assert modes == {"a" * 64 + ".lock": 0o600, ".store.lock": 0o600}



def test_the_lock_of_an_environment_that_was_never_built_goes(tmp_path):
    # Each build that fails left its key's lock file: a job per key, as many files as jobs, for ever.
    store = EnvironmentStore(str(tmp_path / "store"), 1 << 20)

    def fails(staging):
        raise RuntimeError("pip said no")

    with pytest.raises(RuntimeError):
        store.lease("b" * 64, fails, time.monotonic() + 5)
    assert sorted(os.listdir(tmp_path / "store")) == []
    open(tmp_path / "store" / ("b" * 64 + ".lock"), "w").close()  # as a worker that died in a build left it
    store.lease("a" * 64, lambda staging: None, time.monotonic() + 5).release()
    store.make_room()
    assert sorted(os.listdir(tmp_path / "store")) == [".store.lock", "a" * 64, "a" * 64 + ".lock"]
