"""Authentication with a shared secret, without I/O and without the secret on the wire.

Two things are signed, each with HMAC-SHA256 under the cluster's secret:

- an upload: the client adds the header field ``auth=<nonce>.<time>.<mac>``,
  the MAC covering the nonce, the time and the payload, so the field cannot
  be moved to other code. Masters and workers that hold the secret check it:
  the time must be within ``WINDOW`` seconds of theirs, and a nonce is
  accepted once. A classic master forwards the header byte for byte, so a
  worker behind it still checks the client.
- a worker link: a master with a secret opens each worker link with
  ``CHALLENGE <nonce>``; the worker answers ``AUTH <mac>``.
"""

import hashlib
import hmac
import os
import stat
import time

WINDOW = 60  # seconds of clock difference tolerated between peers
AUTH_FIELD = b"auth="
UNAUTHORIZED = b"unauthorized"


class Unauthorized(Exception):
    """The peer did not prove it holds the secret; the message says how, for the log."""


class SecretError(Exception):
    """The secret file cannot be used."""


def read_secret(path):
    """The secret in ``path`` (surrounding whitespace dropped), and a warning or None."""
    try:
        with open(path, "rb") as file:
            secret = file.read().strip()
            mode = os.fstat(file.fileno()).st_mode
    except OSError as error:
        raise SecretError(f"cannot read the secret file {path}: {error.strerror or error}") from None
    if len(secret) < 16:
        raise SecretError(f"the secret in {path} is too short: use at least 16 characters "
                          "(e.g. `head -c 32 /dev/urandom | base64 > secret`)")
    warning = None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = f"the secret file {path} can be read by other users; `chmod 600 {path}`"
    return secret, warning


def _mac(secret, *parts):
    return hmac.new(secret, b"\0".join((b"sieci",) + parts), hashlib.sha256).hexdigest().encode()


def sign_upload(secret, payload, now=None):
    """The header field that authenticates ``payload`` (the block's exact payload bytes)."""
    nonce = os.urandom(16).hex().encode()
    stamp = str(int(time.time() if now is None else now)).encode()
    digest = hashlib.sha256(payload).digest()
    return AUTH_FIELD + b".".join([nonce, stamp, _mac(secret, b"upload", nonce, stamp, digest)])


def answer_challenge(secret, nonce):
    return _mac(secret, b"worker", nonce)


class Verifier:
    """Checks signatures for one daemon, and remembers the nonces it has accepted."""

    def __init__(self, secret, window=WINDOW):
        self.secret = secret
        self.window = window
        self._seen = {}  # nonce -> when it may be forgotten

    def verify_upload(self, fields, payload, now=None):
        now = time.time() if now is None else now
        field = next((f for f in fields if f.startswith(AUTH_FIELD)), None)
        if field is None:
            raise Unauthorized("the upload is not signed")
        try:
            nonce, stamp, mac = field[len(AUTH_FIELD):].split(b".")
            when = int(stamp)
        except ValueError:
            raise Unauthorized("malformed auth field") from None
        if abs(now - when) > self.window:
            raise Unauthorized(f"signed {now - when:+.0f} s away from our clock (more than {self.window} s)")
        expected = _mac(self.secret, b"upload", nonce, stamp, hashlib.sha256(payload).digest())
        if not hmac.compare_digest(mac, expected):
            raise Unauthorized("bad signature")
        self._forget_old(now)
        if nonce in self._seen:
            raise Unauthorized("replayed upload")
        self._seen[nonce] = when + 2 * self.window

    def _forget_old(self, now):
        if len(self._seen) > 1024:
            self._seen = {nonce: until for nonce, until in self._seen.items() if until > now}

    @staticmethod
    def new_challenge():
        return os.urandom(16).hex().encode()

    def verify_answer(self, nonce, answer):
        if not hmac.compare_digest(answer, answer_challenge(self.secret, nonce)):
            raise Unauthorized("bad answer to the challenge")
