"""The files store (sieci/files_store.py): bounded, checked, never a path from a peer; and files= on the wire."""

import hashlib
import os

import pytest

from sieci.files_store import FilesStore, Mismatch, StoreFull
from sieci.wire import protocol, upload_format


def wanted(data):
    return upload_format.FilesWanted(hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture
def store(tmp_path):
    store = FilesStore(100, tmp_path)
    yield store
    store.close()


def test_a_bundle_is_kept_by_its_digest_in_a_private_folder(store):
    store.put(wanted(b"x" * 10), b"x" * 10)
    assert store.has(wanted(b"x" * 10).digest) and store.received_bytes == 10
    assert os.stat(store.folder).st_mode & 0o777 == 0o700
    assert os.listdir(store.folder) == [wanted(b"x" * 10).digest]


@pytest.mark.parametrize("data, announced", [
    (b"forged", wanted(b"the real one")),
    (b"x" * 11, upload_format.FilesWanted(wanted(b"x" * 11).digest, 10)),
    (b"x" * 9, upload_format.FilesWanted(wanted(b"x" * 9).digest, 10)),
])
def test_bytes_that_are_not_the_bundle_announced_are_not_kept(store, data, announced):
    with pytest.raises(Mismatch):
        store.put(announced, data)
    assert os.listdir(store.folder) == [] and store.used == 0


def test_the_bundles_unused_longest_make_room(store):
    for letter in b"abc":
        store.put(wanted(bytes([letter]) * 40), bytes([letter]) * 40)
    assert [store.has(wanted(bytes([letter]) * 40).digest) for letter in b"abc"] == [False, True, True]
    assert store.used == 80 and len(os.listdir(store.folder)) == 2


def test_a_held_bundle_stays_and_no_room_is_refused(store):
    first, second = wanted(b"a" * 60), wanted(b"b" * 60)
    store.put(first, b"a" * 60)
    store.hold(first.digest)
    with pytest.raises(StoreFull, match="in use"):
        store.put(second, b"b" * 60)
    store.release(first.digest)
    store.put(second, b"b" * 60)
    assert not store.has(first.digest) and store.has(second.digest)


def test_a_bundle_larger_than_the_store_is_refused(store):
    with pytest.raises(StoreFull, match="larger than the store"):
        store.put(wanted(b"x" * 101), b"x" * 101)


@pytest.mark.parametrize("digest", ["../../etc/passwd", "A" * 64, "a" * 63, "a" * 64 + "/x", "", "g" * 64])
def test_a_digest_that_is_not_64_hex_digits_never_names_a_file(store, digest):
    with pytest.raises(ValueError):
        store.has(digest)
    with pytest.raises(ValueError):
        store.open(digest)


@pytest.mark.parametrize("value", [b"../../etc/passwd.1", b"A" * 64 + b".1", b"a" * 63 + b".1", b"a" * 64,
                                   b"a" * 64 + b".", b"a" * 64 + b".-1", b"a" * 64 + b".1x", b"a" * 64 + b"/.1",
                                   b"a" * 64 + b".1" + b"0" * 20])
def test_a_malformed_files_field_is_the_peers_fault(value):
    with pytest.raises(protocol.RemoteProtocolError):
        upload_format.parse_files_value(value)


def test_a_files_field_reads_back_as_sent():
    files = wanted(b"bundle")
    assert upload_format.parse_files_value(files.field.partition(b"=")[2]) == files


@pytest.mark.parametrize("line", [b"NEED\n", b"NEED ../x\n", b"NEED " + b"A" * 64 + b"\n"])
def test_a_malformed_need_is_the_peers_fault(line):
    with pytest.raises(protocol.RemoteProtocolError):
        protocol.need_digest(line)
