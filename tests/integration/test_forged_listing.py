"""A program's name is any client's to choose, newlines and escape sequences included: --list shows
another user's job on one line of its own and sends the terminal no control character."""

from sieci.client import client
from sieci.client.command import format_jobs
from sieci.wire import upload_format

from tests.helpers import client_address

FORGED = "x.py\n  0123456789abcdef  done         0        1.0 s  detached  w  ok.py\x1b]0;owned\x07\x1b[2J"


def test_a_forged_program_name_is_one_line_of_the_listing_without_control_characters(cluster):
    master = cluster.master()
    api = client.Client(client_address(master))
    # the master reads name= percent-encoded (as --state-dir records it): a name of such escapes is sent as it is
    job_id = api.detach(client.Program(b"print(1)\n", upload_format.quote(FORGED).decode()))
    [(_, listing)] = api.jobs()
    assert [job["program"] for job in listing["jobs"]] == [FORGED]  # as its client gave it
    text = format_jobs(listing)
    (line,) = [line for line in text.splitlines() if job_id in line]
    assert len(text.splitlines()) == 2 and line.isprintable(), repr(text)
    assert "x.py\\n  0123456789abcdef" in line and "ok.py\\x1b]0;owned\\x07\\x1b[2J (0 args)" in line
