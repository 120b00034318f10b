"""Only the cluster's own members get in: the shared secret, replay protection and TLS."""

import logging
import shutil
import subprocess
import time
from pathlib import Path

import gevent
import gevent.event
import gevent.server
import gevent.socket
import pytest

from sieci.client import client, link
from sieci.wire import auth, protocol, tls

from tests.helpers import REPO, WAIT, Captured, JobEvents, Stdout, assert_backing_off, client_address
from tests.helpers.proxy import TamperingProxy

SECURITY_GUIDE = Path(REPO) / "docs" / "security.md"

SECRET = b"correct horse battery staple, 2026"
CODE = b'print("in")\n'


def run(master, code=CODE, **settings):
    output = Captured()
    return client.run(client_address(master), code, output=output, **settings), output


@pytest.fixture
def guarded(cluster):
    master = cluster.master(secret=SECRET)
    cluster.worker(master, secret=SECRET)
    assert master.wait_for_workers(1, WAIT)
    return master


def test_members_with_the_secret_run_jobs(guarded):
    assert run(guarded, secret=SECRET) == (0, Stdout(b"in\n"))


@pytest.mark.parametrize("secret, why", [
    (None, "refused the job: unauthorized$"),
    (b"a different secret of some length", "does not prove that it holds the secret"),  # ours, to the client
], ids=["no secret", "wrong secret"])
def test_a_client_without_the_secret_is_refused(guarded, secret, why):
    with pytest.raises(client.NotAccepted, match=why):
        run(guarded, secret=secret)


def test_a_replayed_upload_is_refused(guarded, peers):
    upload = signed_upload(guarded)
    first = peers(guarded.clients_address)
    first.send(upload)
    assert first.answer() == b"RECEIVED\n"
    replay = peers(guarded.clients_address)
    replay.send(upload)
    assert replay.rest() == b"ERROR unauthorized\n"


def signed_upload(master, code=CODE, fields=(protocol.EXTENDED, b"name=job.py")):
    """What a sieci client with the secret sends ``master``."""
    return link.ClientLink(master.clients_address, WAIT, secret=SECRET).upload(code, list(fields))


@pytest.mark.parametrize("tamper", ["other code", "old signature", "v=2 removed", "name= changed", "field added"])
def test_a_tampered_or_stale_upload_is_refused(guarded, peers, tamper):
    to = auth.audience(guarded.clients_address)
    if tamper == "other code":
        upload = protocol.encode_block(b"print('evil')\n", [to, auth.sign_upload(SECRET, [to], CODE)])
    elif tamper == "old signature":
        upload = protocol.encode_block(CODE, [to, auth.sign_upload(SECRET, [to], CODE, now=time.time() - 3600)])
    else:
        header, rest = signed_upload(guarded).split(b"\n", 1)
        header = {"v=2 removed": header.replace(b" v=2 ", b" "), "name= changed": header.replace(b"job.py", b"x.py"),
                  "field added": header.replace(b" v=2 ", b" v=2 z=1 ")}[tamper]
        upload = header + b"\n" + rest
    peer = peers(guarded.clients_address)
    peer.send(upload)
    assert peer.rest() == b"ERROR unauthorized\n"


def test_an_upload_signed_for_one_master_is_refused_by_another(cluster, peers):
    first, second = cluster.master(secret=SECRET), cluster.master(secret=SECRET)
    cluster.worker(first, second, secret=SECRET)
    assert first.wait_for_workers(1, WAIT) and second.wait_for_workers(1, WAIT)
    captured = signed_upload(first)
    replay = peers(second.clients_address)
    replay.send(captured)
    assert replay.rest() == b"ERROR unauthorized\n"
    honest = peers(first.clients_address)
    honest.send(captured)
    assert honest.answer() == b"RECEIVED\n"


def test_a_master_takes_uploads_signed_for_its_other_names(cluster, peers):
    master = cluster.master(secret=SECRET, names=["sieci-alias.example", "nat.example:443"])
    cluster.worker(master, secret=SECRET)
    assert master.wait_for_workers(1, WAIT)
    port = master.clients_address[1]
    for name, accepted in [(("sieci-alias.example", port), True), (("NAT.example", 443), True),
                           (("nat.example", port), False), (("other.example", port), False),
                           (("localhost", port), True), (("127.0.0.1", port + 1), False)]:
        to = auth.audience(name)
        peer = peers(master.clients_address)
        peer.send(protocol.encode_block(CODE, [to, auth.sign_upload(SECRET, [to], CODE)]))
        assert peer.answer() == (b"RECEIVED\n" if accepted else b"ERROR unauthorized\n"), name
        peer.close()


