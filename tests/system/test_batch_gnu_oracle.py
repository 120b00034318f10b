"""GNU parallel as the oracle: each case's command line runs through /usr/bin/parallel (``-k``, the
command ``PYTHON args.py``) and through sieci-client (``-k``, PROG ``args.py``) on a real local cluster,
and their stdout must be the same, byte for byte (with --dry-run: GNU's lines less their ``PYTHON``);
with --halt, their exit status and which jobs their joblogs list too. The cases are docs/batches.md's
list of what is supported; .ci/run installs Debian's parallel package, and without it these skip."""

import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sieci.client.batch_syntax import basename, dirname, without_extension
from tests.helpers import WAIT
from tests.system.test_batch import master, sieci_client  # noqa: F401 - master is a fixture

PYTHON = sys.executable


def _gnu_parallel():
    path = shutil.which("parallel")
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=WAIT).stdout
    return path if version.startswith("GNU parallel") else None  # not moreutils' parallel


PARALLEL = _gnu_parallel()
PERL = shutil.which("perl")
pytestmark = pytest.mark.skipif(PARALLEL is None, reason="GNU parallel is not installed (Debian's package "
                                                         "'parallel'; .ci/run installs it as root)")

PROGRAMS = {
    "args.py": "import sys\nprint(sys.argv[1:])\n",
    "lines.py": "import sys\nprint('first', sys.argv[1:])\nprint('second')\nsys.stdout.write('no newline')\n",
    "exits.py": "import sys\nprint('job', sys.argv[1:])\nsys.exit(int(sys.argv[1]))\n",
}
FILES = {"values.txt": "l1\n\nl3 with spaces\n", "short.txt": "p\nq", "paths.txt": "dir/a.tar.gz\n/b\nc.d/e\n"}

# (name, options, PROG and ARGs, input sources, stdin)
CASES = [
    ("two sources, every combination", [], ["args.py"], [":::", "a", "b", ":::", "x", "y"], None),
    ("three sources, positional", [], ["args.py", "{3}", "{1}", "{2}"],
     [":::", "a", "b", ":::", "1", "2", "3", ":::", "x", "y"], None),
    ("linked with :::+", [], ["args.py"], [":::", "a", "b", "c", ":::+", "1", "2", ":::", "x", "y"], None),
    (":::+ longer than its partner", [], ["args.py"], [":::", "a", "b", ":::+", "1", "2", "3"], None),
    (":::: a file, empty line and all", [], ["args.py"], ["::::", "values.txt"], None),
    (":::: two files", [], ["args.py", "{2}", "{1}"], ["::::", "short.txt", "values.txt"], None),
    ("::::+ linked to a :::", [], ["args.py"], [":::", "a", "b", "::::+", "short.txt"], None),
    (":::: - (stdin)", [], ["args.py"], ["::::", "-", ":::", "1", "2"], b"s1\ns2\n"),
    ("-a first, then :::", ["-a", "short.txt"], ["args.py"], [":::", "x", "y"], None),
    ("an empty source among others", [], ["args.py"], [":::", "a", ":::"], None),
    ("{} is every value", [], ["args.py", "{}", "x{}y"], [":::", "a", ":::", "b"], None),
    ("{.} {/} {//} {/.}", [], ["args.py", "{.}", "{/}", "{//}", "{/.}"],
     [":::", "a/b.c/d.e.f", "x.py", "/top", ".", "", ".hidden", "a/", "dir//sub/", "a.b c", "c.d/e", "a.b/", "//",
      "/", "x/.y"], None),
    ("positional {1.} {2.} {1/} {1//} {2/.} {-1}", [], ["args.py", "{1.}", "{2.}", "{1/}", "{1//}", "{2/.}", "{-1}"],
     ["::::", "paths.txt", ":::", "x/y.z"], None),
    ("{#} and {%} with -j1", ["-j", "1"], ["args.py", "{#}", "{%}", "seq={#}"], [":::", "a", "b", "c"], None),
    ("{#} alone adds no values", [], ["args.py", "{#}"], [":::", "a", "b"], None),
    ("values a shell would expand", [], ["args.py"],
     [":::", "it's", "$HOME", "a b", "*", "tab\there", "é", "--flag", "'"], None),
    ("-k with -j 4", ["-j", "4"], ["args.py", "{}"], [":::", *map(str, range(12))], None),
    ("--tag", ["--tag"], ["lines.py"], [":::", "a", "b", ":::", "x y"], None),
    ("--tag with a replacement string", ["--tag"], ["args.py", "{2}"], [":::", "a", ":::", "b", "c"], None),
]
DRY_RUNS = [
    ("--dry-run", ["--dry-run"], ["args.py", "{}", "x{1}y"],
     [":::", "a", "b c", "it's", "$x", "", 'a"b', "tab\tx", "é", "a=b", "~"], None),
    ("--dry-run, appended", ["--dry-run"], ["args.py", "--in"], [":::", "a b", ":::", "c"], None),
    ("--dry-run --tag", ["--dry-run", "--tag"], ["args.py"], [":::", "a", "b"], None),
    ("--dry-run {#} {%} -j1", ["--dry-run", "-j", "1"], ["args.py", "{#}", "{%}"], [":::", "a", "b"], None),
]
HALTS = ["now,fail=1", "soon,fail=1", "soon,fail=2", "now,fail=2", "now,success=2", "soon,done=3", "now,fail=50%",
         "never", "2", "1"]
