"""The legal order of messages on a connection, in one table per kind of connection; no I/O.

A ``Conversation`` is where one connection stands, as one end (its role) sees
it. Every message we send (``send``, ``sending``, ``refuse``) and every one we
receive (``receive_line``, ``receive_block_end``: the connection calls them)
moves it through its table, or raises the error that says whose fault the
illegal message is. ``LINK_TRANSITIONS`` orders a master-worker link,
``CLIENT_TRANSITIONS`` a client's connection to a master's client port.

The link's table holds the pipelining that keeps a worker from idling a round
trip between a sieci master's jobs:

- **Asking ahead.** While a worker runs one of its jobs, the master may send
  one ``AVAILABLE`` (``AVAILABLE_AHEAD``); the worker, classic or not, reads
  it after its results, so the master's end moves to ``asked`` then.
- **Standing offers.** A master that answers a ``READY v=2 free`` (a sieci
  worker's) with ``RELAY free`` or ``ROLLBACK free`` takes offers: from then
  on the worker, instead of waiting to be asked, sends ``FREE`` whenever it can
  take one more job (up to its credit), and the master sends ``RELAY`` and the
  code against one at once, even while an earlier job's exchange goes on
  (``CODE_AHEAD``): that code's exchange begins when the ones before it have
  ended. The worker answers codes in the order they came, each after the
  results of the one before; to a code it cannot take (it became busy for
  another master) it answers ``BUSY``, and the master queues that job again.

The table says where each of these is legal; the link's counts say whether
one may be taken now (an offer standing, no ask ahead outstanding), as h11's
keep-alive flag does beside its table. Each end keeps its own count of the
offers standing: the worker's counts the codes still on the wire, the
master's does not.
"""

from sieci.wire.protocol import (AUTH, AVAILABLE, ATTACH, ATTACHED, BUSY, CANCEL, CANCELLED, CHALLENGE, CLIENT,
                                 DETACHED, ENDSEQ, ERROR, FREE, JOB, JOBS, MASTER, NEED, QUEUED, READY, RECEIVED,
                                 REFUSAL_TO_CLASSIC, RELAY, ROLLBACK, STATUS, STATUS_REPLY, WORKER,
                                 LocalProtocolError, RemoteProtocolError, encode_command, first_word)

IDLE = "idle"  # nothing outstanding
CHALLENGED = "challenged"  # a master with a secret asked the new link to prove itself
ASKED = "asked"  # AVAILABLE sent, no answer yet
READY_HELD = "ready"  # the worker said READY and is locked to this master
RELAYED = "relayed"  # RELAY sent: the code follows
SENT = "sent"  # the code went to the worker
RUNNING = "running"  # the worker said RECEIVED; results follow
FEEDING = "feeding"  # the job's stdin block has begun: stdin streams while the results come
FED = "fed"  # the job's stdin block has ended; the results still come
CUTTING_OFF = "cutting off"  # the results ended before the stdin block: the master ends it
DECLINED = "declined"  # the worker refused code that came without RELAY: an empty block follows
UPLOADED = "uploaded"  # the client's code reached the master
NEEDING = "needing"  # NEED sent: the files bundle follows
WAITING = "waiting"  # the master said QUEUED: no worker has the job yet
ACCEPTED = "accepted"  # the master said RECEIVED: a worker took the job; results follow
STATUS_ASKED = "status asked"  # the client sent STATUS
PROVING = "proving"  # a client with a secret asked the master to prove it holds it (see auth.py)
ATTACH_ASKED = "attach asked"  # the client sent ATTACH <id>
CANCEL_ASKED = "cancel asked"  # the client sent CANCEL <id>
JOBS_ASKED = "jobs asked"  # the client sent JOBS
CLOSED = "closed"

