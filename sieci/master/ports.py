"""The master's two ports and TLS: the handshake in front of each handler, and what a
peer that speaks the wrong one (TLS or plain text) is told."""

import logging
import socket

from sieci.wire import conversation, protocol
from sieci.wire.address import format_address
from sieci.wire.connection import TLS_HANDSHAKE, Connection
from sieci.wire.tls import describe_failure

log = logging.getLogger("sieci.master")

PLAINTEXT_AFTER = 2.0  # seconds without a TLS handshake from a new peer of a TLS master: it speaks plain text


def behind_tls(handle, peer, tls, handshake_timeout):
    """``handle`` behind the TLS handshake, if any: one that fails is a line in
    the log (gevent's own handshake would print a traceback), and one that
    stalls is dropped after ``handshake_timeout``."""
    if tls is None:
        return handle

    def handshake_then_handle(sock, address):
        try:
            if not _opens_with_tls(sock, peer, address):
                return
            sock.settimeout(handshake_timeout)
            sock = tls.wrap_socket(sock, server_side=True)
            sock.settimeout(None)
        except OSError as error:
            log.info("%s %s: TLS handshake failed: %s", peer, format_address(address),
                     describe_failure(error, "master"))
            sock.close()
            return
        handle(sock, address)

    return handshake_then_handle


def _opens_with_tls(sock, peer, address):
    """Whether a new peer of a TLS master starts a handshake; one that speaks plain text
    (or, as a plain worker does, waits for the master to speak first) is told so, in
    plain text, and the connection closed."""
    sock.settimeout(PLAINTEXT_AFTER)
    try:
        first = sock.recv(len(TLS_HANDSHAKE), socket.MSG_PEEK)
    except TimeoutError:
        first = None
    if first and TLS_HANDSHAKE.startswith(first):
        return True
    if first != b"":
        log.info("%s %s speaks plain text, not TLS: told so", peer, format_address(address))
        speaks = conversation.client_conversation if peer == "client" else conversation.link_conversation
        conn = Connection(sock, speaks(protocol.MASTER))
        conn.refuse(b"this port speaks TLS (--tls)")
        conn.finish_sending()
    sock.close()
    return False


def tell_speaks_tls(conn, peer, name):
    """The peer opened with a TLS handshake (connection.SpeaksTLS), and this master has no TLS."""
    log.info("%s %s speaks TLS, and this master does not (give it --tls-cert, or the %s no --tls)",
             peer, name, peer)
    conn.refuse(b"this master does not speak TLS")
