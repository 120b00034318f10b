"""executor's pure parts: the file name a job runs under, who may read the interpreter."""

import os

import pytest

from sieci import executor
from sieci.executor import safe_filename


@pytest.mark.parametrize("name", ["hello.py", "my_job-2.py", "Main", "a.b.c"])
def test_a_plain_file_name_is_kept(name):
    assert safe_filename(name) == name


def test_who_can_read_the_interpreter_is_worked_out_from_the_mode_bits():
    import stat as stat_module
    import types

    folder = types.SimpleNamespace(st_uid=0, st_gid=0, st_mode=stat_module.S_IFDIR | 0o750)
    assert executor._permits(folder, (0, 0), stat_module.S_IXUSR)  # the owner
    assert executor._permits(folder, (1000, 0), stat_module.S_IXUSR)  # the group may enter
    assert not executor._permits(folder, (1000, 1000), stat_module.S_IXUSR)  # others may not
    assert executor.unreadable_for((os.geteuid(), os.getegid())) is None  # we can read our own Python
