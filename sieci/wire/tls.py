"""TLS contexts for sieci's links, from the standard library's ssl module.

A master with a certificate and key serves TLS on both its ports; given a
CA as well, it asks every peer for a certificate signed by it (mutual TLS).
Workers and clients verify the master's certificate against the CA they are
given (or the system's), and present a certificate of their own if they
have one. They verify strictly (RFC 5280, as Python 3.13 does by default) on
every Python, so a certificate that works on one works on all; docs/security.md
shows how to make such certificates.
"""

import ssl


class TLSError(Exception):
    """A certificate, key or CA file cannot be used."""


def context(role, ca=None, cert=None, key=None, on=False):
    """The TLS context of a ``"master"`` (serving) or of a peer dialing masters, or None for plain TCP.

    A master serves TLS when it has a certificate; a peer talks TLS when
    ``on``, or when it is given a CA or a certificate.
    """
    if role == "master":
        if not cert and (ca or key):
            raise TLSError("--tls-ca and --tls-key need --tls-cert")
        return server_context(cert, key, ca) if cert else None
    return client_context(ca, cert, key) if on or ca or cert else None


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
    context.verify_flags |= ssl.VERIFY_X509_STRICT
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


def describe_failure(error):
    """Why a handshake failed, in one line; a refused certificate is named with what it lacks."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate refused: {error.verify_message} (make certificates as sieci's docs/security.md shows)"
    reason = getattr(error, "reason", None)  # OpenSSL's, e.g. TLSV1_ALERT_UNKNOWN_CA
    if reason == "WRONG_VERSION_NUMBER":
        return "the other side is not serving TLS (it answered in plain text)"
    if reason:
        return reason.lower().replace("_", " ")
    return getattr(error, "strerror", None) or str(error)
