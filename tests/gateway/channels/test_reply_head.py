"""gateway.channels.http's reply reader (the head read without the email package): against a real
local TCP server sending exact bytes, a Content-Length body, a chunked body and a body to the
connection's end all arrive whole with their headers case-insensitive; every malformed head is a
failure value (CONNECTION), never an exception nor a half-read reply; hypothesis for the head parser."""

from __future__ import annotations

import io
import socket
import threading
from typing import Iterator

import http.client
import pytest
from hypothesis import given, strategies as st

from gateway.channels.http import ConnectionPool, HttpFailure, HttpReply, ReplyHeaders, Timeouts, _read_head

T = Timeouts(2.0, 2.0)

REPLIES = {
    "/length": b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nWechatpay-Serial: ABC\r\nContent-Length: 11\r\n\r\n<xml>ok</xml>"[:-2],
    "/chunked": b"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<xml>\r\n8\r\nok</xml>\r\n0\r\n\r\n",
    "/to-eof": b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<xml>eof</xml>",
    "/continue": b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/folded": b"HTTP/1.1 200 OK\r\nX-Long: one\r\n two\r\nX-Twice: a\r\nX-Twice: b\r\nContent-Length: 0\r\n\r\n",
    "/no-colon": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok",
    "/space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "/cut-in-head": b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n",
    "/cut-in-body": b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
    "/bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
    "/too-many": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(101)) + b"Content-Length: 0\r\n\r\n",
    "/long-line": b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 70000 + b"\r\nContent-Length: 0\r\n\r\n",
    "/bare-cr": b"HTTP/1.1 200 OK\r\n\r\r\nContent-Length: 0\r\n\r\n",
    "/fold-first": b"HTTP/1.1 200 OK\r\n continued\r\nContent-Length: 0\r\n\r\n",
    "/not-http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
}
CLOSE_AFTER = {"/to-eof", "/cut-in-head", "/cut-in-body", "/not-http"}


def _serve(listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_answer, args=(conn,), daemon=True).start()


def _answer(conn: socket.socket) -> None:
    with conn, conn.makefile("rb") as rfile:
        while True:
            request = rfile.readline()
            if not request:
                return
            length = 0
            while (line := rfile.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            rfile.read(length)
            path = request.split()[1].decode()
            conn.sendall(REPLIES[path])
            if path in CLOSE_AFTER:
                conn.shutdown(socket.SHUT_WR)
                return


@pytest.fixture(scope="module")
def raw_server() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_serve, args=(listener,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _call(pool: ConnectionPool, url: str) -> HttpReply | HttpFailure:
    return pool.exchange("POST", url, timeouts=T, body=b"<xml/>", headers=None, max_bytes=1024, cert=None, verify=True)


@pytest.mark.parametrize("path, body", [("/length", b"<xml>ok</xml>"[:-2]), ("/chunked", b"<xml>ok</xml>"),
                                        ("/to-eof", b"<xml>eof</xml>"), ("/continue", b"ok")])
def test_every_body_framing_arrives_whole(raw_server, path, body) -> None:
    pool = ConnectionPool()
    for _ in range(2):  # the second call goes over the kept-alive connection (or a new one after /to-eof)
        reply = _call(pool, raw_server + path)
        assert isinstance(reply, HttpReply) and reply.status == 200 and reply.body == body
    if path != "/continue":
        assert isinstance(reply, HttpReply) and reply.content_type == "text/xml" and reply.headers["CONTENT-TYPE"] == "text/xml"
    pool.close()


def test_header_names_are_case_insensitive_and_repeated_fields_joined(raw_server) -> None:
    pool = ConnectionPool()
    reply = _call(pool, raw_server + "/length")
    assert isinstance(reply, HttpReply)
    assert reply.headers["wechatpay-serial"] == reply.headers.get("Wechatpay-Serial") == "ABC" and "WECHATPAY-SERIAL" in reply.headers
    assert reply.headers.get("Wechatpay-Signature") is None and "Wechatpay-Signature" not in reply.headers
    folded = _call(pool, raw_server + "/folded")
    assert isinstance(folded, HttpReply)
    assert folded.headers["x-long"] == "one two" and folded.headers["X-Twice"] == "a, b"
    pool.close()


@pytest.mark.parametrize("path", ["/no-colon", "/space-before-colon", "/cut-in-head", "/cut-in-body", "/bad-chunk", "/too-many",
                                  "/long-line", "/bare-cr", "/fold-first", "/not-http"])
def test_a_malformed_reply_is_a_connection_failure(raw_server, path) -> None:
    pool = ConnectionPool()
    assert _call(pool, raw_server + path) is HttpFailure.CONNECTION
    # ...and the broken connection is not reused: the next call gets a whole reply.
    reply = _call(pool, raw_server + "/length")
    assert isinstance(reply, HttpReply) and reply.body == b"<xml>ok</xml>"[:-2]
    pool.close()


_NAME = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"), min_size=1, max_size=20)
_VALUE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\r\n\x7f"), max_size=40).map(str.strip)


@given(st.lists(st.tuples(_NAME, _VALUE), max_size=30))
def test_a_written_head_reads_back(fields) -> None:
    raw = b"".join(f"{name}: {value}\r\n".encode("iso-8859-1") for name, value in fields) + b"\r\nbody"
    fp = io.BytesIO(raw)
    assert _read_head(fp) == fields
    assert fp.read() == b"body"  # the body is left for http.client
    headers = ReplyHeaders(fields)
    for name, _ in fields:
        same = [value for other, value in fields if other.lower() == name.lower()]
        assert headers[name.swapcase()] == ", ".join(same) and headers.get_all(name.upper()) == same


@given(st.binary(max_size=300))
def test_any_head_is_fields_or_an_http_exception(raw) -> None:
    try:
        fields = _read_head(io.BytesIO(raw))
    except http.client.HTTPException:
        return
    assert all(isinstance(name, str) and name and ":" not in name for name, _ in fields)