EXITS = ["0", "3", "0", "4", "5", "0", "0"]


@pytest.fixture
def folder(tmp_path):
    for name, text in {**PROGRAMS, **FILES}.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def gnu(folder, options, command, sources, stdin=None):
    argv = [PARALLEL, "--will-cite", "-k", *options, PYTHON, *command, *sources]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=WAIT * 2, cwd=folder)


def sieci(master, folder, options, command, sources, stdin=None):  # noqa: F811 - master is the fixture's value
    return sieci_client("-k", *options, master, *command, *sources, input=stdin, cwd=folder)


@pytest.mark.parametrize("name, options, command, sources, stdin", CASES, ids=[case[0] for case in CASES])
def test_the_same_output_as_gnu_parallel(master, folder, name, options, command, sources, stdin):  # noqa: F811
    expected = gnu(folder, options, command, sources, stdin)
    assert expected.returncode == 0 and expected.stdout, expected.stderr
    done = sieci(master, folder, options, command, sources, stdin)
    assert (done.returncode, done.stdout) == (0, expected.stdout), done.stderr


@pytest.mark.parametrize("name, options, command, sources, stdin", DRY_RUNS, ids=[case[0] for case in DRY_RUNS])
def test_dry_run_prints_gnu_parallels_commands_less_the_interpreter(master, folder, name, options, command,  # noqa
                                                                   sources, stdin):
    expected = gnu(folder, options, command, sources, stdin)
    assert expected.returncode == 0 and PYTHON.encode() in expected.stdout
    done = sieci(master, folder, options, command, sources, stdin)
    assert (done.returncode, done.stdout) == (0, expected.stdout.replace(PYTHON.encode() + b" ", b""))


def _joblog_runs(path):
    """The (Seq, Exitval) of each job a joblog lists, GNU's or sieci's."""
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    seq, exitval = rows[0].index("Seq"), rows[0].index("Exitval")
    return sorted((int(row[seq]), int(row[exitval])) for row in rows[1:])


@pytest.mark.parametrize("halt", HALTS)
def test_halt_stops_where_gnu_parallel_stops(master, folder, halt):  # noqa: F811
    options = ["-j", "1", "--halt", halt]
    expected = gnu(folder, [*options, "--joblog", "gnu.log"], ["exits.py"], [":::", *EXITS])
    done = sieci(master, folder, [*options, "--joblog", "sieci.log"], ["exits.py"], [":::", *EXITS])
    assert (done.returncode, done.stdout) == (expected.returncode, expected.stdout), done.stderr
    assert _joblog_runs(folder / "sieci.log") == _joblog_runs(folder / "gnu.log")


def test_a_perl_replacement_string_is_refused_where_gnu_parallel_runs_it(master, folder):  # noqa: F811
    sources = [":::", "a"]
    assert gnu(folder, [], ["args.py", "{=s/a/b/=}"], sources).stdout == b"['b']\n"
    done = sieci(master, folder, [], ["args.py", "{=s/a/b/=}"], sources)
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.decode().splitlines() == ["sieci-client: error: the replacement string '{=s/a/b/=}' is a "
                                                 "Perl expression ({=...=}): sieci does not run it (docs/batches.md "
                                                 "lists what it does)"]


@pytest.mark.skipif(PERL is None, reason="perl is not installed")
@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab./"), max_size=7), min_size=1, max_size=20))
def test_path_changes_are_perls(values):
    """{.} {/} {//}: the regular expressions of GNU parallel and Perl's File::Basename::dirname."""
    code = ('use File::Basename; while (my $v = <STDIN>) { chomp $v; my ($e, $b) = ($v, $v); '
            '$e =~ s:\\.[^/.]*$::; $b =~ s:.*/::; print "$e\\0$b\\0", dirname($v), "\\0"; }')
    done = subprocess.run([PERL, "-e", code], input="".join(value + "\n" for value in values).encode(),
                          capture_output=True, timeout=20, check=True)
    expected = done.stdout.decode().split("\0")[:-1]
    assert [change(value) for value in values for change in (without_extension, basename, dirname)] == expected
