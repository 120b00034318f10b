"""--return from the sieci-client command, alone and in a batch, and from jobs behind their walls."""

import os
import subprocess
import sys

import pytest

from sieci.client.client import Client
from sieci.worker.limits import Limits

from tests.helpers import REPO, WAIT, Captured, client_address, files_under, isolation

CLIENT = os.path.join(REPO, "bin", "client")
# A user of this test run's own (no passwd entry is needed to switch to it).
JOB_USER = (61000 + os.getpid() % 4000,) * 2


def sieci_client(*argv, cwd):
    environ = {name: value for name, value in os.environ.items() if not name.startswith("SIECI_")}
    return subprocess.run([sys.executable, CLIENT, *map(str, argv)], capture_output=True, timeout=WAIT * 2,
                          env=environ, cwd=cwd)


@pytest.fixture
def master(cluster):
    master = cluster.master()
    cluster.worker(master)
    cluster.worker(master)
    return client_address(master)


def test_the_command_brings_files_into_the_current_folder(master, tmp_path):
    (tmp_path / "plot.py").write_text("import sys\nopen(sys.argv[1] + '.png', 'wb').write(b'\\x89PNG\\0')\n")
    done = sieci_client(master, "--return", "*.png", "plot.py", "fig", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert files_under(tmp_path) == {"plot.py": (tmp_path / "plot.py").read_bytes(), "fig.png": b"\x89PNG\0"}


def test_a_file_that_cannot_be_written_is_named_and_exit_255(master, tmp_path):
    (tmp_path / "job.py").write_text("open('data.csv', 'w').write('1,2')\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "data.csv").symlink_to("/etc/hostname")
    done = sieci_client("--results", "out", master, "--return", "data.csv", "job.py", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        255, b"sieci-client: error: data.csv: refused: a symbolic link is in the way\n")


def test_a_bad_glob_is_a_usage_error(tmp_path):
    done = sieci_client("--return", "../up.txt", "127.0.0.1:1", "job.py", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.endswith(b"error: --return '../up.txt': a glob's parts cannot be empty, '.' or '..'\n")


def test_each_job_of_a_batch_returns_into_a_folder_of_its_number(master, tmp_path):
    (tmp_path / "square.py").write_text("import sys\nn = int(sys.argv[1])\nopen('square.txt', 'w').write(str(n * n))\n")
    done = sieci_client("--results", "runs", master, "--return", "square.txt", "square.py", ":::", 3, 4, 5,
                        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert files_under(tmp_path / "runs") == {"1/square.txt": b"9", "2/square.txt": b"16", "3/square.txt": b"25"}


def test_a_batch_counts_a_job_whose_files_could_not_be_written_as_failed(master, tmp_path):
    (tmp_path / "job.py").write_text("open('f.txt', 'w').write('x')\n")
    (tmp_path / "runs" / "2").mkdir(parents=True)
    (tmp_path / "runs" / "2" / "f.txt").symlink_to("/etc/hostname")
    done = sieci_client("--results", "runs", master, "--return", "f.txt", "job.py", ":::", "a", "b", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (
        1, b"sieci-client: error: job.py: f.txt: refused: a symbolic link is in the way\n")
    assert files_under(tmp_path / "runs")["1/f.txt"] == b"x"


# --- behind the walls: the job's folder seen through the fork server -------------------------------

WALLS = ["namespaces", "a host folder"]


@pytest.mark.parametrize("walls", WALLS)
def test_a_walled_job_returns_its_files_and_no_link_out(cluster, tmp_path, walls):
    user = JOB_USER if os.geteuid() == 0 else None
    master = cluster.master()
    cluster.worker(master, limits=Limits(timeout=30, disk=8 << 20), job_user=user,
                   isolation=isolation(namespaces=walls == "namespaces", cgroups="if any"))
    assert master.wait_for_workers(1, WAIT)
    code = (b"import os\nos.makedirs('out/sub')\nopen('out/sub/every.bin', 'wb').write(bytes(range(256)))\n"
            b"open('out/empty', 'w').close()\nos.symlink('/etc/hostname', 'out/host')\n"
            b"os.symlink('/etc', 'out/etc')\nprint(os.getuid())\n")
    output = Captured()
    result = Client(client_address(master), timeout=WAIT).run(code, output=output, returns=["out/**"],
                                                              results=str(tmp_path))
    assert (result.exit_status, result.returned) == (0, ["out/empty", "out/sub/every.bin"])
    assert output.stderr == (b"sieci: --return: out/etc not returned: a symbolic link\n"
                             b"sieci: --return: out/host not returned: a symbolic link\n")
    assert files_under(tmp_path) == {"out/empty": b"", "out/sub/every.bin": bytes(range(256))}
    if user:
        assert output.stdout == b"%d\n" % user[0]