# The master's pipelining moves that the worker does not see as they are made (it reads them later, as
# the AVAILABLE, RELAY and code of an exchange of their own): see the module's docstring.
AVAILABLE_AHEAD = "AVAILABLE ahead"  # sent while the worker runs our job
CODE_AHEAD = "code ahead"  # RELAY and a code, against an offer, while an earlier job's exchange goes on

OFFERS_FIELD = b"free"  # on RELAY or ROLLBACK: the master takes standing offers
MAX_OFFERS = 64  # offers a worker may have standing at once; a master refuses more (a flood)
# Where a job's exchange is between two messages the worker sends: a FREE may come there.
OFFER_STATES = (IDLE, SENT, RUNNING, FEEDING, FED, CUTTING_OFF)
ASK_AHEAD_STATES = (RUNNING, FED)  # our job runs, and no stdin block of ours is open
EXCHANGE_STATES = (RELAYED, SENT, NEEDING, RUNNING, FEEDING, FED, CUTTING_OFF)  # a job's exchange goes on

# (state, who sends, what) -> next state. Anything else breaks the protocol,
# but for the master's ERROR: its refusal, legal in any state, after which it closes.
LINK_TRANSITIONS = {
    (IDLE, MASTER, CHALLENGE): CHALLENGED,
    (CHALLENGED, WORKER, AUTH): IDLE,
    (IDLE, MASTER, AVAILABLE): ASKED,
    (ASKED, WORKER, READY): READY_HELD,
    (READY_HELD, MASTER, ROLLBACK): IDLE,
    # The classic master writes its ERROR for a bad upload to the worker.
    (READY_HELD, MASTER, ERROR): IDLE,
    (READY_HELD, MASTER, JOB): SENT,
    (READY_HELD, MASTER, RELAY): RELAYED,
    (RELAYED, MASTER, JOB): SENT,
    (SENT, WORKER, NEED): NEEDING,
    (NEEDING, MASTER, JOB): SENT,
    (SENT, WORKER, RECEIVED): RUNNING,
    (SENT, WORKER, ERROR): IDLE,
    (SENT, WORKER, BUSY): IDLE,  # to a code sent against a standing offer
    (RUNNING, WORKER, JOB): IDLE,
    # stdin=stream: the master opens the stdin block (its header, ENDSEQ <t> stdin) right after RECEIVED.
    (RUNNING, MASTER, ENDSEQ): FEEDING,
    (FEEDING, MASTER, JOB): FED,
    (FED, WORKER, JOB): IDLE,
    (FEEDING, WORKER, JOB): CUTTING_OFF,
    (CUTTING_OFF, MASTER, JOB): IDLE,
    (SENT, WORKER, REFUSAL_TO_CLASSIC): DECLINED,
    (DECLINED, WORKER, JOB): IDLE,
    # Pipelining; each FREE is one offer standing, each code against one (RELAY in idle, or ahead) takes one.
    (IDLE, MASTER, RELAY): RELAYED,
    **{(state, WORKER, FREE): state for state in OFFER_STATES},
    **{(state, MASTER, CODE_AHEAD): state for state in EXCHANGE_STATES},
    **{(state, MASTER, AVAILABLE_AHEAD): state for state in ASK_AHEAD_STATES},
}
LINK_STATES = tuple(dict.fromkeys([state for state, _, _ in LINK_TRANSITIONS] + [CLOSED]))

