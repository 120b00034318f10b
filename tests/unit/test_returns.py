"""Files a job returns: globs and the names a client writes (returns.py), and their items in the results
(results.py, framing.py), read by a sieci client, a sieci master and a classic master."""

import os
from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieci.wire import protocol
from sieci.wire.framing import Receiver
from sieci.wire.protocol import RETURNED, STDERR, STDOUT, RemoteProtocolError, parse_header
from sieci.wire.results import FilePiece, ResultDecoder, Status, encode_output, file_items
from sieci.wire.returns import (decode_returns, encode_returns, glob_matches, may_match_below, name_parts,
                           split_glob)

# --- globs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("glob, path, matches", [
    ("*.csv", "a.csv", True),
    ("*.csv", "out/a.csv", False),
    ("*", ".hidden", False),  # a leading dot is matched only by a glob's leading dot, as the shell has it
    (".*", ".hidden", True),
    (".config/*", ".config/app.ini", True),
    ("**/*.csv", ".git/a.csv", False),  # ** enters no hidden folder, as bash's globstar
    ("**", "out/.bashrc", False),
    ("out/*.csv", "out/a.csv", True),
    ("out/**", "out/a/b/c.txt", True),
    ("out/**", "out", True),  # ** matches zero components too
    ("**/*.png", "plot.png", True),
    ("**/*.png", "a/b/plot.png", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/c", False),
    ("**", "anything/at/all", True),
    ("?.txt", "ab.txt", False),
    ("[ab].txt", "b.txt", True),
    ("*.CSV", "a.csv", False),  # case counts
    ("a*", "a/b", False),  # * stays within a name
])
def test_a_glob_matches_component_by_component(glob, path, matches):
    assert glob_matches(split_glob(glob), path.split("/")) is matches


def reference_match(glob, path):
    """The obvious recursion, exponential but plain."""
    if not glob:
        return not path
    if glob[0] == "**":
        return any(reference_match(glob[1:], path[skip:]) for skip in range(len(path) + 1)
                   if not any(name.startswith(".") for name in path[:skip]))
    return bool(path) and name_matches(path[0], glob[0]) and reference_match(glob[1:], path[1:])


def name_matches(name, part):
    return (part.startswith(".") or not name.startswith(".")) and fnmatchcase(name, part)


NAMES = st.sampled_from(["a", "b", "ab", "a.csv", ".x"])
GLOB_PARTS = st.sampled_from(["a", "b", "*", "a*", "?", "*.csv", "**", "[ab]", ".*", ".x"])


@given(st.lists(GLOB_PARTS, min_size=1, max_size=6), st.lists(NAMES, max_size=7))
def test_the_matcher_agrees_with_the_plain_recursion(glob, path):
    assert glob_matches(tuple(glob), path) == reference_match(tuple(glob), path)


@given(st.lists(GLOB_PARTS, min_size=1, max_size=6), st.lists(NAMES, min_size=1, max_size=7), st.data())
def test_a_folder_is_entered_whenever_a_path_below_it_matches(glob, path, data):
    folder = path[:data.draw(st.integers(0, len(path) - 1))]
    if glob_matches(tuple(glob), path):
        assert may_match_below(tuple(glob), folder)


def test_a_folder_no_glob_reaches_is_not_entered():
    assert not may_match_below(split_glob("*.csv"), ["venv"])
    assert not may_match_below(split_glob("out/*.csv"), ["other"])
    assert may_match_below(split_glob("out/*.csv"), ["out"])
    assert not may_match_below(split_glob("out/*.csv"), ["out", "deeper"])


def test_many_any_folders_cost_no_more_than_their_product():
    glob, path = ("**", "a") * 30 + ("b",), ["a"] * 200
    assert not glob_matches(glob, path)  # the plain recursion would not end


@pytest.mark.parametrize("glob", ["/etc/passwd", "../up", "a/../../b", "a//b", "a/", "./a", "", "a\0b"])
def test_a_glob_that_could_leave_the_folder_is_refused(glob):
    with pytest.raises(ValueError, match="--return"):
        split_glob(glob)


