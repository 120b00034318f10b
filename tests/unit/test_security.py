"""The secret file, the warning for exposed daemons, and which names a master takes for its own."""

import logging

import pytest

from sieci.config import warn_if_exposed
from sieci.wire import auth

SECRET = b"correct horse battery staple, 2026"


def test_the_secret_file_must_be_real_and_private(tmp_path):
    with pytest.raises(auth.SecretError, match="cannot read"):
        auth.read_secret(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_bytes(b"abc\n")
    with pytest.raises(auth.SecretError, match="too short"):
        auth.read_secret(short)
    shared = tmp_path / "shared"
    shared.write_bytes(SECRET + b"\n")
    shared.chmod(0o644)
    assert auth.read_secret(shared) == (SECRET, f"the secret file {shared} can be read by other users; "
                                                f"`chmod 600 {shared}`")
    shared.chmod(0o600)
    assert auth.read_secret(shared) == (SECRET, None)


def test_exposed_daemons_without_a_secret_warn_loudly(caplog):
    log = logging.getLogger("sieci.test")
    with caplog.at_level(logging.WARNING, logger="sieci.test"):
        warn_if_exposed(["", "127.0.0.1"], SECRET, log, "listening")
        assert caplog.text == ""
        warn_if_exposed(["127.0.0.1", "::1", "localhost"], None, log, "listening")
        assert caplog.text == ""  # a note at info: on loopback, only jobs with the host's network are strangers
        warn_if_exposed(["", "127.0.0.1"], None, log, "listening")
    assert "listening on all interfaces WITHOUT A SECRET" in caplog.text


def test_a_worker_whose_jobs_share_its_network_without_a_secret_warns_loudly(caplog):
    from sieci.config import warn_if_jobs_reach_masters
    from sieci.worker.isolation import Isolation

    log = logging.getLogger("sieci.test")
    with caplog.at_level(logging.WARNING, logger="sieci.test"):
        warn_if_jobs_reach_masters(Isolation(network=False), None, log)
        warn_if_jobs_reach_masters(Isolation(network=True), SECRET, log)
        assert caplog.text == ""
        warn_if_jobs_reach_masters(Isolation(network=True), None, log)
    assert "NO SECRET: a job can dial its masters" in caplog.text


@pytest.mark.parametrize("to, local_ip, accepted", [
    (b"to=10.0.0.5:9000", "10.0.0.5", True),  # the address the peer reached
    (b"to=10.0.0.5:9000", "::ffff:10.0.0.5", True),  # ... on a dual-stack socket
    (b"to=[::1]:9000", "0:0::1", True),
    (b"to=10.0.0.6:9000", "10.0.0.5", False),  # another master
    (b"to=10.0.0.5:9001", "10.0.0.5", False),  # another port
    (b"to=MASTER1:9000", "10.0.0.5", True),  # the host's name, in any case
    (b"to=localhost:9000", "127.0.0.1", True),
    (b"to=localhost:9000", "10.0.0.5", False),  # a stranger on the peer's own host
    (b"to=alias:9000", "10.0.0.5", True),
    (b"to=nat:443", "10.0.0.5", True),
    (b"to=nat:9000", "10.0.0.5", False),
    (b"to=junk", "10.0.0.5", False),
    (None, "10.0.0.5", False),
])
def test_a_master_knows_which_names_are_its_own(to, local_ip, accepted):
    identity = auth.Identity(9000, ["alias", "nat:443"], ["master1"])
    fields = [b"v=2"] + ([to] if to else [])
    if accepted:
        identity.check(fields, local_ip)
    else:
        with pytest.raises(auth.Unauthorized):
            identity.check(fields, local_ip)


SECRET = b"sixteen or more bytes of secret"
CODE = b"print(1)\n"


def signed_fields(signed_at):
    to = b"to=127.0.0.1:1"
    return [to, auth.sign_upload(SECRET, [to], CODE, now=signed_at)]


@pytest.mark.parametrize("signed_at, sent_at, now, accepted", [
    (1000, 1000 + 600, 1000 + 610, True),  # ten minutes in the queue: fresh when the master sent it
    (1000, 1000, 1000 + 61, False),  # sent a minute and more ago: stale
    (1000 + 61, 1000, 1000 + 61, False),  # signed more than a minute after the master sent it: made up
    (1000, 1000 + 600, 1000 + 600 - 61, False),  # sent from our future
])
def test_a_worker_checks_freshness_against_when_the_master_sent_the_job(signed_at, sent_at, now, accepted):
    fields = signed_fields(signed_at)
    sent = auth.stamp_sending(SECRET, fields, now=sent_at)
    verifier = auth.Verifier(SECRET)
    if accepted:
        verifier.verify_upload(fields, CODE, now=now, sent=sent)
    else:
        with pytest.raises(auth.Unauthorized):
            verifier.verify_upload(fields, CODE, now=now, sent=sent)


def test_without_the_masters_stamp_the_signing_time_counts():
    with pytest.raises(auth.Unauthorized, match="signed"):
        auth.Verifier(SECRET).verify_upload(signed_fields(1000), CODE, now=1000 + 600)


def test_a_masters_stamp_is_good_for_its_upload_once_and_only_with_the_secret():
    fields, other = signed_fields(1000), signed_fields(1000)
    sent = auth.stamp_sending(SECRET, fields, now=1500)
    with pytest.raises(auth.Unauthorized, match="not signed with our secret"):
        auth.Verifier(SECRET).verify_upload(other, CODE, now=1500, sent=sent)  # moved to another upload
    forged = auth.stamp_sending(b"another secret of sixteen bytes", fields, now=1500)
    with pytest.raises(auth.Unauthorized, match="not signed with our secret"):
        auth.Verifier(SECRET).verify_upload(fields, CODE, now=1500, sent=forged)
    verifier = auth.Verifier(SECRET)
    verifier.verify_upload(fields, CODE, now=1500, sent=sent)
    with pytest.raises(auth.Unauthorized, match="replayed"):
        verifier.verify_upload(fields, CODE, now=1510, sent=sent)
    assert auth.stamp_sending(SECRET, [b"to=127.0.0.1:1"]) is None  # an unsigned upload gets no stamp
