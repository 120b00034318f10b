import sys; sys.path.insert(0, "/work/main/tests")
from test_processes import *
def test_dbg(procs):
    master = procs.master()
    worker = procs.worker()
    assert_hello(procs.run_job(JOB), procs)
    assert worker.terminate_and_wait() == 0, procs.logs()
    assert master.terminate_and_wait() == 0, procs.logs()
    print(procs.logs())
    assert 0
