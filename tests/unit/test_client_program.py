"""What the client sends of a program: code from stdin is marked so, and keeps a file name for classic workers."""

from sieci.client.program import STDIN_FILENAME, Program, job_fields
from sieci.wire import upload_format
from sieci.worker.executor import JobSettings, fresh_command, without_file


def test_code_from_stdin_is_marked_and_named_for_a_classic_worker():
    program = Program(b"print(1)\n", "-")
    assert (program.from_stdin, program.filename, program.fields) == (True, STDIN_FILENAME, [upload_format.RUN_STDIN])
    assert upload_format.NAME_FIELD + b"=stdin.py" in job_fields(program.filename)
    assert Program(b"", "job.py").fields == []


def test_a_fresh_interpreter_reads_code_from_stdin_on_its_own_stdin_and_the_folder_gets_no_file():
    from_stdin = JobSettings(b"print(1)\n", "stdin.py", args=["a"], from_stdin=True)
    assert fresh_command(from_stdin, "py", "stdin.py", fresh_interpreter=True) == ["py", "-", "a"]
    assert fresh_command(from_stdin, "py", "stdin.py") is None  # forked: the fork server runs it
    assert without_file(from_stdin, ["py", "-", "a"]) and not without_file(from_stdin, None)
    plain = JobSettings(b"print(1)\n", "job.py", fresh=True)
    assert fresh_command(plain, "py", "job.py") == ["py", "job.py"] and not without_file(plain, ["py", "job.py"])
