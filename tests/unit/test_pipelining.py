"""The link's pipelining bookkeeping (sieci/wire/conversation.py): asking ahead, standing offers, codes ahead."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci.wire import conversation
from sieci.wire.protocol import (AVAILABLE, BUSY, ERROR, JOB, MASTER, READY, RECEIVED, ROLLBACK, WORKER,
                            LocalProtocolError, RemoteProtocolError)


def ends():
    return conversation.link_conversation(MASTER), conversation.link_conversation(WORKER)


def running(master):
    """The master's end once the worker runs our job (after READY, the code and RECEIVED)."""
    master.send(AVAILABLE)
    master.receive_line(b"READY\n")
    master.sending(JOB)
    master.receive_line(b"RECEIVED\n")
    assert master.state == conversation.RUNNING
    return master


def offering(master, offers):
    """The master's end after ROLLBACK free and ``offers`` FREE lines."""
    master.send(AVAILABLE)
    master.receive_line(b"READY v=2 free\n")
    assert master.offering(ROLLBACK) == b"ROLLBACK free\n"
    for _ in range(offers):
        master.receive_line(b"FREE\n")
    return master


def test_an_ask_ahead_is_answered_after_the_results():
    master = running(conversation.link_conversation(MASTER))
    assert master.ask_ahead() == b"AVAILABLE\n"
    assert master.state == conversation.RUNNING  # the job's exchange goes on
    with pytest.raises(LocalProtocolError):
        master.ask_ahead()  # one at a time
    master.receive_block_end()  # the results
    assert master.state == conversation.ASKED
    master.receive_line(b"READY\n")
    assert master.state == conversation.READY_HELD


@pytest.mark.parametrize("state", [conversation.IDLE, conversation.SENT, conversation.FEEDING, conversation.CUTTING_OFF])
def test_no_ask_ahead_where_the_worker_would_not_read_it_as_a_command(state):
    master = conversation.link_conversation(MASTER)
    master.state = state
    assert not master.can_ask_ahead()
    with pytest.raises(LocalProtocolError):
        master.ask_ahead()


def test_a_worker_that_takes_offers_is_not_asked_ahead():
    master = offering(conversation.link_conversation(MASTER), 1)
    master.take_offer()
    master.receive_line(b"RECEIVED\n")
    assert not master.can_ask_ahead()


def test_free_before_the_master_takes_offers_breaks_the_protocol():
    master, worker = ends()
    with pytest.raises(RemoteProtocolError):
        master.receive_line(b"FREE\n")
    with pytest.raises(LocalProtocolError):
        worker.send_free()


def test_codes_go_against_offers_and_wait_their_turn():
    master = offering(conversation.link_conversation(MASTER), 3)
    assert master.take_offer() == b"RELAY\n"
    assert master.state == conversation.SENT
    master.take_offer()
    master.take_offer()
    assert (master.offers, master.codes_ahead) == (0, 2)
    with pytest.raises(LocalProtocolError):
        master.take_offer()  # no offer left
    master.receive_line(b"RECEIVED\n")
    master.receive_line(b"FREE\n")  # one more, while the first runs
    master.receive_block_end()  # its results: the next code's answer is due
    assert (master.state, master.codes_ahead, master.offers) == (conversation.SENT, 1, 1)
    master.receive_line(b"BUSY\n")
    assert (master.state, master.codes_ahead) == (conversation.SENT, 0)
    master.receive_line(b"ERROR no\n")
    assert master.state == conversation.IDLE


def test_the_worker_end_takes_a_code_only_against_an_offer():
    worker = conversation.link_conversation(WORKER)
    worker.receive_line(b"AVAILABLE\n")
    worker.send(READY)
    worker.receive_line(b"ROLLBACK free\n")
    assert worker.takes_offers
    with pytest.raises(RemoteProtocolError):
        worker.receive_line(b"RELAY\n")  # no FREE sent yet
    assert worker.send_free() == b"FREE\n"
    worker.receive_line(b"RELAY\n")
    assert (worker.state, worker.offers) == (conversation.RELAYED, 0)
    worker.receive_block_end()
    worker.send(BUSY)
    assert worker.state == conversation.IDLE


def test_a_flood_of_offers_breaks_the_protocol():
    master = offering(conversation.link_conversation(MASTER), conversation.MAX_OFFERS)
    with pytest.raises(RemoteProtocolError):
        master.receive_line(b"FREE\n")


def test_a_relay_without_the_field_leaves_the_worker_asked_as_before():
    worker = conversation.link_conversation(WORKER)
    worker.receive_line(b"AVAILABLE\n")
    worker.send(READY)
    worker.receive_line(b"RELAY\n")
    assert not worker.takes_offers


@given(st.lists(st.sampled_from(["free", "code", "received", "results", "busy", "error"]), max_size=40))
def test_both_ends_agree_whatever_the_order(steps):
    """Replay events in any order on a link that takes offers (each end skipping what it may not do now):
    the two ends agree on the offers standing, and on the job whose exchange goes on."""
    master = offering(conversation.link_conversation(MASTER), 0)
    worker = conversation.link_conversation(WORKER)
    worker.state = conversation.IDLE
    worker.takes_offers = True
    codes_in_flight = 0  # sent by the master, not yet read by the worker
    for step in steps:
        try:
            if step == "free":
                worker_data = worker.send_free()
                master.receive_line(worker_data)
            elif step == "code":
                master.take_offer()
                codes_in_flight += 1
            elif worker.state == conversation.IDLE and codes_in_flight:
                worker.receive_line(b"RELAY\n")
                worker.receive_block_end()
                codes_in_flight -= 1
            elif step == "received" and worker.state == conversation.SENT:
                master.receive_line(worker.send(RECEIVED))
            elif step == "busy" and worker.state == conversation.SENT:
                master.receive_line(worker.send(BUSY))
            elif step == "error" and worker.state == conversation.SENT:
                master.receive_line(worker.send(ERROR, b"no"))
            elif step == "results" and worker.state == conversation.RUNNING:
                worker.sending(JOB)
                master.receive_block_end()
        except LocalProtocolError:
            continue  # a step this end may not take now: skipped, as the real code would not take it
        assert worker.offers == master.offers + codes_in_flight
        busy = worker.state != conversation.IDLE
        assert (master.state != conversation.IDLE) + master.codes_ahead == codes_in_flight + busy
        if busy:
            assert master.state == worker.state
