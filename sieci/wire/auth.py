"""Authentication with a shared secret, without I/O and without the secret on the wire.

Two things are signed, each with HMAC-SHA256 under the cluster's secret, and
each names the master it is meant for (``to=HOST:PORT``, the address its
sender dialed), so that it is good at that master only:

- an upload: the client adds the header fields ``to=<master>`` and, last,
  ``auth=<nonce>.<time>.<mac>``, the MAC covering the nonce, the time, every
  other header field and the payload, so nothing can be added, removed or
  moved to other code. Masters and workers that hold the secret check it:
  the time must be within ``WINDOW`` seconds of theirs, and a nonce is
  accepted once; a master also checks that it is the one named. A worker
  takes for that time the one on the RELAY line of a master with the secret
  (``sent=<time>.<mac>``), which the master writes when it sends the code,
  as a job may wait in its queue for longer than the window. A classic
  master forwards the header byte for byte, so a worker behind it still
  checks the client.
- a worker link: a master with a secret opens each worker link with
  ``CHALLENGE <nonce>``; the worker answers ``AUTH <mac> to=<master>``, so
  an answer passed on by a stranger the worker dialed names the stranger.
- results: a worker with the secret seals the results of a signed upload
  (``ResultsSeal``): before the status line, an item ``s <mac>`` whose MAC
  covers, bound to the upload's nonce, what the results mean (all the
  stdout, all the stderr, the files returned, the status line), however a
  master cut or interleaved their items on the way. The client that signed
  the upload checks it once the results have ended.
- the master, to a client: a client with the secret opens its connection
  with ``CHALLENGE <nonce> to=<master>`` and sends nothing more until the
  master answers ``AUTH <mac>``, so that whatever listens at an address it
  dials (a job that took a stopped master's port, say) gets neither its
  code nor its environment. The MAC is labelled apart from a worker's, so no
  worker's answer can stand for a master's.
"""

import hashlib
import hmac
import ipaddress
import os
import stat
import time

from sieci.wire.address import AddressError, format_address, parse_address
from sieci.wire.protocol import RETURNED, SEAL_TAG, STDERR, STDOUT

WINDOW = 60  # seconds of clock difference tolerated between peers
AUTH_FIELD = b"auth="
SENT_FIELD = b"sent="  # on a master's RELAY: when it sent the job, vouched for with the secret
TO_FIELD = b"to="
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


def audience(address):
    """How a signature names the master at ``address`` ((host, port), as its sender dialed it)."""
    host, port = address[:2]
    return TO_FIELD + format_address((host.lower(), port)).encode()


def sign_upload(secret, fields, payload, now=None):
    """The header field that authenticates ``payload`` (the block's exact payload bytes)
    with the header's other ``fields`` (``to=`` among them), to go last on the header."""
    nonce = os.urandom(16).hex().encode()
    stamp = str(int(time.time() if now is None else now)).encode()
    return AUTH_FIELD + b".".join([nonce, stamp, _upload_mac(secret, nonce, stamp, fields, payload)])


def _upload_mac(secret, nonce, stamp, fields, payload):
    signed_fields = b" ".join(field for field in fields if not field.startswith(AUTH_FIELD))
    return _mac(secret, b"upload/2", nonce, stamp, hashlib.sha256(signed_fields).digest(),
                hashlib.sha256(payload).digest())


def stamp_sending(secret, fields, now=None):
    """The field a master with the secret puts on the RELAY before a signed upload's code (whose header
    fields are ``fields``): when it sends it, bound to the upload's nonce. A worker then checks the
    signature's freshness against that time, not against when the client signed: the job may have
    waited in the queue for longer than WINDOW. None for an unsigned upload."""
    nonce = nonce_of(fields)
    if nonce is None:
        return None
    stamp = str(int(time.time() if now is None else now)).encode()
    return SENT_FIELD + stamp + b"." + _mac(secret, b"sent/2", nonce, stamp)


def sent_on(relay):
    """The SENT_FIELD of a master's RELAY line (a protocol.Line, or None), or None."""
    fields = relay.raw.split()[1:] if relay is not None else ()
    return next((field for field in fields if field.startswith(SENT_FIELD)), None)


