"""bundle.copy_without: a bundle less one top-level entry and all below it (a job's, without its wheels)."""

import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieci.wire import bundle
from sieci.wire.bundle import BadBundle


def entry(kind, name, content=b""):
    return b"%s %d %d\n%s%s" % (kind, len(content), len(name), name, content)


def copied_without(data, top_name, max_size=1 << 20):
    """(the inflated copy, the names handed to take_left_out with their bytes)."""
    left_out = []

    def take_left_out(kind, parts, size, inflater):
        left_out.append((b"/".join(parts), inflater.read_exactly(size)))

    with open(os.memfd_create("bundle"), "w+b") as source, open(os.memfd_create("copy"), "w+b") as copy:
        source.write(data)
        source.flush()
        os.lseek(source.fileno(), 0, os.SEEK_SET)
        bundle.copy_without(source.fileno(), copy.fileno(), top_name, max_size, take_left_out)
        copy.seek(0)
        return zlib.decompress(copy.read()), left_out


WHEEL = entry(bundle.FILE, b".sieci-wheels/a-1.0-py3-none-any.whl", b"PK wheel")
KEPT = [entry(bundle.FOLDER, b"lib"), entry(bundle.FILE, b"lib/x.py", b"X = 1\n"),
        entry(bundle.EXECUTABLE, b"run.sh", b"#!/bin/sh\n"), entry(bundle.FILE, b".sieci-wheels-not", b"n")]


def test_the_top_level_entry_and_all_below_it_are_left_out_the_rest_kept_in_order():
    data = zlib.compress(bundle.MAGIC + KEPT[0] + entry(bundle.FOLDER, b".sieci-wheels") + KEPT[1] + WHEEL
                         + b"".join(KEPT[2:]) + bundle.END)
    inflated, left_out = copied_without(data, b".sieci-wheels")
    assert inflated == bundle.MAGIC + b"".join(KEPT) + bundle.END
    assert left_out == [(b".sieci-wheels", b""), (b".sieci-wheels/a-1.0-py3-none-any.whl", b"PK wheel")]


def test_a_bundle_of_wheels_alone_becomes_an_empty_bundle():
    data = zlib.compress(bundle.MAGIC + entry(bundle.FOLDER, b".sieci-wheels") + WHEEL + bundle.END)
    assert copied_without(data, b".sieci-wheels")[0] == bundle.MAGIC + bundle.END


def test_a_bad_bundle_is_refused_as_unpacking_refuses_it():
    with pytest.raises(BadBundle):
        copied_without(zlib.compress(bundle.MAGIC + entry(bundle.FILE, b"../x", b"") + bundle.END), b"w")
    with pytest.raises(BadBundle):
        copied_without(zlib.compress(bundle.MAGIC + entry(bundle.FILE, b"big", b"x" * 11) + bundle.END), b"w", 10)


names = st.lists(st.sampled_from([b"a", b"b", b"w"]), min_size=1, max_size=3).map(b"/".join)


@settings(max_examples=60)
@given(st.dictionaries(names, st.binary(max_size=40), max_size=8))
def test_the_copy_holds_exactly_the_entries_not_under_the_name(files):
    entries, folders = [], set()
    for name in sorted(files):
        parts = name.split(b"/")
        if any(b"/".join(parts[:i]) in files for i in range(1, len(parts))):
            continue  # a file cannot also be a folder
        for depth in range(1, len(parts)):
            folder = b"/".join(parts[:depth])
            if folder not in folders:
                folders.add(folder)
                entries.append((bundle.FOLDER, folder, b""))
        entries.append((bundle.FILE, name, files[name]))
    data = zlib.compress(bundle.MAGIC + b"".join(entry(*each) for each in entries) + bundle.END)
    inflated, left_out = copied_without(data, b"w")
    kept = [each for each in entries if each[1].split(b"/")[0] != b"w"]
    assert inflated == bundle.MAGIC + b"".join(entry(*each) for each in kept) + bundle.END
    assert [name for name, _ in left_out] == [each[1] for each in entries if each[1].split(b"/")[0] == b"w"]