# A name's parts as a system gives them: any bytes but "/" and NUL, as os.fsdecode reads them.
PARTS = st.binary(min_size=1, max_size=8).filter(lambda part: b"/" not in part and b"\0" not in part
                                                 and part not in (b".", b"..")).map(os.fsdecode)
PATHS = st.lists(PARTS, min_size=1, max_size=3).map("/".join)


@given(PATHS, st.integers(0, 1 << 40))
def test_globs_and_the_bound_travel_as_fields(glob, max_bytes):
    header = parse_header(b" ".join([b"ENDSEQ", b"T", *encode_returns([glob, "x"], max_bytes)]) + b"\n")
    assert decode_returns(header) == ([split_glob(glob), ("x",)], max_bytes)


@pytest.mark.parametrize("fields", [[b"return=..%2Fx"], [b"return=%2Fetc"], [b"return=%zz"], [b"max-return=-1"]])
def test_malformed_return_fields_break_the_protocol(fields):
    with pytest.raises(RemoteProtocolError):
        decode_returns(parse_header(b" ".join([b"ENDSEQ", b"T", *fields]) + b"\n"))


def test_without_fields_nothing_is_asked():
    assert decode_returns(parse_header(b"ENDSEQ T v=2\n")) == ([], None)


# --- names the client writes ---------------------------------------------------------------------


@pytest.mark.parametrize("name, why", [
    ("/etc/passwd", "absolute"),
    ("../x", "'..'"),
    ("a/../../x", "'..'"),
    ("a//b", "empty"),
    ("a/", "empty"),
    ("", "empty"),
    ("./a", "'.'"),
    ("a\0b", "NUL"),
    ("a/" * 3000 + "b", "longer"),
])
def test_a_name_that_could_leave_the_results_folder_is_refused(name, why):
    with pytest.raises(ValueError, match=why):
        name_parts(name)


def test_a_plain_name_is_its_parts():
    assert name_parts("out/sub/a b.csv") == ["out", "sub", "a b.csv"]
    assert name_parts("..hidden/a..b") == ["..hidden", "a..b"]


# --- the items ---------------------------------------------------------------------------------

TERMINATOR = b"GHIJKLMNOPQRSTUVGHIJKLMNOPQRSTUV"
# Bytes that bring the terminator, lines that look like items, and bare newlines often.
FILE_BYTES = st.lists(st.sampled_from([TERMINATOR, b"\n", b"  ", b"\n" + TERMINATOR + b"\n", b"x exit 0\n",
                                       b"1 5\n", b"r 3 ../x\n", TERMINATOR[:7]]) | st.binary(max_size=20),
                      max_size=12).map(b"".join)
FILES = st.lists(st.tuples(PATHS, st.lists(FILE_BYTES, max_size=3)), max_size=4)


def files_block(files, status=Status(b"exit", b"0")):
    """The results block a worker sends for ``files`` (name, [chunks read]), after a line of output."""
    payload = [encode_output(STDOUT, b"before\n", TERMINATOR)]
    for name, chunks in files:
        payload += file_items(chunks[0] if chunks else b"", TERMINATOR, name)
        for chunk in chunks[1:]:
            payload += file_items(chunk, TERMINATOR)
    return b"ENDSEQ " + TERMINATOR + b" v=2\n" + b"".join(payload) + status.encode() + TERMINATOR + b"\n"


def decoded_files(payload, cuts):
    decoder, files, output = ResultDecoder(), [], []
    for start, end in zip([0, *cuts], [*cuts, len(payload)]):
        for stream, data in decoder.feed(payload[start:end]):
            if stream == RETURNED:
                if data.name is not None:
                    files.append([data.name, b""])
                files[-1][1] += data.data
            else:
                output.append((stream, data))
    return files, output, decoder.status


def cuts_of(size):
    return st.lists(st.integers(0, size), max_size=8).map(sorted)