CLIENT_TRANSITIONS = {
    (IDLE, CLIENT, CHALLENGE): PROVING,
    (PROVING, MASTER, AUTH): IDLE,
    (IDLE, CLIENT, JOB): UPLOADED,
    (UPLOADED, MASTER, NEED): NEEDING,
    (NEEDING, CLIENT, JOB): UPLOADED,
    (UPLOADED, MASTER, QUEUED): WAITING,
    (UPLOADED, MASTER, RECEIVED): ACCEPTED,
    (WAITING, MASTER, RECEIVED): ACCEPTED,
    (ACCEPTED, MASTER, JOB): CLOSED,
    # stdin=stream: once RECEIVED, the client sends the stdin block (its header line, ENDSEQ <t> stdin, opens it).
    (ACCEPTED, CLIENT, ENDSEQ): FEEDING,
    (FEEDING, CLIENT, JOB): FED,
    (FED, MASTER, JOB): CLOSED,
    (FEEDING, MASTER, JOB): CLOSED,
    (IDLE, CLIENT, STATUS): STATUS_ASKED,
    (STATUS_ASKED, MASTER, STATUS_REPLY): CLOSED,
    # Job control: a detached upload is answered at once; its results are kept for ATTACH.
    (UPLOADED, MASTER, DETACHED): CLOSED,
    (IDLE, CLIENT, ATTACH): ATTACH_ASKED,
    (ATTACH_ASKED, MASTER, ATTACHED): ACCEPTED,
    (IDLE, CLIENT, CANCEL): CANCEL_ASKED,
    (CANCEL_ASKED, MASTER, CANCELLED): CLOSED,
    (IDLE, CLIENT, JOBS): JOBS_ASKED,
    (JOBS_ASKED, MASTER, STATUS_REPLY): CLOSED,
}
# What a client says once it has sent its request is ignored: the master only watches for it leaving.
CLIENT_IGNORED = {(state, CLIENT) for state in (UPLOADED, WAITING, ACCEPTED, STATUS_ASKED, ATTACH_ASKED, CANCEL_ASKED,
                                                 JOBS_ASKED, CLOSED)}
# With stdin=stream, the client's stdin block is read once RECEIVED has gone; after it, what it says is ignored.
STREAMING_CLIENT_IGNORED = {(state, CLIENT) for state in (FED, CLOSED)}


class Conversation:
    """Where one connection's conversation stands, as one end (``role``) sees it.

    A received line whose first word is no message legal here is the status
    reply where one is due, else the header of a block: legal where the peer
    may send a block (which counts at its end).
    """

    def __init__(self, transitions, role, peer, ignored=()):
        self.transitions = transitions
        self.role = role
        self.peer = peer
        self.ignored = ignored
        self.state = IDLE

    def send(self, word, reason=b""):
        """The bytes of command ``word``, once it is legal to send it."""
        self.sending(word)
        return encode_command(word, reason)

    def sending(self, message):
        """We are about to send ``message`` (the end of a block, say)."""
        self.advance(self.role, message)

    def refuse(self, reason):
        """The bytes of an ``ERROR`` that ends the conversation, whatever its state: our last words."""
        self.close()
        return encode_command(ERROR, reason)

    def receive_line(self, line):
        if (self.state, self.peer) in self.ignored:
            return
        word = first_word(line)
        if self._following(self.peer, word) is not None:
            self.advance(self.peer, word)
        elif self._following(self.peer, STATUS_REPLY) is not None:
            self.advance(self.peer, STATUS_REPLY)
        elif self._following(self.peer, JOB) is None:
            self._illegal(self.peer, word)

    def receive_block_end(self):
        if (self.state, self.peer) not in self.ignored:
            self.advance(self.peer, JOB)

    def close(self):
        """The connection is over, whatever its state: nothing more is legal on it."""
        self.state = CLOSED

    def advance(self, sender, message):
        following = self._following(sender, message)
        if following is None:
            self._illegal(sender, message)
        self.state = following
        return following

    def _following(self, sender, message):
        following = self.transitions.get((self.state, sender, message))
        if following is None and (sender, message) == (MASTER, ERROR) and self.state != CLOSED:
            return CLOSED  # the master's refusal
        return following

    def _illegal(self, sender, message):
        if isinstance(message, bytes):
            message = message[:80].decode("ascii", "replace")
        error = LocalProtocolError if sender == self.role else RemoteProtocolError
        raise error(f"{message} from the {sender} while {self.state}")