def nonce_of(fields):
    """The nonce of a signed upload's ``auth=`` field, or None for an unsigned one."""
    field = next((f for f in fields if f.startswith(AUTH_FIELD)), None)
    return None if field is None else field[len(AUTH_FIELD):].partition(b".")[0]


def answer_challenge(secret, nonce, master):
    """The reason of ``AUTH`` for the master at ``master`` ((host, port), as dialed)."""
    to = audience(master)
    return _mac(secret, b"worker/2", nonce, to) + b" " + to


def challenge_master(master):
    """A client's nonce, and the reason of its ``CHALLENGE`` to the master at ``master`` ((host, port), as
    dialed)."""
    nonce = os.urandom(16).hex().encode()
    return nonce, nonce + b" " + audience(master)


def prove_master(secret, challenge, identity, local_ip):
    """A master's answer (the reason of ``AUTH``) to a client's ``CHALLENGE`` reason; Unauthorized if it
    names another master."""
    nonce, _, to = challenge.partition(b" ")
    to = to.strip()
    identity.check([to], local_ip)
    return _mac(secret, b"master/2", nonce, to)


def check_master(secret, nonce, master, answer):
    """Raise Unauthorized unless ``answer`` proves that the master at ``master`` holds the secret."""
    if not hmac.compare_digest(answer.strip(), _mac(secret, b"master/2", nonce, audience(master))):
        raise Unauthorized("it does not prove that it holds the secret")


class ResultsSeal:
    """The MAC of one job's results under the secret: each stream's bytes, the files returned and the
    status line, bound to the upload's ``nonce``. Fed by the worker as it sends and by the client as
    it reads. Each returned file counts as its name's length, its name and its bytes' SHA-256, so
    no bytes of a file can pass for the start of another (and one file, split on the way into two,
    has another seal)."""

    def __init__(self, secret, nonce):
        self.secret = secret
        self.nonce = nonce
        self._streams = {}
        self._files = hashlib.sha256()  # the returned files ended so far, each folded in
        self._file = None  # the returned file going on: (its name's entry, its bytes' digest)

    def add(self, stream, data):
        """``data`` (bytes; for a returned file, a results.FilePiece) of ``stream`` (protocol's)."""
        if stream != RETURNED:
            self._streams.setdefault(stream, hashlib.sha256()).update(data)
            return
        if data.name is not None or self._file is None:
            self._fold_file(self._files)
            self._file = (_file_entry(data.name), hashlib.sha256())
        self._file[1].update(data.data)

    def _fold_file(self, files):
        if self._file is not None:
            files.update(self._file[0] + self._file[1].digest())

    def _mac(self, status_line):
        returned = self._files.copy()
        self._fold_file(returned)
        digests = [self._streams.get(stream, hashlib.sha256()).digest() for stream in (STDOUT, STDERR)]
        return _mac(self.secret, b"results/3", self.nonce, *digests, returned.digest(), status_line)

    def item(self, status_line):
        """The seal's item, to go just before ``status_line``."""
        return SEAL_TAG + b" " + self._mac(status_line) + b"\n"

    def check(self, seal, status_line):
        """Raise Unauthorized unless ``seal`` (the item's text) is this results' own."""
        if seal is None:
            raise Unauthorized("the results are not sealed with the secret")
        if not hmac.compare_digest(seal, self._mac(status_line)):
            raise Unauthorized("the results' seal does not match them: they were changed on the way, or made by "
                               "something without the secret")


def _file_entry(name):
    """A returned file's name as the seal counts it: whether it has one, its length, its bytes."""
    if name is None:
        return b"-"
    encoded = name.encode("utf-8", "surrogateescape")
    return b"+" + len(encoded).to_bytes(8, "big") + encoded


