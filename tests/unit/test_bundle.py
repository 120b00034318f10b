"""The files bundle (sieci/bundle.py): packed, checked and unpacked; every entry it must refuse."""

import os
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci.wire import bundle
from sieci.wire.bundle import BadBundle, PackError


def entry(kind, name, content=b""):
    return b"%s %d %d\n%s%s" % (kind, len(content), len(name), name, content)


def raw(*entries, end=bundle.END, after=b""):
    return zlib.compress(bundle.MAGIC + b"".join(entries) + end) + after


def fd_of(tmp_path, data):
    path = tmp_path / "bundle"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def unpack(tmp_path, data, max_size=1 << 20, max_entries=bundle.MAX_ENTRIES):
    target = tmp_path / "job"
    target.mkdir(exist_ok=True)
    fd, folder = fd_of(tmp_path, data), os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        bundle.unpack(fd, folder, max_size, max_entries)
    finally:
        os.close(fd)
        os.close(folder)
    return target


def tree(folder):
    """{relative name: content, or None for a folder}."""
    found = {}
    for top, folders, files in os.walk(folder):
        for name in folders:
            found[os.path.relpath(os.path.join(top, name), folder)] = None
        for name in files:
            with open(os.path.join(top, name), "rb") as file:
                found[os.path.relpath(os.path.join(top, name), folder)] = file.read()
    return found


@pytest.fixture
def program_folder(tmp_path):
    """job.py beside a package, a data file, an executable script and a file in a subfolder."""
    top = tmp_path / "src"
    (top / "pkg" / "sub").mkdir(parents=True)
    (top / "job.py").write_text("print(1)\n")
    (top / "pkg" / "__init__.py").write_text("X = 1\n")
    (top / "pkg" / "sub" / "deep.txt").write_bytes(b"\0\n" * 1000)
    (top / "data.csv").write_text("a,b\n1,2\n")
    (top / "run.sh").write_text("#!/bin/sh\n")
    (top / "run.sh").chmod(0o755)
    return top


def test_a_package_and_a_data_file_unpack_as_they_were(tmp_path, program_folder):
    packed = bundle.pack([program_folder / "pkg", program_folder / "data.csv"], program_folder)
    assert tree(unpack(tmp_path, packed.data)) == {
        "pkg": None, "pkg/sub": None, "pkg/__init__.py": b"X = 1\n", "pkg/sub/deep.txt": b"\0\n" * 1000,
        "data.csv": b"a,b\n1,2\n"}


def test_the_same_files_make_the_same_digest(program_folder):
    first = bundle.pack([program_folder], program_folder, leave_out=["job.py"])
    second = bundle.pack([program_folder], program_folder, leave_out=["job.py"])
    assert first.digest == second.digest and len(first.digest) == 64


def test_the_program_folder_itself_puts_its_contents_beside_the_program_but_not_the_program(tmp_path,
                                                                                            program_folder):
    packed = bundle.pack([program_folder], program_folder, leave_out=["job.py"])
    assert set(tree(unpack(tmp_path, packed.data))) == {"pkg", "pkg/sub", "pkg/__init__.py", "pkg/sub/deep.txt",
                                                         "data.csv", "run.sh"}


def test_only_the_executable_bit_is_kept(tmp_path, program_folder):
    job = unpack(tmp_path, bundle.pack([program_folder / "run.sh", program_folder / "data.csv"],
                                       program_folder).data)
    assert os.stat(job / "run.sh").st_mode & 0o100 and not os.stat(job / "data.csv").st_mode & 0o111


@pytest.mark.parametrize("path, folder, name", [
    ("src/sub/x.csv", "src", "sub/x.csv"),
    ("src/x.csv", "src", "x.csv"),
    ("data/x.csv", "src", "x.csv"),
    ("src", "src", ""),
    ("lib", "src", "lib"),
    ("/elsewhere/lib/", "src", "lib"),
])
def test_a_name_beside_the_program_is_its_path_from_the_programs_folder_or_its_base_name(path, folder, name):
    assert bundle.name_beside(path, folder) == name


def test_links_to_files_are_followed_and_other_links_left_out(tmp_path, program_folder):
    (program_folder / "linked.csv").symlink_to(program_folder / "data.csv")
    (program_folder / "loop").symlink_to(program_folder)
    (program_folder / "dangling").symlink_to(tmp_path / "nowhere")
    packed = bundle.pack([program_folder], program_folder, leave_out=["job.py"])
    assert tree(unpack(tmp_path, packed.data))["linked.csv"] == b"a,b\n1,2\n"
    assert sorted(os.path.basename(path) for path, _ in packed.skipped) == ["dangling", "loop"]


def test_two_files_that_would_have_one_name_are_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.csv").write_text(folder)
    with pytest.raises(PackError, match="would both be 'x.csv'"):
        bundle.pack([tmp_path / "a" / "x.csv", tmp_path / "b" / "x.csv"], tmp_path / "job")


