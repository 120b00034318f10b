"""A worker's knowledge of its jobs' bundles (their digests, which key environments) is kept by the file's
identity: a bundle removed from the files store, and another of the same size written on its inode number,
must not be taken for it."""

import os

from sieci.worker.environment_bundles import WheelBundles


def test_another_bundle_on_a_reused_inode_of_the_same_size_has_its_own_digest(tmp_path):
    path = tmp_path / "bundle"
    path.write_bytes(b"a" * 64)
    bundles = WheelBundles(1 << 20)
    fd = os.open(path, os.O_RDONLY)
    try:
        first = bundles.digest(fd)
        writer = os.open(path, os.O_WRONLY)  # as a new file on the old one's inode, of the same size
        os.pwrite(writer, b"b" * 64, 0)
        os.close(writer)
        os.utime(fd, ns=(1, 1))
        assert bundles.digest(fd) != first
    finally:
        os.close(fd)
        bundles.close()
