"""Addresses as users write them: ``HOST:PORT``, ``:PORT``, ``[::1]:PORT``, ``PORT``."""


class AddressError(ValueError):
    pass


def parse_address(text, default_host):
    """``(host, port)`` from ``text``; a missing host becomes ``default_host``.

    Daemons pass ``""`` (all interfaces, as the classic programs listen);
    clients pass ``"127.0.0.1"``.
    """
    text = text.strip()
    if _is_number(text):
        host, port = default_host, text
    elif text.startswith("["):
        host, bracket, port = text[1:].partition("]:")
        if not bracket:
            raise AddressError(f"bad address {text!r}: expected [IPV6]:PORT")
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            raise AddressError(f"bad address {text!r}: expected HOST:PORT, :PORT or PORT")
        host = host or default_host
    if not _is_number(port) or not 0 <= int(port) <= 65535:
        raise AddressError(f"bad address {text!r}: the port must be a number from 0 to 65535")
    return host, int(port)


def _is_number(text):
    return text.isascii() and text.isdigit()


def format_address(address):
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
