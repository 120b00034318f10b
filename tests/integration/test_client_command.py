"""What the client's results say about the job, from a cluster in this process."""

from sieci.client import client

from tests.helpers import client_address


def test_results_name_the_worker_that_ran_the_job(cluster):
    master = cluster.master()
    cluster.worker(master, name="blue")
    result = client.Client(client_address(master)).run("print('hi')")
    assert (result.exit_status, result.stdout, result.worker) == (0, b"hi\n", "blue")
    assert result.master == client_address(master) and result.seconds > 0
