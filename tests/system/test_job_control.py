"""sieci-client --detach, --attach, --cancel and --list as processes, with their exit statuses."""

import json

from tests.helpers import JobEvents, client_address
from tests.helpers.proxy import CuttingProxy
from tests.system.test_status import run_command


def test_detach_list_attach_and_cancel_from_the_command_line(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    events = JobEvents(master)
    prog = tmp_path / "job.py"
    prog.write_text("import sys\nprint('hello', sys.argv[1:])\nsys.exit(3)\n")
    detached = run_command("--detach", client_address(master), str(prog), "a", "b")
    assert detached.returncode == 0, detached.stderr
    job_id = detached.stdout.strip()
    assert len(job_id) == 16 and detached.stderr == ""
    events.wait_for("done")
    for _ in range(2):  # once it has ended, as often as wanted
        attached = run_command("--attach", job_id, client_address(master))
        assert (attached.returncode, attached.stdout) == (3, "hello ['a', 'b']\n"), attached.stderr
    prog.write_text("import time\ntime.sleep(60)\n")
    sleeper = run_command("--detach", client_address(master), str(prog)).stdout.strip()
    events.wait_for("dispatched", 2)
    listed = run_command("--list", client_address(master))
    assert listed.returncode == 0
    assert f"{job_id}  done" in listed.stdout and f"{sleeper}  running" in listed.stdout
    as_json = json.loads(run_command("--list", "--json", client_address(master)).stdout)
    assert {job["id"]: job["state"] for job in as_json[client_address(master)]["jobs"]} == {
        job_id: "done", sleeper: "running"}
    cancelled = run_command("--cancel", sleeper, client_address(master))
    assert (cancelled.returncode, cancelled.stdout, cancelled.stderr) == (0, "", "")
    events.wait_for("cancelled")
    attached = run_command("--attach", sleeper, client_address(master))
    assert attached.returncode == 255 and "cancelled by request" in attached.stderr


def test_unknown_and_malformed_ids(cluster):
    master = cluster.master()
    unknown = run_command("--attach", "0123456789abcdef", client_address(master))
    assert unknown.returncode == 255
    assert "no job 0123456789abcdef is kept here" in unknown.stderr
    assert run_command("--cancel", "0123456789abcdef", client_address(master)).returncode == 255
    malformed = run_command("--attach", "../etc/passwd", client_address(master))
    assert malformed.returncode == 2 and "is not a job id" in malformed.stderr
    both = run_command("--attach", "0123456789abcdef", "--list", client_address(master))
    assert both.returncode == 2 and "do not go together" in both.stderr


def test_the_client_command_attaches_again_through_a_cutting_proxy_every_byte_once(cluster, tmp_path):
    master = cluster.master()
    cluster.worker(master)
    events = JobEvents(master)
    prog = tmp_path / "job.py"
    prog.write_text("import sys\nfor start in range(0, 300000, 50000):\n"
                    "    sys.stdout.write(''.join('%d\\n' % i for i in range(start, start + 50000)))\n")
    cutter = CuttingProxy(master.clients_address, [100_000, 1_000_000])
    try:
        done = run_command("--retries", "2", cutter.address, str(prog))  # stdout a pipe: raw chunks are spliced
    finally:
        cutter.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(f"{i}\n" for i in range(300000))
    assert cutter.passed[:2] == [100_000, 1_000_000] and len(cutter.passed) == 3
    assert events.seen.count("dispatched") == 1