def test_a_worker_that_dials_a_stranger_cannot_be_relayed_to_the_master(cluster, guarded, peers):
    """The stranger passes the real master's challenge to the worker, and its answer back."""
    dialed = gevent.event.AsyncResult()
    stranger = gevent.server.StreamServer(("127.0.0.1", 0), lambda sock, _: (dialed.set(sock), gevent.sleep(WAIT)))
    stranger.start()
    try:
        cluster.worker(stranger.address, secret=SECRET)
        victim = dialed.get(timeout=WAIT)
        master_side = peers(guarded.workers_address)
        challenge = master_side.line()
        victim.sendall(challenge)
        answer = victim.makefile("rb").readline()
        assert answer.startswith(b"AUTH ") and answer.rstrip().endswith(b"to=127.0.0.1:%d" % stranger.address[1])
        master_side.send(answer)
        assert master_side.rest() == b"ERROR unauthorized\n"
        assert len(guarded.links) == 1  # only the real worker
    finally:
        stranger.stop()


@pytest.mark.parametrize("answer", [b"READY\n", b"AUTH 0123\n", b"\n"], ids=["classic READY", "bad AUTH", "blank"])
def test_a_worker_without_the_secret_is_refused(guarded, peers, answer):
    intruder = peers(guarded.workers_address)
    assert intruder.line().startswith(b"CHALLENGE ")
    intruder.send(answer)
    assert intruder.rest() == b"ERROR unauthorized\n"
    assert len(guarded.links) == 1  # only the real worker


def test_a_sieci_worker_without_the_secret_gets_no_job(cluster, caplog):
    master = cluster.master(secret=SECRET)
    cluster.worker(master)
    with caplog.at_level(logging.WARNING, logger="sieci.worker"):
        with pytest.raises(client.ClientError, match="no result within"):
            run(master, secret=SECRET, timeout=0.5)
    assert "give this worker --secret-file" in caplog.text


def test_a_worker_checks_the_signature_itself_and_a_signed_client_the_master(cluster, peers):
    """A master without the secret (or a classic one) passes uploads on; the worker still checks. A
    client with the secret sends its job to no master that cannot prove it holds it."""
    master = cluster.master()
    cluster.worker(master, secret=SECRET)
    with pytest.raises(client.NotAccepted, match="the worker refused the job: unauthorized"):
        run(master)
    with pytest.raises(client.NotAccepted, match="asks for a secret and this master has none"):
        run(master, secret=SECRET)


def test_a_signed_job_that_waited_in_the_queue_past_the_signatures_window_runs(cluster):
    """The worker checks freshness against when the master sent the job (RELAY sent=), not when its client
    signed it. A window of 1 s stands in for the minute; the first job keeps the second queued for 1.5 s."""
    master = cluster.master(secret=SECRET)
    worker = cluster.worker(master, secret=SECRET)
    worker.verifier.window = 1
    assert master.wait_for_workers(1, WAIT)
    events = JobEvents(master)
    first = gevent.spawn(run, master, b"import time\ntime.sleep(1.5)\nprint('first')\n", secret=SECRET)
    events.wait_for("dispatched")
    second = gevent.spawn(run, master, b"print('second')\n", secret=SECRET)
    events.wait_for("queued", 2)
    assert first.get(timeout=WAIT) == (0, Stdout(b"first\n"))
    assert second.get(timeout=WAIT) == (0, Stdout(b"second\n"))


def test_a_signed_client_sends_nothing_through_a_classic_master_which_cannot_prove_it_holds_the_secret(
        classic, cluster):
    classic_master = classic.master()
    cluster.worker(classic_master.workers_address, secret=SECRET)
    classic_master.wait_for_workers(1)
    address = f"127.0.0.1:{classic_master.clients_address[1]}"
    with pytest.raises(client.NotAccepted, match="a classic master cannot"):
        client.run(address, CODE, output=Captured(), secret=SECRET, connect_timeout=0.5)
    with pytest.raises(client.NotAccepted, match="unauthorized"):  # the worker behind it checks
        client.run(address, CODE, output=Captured())


# --- TLS ------------------------------------------------------------------------------


def make_certificates(folder, commands):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make test certificates")
    subprocess.run(["sh", "-e", "-c", commands], cwd=folder, check=True, capture_output=True, timeout=WAIT)
    return {name: str(folder / name) for name in
            ("ca.pem", "master.pem", "master.key", "member.pem", "member.key")}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """Made by the security guide's own commands, for this host's loopback address."""
    section = SECURITY_GUIDE.read_text().split("**Certificates.**", 1)[1]
    commands = section.split("```sh\n", 1)[1].split("```", 1)[0]
    names = '"DNS:master.example,IP:10.0.0.1"'
    assert names in commands
    return make_certificates(tmp_path_factory.mktemp("certs"), commands.replace(names, '"IP:127.0.0.1"'))