class LinkConversation(Conversation):
    """A master-worker link at the ``role`` end, with its pipelining's counts beside the table."""

    def __init__(self, role):
        super().__init__(LINK_TRANSITIONS, role, WORKER if role == MASTER else MASTER)
        self.takes_offers = False  # the master said OFFERS_FIELD: the worker sends FREE
        self.offers = 0  # FREE sent and not yet answered with a code, as this end counts them
        self.codes_ahead = 0  # (master) codes sent against offers while an earlier job's exchange goes on
        self.asked_ahead = False  # (master) AVAILABLE sent while the worker ran our job

    def can_ask_ahead(self):
        return (self.state, MASTER, AVAILABLE_AHEAD) in self.transitions and self._may_ask_ahead()

    def ask_ahead(self):
        """The bytes of an AVAILABLE sent while the worker runs our job: its READY comes after the results."""
        self.sending(AVAILABLE_AHEAD)
        return encode_command(AVAILABLE)

    def offering(self, word, reason=b""):
        """The bytes of the master's RELAY or ROLLBACK with OFFERS_FIELD: from now on it takes offers."""
        data = self.send(word, reason)
        self.takes_offers = True
        return data[:-1] + b" " + OFFERS_FIELD + b"\n"

    def send_free(self):
        """The bytes of the worker's FREE: one more job may come at once."""
        return self.send(FREE)

    def take_offer(self, reason=b""):
        """(master) A code is about to go against a standing offer: the bytes of the RELAY before it
        (``reason``: its fields). The code goes in the same send: it counts as sent now."""
        if self.state == IDLE:
            self.sending(RELAY)
            self.sending(JOB)
        else:
            self.sending(CODE_AHEAD)
        return encode_command(RELAY, reason)

    def receive_line(self, line):
        super().receive_line(line)
        if first_word(line) in (RELAY, ROLLBACK) and OFFERS_FIELD in line.split()[1:]:
            self.takes_offers = True

    def advance(self, sender, message):
        following = self._following(sender, message)
        if following is None:
            self._illegal(sender, message)
        self._count(sender, message)
        super().advance(sender, message)
        if following == IDLE and self.role == MASTER:
            self._next_in_line()
        return self.state

    def _count(self, sender, message):
        """Check and count what the table leaves to the link's counts; raises the error that says
        whose fault it is when no offer stands, too many do, or an ask ahead is outstanding."""
        if message == FREE:
            if not self.takes_offers:
                self._illegal(sender, FREE)
            if self.offers >= MAX_OFFERS:
                self._illegal(sender, b"FREE beyond %d standing offers" % MAX_OFFERS)
            self.offers += 1
        elif message == CODE_AHEAD or (message == RELAY and self.state == IDLE):
            if not self.takes_offers:
                self._illegal(sender, message)
            if self.offers <= 0:
                if sender != self.role:
                    raise RemoteProtocolError("a code from the master without an offer")
                raise LocalProtocolError(f"a code without an offer, while {self.state}")
            self.offers -= 1
            self.codes_ahead += message == CODE_AHEAD
        elif message == AVAILABLE_AHEAD:
            if not self._may_ask_ahead():
                self._illegal(sender, message)
            self.asked_ahead = True

    def _may_ask_ahead(self):
        return not self.takes_offers and not self.asked_ahead

    def _next_in_line(self):
        """(master) The job's exchange ended: the next one the worker reads begins, as the worker reads
        it: a code sent ahead (RELAY, then its block), or else an AVAILABLE sent ahead."""
        if self.codes_ahead:
            self.codes_ahead -= 1
            super().advance(MASTER, RELAY)
            super().advance(MASTER, JOB)
        elif self.asked_ahead:
            self.asked_ahead = False
            super().advance(MASTER, AVAILABLE)


def link_conversation(role):
    """A master-worker link, at the ``role`` end."""
    return LinkConversation(role)


def client_conversation(role):
    """A client's connection to a master's client port, at the ``role`` end."""
    return Conversation(CLIENT_TRANSITIONS, role, MASTER if role == CLIENT else CLIENT, CLIENT_IGNORED)
