"""--return: files a job writes come back into the client's results folder, byte for byte, and
nothing lands outside it, whatever the job or a lying worker names; over real loopback sockets."""

import pytest

from sieci.client.client import Client

from tests.helpers import WAIT, Captured, client_address, files_under

EVERY_BYTE = bytes(range(256)) * 3
WRITES_THREE_FILES = b"""
import os
os.makedirs('out/deeper')
open('out/deeper/table.csv', 'w').write('a,b\\n1,2\\n')
open('every-byte.bin', 'wb').write(bytes(range(256)) * 3)
open('empty.txt', 'w').close()
open('not-asked.log', 'w').write('no')
print('done')
"""


def run(master, code, returns, results, **settings):
    output = Captured()
    result = Client(client_address(master), timeout=WAIT, **settings).run(code, output=output, returns=returns,
                                                                            results=str(results))
    return result, output


@pytest.fixture
def master(cluster):
    master = cluster.master()
    cluster.worker(master)
    return master


def test_three_files_come_back_byte_for_byte(master, tmp_path):
    results = tmp_path / "results"
    result, output = run(master, WRITES_THREE_FILES, ["out/**/*.csv", "*.bin", "empty.txt"], results)
    assert (result.exit_status, output.stdout, output.stderr) == (0, b"done\n", b"")
    assert result.returned == ["empty.txt", "every-byte.bin", "out/deeper/table.csv"]
    assert result.not_returned == []
    assert files_under(results) == {"empty.txt": b"", "every-byte.bin": EVERY_BYTE, "out/deeper/table.csv": b"a,b\n1,2\n"}


def test_a_glob_that_matches_nothing_says_so_and_makes_no_folder(master, tmp_path):
    result, output = run(master, b"open('a.txt', 'w').close()\n", ["*.png"], tmp_path / "results")
    assert (result.exit_status, result.returned, result.not_returned) == (0, [], [])
    assert output.stderr == b"sieci: --return '*.png' matched no file\n"
    assert not (tmp_path / "results").exists()


