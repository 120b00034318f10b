"""Environments' pure parts: their key, the store's choice of what to remove, and their header fields."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci.wire import protocol, upload_format
from sieci.worker.environment_plan import StoredEnvironment, environment_key, is_key, to_remove

PYTHON = "/usr/bin/python3.11 3.11.7"


def header(fields):
    return protocol.parse_header(b" ".join([b"ENDSEQ", b"T", *fields]) + b"\n")


def test_the_key_follows_the_interpreter_the_requirements_and_the_wheels():
    key = environment_key(PYTHON, b"six\n", [("six-1.0-py3-none-any.whl", "ab" * 32)])
    assert is_key(key)
    assert key == environment_key(PYTHON, b"six\n", [("six-1.0-py3-none-any.whl", "ab" * 32)])
    assert key != environment_key("/usr/bin/python3.12 3.12.1", b"six\n", [("six-1.0-py3-none-any.whl", "ab" * 32)])
    assert key != environment_key(PYTHON, b"six==1.0\n", [("six-1.0-py3-none-any.whl", "ab" * 32)])
    assert key != environment_key(PYTHON, b"six\n", [("six-1.0-py3-none-any.whl", "cd" * 32)])
    assert key != environment_key(PYTHON, b"six\n")


def test_the_wheels_order_does_not_matter():
    wheels = [("a.whl", "01" * 32), ("b.whl", "02" * 32)]
    assert environment_key(PYTHON, b"a\nb\n", wheels) == environment_key(PYTHON, b"a\nb\n", wheels[::-1])


def test_names_that_are_not_keys():
    for name in ["", "a" * 63, "A" * 64, "g" * 64, "../" + "a" * 61, "a" * 64 + ".lock"]:
        assert not is_key(name)


def test_a_store_within_its_bound_removes_nothing():
    assert to_remove([StoredEnvironment("a", 10, 1.0), StoredEnvironment("b", 10, 2.0)], 20) == []


def test_the_least_recently_used_go_first():
    stored = [StoredEnvironment("new", 10, 3.0), StoredEnvironment("old", 10, 1.0), StoredEnvironment("mid", 10, 2.0)]
    assert to_remove(stored, 20) == ["old"]
    assert to_remove(stored, 10) == ["old", "mid"]


def test_one_in_use_is_never_removed_even_over_the_bound():
    stored = [StoredEnvironment("old", 10, 1.0, in_use=True), StoredEnvironment("new", 10, 2.0)]
    assert to_remove(stored, 10) == ["new"]
    assert to_remove([StoredEnvironment("only", 50, 1.0, in_use=True)], 10) == []


@given(st.lists(st.tuples(st.integers(0, 100), st.floats(0, 100), st.booleans()), max_size=12), st.integers(0, 500))
def test_what_is_left_fits_unless_only_used_ones_are_left(entries, bound):
    stored = [StoredEnvironment(str(n), size, used, busy) for n, (size, used, busy) in enumerate(entries)]
    removed = set(to_remove(stored, bound))
    left = [environment for environment in stored if environment.key not in removed]
    assert not any(environment.in_use for environment in stored if environment.key in removed)
    assert sum(e.size for e in left) <= bound or all(e.in_use for e in left if e.size)


def test_requirements_fields_read_back_as_sent():
    text = b"six==1.16.0 ; python_version >= '3'\n# a comment\n--no-binary :none:\n\xc3\xa9\n"
    fields = upload_format.encode_requirements(text, wheels=True)
    assert upload_format.decode_requirements(header(fields + [b"files=" + b"a" * 64 + b".5"])) == (text, True)
    assert upload_format.decode_requirements(header(upload_format.encode_requirements(b"six\n"))) == (b"six\n", False)
    assert upload_format.decode_requirements(header([b"arg=x"])) == (None, False)


@pytest.mark.parametrize("fields", [
    [b"requirements=six%0"],
    [b"requirements=six%00"],
    [b"requirements=%FF%FE"],
    [b"requirements=six", b"wheels"],
    [b"wheels", b"files=" + b"a" * 64 + b".5"],
    [b"requirements=" + b"x" * (upload_format.MAX_REQUIREMENTS + 1)],
])
def test_malformed_requirements_fields_are_refused(fields):
    with pytest.raises(protocol.RemoteProtocolError):
        upload_format.decode_requirements(header(fields))


def test_requirements_that_cannot_travel_are_refused_by_the_client():
    for text in [b"a\0b", b"\xff", b"x" * (upload_format.MAX_REQUIREMENTS + 1)]:
        with pytest.raises(protocol.LocalProtocolError):
            upload_format.encode_requirements(text)


@given(st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=300), st.booleans())
def test_any_requirements_text_reads_back_as_sent(text, wheels):
    fields = upload_format.encode_requirements(text.encode(), wheels) + [b"files=" + b"a" * 64 + b".5"]
    assert all(b" " not in field and b"\n" not in field for field in fields)
    assert upload_format.decode_requirements(header(fields)) == (text.encode(), wheels)
