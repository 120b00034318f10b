"""Batches: sieci-client with many files, as a real process, against an in-process cluster on loopback."""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.helpers import JOBLOG_HEADER, REPO, WAIT, client_address, read_joblog

CLIENT = os.path.join(REPO, "bin", "client")
WORKERS = ("w1", "w2", "w3", "w4")


@pytest.fixture
def master(cluster):
    """The client address of a master with four workers."""
    master = cluster.master()
    for name in WORKERS:
        cluster.worker(master, name=name)
    return client_address(master)


def sieci_client(*argv, input=None, stderr=subprocess.PIPE, cwd=None):
    """Runs the real command to its end; no SIECI_* variable of ours leaks in."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("SIECI_")}
    return subprocess.run([sys.executable, CLIENT, *map(str, argv)], input=input, stdout=subprocess.PIPE,
                          stderr=stderr, timeout=WAIT * 2, env=environ, cwd=cwd)


def job(directory, name, status=0, waits_for=None, marks=None, needs=None):
    """A job file that prints '<name> out' and '<name> err' and exits with ``status``.

    ``waits_for``: it first waits (bounded) for that path to exist, or for
    (path, text): for the file to hold that text; ``marks``: it creates that
    path; ``needs``: it exits 5 unless that path exists.
    """
    lines = ["import os, sys, time"]
    if waits_for:
        path, text = waits_for if isinstance(waits_for, tuple) else (waits_for, "")
        lines += ["def there(path, text):",
                  "    try:",
                  "        return text in open(path).read()",
                  "    except OSError:",
                  "        return False",
                  f"deadline = time.monotonic() + {WAIT}",
                  f"while not there({str(path)!r}, {text!r}) and time.monotonic() < deadline:",
                  "    time.sleep(0.01)"]
    if marks:
        lines.append(f"open({str(marks)!r}, 'w').close()")
    lines += [f"print({name + ' out'!r})", f"print({name + ' err'!r}, file=sys.stderr)"]
    if needs:
        lines.append(f"sys.exit(0 if os.path.exists({str(needs)!r}) else 5)")
    lines.append(f"sys.exit({status})")
    path = directory / f"{name}.py"
    path.write_text("\n".join(lines) + "\n")
    return path


def shown_whole(merged):
    """The jobs (by name) whose two lines come together in ``merged`` (stdout and stderr, 2>&1), in the order
    shown. Each job's lines are in the order the worker relayed them: its stderr line, written at once,
    and its stdout, flushed at its end, are read from two pipes, either first."""
    groups = re.findall(rb"((\w) (?:out|err)\n\2 (?:out|err)\n)", merged)
    assert b"".join(whole for whole, _ in groups) == merged
    assert all(whole.count(b"out") == whole.count(b"err") == 1 for whole, _ in groups)
    return [name for _, name in groups]


def by_file(rows):
    return {os.path.basename(row[1]): row for row in rows}


def test_several_files_show_their_output_whole_and_in_input_order(master, tmp_path):
    joblog = tmp_path / "joblog"  # a job's line is there as soon as it has ended: a ends after c
    files = [job(tmp_path, "a", waits_for=(joblog, "c.py")), job(tmp_path, "b"), job(tmp_path, "c")]
    done = sieci_client("--jobs", 3, "--joblog", joblog, master, ":::", *files, stderr=subprocess.STDOUT)
    assert done.returncode == 0
    assert shown_whole(done.stdout) == [b"a", b"b", b"c"]
    ended = [os.path.basename(row[1]) for row in read_joblog(joblog)]
    assert ended.index("c.py") < ended.index("a.py")


def test_ungroup_shows_each_job_as_it_ends(master, tmp_path):
    joblog = tmp_path / "joblog"
    files = [job(tmp_path, "a", waits_for=(joblog, "c.py")), job(tmp_path, "b"), job(tmp_path, "c")]
    done = sieci_client("--ungroup", "--jobs", 3, "--joblog", joblog, master, ":::", *files, stderr=subprocess.STDOUT)
    assert done.returncode == 0
    groups = shown_whole(done.stdout)
    assert sorted(groups) == [b"a", b"b", b"c"] and groups.index(b"c") < groups.index(b"a")


def test_stdout_and_stderr_go_to_their_own_streams(master, tmp_path):
    done = sieci_client(master, ":::", job(tmp_path, "a"), job(tmp_path, "b"))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"a out\nb out\n", b"a err\nb err\n")


def test_an_arg_file_is_the_first_input_source_blank_lines_and_all(master, tmp_path):
    values = tmp_path / "values"
    values.write_text("x\n\n  y\n")
    printer = tmp_path / "printer.py"
    printer.write_text("import sys\nprint(sys.argv[1:])\n")
    done = sieci_client("-a", values, master, printer, ":::", 1, 2)
    assert (done.returncode, done.stdout.decode().splitlines()) == (0, [
        "['x', '1']", "['x', '2']", "['', '1']", "['', '2']", "['  y', '1']", "['  y', '2']"])


def test_values_from_stdin_with_relative_names(master, tmp_path):
    job(tmp_path, "a"), job(tmp_path, "b")
    done = sieci_client("-a", "-", master, input=b"a.py\nb.py\n", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, b"a out\nb out\n")


def test_an_empty_list_is_an_empty_batch(master, tmp_path):
    joblog = tmp_path / "joblog"
    done = sieci_client("-a", "-", "--joblog", joblog, master, input=b"")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert read_joblog(joblog) == []


def test_jobs_1_runs_one_at_a_time_and_jobs_4_all_at_once(master, tmp_path):
    files = [job(tmp_path, name) for name in "abcd"]
    joblog = tmp_path / "joblog"
    done = sieci_client("--jobs", 1, "--joblog", joblog, master, ":::", *files)
    assert (done.returncode, done.stdout) == (0, b"a out\nb out\nc out\nd out\n")
    spans = sorted((float(row[4]), float(row[4]) + float(row[5])) for row in read_joblog(joblog))
    assert all(later[0] >= earlier[1] - 0.002 for earlier, later in zip(spans, spans[1:]))
    # With 4 at once, a job that waits for the last one to start can only finish if they overlap.
    mark = tmp_path / "d-ran"
    files = [job(tmp_path, "a", waits_for=mark), job(tmp_path, "b"), job(tmp_path, "c"),
             job(tmp_path, "d", marks=mark)]
    done = sieci_client("--jobs", 4, master, ":::", *files)
    assert (done.returncode, done.stdout) == (0, b"a out\nb out\nc out\nd out\n")


def test_the_exit_status_counts_the_failed_jobs_and_the_joblog_has_their_exitval(master, tmp_path):
    files = [job(tmp_path, "a"), job(tmp_path, "b", status=3), job(tmp_path, "c"), job(tmp_path, "d", status=1)]
    joblog = tmp_path / "joblog"
    done = sieci_client("--joblog", joblog, master, ":::", *files)
    assert (done.returncode, done.stdout) == (2, b"a out\nb out\nc out\nd out\n")
    rows = by_file(read_joblog(joblog))
    assert {name: row[6] for name, row in rows.items()} == {"a.py": "0", "b.py": "3", "c.py": "0", "d.py": "1"}
    assert all(row[8] == "-" for row in rows.values())


def test_a_job_sieci_could_not_run_is_counted_with_its_reason(master, tmp_path):
    files = [job(tmp_path, "a"), tmp_path / "missing.py", job(tmp_path, "b")]
    joblog = tmp_path / "joblog"
    done = sieci_client("--joblog", joblog, master, ":::", *files)
    assert (done.returncode, done.stdout) == (1, b"a out\nb out\n")
    reason = "cannot read " + str(files[1]) + ": No such file or directory"
    assert done.stderr == f"a err\nsieci-client: error: {files[1]}: {reason}\nb err\n".encode()
    row = by_file(read_joblog(joblog))["missing.py"]
    assert row[1:4] + row[6:] == [str(files[1]), "-", "-", "255", "0", reason, "-"]


def test_an_unreachable_master_fails_every_job_with_its_reason(tmp_path, reserved_port):
    where = reserved_port().address
    files = [job(tmp_path, "a"), job(tmp_path, "b")]
    joblog = tmp_path / "joblog"
    done = sieci_client("--joblog", joblog, where, ":::", *files)
    assert (done.returncode, done.stdout) == (2, b"")
    reason = f"cannot reach master {where} (connection refused)"
    assert done.stderr.decode().splitlines() == [f"sieci-client: error: {path}: {reason}" for path in files]
    assert [(row[6], row[8]) for row in read_joblog(joblog)] == [("255", reason)] * 2


def test_more_than_100_failures_exit_101(tmp_path, reserved_port):
    files = [tmp_path / f"missing{i}.py" for i in range(101)]
    nowhere = reserved_port().address
    done = sieci_client(nowhere, ":::", *files[:100])
    assert done.returncode == 100
    done = sieci_client(nowhere, ":::", *files)
    assert done.returncode == 101 and done.stderr.count(b"sieci-client: error: ") == 101


def test_a_job_over_a_limit_says_so_in_stderr_and_the_joblog(cluster, tmp_path):
    from sieci.worker.limits import Limits

    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=0.5))
    slow = tmp_path / "slow.py"
    slow.write_text("import time\nprint('before', flush=True)\ntime.sleep(30)\n")
    joblog = tmp_path / "joblog"
    done = sieci_client("--joblog", joblog, client_address(master), ":::", slow, job(tmp_path, "a"))
    assert (done.returncode, done.stdout) == (1, b"before\na out\n")
    message = "the job ran past its time limit of 0.5 s"
    assert done.stderr == f"sieci-client: {slow}: {message}\na err\n".encode()
    rows = by_file(read_joblog(joblog))
    assert [(rows[name][6], rows[name][8]) for name in ("slow.py", "a.py")] == [("124", message), ("0", "-")]


def test_a_job_past_the_clients_own_timeout_has_exitval_124_as_its_exit_status(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    joblog = tmp_path / "joblog"
    done = sieci_client("--timeout", 1, "--joblog", joblog, client_address(master), ":::", slow)
    message = "no result within the --timeout of 1 s"
    assert (done.returncode, done.stderr) == (1, f"sieci-client: error: {slow}: {message}\n".encode())
    assert [(row[6], row[8]) for row in read_joblog(joblog)] == [("124", message)]


def test_retry_failed_runs_only_the_failed_jobs_and_rewrites_the_joblog(master, tmp_path):
    marker = tmp_path / "ready"
    files = [job(tmp_path, "a"), job(tmp_path, "b", needs=marker), job(tmp_path, "c"), job(tmp_path, "d", needs=marker)]
    joblog = tmp_path / "joblog"
    done = sieci_client("--joblog", joblog, master, ":::", *files)
    assert done.returncode == 2
    first = by_file(read_joblog(joblog))
    assert {name: row[6] for name, row in first.items()} == {"a.py": "0", "b.py": "5", "c.py": "0", "d.py": "5"}

    marker.touch()
    done = sieci_client("--joblog", joblog, "--retry-failed", master)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"b out\nd out\n", b"b err\nd err\n")
    rows = read_joblog(joblog)
    again = by_file(rows)
    assert len(rows) == 4 and {name: row[6] for name, row in again.items()} == dict.fromkeys(first, "0")
    assert (again["a.py"], again["c.py"]) == (first["a.py"], first["c.py"])  # kept as they were
    assert [again[name][0] for name in ("b.py", "d.py")] == ["2", "4"]  # same Seq, a new run
    assert all(float(again[name][4]) > float(first[name][4]) for name in ("b.py", "d.py"))

    done = sieci_client("--joblog", joblog, "--retry-failed", master)  # nothing left to retry
    assert (done.returncode, done.stdout) == (0, b"")
    assert read_joblog(joblog) == rows


def test_retry_failed_needs_a_readable_joblog(master, tmp_path):
    done = sieci_client("--retry-failed", master)
    assert done.returncode == 2 and b"--retry-failed needs --joblog" in done.stderr
    done = sieci_client("--retry-failed", "--joblog", tmp_path / "none", master)
    assert done.returncode == 255 and b"cannot read the joblog" in done.stderr
    (tmp_path / "other").write_text("Seq\tCommand\n")
    done = sieci_client("--retry-failed", "--joblog", tmp_path / "other", master)
    assert done.returncode == 255 and b"is not a sieci joblog" in done.stderr


def test_the_joblog_format(master, tmp_path):
    joblog = tmp_path / "joblog"
    before = time.time()
    done = sieci_client("--joblog", joblog, master, ":::", job(tmp_path, "a"), job(tmp_path, "b", status=4))
    after = time.time()
    assert done.returncode == 1
    assert joblog.read_text().split("\n")[0] == JOBLOG_HEADER
    rows = read_joblog(joblog)
    assert sorted(row[0] for row in rows) == ["1", "2"]
    for row in rows:
        assert len(row) == 10
        seq, path, where, worker, start, runtime, exitval, size, reason, job_id = row
        assert re.fullmatch(r"[0-9a-f]{16}", job_id)
        assert path == str(tmp_path / ("a.py" if seq == "1" else "b.py"))
        assert (where, worker in WORKERS, exitval, size, reason) == (master, True, "04"[int(seq) - 1], "12", "-")
        assert re.fullmatch(r"\d+\.\d{3}", start) and re.fullmatch(r"\d+\.\d{3}", runtime)
        assert before - 0.001 <= float(start) <= float(start) + float(runtime) <= after + 0.002


def test_an_unreadable_arg_file_runs_nothing(master, tmp_path):
    joblog = tmp_path / "joblog"
    done = sieci_client("-a", tmp_path / "none", "--joblog", joblog, master)
    assert (done.returncode, done.stdout) == (255, b"")
    assert done.stderr.startswith(b"sieci-client: error: cannot read the -a file ")
    assert not joblog.exists()


def test_no_progress_bar_when_stderr_is_not_a_terminal(master, tmp_path):
    done = sieci_client(master, ":::", job(tmp_path, "a"), job(tmp_path, "b"))
    assert (done.returncode, done.stderr) == (0, b"a err\nb err\n")


def test_a_progress_bar_when_stderr_is_a_terminal(master, tmp_path):
    controller, terminal = pty.openpty()
    try:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
        done = sieci_client(master, ":::", job(tmp_path, "a"), job(tmp_path, "b"), stderr=terminal)
        os.close(terminal)
        terminal = None
        shown = _read_everything(controller).decode("utf-8", "replace")
    finally:
        os.close(controller)
        if terminal is not None:
            os.close(terminal)
    assert (done.returncode, done.stdout) == (0, b"a out\nb out\n")
    assert "a err" in shown and "b err" in shown and "2/2" in shown


def _read_everything(fd):
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal side is closed and all is read
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_batch_command_line_loads_neither_argparse_nor_gevent():
    code = ("import sys; from sieci.client.arguments import parse_args; "
            "args = parse_args(['--jobs', '2', '--joblog', 'j', 'm:1', 'a.py', 'b.py']); import sieci.client.batch; "
            "print(args.batch, sorted(m for m in ('argparse', 'gevent', 'tqdm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, cwd=REPO)
    assert done.stdout == "True []\n"


def test_help_lists_the_batch_options():
    done = subprocess.run([sys.executable, CLIENT, "--help"], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0
    for variable in ("SIECI_JOBS", "SIECI_ARG_FILE", "SIECI_UNGROUP", "SIECI_JOBLOG", "SIECI_RETRY_FAILED",
                     "SIECI_RESUME", "SIECI_RESUME_FAILED", "SIECI_TAG", "SIECI_HALT"):
        assert variable in done.stdout
    for flag in ("-j N", "-k, --keep-order", "--tag", "--halt WHEN,WHAT=N", "--dry-run"):
        assert flag in done.stdout


def _cancelled_and_all_idle(master):
    """Whether the master counts a cancelled job and none running (its --status)."""
    import json

    status = json.loads(sieci_client("--status", "--json", master).stdout)[master]
    return status["totals"]["cancelled"] >= 1 and all(worker["job"] is None for worker in status["workers"])


def test_halt_now_stops_the_running_jobs_on_their_workers(master, tmp_path):
    joblog = tmp_path / "joblog"
    started, never = tmp_path / "started", tmp_path / "never"
    slow = job(tmp_path, "slow", waits_for=never)  # marks that it runs, then waits longer than the test would
    code = slow.read_text().replace(f"time.monotonic() + {WAIT}", f"time.monotonic() + {WAIT * 10}")
    slow.write_text(code.replace("import os, sys, time", f"import os, sys, time\nopen({str(started)!r}, 'w').close()"))
    failing = job(tmp_path, "failing", status=3, waits_for=started)
    done = sieci_client("-j", 2, "--halt", "now,fail=1", "--joblog", joblog, master, ":::", slow, failing)
    assert (done.returncode, done.stdout) == (3, b"failing out\n")
    assert b"halting (--halt now,fail=1) after job 2 failed: no more jobs start, and 1 running stopped" in done.stderr
    assert [row[0] for row in read_joblog(joblog)] == ["2"]
    deadline = time.monotonic() + WAIT
    while not _cancelled_and_all_idle(master) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _cancelled_and_all_idle(master)


def test_a_billion_combinations_start_at_once_and_halt_after_three(master, tmp_path):
    printer = tmp_path / "printer.py"
    printer.write_text("import sys\nprint(*sys.argv[1:])\n")
    thousand = [str(n) for n in range(1000)]
    done = sieci_client("-j", 1, "--halt", "now,done=3", master, printer, "{3}{2}{1}",
                        ":::", *thousand, ":::", *thousand, ":::", *thousand)
    assert (done.returncode, done.stdout) == (0, b"000\n100\n200\n")


def test_tag_and_dry_run_on_the_command_line(master, tmp_path):
    printer = tmp_path / "printer.py"
    printer.write_text("import sys\nprint(*sys.argv[1:])\nprint('err', file=sys.stderr)\n")
    done = sieci_client("--tag", master, printer, "{1/.}", ":::", "a/b.c", ":::", "x")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"a/b.c x\tb\n", b"a/b.c x\terr\n")
    done = sieci_client("--dry-run", "--joblog", tmp_path / "joblog", master, printer, "{#}", ":::", "a", "b c")
    assert (done.returncode, done.stdout) == (0, f"{printer} 1\n{printer} 2\n".encode())
    assert not (tmp_path / "joblog").exists()


def test_an_input_file_with_a_nul_byte_is_refused_before_anything_runs(master, tmp_path):
    values = tmp_path / "values"
    values.write_bytes(b"a\0b\nc\n")
    done = sieci_client(master, job(tmp_path, "a"), "::::", values)
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr == (f"sieci-client: error: the :::: file {values} holds a NUL byte, which no argument can hold "
                           "(GNU parallel would put the two characters \\0 in its place)\n").encode()
