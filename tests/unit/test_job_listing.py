"""--list for people: one line a job, with its exit status and program when the master gives them."""

from sieci.client.command import format_jobs


def test_each_job_is_one_line_with_its_exit_status_and_program():
    listing = {"master": "10.0.0.1:2001", "jobs": [
        {"id": "3f9c2a71d04e8b65", "state": "done", "age": 12.41, "detached": True, "worker": "10.0.0.7:41822",
         "program": "train.py", "arguments": 2, "exit_status": 3, "submitted": 1.0, "started": 2.0, "ended": 3.0},
        {"id": "0123456789abcdef", "state": "queued", "age": 0.1, "detached": False, "worker": None,
         "program": None, "arguments": 0, "exit_status": None},
    ]}
    assert format_jobs(listing) == (
        "master 10.0.0.1:2001  jobs 2\n"
        "  3f9c2a71d04e8b65  done         3       12.4 s  detached  10.0.0.7:41822         train.py (2 args)\n"
        "  0123456789abcdef  queued       -        0.1 s  attached  -\n")


def test_an_older_masters_listing_without_the_new_fields_still_shows():
    listing = {"master": "m:1", "jobs": [{"id": "0123456789abcdef", "state": "running", "age": 1.0,
                                          "client": "c:2", "detached": True, "worker": "w:3"}]}
    assert format_jobs(listing) == ("master m:1  jobs 1\n"
                                    "  0123456789abcdef  running      -        1.0 s  detached  w:3\n")


def test_a_forged_program_or_worker_name_stays_on_its_line_and_drives_no_terminal():
    forged = "x.py\n  0123456789abcdef  done         0        1.0 s  detached  w  ok.py\x1b]0;owned\x07\x1b[2J\x85"
    listing = {"master": "m:1\x1b[1A", "jobs": [{"id": "3f9c2a71d04e8b65", "state": "done\r", "age": 1.0,
                                                 "detached": True, "worker": "w\u2028", "program": forged,
                                                 "arguments": 0, "exit_status": 0}]}
    text = format_jobs(listing)
    assert len(text.splitlines()) == 2 and all(line.isprintable() for line in text.splitlines()), repr(text)
    assert "x.py\\n  0123456789abcdef" in text and "ok.py\\x1b]0;owned\\x07\\x1b[2J\\x85 (0 args)" in text