def test_packing_stops_at_its_size_limit(program_folder):
    with pytest.raises(PackError, match="more than 100 bytes"):
        bundle.pack([program_folder], program_folder, max_size=100)


def test_check_names_the_top_level_entries(tmp_path, program_folder):
    packed = bundle.pack([program_folder / "pkg", program_folder / "data.csv"], program_folder)
    fd = fd_of(tmp_path, packed.data)
    try:
        assert bundle.check(fd, 1 << 20) == {b"pkg", b"data.csv"}
    finally:
        os.close(fd)


# --- what a bundle may not hold ------------------------------------------------------------


@pytest.mark.parametrize("name", [b"", b"/etc/passwd", b"../x", b"a/../../x", b"a//b", b"./x", b"a/.", b"x\0y",
                                  b"a/" * 65 + b"b", b"x" * 256])
def test_a_name_that_is_not_a_plain_relative_path_is_refused(tmp_path, name):
    with pytest.raises(BadBundle):
        bundle.check_name(name)
    with pytest.raises(BadBundle):
        unpack(tmp_path, raw(entry(b"f", name, b"x")))
    assert not (tmp_path.parent / "x").exists()


@given(st.lists(st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1,
                        max_size=20), min_size=1, max_size=8))
def test_a_plain_relative_name_is_taken_as_its_parts(parts):
    name = "/".join(parts).encode()
    if any(part in (".", "..") or len(part.encode()) > bundle.MAX_PART for part in parts):
        with pytest.raises(BadBundle):
            bundle.check_name(name)
    else:
        assert bundle.check_name(name) == name.split(b"/")


@given(st.binary(max_size=300))
def test_random_bytes_are_refused_as_a_bundle_not_crashed_on(tmp_path_factory, data):
    tmp_path = tmp_path_factory.mktemp("random")
    for candidate in (data, zlib.compress(data), zlib.compress(bundle.MAGIC + data)):
        try:
            unpack(tmp_path, candidate)
        except BadBundle:
            pass


@pytest.mark.parametrize("data, why", [
    (b"not zlib at all", "not a zlib stream"),
    (zlib.compress(b"a tar, say, or anything else\n"), "not a sieci bundle"),
    (raw(entry(b"f", b"a", b"x"), end=b""), "malformed entry"),
    (zlib.compress(bundle.MAGIC + entry(b"f", b"a", b"x") + bundle.END)[:-6], "cut short"),
    (raw(end=bundle.END + b"more"), "goes on after its end"),
    (raw(after=b"trailing"), "goes on after its end"),
    (raw(entry(b"l", b"link", b"/etc/passwd")), "malformed entry"),
    (raw(entry(b"c", b"device")), "malformed entry"),
    (zlib.compress(bundle.MAGIC + b"f 5 1\naab"), "in the middle of an entry"),
    (raw(entry(b"d", b"dir", b"x")), "a folder with content"),
    (raw(entry(b"f", b"a/b", b"x")), "before its folder"),
    (raw(entry(b"f", b"a", b"x"), entry(b"f", b"a", b"y")), "comes twice"),
    (raw(b"f 1 99999\n"), "longer than names may be"),
    (raw(b"f -1 1\na"), "malformed entry"),
    (raw(b"f 1 1 1\nab"), "malformed entry"),
])
def test_a_malformed_bundle_is_refused_with_what_is_wrong(tmp_path, data, why):
    with pytest.raises(BadBundle, match=why):
        unpack(tmp_path, data)


def test_a_bomb_is_refused_before_it_is_inflated(tmp_path):
    """A file that says it is 10 GiB (and would inflate so): refused at its entry line, nothing written."""
    declared = b"f %d 4\nbomb" % (10 << 30)
    bomb = zlib.compressobj()
    data = bomb.compress(bundle.MAGIC + declared) + bomb.compress(bytes(1 << 24)) + bomb.flush()
    with pytest.raises(BadBundle, match="more than 1048576 bytes"):
        unpack(tmp_path, data)
    assert tree(tmp_path / "job") == {}


def test_files_past_the_size_limit_are_refused(tmp_path):
    with pytest.raises(BadBundle, match="more than 10 bytes"):
        unpack(tmp_path, raw(entry(b"f", b"a", b"x" * 6), entry(b"f", b"b", b"x" * 6)), max_size=10)


def test_more_entries_than_allowed_are_refused(tmp_path):
    with pytest.raises(BadBundle, match="more than 3"):
        unpack(tmp_path, raw(*[entry(b"f", b"%d" % n) for n in range(4)]), max_entries=3)


def test_unpacking_never_goes_through_a_link_already_in_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "sub").symlink_to(outside)
    (tmp_path / "job" / "file").symlink_to(outside / "target")
    with pytest.raises(BadBundle, match="in the job's folder already"):
        unpack(tmp_path, raw(entry(b"f", b"file", b"x")))
    with pytest.raises(BadBundle, match="in the job's folder already"):
        unpack(tmp_path, raw(entry(b"d", b"sub"), entry(b"f", b"sub/x", b"x")))
    assert list(outside.iterdir()) == []