class Identity:
    """The names a master answers to on one of its ports: the address a peer reached it
    at, the host's own names, and ``names`` (``HOST`` or ``HOST:PORT``, e.g. a DNS alias
    or what a NAT forwards)."""

    def __init__(self, port, names=(), host_names=()):
        self.port = port
        self.names = {_host(name): None for name in host_names}
        for name in names:
            try:
                host, its_port = parse_address(name, "")
            except AddressError:
                host, its_port = name, None  # a host alone
            if host:
                self.names[_host(host)] = its_port

    def check(self, fields, local_ip):
        """Raise Unauthorized unless ``fields`` hold a ``to=`` naming this master, reached at ``local_ip``."""
        to = next((field for field in fields if field.startswith(TO_FIELD)), None)
        if to is None:
            raise Unauthorized("the signature names no master (a sieci client older than this master?)")
        try:
            host, port = parse_address(to[len(TO_FIELD):].decode("ascii"), "")
        except (AddressError, UnicodeDecodeError):
            raise Unauthorized("malformed to= field") from None
        host, local = _host(host), _host(local_ip)
        if host == local and port == self.port:
            return
        if host == "localhost" and port == self.port and ipaddress.ip_address(local).is_loopback:
            return
        if host in self.names and port == (self.names[host] or self.port):
            return
        raise Unauthorized(f"meant for master {to[len(TO_FIELD):].decode('ascii', 'replace')}, not this one "
                           "(if clients or workers reach it by that name, give the master --names)")


def _host(host):
    """A host name or address, in the one form two spellings of it compare equal in."""
    host = host.strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


class Verifier:
    """Checks signatures for one daemon, and remembers the nonces it has accepted."""

    def __init__(self, secret, window=WINDOW):
        self.secret = secret
        self.window = window
        self._seen = {}  # nonce -> when it may be forgotten

    def check_header(self, fields, now=None, sent=None):
        """What can be checked before the payload comes: signed, fresh, not seen before. ``sent``: the
        SENT_FIELD of the master's RELAY (a worker's check), which then stands for the time of signing.
        Returns what verify_upload needs."""
        now = time.time() if now is None else now
        field = next((f for f in fields if f.startswith(AUTH_FIELD)), None)
        if field is None:
            raise Unauthorized("the upload is not signed")
        try:
            nonce, stamp, mac = field[len(AUTH_FIELD):].split(b".")
            when = int(stamp)
        except ValueError:
            raise Unauthorized("malformed auth field") from None
        fresh_at = when if sent is None else self._sent_at(sent, nonce, when)
        if abs(now - fresh_at) > self.window:
            what = "signed" if sent is None else "sent by the master"
            raise Unauthorized(f"{what} {now - fresh_at:+.0f} s away from our clock (more than {self.window} s)")
        self._forget_old(now)
        if nonce in self._seen:
            raise Unauthorized("replayed upload")
        return nonce, stamp, mac, fresh_at

    def _sent_at(self, sent, nonce, signed_at):
        try:
            stamp, mac = sent[len(SENT_FIELD):].split(b".")
            sent_at = int(stamp)
        except ValueError:
            raise Unauthorized("malformed sent field") from None
        if not hmac.compare_digest(mac, _mac(self.secret, b"sent/2", nonce, stamp)):
            raise Unauthorized("the master's sent field is not signed with our secret")
        if signed_at - sent_at > self.window:
            raise Unauthorized("signed after the master sent it")
        return sent_at

    def verify_upload(self, fields, payload, now=None, sent=None):
        """The whole check; the nonce is then spent."""
        nonce, stamp, mac, fresh_at = self.check_header(fields, now, sent)
        if not hmac.compare_digest(mac, _upload_mac(self.secret, nonce, stamp, fields, payload)):
            raise Unauthorized("bad signature")
        self._seen[nonce] = fresh_at + 2 * self.window

    def _forget_old(self, now):
        if len(self._seen) > 1024:
            self._seen = {nonce: until for nonce, until in self._seen.items() if until > now}

    @staticmethod
    def new_challenge():
        return os.urandom(16).hex().encode()

    def verify_answer(self, nonce, answer, identity, local_ip):
        """``answer``: the reason of the worker's ``AUTH``."""
        mac, _, to = answer.partition(b" ")
        to = to.strip()
        identity.check([to], local_ip)
        if not hmac.compare_digest(mac, _mac(self.secret, b"worker/2", nonce, to)):
            raise Unauthorized("bad answer to the challenge")
