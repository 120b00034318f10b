"""The master-worker link's conversation, with the pipelining that hides round trips; no I/O.

``LINK_TRANSITIONS`` (protocol.py) orders one job's exchange at a time. On top
of it a sieci master may keep a worker from idling between jobs:

- **Asking ahead.** While a worker runs one of its jobs, the master may send
  one ``AVAILABLE``; the worker, classic or not, answers ``READY`` after its
  results, so the ask has crossed the network while the job ran.
- **Standing offers.** A master that answers a ``READY v=2 free`` (a sieci
  worker's) with ``RELAY free`` or ``ROLLBACK free`` takes offers: from then on the worker, instead
  of waiting to be asked, sends ``FREE`` whenever it can take one more job
  (up to its credit), and the master sends ``RELAY`` and the code against
  one at once, even while an earlier job runs. The worker answers codes in
  the order they came, each after the results of the one before; to a code
  it cannot take (it became busy for another master) it answers ``BUSY``,
  and the master queues that job again at its head.

Each end keeps its own count of the offers standing: the worker's counts
the codes still on the wire, the master's does not.
"""

from sieci.wire import protocol
from sieci.wire.protocol import (ASKED, AVAILABLE, FED, FEEDING, FREE, IDLE, MASTER, RELAY, RELAYED, RUNNING, SENT,
                       WORKER, CUTTING_OFF, Conversation, LocalProtocolError, RemoteProtocolError)

OFFERS_FIELD = b"free"  # on RELAY or ROLLBACK: the master takes standing offers
MAX_OFFERS = 64  # offers a worker may have standing at once; a master refuses more (a flood)
# Where a job's exchange is between two messages the worker sends: a FREE may come there.
OFFER_STATES = frozenset({IDLE, SENT, RUNNING, FEEDING, FED, CUTTING_OFF})
ASK_AHEAD_STATES = frozenset({RUNNING, FED})  # our job runs, and no stdin block of ours is open


class LinkConversation(Conversation):
    def __init__(self, role):
        super().__init__(protocol.LINK_TRANSITIONS, role, WORKER if role == MASTER else MASTER)
        self.takes_offers = False  # the master said OFFERS_FIELD: the worker sends FREE
        self.offers = 0  # FREE sent and not yet answered with a code, as this end counts them
        self.codes_ahead = 0  # (master) codes sent against offers while an earlier job's exchange goes on
        self.asked_ahead = False  # (master) AVAILABLE sent while the worker ran our job

    # --- asking ahead

    def can_ask_ahead(self):
        return not self.takes_offers and not self.asked_ahead and self.state in ASK_AHEAD_STATES

    def ask_ahead(self):
        """The bytes of an AVAILABLE sent while the worker runs our job: its READY comes after the results."""
        if not self.can_ask_ahead():
            raise LocalProtocolError(f"AVAILABLE ahead from the master while {self.state}")
        self.asked_ahead = True
        return protocol.encode_command(AVAILABLE)

    # --- standing offers

    def offering(self, word, reason=b""):
        """The bytes of the master's RELAY or ROLLBACK with OFFERS_FIELD: from now on it takes offers."""
        data = self.send(word, reason)
        self.takes_offers = True
        return data[:-1] + b" " + OFFERS_FIELD + b"\n"

    def send_free(self):
        """The bytes of the worker's FREE: one more job may come at once."""
        self._offered(WORKER)
        return protocol.encode_command(FREE)

    def take_offer(self, reason=b""):
        """(master) A code is about to go against a standing offer: the bytes of the RELAY before it
        (``reason``: its fields)."""
        if not self.takes_offers or self.offers <= 0:
            raise LocalProtocolError(f"a code without an offer, while {self.state}")
        self.offers -= 1
        if self.state == IDLE:
            self.state = SENT
        else:
            self.codes_ahead += 1
        return protocol.encode_command(RELAY, reason)

    # --- the messages Conversation does not know

    def receive_line(self, line):
        word = protocol.first_word(line)
        if word == FREE:
            self._offered(WORKER)
        elif word == RELAY and self.state == IDLE and self.takes_offers:  # (worker) a code against an offer
            if self.offers <= 0:
                raise RemoteProtocolError("a code from the master without an offer")
            self.offers -= 1
            self.state = RELAYED
        else:
            super().receive_line(line)
            if word in (RELAY, protocol.ROLLBACK) and OFFERS_FIELD in line.split()[1:]:
                self.takes_offers = True

    def _offered(self, sender):
        if not self.takes_offers or self.state not in OFFER_STATES:
            self._illegal(sender, FREE)
        if self.offers >= MAX_OFFERS:
            self._illegal(sender, b"FREE beyond %d standing offers" % MAX_OFFERS)
        self.offers += 1

    def advance(self, sender, message):
        following = super().advance(sender, message)
        if following == IDLE and self.role == MASTER:  # the exchange ended: the next in line begins
            if self.codes_ahead:
                self.codes_ahead -= 1
                self.state = SENT
            elif self.asked_ahead:
                self.asked_ahead = False
                self.state = ASKED
        return self.state


def link_conversation(role):
    """A master-worker link, at the ``role`` end."""
    return LinkConversation(role)
