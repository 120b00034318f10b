"""endings.py: a job's status read off the end of its relayed results, its class and its words."""

from hypothesis import given, strategies as st

from sieci.master import endings
from sieci.wire import protocol
from sieci.wire.results import Status

EXTENDED = protocol.BlockHeader(b"", b"END", [protocol.EXTENDED])
CLASSIC = protocol.BlockHeader(b"", b"END", [])


def test_the_status_line_is_read_even_split_across_two_pieces():
    assert endings.status_of_results(EXTENDED, [b"o hello\nx ex", b"it 1\n"]) == Status(b"exit", b"1")
    assert endings.status_of_results(EXTENDED, [b"x signal 9 Killed\n"]) == Status(b"signal", b"9", b"Killed")


def test_no_status_from_a_classic_worker_or_without_a_status_line():
    assert endings.status_of_results(CLASSIC, [b"x exit 0\n"]) is None  # a classic job's own output
    assert endings.status_of_results(None, [b"x exit 0\n"]) is None
    assert endings.status_of_results(EXTENDED, [b"o x exit 0\n"]) is None
    assert endings.status_of_results(EXTENDED, [b"x exit zero\n"]) is None
    assert endings.status_of_results(EXTENDED, []) is None


@given(st.binary(max_size=3000), st.integers(0, 255), st.integers(0, 40))
def test_any_output_before_the_status_line_leaves_it_readable(output, code, cut):
    line = Status(b"exit", b"%d" % code).encode()
    whole = output + b"\n" + line
    cut = min(cut, len(line))
    pieces = [whole[:len(whole) - cut], whole[len(whole) - cut:]]
    assert endings.status_of_results(EXTENDED, pieces).exit_code == code


def test_classes_and_words():
    cases = [
        ("done", Status(b"exit", b"0"), True, "ok", "exited 0"),
        ("done", Status(b"exit", b"1"), True, "failed", "exited 1"),
        ("done", Status(b"signal", b"9"), True, "signal", "killed by signal 9"),
        ("done", Status(b"limit", b"time"), True, "timeout", "hit its time limit"),
        ("done", Status(b"limit", b"output"), True, "limit", "hit its output limit"),
        ("done", Status(b"error", b"lost", b"worker gone"), True, "lost", "lost: worker gone"),
        ("done", Status(b"error", b"spawn"), True, "error", "could not run (spawn)"),
        ("done", None, True, "no_status", "ended (no exit status from a classic worker)"),
        ("failed", None, True, "lost", "failed: worker lost"),
        ("failed", None, False, "error", "failed: worker lost"),
        ("cancelled", None, False, "cancelled", "cancelled: worker lost"),
    ]
    for outcome, status, ran, kind, words in cases:
        assert endings.ending_class(outcome, status, ran) == kind
        assert kind in endings.CLASSES
        assert endings.ending_text(outcome, status, "worker lost") == words
