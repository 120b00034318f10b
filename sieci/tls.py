"""TLS contexts for sieci's links, from the standard library's ssl module.

A master with a certificate and key serves TLS on both its ports; given a
CA as well, it asks every peer for a certificate signed by it (mutual TLS).
Workers and clients verify the master's certificate against the CA they are
given (or the system's), and present a certificate of their own if they
have one.
"""

import ssl


class TLSError(Exception):
    """A certificate, key or CA file cannot be used."""


def server_context(cert, key, ca=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context.load_cert_chain, cert, key)
    if ca:
        context.verify_mode = ssl.CERT_REQUIRED
        _load(context.load_verify_locations, ca)
    return context


def client_context(ca=None, cert=None, key=None):
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        _load(context.load_verify_locations, ca)
    if cert:
        _load(context.load_cert_chain, cert, key)
    return context


def _load(method, *paths):
    try:
        method(*paths)
    except (OSError, ssl.SSLError) as error:
        named = " and ".join(path for path in paths if path)
        raise TLSError(f"cannot use {named}: {getattr(error, 'strerror', None) or error}") from None
