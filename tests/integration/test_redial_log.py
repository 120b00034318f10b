"""A worker whose master is down logs one warning, then one each time its failed attempts double
(every attempt still a line at debug), and one info line when the master is back (issue 30, 2)."""

import logging

import gevent
import gevent.event

from sieci.master.master import Master

from tests.helpers import WAIT, ReservedPort


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.changed = gevent.event.Event()

    def emit(self, record):
        self.records.append((record.levelno, record.getMessage()))
        changed, self.changed = self.changed, gevent.event.Event()
        changed.set()

    def wait_until(self, condition):
        try:
            with gevent.Timeout(WAIT):
                while not condition(self.records):
                    self.changed.wait()
        except gevent.Timeout:
            raise AssertionError(f"not within {WAIT} s; the records then: {self.records}") from None


def test_a_master_that_stays_down_is_folded_and_its_return_said_once(cluster):
    port = ReservedPort()
    records, logger = Records(), logging.getLogger("sieci.worker")
    logger.addHandler(records)
    level = logger.level
    logger.setLevel(logging.DEBUG)  # not .level =: that would keep the logger's cached answers of earlier tests
    master = None
    try:
        cluster.worker(("127.0.0.1", port.number), reconnect_min=0.001, reconnect_max=0.004)
        redials = lambda found: [entry for entry in found if "redialling" in entry[1]]  # noqa: E731
        records.wait_until(lambda found: len(redials(found)) >= 16)
        first_16 = redials(records.records)[:16]
        assert [number for number, (level_of, _) in enumerate(first_16, 1) if level_of == logging.WARNING] == \
            [1, 2, 4, 8, 16], first_16
        assert "(16 failed attempts in " in first_16[15][1]
        master = Master(("127.0.0.1", port.number), ("127.0.0.1", 0))
        master.start()
        records.wait_until(lambda found: any("again" in message for _, message in found))
        (back,) = [(level_of, message) for level_of, message in records.records if "linked to master" in message]
        assert back[0] == logging.INFO and back[1].startswith(f"linked to master 127.0.0.1:{port.number} again ("), back
        assert master.wait_for_workers(1, WAIT)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
        if master is not None:
            master.stop(grace=0)
        port.close()