def test_a_symlink_the_job_makes_to_outside_is_not_followed(master, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the worker's own\n")
    code = (f"import os\nos.symlink({str(secret)!r}, 'leak.txt')\nos.symlink({str(tmp_path)!r}, 'dir')\n"
            "os.mkfifo('pipe.txt')\nopen('fine.txt', 'w').write('fine')\n").encode()
    result, output = run(master, code, ["*.txt", "dir/**"], tmp_path / "results")
    assert result.returned == ["fine.txt"]
    assert output.stderr == (b"sieci: --return: dir not returned: a symbolic link\n"
                             b"sieci: --return: leak.txt not returned: a symbolic link\n"
                             b"sieci: --return: pipe.txt not returned: not a regular file\n")
    assert files_under(tmp_path / "results") == {"fine.txt": b"fine"}


def test_a_symlink_in_the_results_folder_is_never_followed(master, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.txt").write_text("mine")
    results = tmp_path / "results"
    results.mkdir()
    (results / "out.txt").symlink_to(outside / "target.txt")
    (results / "sub").symlink_to(outside)
    code = b"import os\nos.mkdir('sub')\nfor name in ('out.txt', 'sub/new.txt', 'ok.txt'):\n    open(name, 'w').write('x')\n"
    result, _ = run(master, code, ["**/*.txt"], results)
    assert result.returned == ["ok.txt"]
    assert result.not_returned == [("out.txt", "refused: a symbolic link is in the way"),
                                   ("sub/new.txt", "refused: a symbolic link is in the way")]
    assert files_under(outside) == {"target.txt": b"mine"}
    assert files_under(results) == {"ok.txt": b"x", "out.txt": ("->", str(outside / "target.txt")),
                             "sub": ("->", str(outside))}


def test_the_files_past_max_return_are_not_written(master, tmp_path):
    code = b"for name in ('a', 'b', 'c'):\n    open(name + '.bin', 'wb').write(b'%s' % name.encode() * 600)\n"
    result, output = run(master, code, ["*.bin"], tmp_path / "results", max_return=2000)  # 512 more a file
    assert result.returned == ["a.bin"]
    assert result.not_returned == [("b.bin", "the files returned pass --max-return (2000 bytes)")]
    assert output.stderr == (b"sieci: --return: b.bin and the files after it (in name order) not returned: they "
                             b"pass the client's --max-return of 2000 bytes\n")
    assert files_under(tmp_path / "results") == {"a.bin": b"a" * 600}


def test_files_cross_a_classic_master_byte_for_byte(cluster, classic, tmp_path):
    master = classic.master()
    cluster.worker(master.workers_address)
    master.wait_for_workers(1)
    # Lines that look like items, or like a terminator with spaces around it.
    content = b"x exit 0\n1 5\nr 3 ../x\n  GHIJKLMNOPQRSTUV  \n\nno newline at the end"
    code = b"open('tricky.txt', 'wb').write(%r)\nprint('ran')\n" % content
    output = Captured()
    result = Client(f"127.0.0.1:{master.clients_address[1]}", timeout=WAIT).run(
        code, output=output, returns=["tricky.txt"], results=str(tmp_path))
    assert (result.exit_status, output.stdout, files_under(tmp_path)) == (0, b"ran\n", {"tricky.txt": content})


# --- a lying worker: what it forges lands nowhere, and the client says so --------------------------


def forged_results(*files):
    """A results block as a worker could forge it: each file ``(name, bytes)`` as one item."""
    items = b"".join(b"r %d %s\n%s" % (len(data), name, data) for name, data in files)
    return b"ENDSEQ T v=2\n" + items + b"x exit 0\nT\n"


@pytest.mark.parametrize("forged, why", [
    (b"../escape.txt", "refused: a name with an empty, '.' or '..' part"),
    (b"sub/../../escape.txt", "refused: a name with an empty, '.' or '..' part"),
    (b"ABSOLUTE/escape.txt", "refused: an absolute name"),
    (b"link/escape.txt", "refused: a symbolic link is in the way"),
    (b"a//b", "refused: a name with an empty, '.' or '..' part"),
    (b"a%00b", "refused: a name with a NUL byte"),
], ids=["dot-dot", "dot-dot-below", "absolute", "through-a-symlink", "empty-part", "nul"])
def test_a_forged_name_is_refused_and_writes_nothing_outside(cluster, classic, tmp_path, forged, why):
    outside = tmp_path / "outside"
    outside.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    (results / "link").symlink_to(outside)
    forged = forged.replace(b"ABSOLUTE", str(outside).encode())
    master = cluster.master()
    classic.worker(master.workers_address, results=forged_results((forged, b"evil"), (b"ok.txt", b"fine")))
    assert master.wait_for_workers(1, WAIT)
    result, _ = run(master, b"pass\n", ["**"], results)
    name = forged.decode().replace("%00", "\0")
    assert (result.returned, result.not_returned) == (["ok.txt"], [(name, why)])
    assert files_under(outside) == {}
    assert files_under(tmp_path) == {"results/ok.txt": b"fine", "results/link": ("->", str(outside))}


def test_a_file_no_return_asked_for_is_refused(cluster, classic, tmp_path):
    master = cluster.master()
    classic.worker(master.workers_address, results=forged_results(
        (b".bashrc", b"evil"), (b".ssh/authorized_keys", b"evil"), (b"a.csv", b"1"), (b"b.txt", b"evil")))
    assert master.wait_for_workers(1, WAIT)
    result, _ = run(master, b"pass\n", ["*.csv"], tmp_path)
    assert (result.returned, [name for name, _ in result.not_returned]) == (
        ["a.csv"], [".bashrc", ".ssh/authorized_keys", "b.txt"])
    assert {why for _, why in result.not_returned} == {"refused: the worker sent a file that no --return asked for"}
    assert files_under(tmp_path) == {"a.csv": b"1"}


def test_many_empty_files_count_against_max_return(master, tmp_path):
    code = b"for n in range(100):\n    open('%03d.txt' % n, 'w').close()\n"
    result, _ = run(master, code, ["*.txt"], tmp_path / "results", max_return=10 * 512)
    assert result.returned == ["%03d.txt" % n for n in range(10)]
    assert result.not_returned == [("010.txt", "the files returned pass --max-return (5120 bytes)")]


def test_a_file_a_lying_worker_makes_too_big_is_cut_and_removed(cluster, classic, tmp_path):
    master = cluster.master()
    classic.worker(master.workers_address, results=forged_results((b"big", b"x" * 100), (b"after", b"y")))
    assert master.wait_for_workers(1, WAIT)
    result, _ = run(master, b"pass\n", ["*"], tmp_path, max_return=99)
    assert result.not_returned == [("big", "the files returned pass --max-return (99 bytes)"),
                                   ("after", "the files returned pass --max-return (99 bytes)")]
    assert files_under(tmp_path) == {}


def test_a_classic_worker_returns_nothing_and_the_client_says_so(cluster, classic, tmp_path):
    master = cluster.master()
    classic.worker(master.workers_address)
    assert master.wait_for_workers(1, WAIT)
    result, output = run(master, b"pass\n", ["*"], tmp_path)
    assert output.stdout == b"result\n"
    assert result.not_returned == [(None, "the job ran on a classic worker, which returns no files")]


def test_a_folder_of_too_many_entries_ends_the_walk_and_says_so(master, tmp_path, monkeypatch):
    from sieci.worker import workdir

    monkeypatch.setattr(workdir, "MAX_LISTED", 50)  # the worker is in this process
    code = b"import os\nos.mkdir('many')\nfor n in range(60):\n    open('many/%02d.txt' % n, 'w').close()\n"
    result, output = run(master, code, ["*.txt", "many/*.txt"], tmp_path / "results")
    assert result.returned == []
    assert output.stderr.splitlines()[0] == (
        b"sieci: --return: many not returned: more than 50 entries to list: nothing more returned")
