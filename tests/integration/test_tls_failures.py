"""A TLS failure says which option fixes it, on both sides (issue 30, 6): a peer without the
certificate a mutual-TLS master asks for, a certificate or a master signed by another CA, and plain
TCP on a TLS port and the reverse. Real sockets, certificates made by the security guide's commands."""

import gevent
import pytest

from sieci.client import client
from sieci.wire import tls
from sieci.wire.address import format_address

from tests.helpers import WAIT
from tests.integration.test_security import SECURITY_GUIDE, make_certificates, run


def guide_certificates(folder):
    section = SECURITY_GUIDE.read_text().split("**Certificates.**", 1)[1]
    commands = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return make_certificates(folder, commands.replace('"DNS:master.example,IP:10.0.0.1"', '"IP:127.0.0.1"'))


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    return guide_certificates(tmp_path_factory.mktemp("ours"))


@pytest.fixture(scope="module")
def theirs(tmp_path_factory):
    """The same certificates made again: another CA, which ours do not know."""
    return guide_certificates(tmp_path_factory.mktemp("theirs"))


def mutual_master(cluster, certs):
    return cluster.master(tls=tls.server_context(certs["master.pem"], certs["master.key"], certs["ca.pem"]))


def refusal(master, context):
    with pytest.raises(client.NotAccepted) as refused:
        run(master, tls=context)
    return str(refused.value)


def test_a_peer_without_a_certificate_is_told_to_give_one(cluster, ours, log_lines):
    master = mutual_master(cluster, ours)
    master_log, worker_log = log_lines("sieci.master"), log_lines("sieci.worker")
    said = refusal(master, tls.client_context(ours["ca.pem"]))
    assert said.endswith("(the master asks for a certificate signed by the CA of its --tls-ca: give this side "
                         "--tls-cert and --tls-key)"), said
    assert "tlsv13" not in said and "_ssl.c" not in said
    cluster.worker(master, tls=tls.client_context(ours["ca.pem"]), reconnect_min=0.01, reconnect_max=0.05)
    (line,) = worker_log.wait_for(f"lost master {format_address(master.workers_address)}")
    assert "give this side --tls-cert and --tls-key" in line, line
    assert master_log.wait_for("TLS handshake failed: the peer gave no certificate, which this master's --tls-ca "
                               "asks for: give the peer --tls-cert and --tls-key", count=2)


def test_a_certificate_of_another_ca_is_named_on_both_sides(cluster, ours, theirs, log_lines):
    master = mutual_master(cluster, ours)
    master_log = log_lines("sieci.master")
    said = refusal(master, tls.client_context(ours["ca.pem"], theirs["member.pem"], theirs["member.key"]))
    assert said.endswith("(the master does not trust this side's certificate: give --tls-cert one signed by the CA "
                         "of the master's --tls-ca)"), said
    (line,) = master_log.wait_for("TLS handshake failed")
    assert line.endswith("certificate refused: unable to get local issuer certificate (the peer's --tls-cert must be "
                         "signed by the CA of this master's --tls-ca)"), line


def test_a_master_signed_by_another_ca_is_named_on_both_sides(cluster, ours, theirs, log_lines):
    master = cluster.master(tls=tls.server_context(ours["master.pem"], ours["master.key"]))
    master_log = log_lines("sieci.master")
    said = refusal(master, tls.client_context(theirs["ca.pem"]))
    assert said.endswith("failed: certificate refused: unable to get local issuer certificate (give --tls-ca the CA "
                         "that signed the master's --tls-cert)"), said
    (line,) = master_log.wait_for("TLS handshake failed")
    assert line.endswith("the peer does not trust this master's certificate: give the peer --tls-ca with the CA that "
                         "signed this master's --tls-cert"), line


def test_plain_tcp_on_a_tls_port_and_tls_on_a_plain_one_name_the_options(cluster, ours, log_lines):
    master_log = log_lines("sieci.master")
    with gevent.Timeout(WAIT):
        said = refusal(cluster.master(tls=tls.server_context(ours["master.pem"], ours["master.key"])), None)
        assert said.endswith("refused the job: this port speaks TLS (--tls)"), said
        said = refusal(cluster.master(), tls.client_context(ours["ca.pem"]))
    assert said.endswith("failed: the other side is not serving TLS (it answered in plain text): give the master "
                         "--tls-cert, or this side neither --tls, --tls-ca nor --tls-cert"), said
    assert master_log.wait_for("speaks TLS, and this master does not (give it --tls-cert, or the client no --tls)")


def test_a_master_that_closes_in_the_handshake_is_worded_for_each_side():
    closed = tls.ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2580)")
    assert "--tls-cert" in tls.describe_failure(closed) and "--tls" in tls.describe_failure(closed)
    assert "its --tls-ca" in tls.describe_failure(closed, "master")
    assert tls.describe_os_error(ConnectionResetError(104, "Connection reset by peer")) == "connection reset by peer"
