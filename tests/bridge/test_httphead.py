"""The strict request-head parser (bridge/httphead.py): valid heads round-trip, anything a second
parser could frame differently is refused with bad_request, nothing else ever escapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import ErrorCode, ProtocolError

from bridge.httphead import MAX_HEADERS, parse_request_head, split_lines

TOKEN = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=20)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
FRAMING = {"content-length", "transfer-encoding", "connection", "expect"}


@given(method=TOKEN, target=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60),
       headers=st.lists(st.tuples(TOKEN.filter(lambda n: n.lower() not in FRAMING), VALUE), max_size=12),
       length=st.none() | st.integers(0, 10**12 - 1), eol=st.sampled_from(["\r\n", "\n"]))
def test_valid_heads_round_trip(method, target, headers, length, eol):
    lines = [f"{method} {target} HTTP/1.1"] + [f"{name}: {value}" for name, value in headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    head = parse_request_head((eol.join(lines) + eol + eol).encode("ascii"))
    assert (head.method, head.target, head.version) == (method, target, "HTTP/1.1")
    assert head.content_length == (length or 0) and head.keep_alive and not head.expect_continue
    assert [name for name, _ in head.headers][:len(headers)] == [name.lower() for name, _ in headers]


@given(st.binary(max_size=400))
def test_any_bytes_give_a_head_or_bad_request(data):
    try:
        parse_request_head(data)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_REQUEST and exc.message


@given(st.integers(0, 999), st.integers(0, 999), st.sampled_from(["Content-Length", "content-length", "CONTENT-LENGTH"]))
def test_two_content_lengths_are_refused_whatever_their_values(a, b, spelling):
    with pytest.raises(ProtocolError, match="two Content-Length"):
        parse_request_head(f"POST / HTTP/1.1\r\nContent-Length: {a}\r\n{spelling}: {b}\r\n\r\n".encode())


@pytest.mark.parametrize(("head", "why"), [
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", "Transfer-Encoding"),
    (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", "not a byte count"),
    (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", "not a byte count"),
    (b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", "not a byte count"),
    (b"POST / HTTP/1.1\r\nContent-Length: \xd9\xa5\r\n\r\n", "not a byte count"),  # an Arabic-Indic digit
    (b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", "is not 'Name: value'"),
    (b"POST / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "folding"),
    (b"POST / HTTP/1.1\r\nno header here\r\n\r\n", "is not 'Name: value'"),
    (b"POST / HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\n", "bare CR"),
    (b"POST / HTTP/1.1\r\nX: a\x00b\r\n\r\n", "control characters"),
    (b"POST  / HTTP/1.1\r\n\r\n", "request line"),
    (b"POST / HTTP/2.0\r\n\r\n", "HTTP/1.1"),
    (b"POST /a b HTTP/1.1\r\n\r\n", "request line"),
    (b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", "Expect"),
    (b"POST / HTTP/1.1\r\n", "empty line"),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEADERS + 1) + b"\r\n", "more than"),
])
def test_ambiguous_or_malformed_heads_are_refused_with_a_reason(head, why):
    with pytest.raises(ProtocolError, match=why) as caught:
        parse_request_head(head)
    assert caught.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(("version", "connection", "keep_alive"), [
    ("HTTP/1.1", None, True), ("HTTP/1.1", "close", False), ("HTTP/1.1", "Keep-Alive, Close", False),
    ("HTTP/1.0", None, False), ("HTTP/1.0", "keep-alive", True),
])
def test_keep_alive_follows_the_version_and_connection_header(version, connection, keep_alive):
    extra = f"Connection: {connection}\r\n" if connection else ""
    assert parse_request_head(f"GET / {version}\r\n{extra}\r\n".encode()).keep_alive is keep_alive


def test_lines_end_in_crlf_or_lf():
    assert split_lines(b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n") == [b"GET / HTTP/1.1", b"A: b", b"C: d"]
