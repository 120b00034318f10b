"""A job's stdin (issue 15): streamed through a sieci master, inline through a classic one."""

import io

import gevent
import pytest

from sieci import client, defaults
from sieci.address import format_address

from tests.helpers import WAIT, Captured

FILTER = b"import sys\nfor line in sys.stdin.buffer:\n    sys.stdout.buffer.write(line.upper())\n"


def run(master, code, stdin, **options):
    """The sieci client's exit status and output, bounded by WAIT."""
    address = master.clients_address
    output = Captured()
    with gevent.Timeout(WAIT, AssertionError(f"the sieci client got no result within {WAIT} s")):
        status = client.run(format_address(address), code, output=output, stdin=stdin, **options)
    return status, output


@pytest.fixture
def sieci(cluster):
    master = cluster.master()
    cluster.worker(master)
    assert master.wait_for_workers(1, WAIT)
    return master


def test_a_filter_gets_its_stdin_byte_for_byte(sieci):
    data = b"first\n" + "zażółć".encode() + b" \xff\xfe\x00 bytes\r\nno newline at the end"
    status, output = run(sieci, FILTER, data)
    assert (status, output.stdout, output.stderr) == (0, data.upper(), b"")


def test_a_file_object_streams(sieci):
    data = b"".join(b"line %d\n" % n for n in range(200_000))
    status, output = run(sieci, FILTER, io.BytesIO(data))
    assert (status, output.stdout) == (0, data.upper())


def test_a_job_that_does_not_read_its_stdin_ends(sieci):
    status, output = run(sieci, b"print('done')\n", io.BytesIO(b"x" * (8 << 20)))
    assert (status, output.stdout) == (0, b"done\n")
