"""Files bundles on the wire: asked for with ``NEED <sha256>``, sent as a block, kept in a FilesStore.

A sieci master asks a client for a bundle it lacks, and a sieci worker asks
its master, the same way: ``NEED <sha256>``, then the block
``ENDSEQ <t> files=<sha256>.<size>`` whose payload is the bundle's bytes and
one newline more. The receiver takes no more than the size announced, and
keeps the bundle only if its size and digest are the ones asked for.
"""

from sieci.files_store import Mismatch
from sieci.wire import protocol, upload_format

PIECE = 1 << 20  # bytes read from the store at once when a bundle is sent


def fetch(conn, store, wanted):
    """Ask the peer of ``conn`` for the bundle ``wanted`` (a upload_format.FilesWanted) and keep it in ``store``.
    RemoteProtocolError if the peer sends anything else; Mismatch, StoreFull as the store says."""
    with store.incoming(wanted) as incoming:  # room first: a bundle that cannot be kept is not asked for
        conn.send_command(protocol.NEED, wanted.digest.encode("ascii"))
        line = conn.next_event()
        if line is protocol.CONNECTION_CLOSED:
            raise protocol.RemoteProtocolError("the peer closed the connection instead of sending the files")
        header = conn.start_block(line.raw, max_size=wanted.size + 1)
        if upload_format.files_wanted(header) != wanted:
            raise protocol.RemoteProtocolError(f"sent files other than those asked for: {line.raw[:120]!r}")
        _receive_payload(conn, incoming)
        incoming.finish()


def _receive_payload(conn, incoming):
    """The block's payload, but for its final newline, into ``incoming``."""
    left, ending = incoming.wanted.size, b""
    while not isinstance(event := conn.next_event(), protocol.BlockEnd):
        if event is protocol.CONNECTION_CLOSED:
            raise protocol.RemoteProtocolError("the files ended before their terminator line")
        data = event.data
        incoming.write(data[:left])
        ending += data[left:]
        left = max(0, left - len(data))
    if ending != b"\n":
        raise Mismatch(f"the files bundle is not the {incoming.wanted.size} bytes announced")


def send(conn, store, wanted):
    """Send the bundle ``wanted`` from ``store``, as the answer to a NEED; counts its bytes as sent."""
    terminator = store.terminator(wanted.digest, protocol.choose_terminator)
    with open(store.path(wanted.digest), "rb") as file:
        conn.send(protocol.encode_files_header(wanted, terminator))
        while piece := file.read(PIECE):
            conn.send(piece)
    conn.send(b"\n" + terminator + b"\n", completes=protocol.JOB)
    store.sent_bytes += wanted.size


def encode_bundle_block(wanted, data):
    """The block that carries a bundle's ``data`` (the client's, in memory)."""
    terminator = protocol.choose_terminator(data)
    return protocol.encode_files_header(wanted, terminator) + data + b"\n" + terminator + b"\n"


def check_need(line, wanted):
    """A ``NEED`` line must ask for the bundle ``wanted``, and no other."""
    if wanted is None or protocol.need_digest(line.raw) != wanted.digest:
        raise protocol.RemoteProtocolError(f"asked for files it was not offered: {line.raw[:120]!r}")
