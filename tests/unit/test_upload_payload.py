"""An upload's payload with parts (``code=``): the code, and inline stdin and files."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci.wire import protocol, upload_format


def header(fields):
    return protocol.parse_header(b" ".join([b"ENDSEQ", b"T", *fields]) + b"\n")


@given(st.binary(), st.one_of(st.none(), st.binary()), st.one_of(st.none(), st.binary()))
def test_parts_read_back_as_sent(code, stdin, bundle):
    digest = None if bundle is None else "ab" * 32
    fields, payload = upload_format.encode_upload_payload(code, stdin, bundle, digest)
    assert upload_format.decode_upload_payload(header(fields), payload) == upload_format.UploadPayload(code, stdin, bundle, digest)


def test_without_parts_the_payload_is_the_code_as_classic_peers_send_it():
    assert upload_format.encode_upload_payload(b"print(1)\n") == ([], b"print(1)\n")
    assert upload_format.decode_upload_payload(header([]), b"print(1)\n").code == b"print(1)\n"


@pytest.mark.parametrize("fields, payload", [
    ([b"code=x"], b"\n"),
    ([b"code=5"], b"ab\n"),
    ([b"code=2"], b"ab"),
    ([b"code=0"], b"i 5\nab\n"),
    ([b"code=0"], b"i\n\n"),
    ([b"code=0"], b"i 1\na"),
    ([b"code=0"], b"q 1\na\n"),
    ([b"code=0"], b"i 1\nai 1\nb\n"),
    ([b"code=0"], b"f 1\na\n"),
])
def test_malformed_parts_are_the_peers_fault(fields, payload):
    with pytest.raises(protocol.RemoteProtocolError):
        upload_format.decode_upload_payload(header(fields), payload)
