"""The status table, built from the master's JSON."""

from sieci.wire import status


def test_the_text_table_is_built_from_the_json():
    state = {"master": "m:1", "uptime": 3725.0, "queue": 2,
             "workers": [{"address": "10.0.0.2:5", "state": "running", "job": "0123456789abcdef", "running_for": 1.25,
                              "jobs_done": 3}],
             "totals": {"done": 3, "failed": 1, "cancelled": 0, "average_wait": 0.5, "average_run": 2.0}}
    assert status.format_text(state) == (
        "master m:1  up 1h02m  queue 2\n"
        "workers 1\n"
        "  10.0.0.2:5               running    job 0123456789abcdef for 1.2 s       done 3\n"
        "jobs done 3  failed 1  cancelled 0  average wait 0.500 s  average run 2.000 s\n")
