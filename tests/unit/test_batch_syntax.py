"""GNU parallel's batch syntax, read without a cluster: input sources, their combinations, replacement
strings, GNU's quoting, --tag, --halt. (The path changes of the replacement strings are checked against
Perl itself in tests/system/test_batch_gnu_oracle.py: a unit test starts no process.)"""

import itertools
import math
import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci.client import batch_plan
from sieci.client.batch_syntax import (Combinations, LineTagger, SyntaxRefused, Template, gnu_quote, lines_of,
                                       split_sources)
from sieci.client.halt import HaltWatch, parse_halt

VALUES = st.lists(st.text(st.characters(blacklist_characters="\n\0", blacklist_categories=("Cs",)), max_size=6),
                  min_size=1, max_size=5)


def _sources(words):
    return [(source.values, source.path, source.linked) for source in split_sources(words)]


@pytest.mark.parametrize("words, sources", [
    ([":::", "a", "b", ":::", "x"], [(["a", "b"], None, False), (["x"], None, False)]),
    ([":::", "a", ":::+", "1", "::::", "f", "::::+", "g", "h"],
     [(["a"], None, False), (["1"], None, True), (None, "f", False), (None, "g", True), (None, "h", True)]),
    ([":::", ":::", "a"], [([], None, False), (["a"], None, False)]),
    ([":::", "{}", "::::x"], [(["{}", "::::x"], None, False)]),
])
def test_the_words_after_the_first_separator_are_input_sources(words, sources):
    assert _sources(words) == sources


@pytest.mark.parametrize("words, complaint", [
    ([":::", "a", "::::"], "'::::' needs a file after it"),
    (["::::+", ":::", "a"], "'::::+' needs a file after it"),
    ([":::", "a\nb"], "holds a newline"),
])
def test_input_sources_that_gnu_parallel_would_read_otherwise_are_refused(words, complaint):
    with pytest.raises(SyntaxRefused, match=re.escape(complaint)) as refused:
        split_sources(words)
    assert refused.value.exit_code == 2


@pytest.mark.parametrize("data, values", [
    (b"", []), (b"a\n", ["a"]), (b"a", ["a"]), (b"a\n\n b\r\n", ["a", "", " b\r"]), (b"\n", [""]),
])
def test_a_file_has_a_value_a_line_empty_ones_too(data, values):
    assert lines_of(data) == values


@given(st.lists(VALUES, min_size=1, max_size=4))
def test_unlinked_sources_make_every_combination_in_gnu_parallels_order(columns):
    combinations = Combinations(columns, [False] * len(columns))
    assert len(combinations) == math.prod(map(len, columns))
    assert [combinations[index] for index in range(len(combinations))] == list(itertools.product(*columns))


@given(VALUES, VALUES, VALUES)
def test_linked_sources_go_together_as_far_as_the_shortest(first, linked, other):
    combinations = Combinations([first, linked, other], [False, True, False])
    expected = [(a, b, c) for (a, b) in zip(first, linked) for c in other]
    assert [combinations[index] for index in range(len(combinations))] == expected


def test_an_empty_source_among_others_is_one_empty_value_and_all_empty_is_no_job():
    assert [Combinations([["a"], []], [False, False])[0]] == [("a", "")]
    assert len(Combinations([[], []], [False, False])) == 0
    with pytest.raises(IndexError):
        Combinations([["a"]], [False])[1]


def test_a_billion_combinations_are_made_one_at_a_time():
    args = SimpleNamespace(arg_file=None, command=["p.py", "{3}"], resume=False, resume_failed=False,
                           retry_failed=False, joblog=None,
                           batch_words=[":::", *map(str, range(1000))] * 3)
    kept, todo = batch_plan.plan(args)
    first = [next(todo) for _ in range(3)]
    assert (kept, todo.total) == ([], 10 ** 9)
    assert [job.plan.command(job, 1) for job in first] == [["p.py", "0"], ["p.py", "1"], ["p.py", "2"]]


@pytest.mark.parametrize("template, values, command", [
    (["p.py"], ("a", "b"), ["p.py", "a", "b"]),
    (["p.py", "{2}", "{1}", "{-1}"], ("a", "b"), ["p.py", "b", "a", "b"]),
    (["p.py", "x{}y"], ("a", "b"), ["p.py", "xa", "by"]),
    (["p.py", "{}"], ("",), ["p.py", ""]),
    (["p.py", "{.}", "{/}", "{//}", "{/.}"], ("d.x/f.tar.gz",), ["p.py", "d.x/f.tar", "f.tar.gz", "d.x", "f.tar"]),
    (["p.py", "{1.}", "{2/}", "{1//}", "{2/.}"], ("a/b.c", "d/e.f"), ["p.py", "a/b", "e.f", "a", "e"]),
    (["p.py", "{#}", "{%}", "n{#}"], ("a",), ["p.py", "7", "3", "n7"]),
    (["p.py", "{x}", "{ }", "{+/}", "{##}", "{=x"], ("a",), ["p.py", "{x}", "{ }", "{+/}", "{##}", "{=x", "a"]),
    ([], ("a.py", "x"), ["a.py", "x"]),
])
def test_replacement_strings(template, values, command):
    assert Template(template, len(values)).command(values, 7, 3) == command