@pytest.fixture(scope="module")
def lax_certificates(tmp_path_factory):
    """Made the quick way, as Python before 3.13 accepted: the CA has no key usage extension."""
    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    commands = [f"openssl req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=lax-CA",
                "echo subjectAltName=IP:127.0.0.1 > san.ext"]
    for name in ("master", "member"):
        commands += [f"openssl req {key} -keyout {name}.key -out {name}.csr -subj /CN={name}",
                     f"openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                     f"-out {name}.pem -days 2 -extfile san.ext"]
    return make_certificates(tmp_path_factory.mktemp("lax-certs"), "\n".join(commands))


@pytest.mark.parametrize("mutual", [False, True], ids=["server certificate only", "mutual TLS"])
def test_jobs_run_over_tls(cluster, certificates, mutual):
    certs = certificates
    ca = certs["ca.pem"] if mutual else None
    master = cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"], ca))
    member = (certs["member.pem"], certs["member.key"]) if mutual else (None, None)
    cluster.worker(master, tls=tls.client_context(certs["ca.pem"], *member))
    assert master.wait_for_workers(1, WAIT)
    status, output = run(master, b"print('private')\n", tls=tls.client_context(certs["ca.pem"], *member))
    assert (status, output.stdout) == (0, b"private\n")
    big = b"import sys\nsys.stdout.buffer.write(bytes(range(256)) * 16384)\n"  # 4 MiB: relayed, not spliced
    status, output = run(master, big, tls=tls.client_context(certs["ca.pem"], *member))
    assert (status, output.stdout) == (0, bytes(range(256)) * 16384)


def test_mutual_tls_refuses_a_peer_without_a_certificate(cluster, certificates):
    certs = certificates
    master = cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"], certs["ca.pem"]))
    with pytest.raises(client.NotAccepted, match="master 127.0.0.1:"):
        run(master, tls=tls.client_context(certs["ca.pem"]))


def test_a_client_refuses_a_master_it_cannot_verify(cluster, certificates):
    certs = certificates
    master = cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"]))
    with pytest.raises(client.NotAccepted, match="TLS with master .* failed"):
        run(master, tls=tls.client_context())  # the system's CAs do not know our test CA


STRICTLY_REFUSED = "certificate refused: CA cert does not include key usage extension"


def test_a_certificate_strict_checking_refuses_is_named_in_one_line(cluster, lax_certificates):
    """What Python 3.13 refuses by default, sieci refuses on every Python, and says why."""
    certs = lax_certificates
    master = cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"]))
    with pytest.raises(client.NotAccepted) as refused:
        run(master, tls=tls.client_context(certs["ca.pem"]))
    assert f"TLS with master {client_address(master)} failed: {STRICTLY_REFUSED} (make certificates as " \
           "sieci's docs/security.md shows)" in str(refused.value)


def test_a_refused_handshake_is_a_log_line_on_both_sides_and_redialled_with_backoff(
        cluster, lax_certificates, log_lines, capfd):
    certs = lax_certificates
    master = cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"]))
    worker_log, master_log = log_lines("sieci.worker"), log_lines("sieci.master")
    cluster.worker(master, tls=tls.client_context(certs["ca.pem"]), reconnect_min=0.01, reconnect_max=0.16)
    refusals = worker_log.wait_for("TLS with master", count=5)
    assert all(STRICTLY_REFUSED in line for line in refusals)
    assert_backing_off(refusals)
    assert "TLS handshake failed" in master_log.wait_for("worker 127.0.0.1:")[0]
    assert "Traceback" not in capfd.readouterr().err


def test_a_peer_that_stalls_in_its_handshake_is_dropped(cluster, certificates, peers, log_lines):
    certs = certificates
    master = cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"]), client_timeout=0.5)
    master_log = log_lines("sieci.master")
    stalled = peers(master.workers_address)
    stalled.send(b"\x16\x03\x01")  # the start of a ClientHello, and no more
    assert stalled.rest() == b""  # the master hung up
    line = master_log.wait_for(f"worker 127.0.0.1:{stalled.sock.getsockname()[1]}: TLS handshake failed")[0]
    assert line.endswith("timed out")


def test_a_worker_with_the_wrong_secret_is_told_backs_off_and_never_counts(cluster, log_lines):
    master = cluster.master(secret=SECRET)
    worker_log, master_log = log_lines("sieci.worker"), log_lines("sieci.master")
    cluster.worker(master, secret=b"a different secret of some length", reconnect_max=0.16)
    lines = worker_log.wait_for("redialling", count=5)
    assert all("refused this worker: unauthorized (check --secret-file" in line for line in lines), lines
    assert_backing_off(lines)
    assert not master.links and not any("joined" in line for line in master_log.messages), master_log.messages
    assert sum("refused: unauthorized" in line for line in master_log.messages) >= 5


def test_a_plaintext_peer_on_a_tls_master_is_told_in_one_line_within_seconds(cluster, certificates, log_lines):
    certs = certificates
    master = cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"]))
    master_log, worker_log = log_lines("sieci.master"), log_lines("sieci.worker")
    with gevent.Timeout(WAIT / 2):
        with pytest.raises(client.NotAccepted, match=r"refused the job: this port speaks TLS \(--tls\)"):
            run(master)
        cluster.worker(master)
        line = worker_log.wait_for("redialling")[0]
    assert "the master refused this worker: this port speaks TLS (--tls)" in line
    assert len(master_log.wait_for("speaks plain text, not TLS", count=2)) == 2


def test_a_tls_peer_on_a_plaintext_master_is_told_in_one_line_within_seconds(cluster, certificates, log_lines):
    certs = certificates
    master = cluster.master()
    master_log, worker_log = log_lines("sieci.master"), log_lines("sieci.worker")
    with gevent.Timeout(WAIT / 2):
        with pytest.raises(client.NotAccepted, match="TLS with master .* failed: .*not serving TLS"):
            run(master, tls=tls.client_context(certs["ca.pem"]))
        cluster.worker(master, tls=tls.client_context(certs["ca.pem"]))
        line = worker_log.wait_for("redialling")[0]
    assert "not serving TLS" in line
    assert len(master_log.wait_for("speaks TLS, and this master does not", count=2)) == 2


def test_one_address_may_hold_only_so_many_client_connections(cluster, peers):
    master = cluster.master(max_connections_per_address=2)
    for _ in range(2):
        peers(master.clients_address).send(b"ENDSEQ T v=2\n")  # uploads under way
    third = peers(master.clients_address)
    assert third.rest() == b"ERROR too many connections from 127.0.0.1 (at most 2 at once)\n"


# --- sealed results ------------------------------------------------------------------------


def test_results_changed_on_the_way_are_refused_and_their_files_removed(cluster, tmp_path):
    """Between client and master, a stranger on the path (no TLS) swaps bytes of the results."""
    proxy = TamperingProxy(b"the truth", b"a forgery")
    on_the_path = proxy.address
    try:
        master = cluster.master(secret=SECRET, names=[on_the_path])  # the client's signatures name the path
        proxy.target = master.clients_address
        cluster.worker(master, secret=SECRET)
        assert master.wait_for_workers(1, WAIT)
        code = b"open('proof.txt', 'w').write('the truth')\nprint('the truth')\n"
        output = Captured()
        with pytest.raises(client.JobLost, match="seal does not match"):
            client.Client(on_the_path, secret=SECRET).run(code, output=output, returns=["*.txt"],
                                                          results=str(tmp_path))
        assert list(tmp_path.iterdir()) == []  # the forged file is gone
        assert run(master, secret=SECRET) == (0, Stdout(b"in\n"))  # straight to the master: sealed and good
    finally:
        proxy.close()


def test_a_seal_covers_what_the_results_mean_however_they_were_cut():
    from sieci.wire.results import FilePiece

    def sealed(pieces):
        seal = auth.ResultsSeal(SECRET, b"nonce")
        for stream, data in pieces:
            seal.add(stream, data)
        return seal.item(b"x exit 0\n")

    whole = sealed([("stdout", b"ab"), ("stderr", b"c"), ("returned", FilePiece("f", b"12"))])
    assert sealed([("stdout", b"a"), ("stderr", b"c"), ("stdout", b"b"), ("returned", FilePiece("f", b"1")),
                   ("returned", FilePiece(None, b"2"))]) == whole
    assert sealed([("stdout", b"ab"), ("stderr", b"c"), ("returned", FilePiece("g", b"12"))]) != whole
    assert sealed([("stdout", b"ab"), ("stdout", b"c"), ("returned", FilePiece("f", b"12"))]) != whole
    # One file's bytes cannot pass for the start of another: a stranger on the path who splits the
    # file "a" holding b"x\0b\0y" into "a" (b"x") and "b" (b"y") changes the seal.
    one = sealed([("returned", FilePiece("a", b"x\0b\0y"))])
    assert sealed([("returned", FilePiece("a", b"x")), ("returned", FilePiece("b", b"y"))]) != one
    assert sealed([("returned", FilePiece("a", b"x\0")), ("returned", FilePiece(None, b"b\0y"))]) == one
    seal = auth.ResultsSeal(SECRET, b"nonce")
    with pytest.raises(auth.Unauthorized, match="not sealed"):
        seal.check(None, b"x exit 0\n")
    with pytest.raises(auth.Unauthorized, match="does not match"):
        seal.check(auth.ResultsSeal(SECRET, b"another job's nonce").item(b"x exit 0\n")[2:-1], b"x exit 0\n")
