"""The dispatcher's bookkeeping of a job, with stand-ins for the client's and the worker's connections."""

import collections

from sieci.master.dispatch import Dispatcher
from sieci.wire import conversation, protocol
from sieci.wire.connection import Connection

from tests.helpers import RecordingSocket


class StandInLink:
    extended = True
    in_raw_chunk = False
    jobs_done = 0
    takes_offers = False

    def __init__(self):
        self.jobs = collections.deque()
        self.state = conversation.link_conversation(protocol.MASTER)


def test_results_that_come_after_the_master_failed_the_job_are_dropped_not_an_error():
    client_socket = RecordingSocket()
    client = Connection(client_socket, conversation.client_conversation(protocol.MASTER))
    client.conversation.receive_block_end()  # the upload
    dispatcher = Dispatcher(max_queue=10)
    job = dispatcher.new_job(b"ENDSEQ T v=2\nprint(1)\nT\n", client, "client",
                             protocol.parse_header(b"ENDSEQ T v=2\n"))
    dispatcher.enqueue(job)
    link = StandInLink()
    assert dispatcher.job_for(link) is job
    job.queue_for_client(job.command_with_id(protocol.RECEIVED))
    job.results_header = protocol.parse_header(b"ENDSEQ U v=2\n")
    job.send_to_client(b"ENDSEQ U v=2\no 1\n")
    dispatcher.fail(job, b"the master stopped before the job ended")  # as Master.stop after its grace
    sent = b"".join(client_socket.sent)
    assert sent.endswith(b"x error lost the master stopped before the job ended\nU\n")
    job.send_to_client(b"o 2\n")
    job.send_to_client(b"U\n", completes=protocol.JOB)  # the worker's own end, come too late
    dispatcher.done(job, link)
    assert b"".join(client_socket.sent) == sent
    assert (dispatcher.totals["failed"], dispatcher.totals["done"]) == (1, 0)