@pytest.mark.parametrize("word, complaint", [
    ("{=s/a/b/=}", "'{=s/a/b/=}' is a Perl expression"), ("x{1=uc=}y", "'{1=uc=}' is a Perl expression"),
    ("{3}", "{3} names input source 3, and there are 2"), ("{0}", "names input source 0"),
    ("{-3.}", "names input source -3"),
])
def test_replacement_strings_sieci_does_not_run_are_refused(word, complaint):
    """(A Perl expression may span words, as GNU parallel joins them before it reads them.)"""
    with pytest.raises(SyntaxRefused, match=re.escape(complaint)):
        Template(["p.py", word], 2)


@pytest.mark.parametrize("value, quoted", [
    ("a", "a"), ("", "''"), ("a b", "'a b'"), ("it's", "'it'\"'\"'s'"), ("'a", "\"'\"'a'"), ("a'", "'a'\"'\""),
    ("a=b", "'a=b'"), ("é", "'é'"), ("-_.+/9Z", "-_.+/9Z"),
])
def test_values_are_quoted_as_gnu_parallel_quotes_them(value, quoted):
    assert gnu_quote(value) == quoted


def test_dry_run_lines_quote_each_value_and_words_only_where_a_shell_would_misread_them():
    template = Template(["p.py", "--in={}.csv", "a b", ""], 1)
    assert template.shell_line(("x y",), 1, 1) == "p.py --in='x y'.csv 'a b' ''"
    assert Template(["p.py"], 2).shell_line(("a", "$b"), 1, 1) == "p.py a '$b'"


@given(st.lists(st.binary(max_size=12), max_size=8), st.sampled_from(["stdout", "stderr"]))
def test_tag_goes_before_every_line_however_the_output_is_cut(chunks, stream):
    whole = b"".join(chunks)
    tagger = LineTagger(b"T\t")
    tagged = b"".join(tagger.tagged(stream, chunk) for chunk in chunks)
    lines = whole.split(b"\n")
    expected = b"\n".join(b"T\t" + line for line in lines[:-1]) + (b"\n" if len(lines) > 1 else b"")
    assert tagged == expected + (b"T\t" + lines[-1] if lines[-1] else b"")


def test_tag_keeps_stdout_and_stderr_lines_apart():
    tagger = LineTagger(b"a\t")
    assert [tagger.tagged("stdout", b"o1\no"), tagger.tagged("stderr", b"e"), tagger.tagged("stdout", b"2\n"),
            tagger.tagged("stderr", b"\n")] == [b"a\to1\na\to", b"a\te", b"2\n", b"\n"]


@pytest.mark.parametrize("text, when, what, count, percent", [
    ("now,fail=1", "now", "fail", 1, None), ("soon,success=3", "soon", "success", 3, None),
    ("now,done=20%", "now", "done", None, 20), ("2", "now", "fail", 1, None), ("-1", "soon", "success", 1, None),
    ("5%", "soon", "fail", None, 5), ("never", "never", None, None, None), ("0", "never", None, None, None),
])
def test_halt_forms(text, when, what, count, percent):
    halt = parse_halt(text)
    assert (halt.when, halt.what, halt.count, halt.percent) == (when, what, count, percent)


@pytest.mark.parametrize("text", ["later,fail=1", "now,fail", "now,fail=0", "now,fail=101%", "now,oops=1",
                                  "never,fail=1", "now,fail=x", "now,fail=\u0661", "now,fail=\u00b2", "\u0662%"])
def test_halt_refuses_what_gnu_parallel_refuses(text):
    with pytest.raises(ValueError):
        parse_halt(text)


@pytest.mark.parametrize("text, statuses, halts_after, status", [
    ("now,fail=1", [0, 3, 0], 2, 3),
    ("soon,fail=2", [0, 3, 0, 4, 5], 4, 2),
    ("now,fail=30%", [0, 3, 0, 4, 5, 0], 4, 34),
    ("now,success=1", [3, 0], 2, 0),
    ("soon,done=2", [0, 3], 2, 1),
    ("now,fail=1", [0, 137], 2, 137),
])
def test_halt_says_when_and_with_which_exit_status_as_gnu_parallel(text, statuses, halts_after, status):
    watch = HaltWatch(parse_halt(text), 6)
    decisions = [watch.ended(exit_status) for exit_status in statuses]
    assert decisions.index(text.partition(",")[0]) + 1 == halts_after
    assert watch.exit_status() == status


def test_halt_that_never_triggers_exits_as_gnu_parallel():
    watch = HaltWatch(parse_halt("now,fail=50%"), 4)
    watch.started = 4
    assert [watch.ended(status) for status in (0, 1, 0, 0)] == [None] * 4 and watch.exit_status() == 25
    watch = HaltWatch(parse_halt("never"), 2)
    assert [watch.ended(status) for status in (1, 1)] == [None, None] and watch.exit_status() == 2


def test_a_perl_expression_across_words_is_refused():
    with pytest.raises(SyntaxRefused, match=re.escape("'{= s/a/b/ =}' is a Perl expression")):
        Template(["p.py", "{=", "s/a/b/", "=}"], 1)