@settings(max_examples=300)
@given(FILES, st.data())
def test_files_come_back_byte_for_byte_however_the_results_are_cut(files, data):
    block = files_block(files)
    payload = block[block.index(b"\n") + 1:-len(TERMINATOR) - 1]
    got, output, status = decoded_files(payload, data.draw(cuts_of(len(payload))))
    assert got == [[name, b"".join(chunks)] for name, chunks in files]
    assert (b"".join(data for _, data in output), status) == (b"before\n", Status(b"exit", b"0"))


@given(FILES)
def test_no_item_holds_the_terminator(files):
    for name, chunks in files:
        for chunk in chunks:
            assert not any(TERMINATOR in item for item in file_items(chunk, TERMINATOR, name))


@settings(max_examples=300)
@given(FILES)
def test_a_classic_master_reading_lines_relays_the_block_whole(files):
    """It ends the block at the first line that, trimmed, is the terminator: the real end, no sooner."""
    block = files_block(files)
    lines = block.split(b"\n")[1:]
    end = next(number for number, line in enumerate(lines) if line.strip() == TERMINATOR)
    assert b"\n".join(lines[:end + 1]) + b"\n" == block[block.index(b"\n") + 1:]


@settings(max_examples=200)
@given(FILES, st.data())
def test_a_sieci_master_passes_file_items_by_their_length(files, data):
    block = files_block(files)
    header_end = block.index(b"\n") + 1
    receiver = Receiver()
    receiver.start_block(parse_header(block[:header_end]), results=True)
    payload, cuts, relayed = block[header_end:], data.draw(cuts_of(len(block) - header_end)), []
    for start, end in zip([0, *cuts], [*cuts, len(payload)]):
        if start == end:
            continue  # an empty read is the peer closing
        receiver.receive_data(payload[start:end])
        while receiver.in_block and (event := receiver.next_event()) is not protocol.NEED_DATA:
            relayed.append(event.raw if isinstance(event, protocol.BlockEnd) else event.data)
    assert (b"".join(relayed), receiver.in_block) == (payload, False)


def test_an_empty_file_is_one_item_and_its_name():
    assert file_items(b"", TERMINATOR, "a/b c") == [b"r 0 a/b%20c\n", b""]
    assert file_items(b"", TERMINATOR) == []
    assert decoded_files(b"r 0 a/b%20c\nx exit 0\n", [])[0] == [["a/b c", b""]]


def test_a_file_cut_where_the_terminator_is_keeps_no_piece_with_it_whole():
    items = file_items(b"ab" + TERMINATOR + b"cd", TERMINATOR, "f")
    assert items == [b"r 3 f\n", b"ab" + TERMINATOR[:1], b"r %d\n" % (len(TERMINATOR) + 1), TERMINATOR[1:] + b"cd"]


def test_names_travel_as_their_bytes():
    name = "caf\udce9/\n x"  # not UTF-8 (surrogateescape), a newline, a space
    assert decoded_files(b"".join(file_items(b"1", TERMINATOR, name)) + b"x exit 0\n", [])[0] == [[name, b"1"]]


@pytest.mark.parametrize("payload", [
    b"r 1\nXx exit 0\n",  # a piece before any name
    b"r 1 a b\nXx exit 0\n",  # a name with a space
    b"r x a\n",  # no length
    b"r 1 %zz\nXx exit 0\n",  # a broken escape
    b"x exit 0\nr 0 a\n",  # after the status
])
def test_malformed_file_items_break_the_protocol(payload):
    with pytest.raises(RemoteProtocolError):
        decoded_files(payload, [])


def test_pieces_of_a_file_are_never_joined_to_output():
    payload = b"1 2\nab" + b"r 2 f\ncd" + b"2 1\nzx exit 3\n"
    assert ResultDecoder().feed(payload) == [(STDOUT, b"ab"), (RETURNED, FilePiece("f", b"cd")), (STDERR, b"z")]
