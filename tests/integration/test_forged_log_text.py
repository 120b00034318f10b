"""Bytes a forged peer sends that land in a text log line (a worker's refusal, here) cannot make it look
like two lines, nor drive the operator's terminal: control characters are written escaped."""

import logging

from sieci.logs import TextFormatter
from sieci.wire import protocol

from tests.helpers import LogLines, greeted, read_block

FORGED = "\r\x1b[2K2026-12-07T00:00:00.000Z INFO sieci.master: all is well\x0b\x0c\x85\u2028\x00".encode()


class FormattedLines(LogLines):
    """A LogLines that keeps each record as the text log writes it."""

    def emit(self, record):
        record.msg, record.args = TextFormatter().format(record), ()
        super().emit(record)


def test_a_forged_workers_refusal_is_one_text_line_without_control_characters(cluster, peers):
    logger, lines = logging.getLogger("sieci.master"), FormattedLines()
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        master = cluster.master()
        fake = greeted(peers(master.workers_address), b"READY v=2\n")
        peers(master.clients_address).send(protocol.encode_block(b"print(1)\n", [protocol.EXTENDED]))
        assert fake.line() == b"AVAILABLE\n"
        fake.send(b"READY v=2\n")
        read_block(fake)
        fake.send(b"ERROR " + FORGED + b"\n")
        (line,) = lines.wait_for("the worker refused the job")
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    assert line.isprintable(), repr(line)
    assert "\\x1b[2K2026-12-07T00:00:00.000Z INFO sieci.master: all is well\\x0b\\x0c\\x85\\u2028\\x00" in line
