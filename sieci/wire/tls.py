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


# Certificate checks a wrong or missing CA fails (OpenSSL's X509_V_ERR_*): the fix is --tls-ca.
_UNKNOWN_ISSUER = {18, 19, 20, 21}
_HOST_MISMATCH = 62
# OpenSSL's reasons (``error.reason``) of a peer's, or a master's, failed TLS: what to give whom.
_PEER_FIXES = {  # seen by a worker or client dialling a master
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the master asks for a certificate signed by the CA of its --tls-ca: "
                                         "give this side --tls-cert and --tls-key",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the master refused the handshake; if it has --tls-ca, it asks for a certificate "
                                     "signed by that CA: give this side --tls-cert and --tls-key",
    "TLSV1_ALERT_UNKNOWN_CA": "the master does not trust this side's certificate: give --tls-cert one signed by the "
                              "CA of the master's --tls-ca",
    "WRONG_VERSION_NUMBER": "the other side is not serving TLS (it answered in plain text): give the master "
                            "--tls-cert, or this side neither --tls, --tls-ca nor --tls-cert",
}
_MASTER_FIXES = {  # seen by a master, of a peer's handshake
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer gave no certificate, which this master's --tls-ca asks for: "
                                         "give the peer --tls-cert and --tls-key",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer does not trust this master's certificate: give the peer --tls-ca with the CA "
                              "that signed this master's --tls-cert",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the peer does not trust this master's certificate: give the peer --tls-ca "
                                       "with the CA that signed this master's --tls-cert",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS",
}
_CLOSED = {"peer": "the master closed the connection in the TLS handshake: it may not serve TLS (then drop --tls "
                   "here), or it asks for a certificate this side has not (--tls-cert, --tls-key)",
           "master": "the peer closed the connection in the TLS handshake: it may not trust this master's "
                     "certificate (its --tls-ca)"}


def describe_failure(error, side="peer"):
    """Why TLS failed, in one line that names the option that fixes it: ``side`` is ``"peer"`` (a worker or
    a client, dialling a master) or ``"master"`` (of a peer's handshake)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate refused: {error.verify_message} ({_verification_fix(error.verify_code, side)})"
    if isinstance(error, ssl.SSLEOFError) or getattr(error, "reason", None) == "UNEXPECTED_EOF_WHILE_READING":
        return _CLOSED[side]
    reason = getattr(error, "reason", None)  # OpenSSL's, e.g. TLSV1_ALERT_UNKNOWN_CA
    fix = (_PEER_FIXES if side == "peer" else _MASTER_FIXES).get(reason)
    if fix:
        return fix
    if reason:
        return reason.lower().replace("_", " ")
    return getattr(error, "strerror", None) or str(error)


def describe_os_error(error, side="peer"):
    """An error of a link's socket, in words: a TLS one as describe_failure says it (a master that asks
    for a certificate says so only after the handshake, on the first read)."""
    if isinstance(error, ssl.SSLError):
        return describe_failure(error, side)
    return (error.strerror or str(error)).lower()


def _verification_fix(code, side):
    if code in _UNKNOWN_ISSUER:
        return ("give --tls-ca the CA that signed the master's --tls-cert" if side == "peer" else
                "the peer's --tls-cert must be signed by the CA of this master's --tls-ca")
    if code == _HOST_MISMATCH:
        return "the master's certificate must name the address dialled in its subjectAltName: see sieci's " \
               "docs/security.md"
    return "make certificates as sieci's docs/security.md shows"
