"""The worker's auto credit (sieci/worker/worker.py): jobs held for a master by its distance and the jobs' length."""

import pytest

from sieci import defaults
from sieci.worker.worker import auto_credit, job_length


@pytest.mark.parametrize("round_trip, job_seconds, credit", [
    (None, 0.010, 1),  # no round trip seen yet
    (0.050, None, 1),  # no job run yet
    (0.0002, 0.010, 1),  # beside the master: nothing held ahead
    (0.0024, 0.010, 1),  # just under a quarter of a job
    (0.0025, 0.010, 2),  # a quarter: one job behind the running one covers it, and half a job more
    (0.005, 0.010, 2),  # half a job: one behind covers it with half a job to spare
    (0.0051, 0.010, 3),
    (0.010, 0.015, 3),
    (0.010, 0.010, 3),
    (0.050, 0.015, 5),  # three and a third jobs run in a round trip: four behind
    (0.050, 0.012, 6),
    (0.050, 0.0001, defaults.MAX_CREDIT),
    (0.050, 60.0, 1),  # long jobs far away: nothing held behind them
])
def test_the_auto_credit_covers_a_round_trip_once_it_is_worth_it(round_trip, job_seconds, credit):
    assert auto_credit(round_trip, job_seconds) == credit


def test_a_longer_job_counts_at_once_shorter_ones_a_quarter_of_the_way():
    assumed = job_length(None, 0.010)
    assert assumed == 0.010
    assumed = job_length(assumed, 2.0)
    assert assumed == 2.0  # one long job: the credit drops at once
    lengths = []
    for _ in range(4):
        assumed = job_length(assumed, 0.010)
        lengths.append(assumed)
    assert lengths == sorted(lengths, reverse=True) and lengths[0] == pytest.approx(0.75 * 2.0 + 0.25 * 0.010)
    assert lengths[-1] > 0.5  # four short jobs later, it still holds none behind a job at 50 ms
    assert auto_credit(0.050, lengths[-1]) == 1
