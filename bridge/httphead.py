"""The bridge's HTTP/1.1 request head, parsed strictly: bytes in, a RequestHead or a 400 out (no I/O).

Why our own parser and not http.server's: the standard library hands the header block to the e-mail
parser, which keeps two Content-Length headers (and `get` returns the first), quietly ends the
headers at the first line it cannot read (a `Content-Length` after it was never seen, so its body
was read as the next request), and unfolds obsolete continuation lines. HIS interface 1.1 part D
asks that a request be framed one way only, so anything a second parser could read differently is
refused here with 400 `bad_request` and the connection closed:

- a request line that is not `METHOD SP target SP HTTP/1.0|HTTP/1.1`;
- a header line that is not `token ":" value` (whitespace before the colon, a line that is no
  header, obsolete folding, control characters, a bare CR);
- more than one Content-Length (even with equal values, even as a list `5, 5`), or one that is not
  a plain decimal number;
- any Transfer-Encoding (the bridge takes Content-Length bodies only), alone or with Content-Length.

Why not h11: RFC 9110 lets a recipient fold identical Content-Length headers into one, and h11
does (it raises only when the values differ), so the interface's "two Content-Length headers are
refused" would still need a second pass over the raw lines; and the bridge takes one small subset
of HTTP/1.1 (Content-Length bodies, no chunked, no upgrades) that fits in this one screen, tested
with hypothesis (tests/bridge/test_httphead.py).

Lines may end in CRLF or a bare LF (RFC 9112 section 2.2 lets a recipient accept LF; some HIS
HTTP stacks send it). The head ends at the first empty line; its size and header count are bounded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol.errors import ErrorCode, ProtocolError

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
MAX_CONTENT_LENGTH_DIGITS = 12

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_VERSIONS = {b"HTTP/1.1": "HTTP/1.1", b"HTTP/1.0": "HTTP/1.0"}


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value) in order received
    content_length: int  # 0 when there is no Content-Length header
    keep_alive: bool
    expect_continue: bool

    def get(self, name: str) -> str | None:
        """The value of the one header `name` (case-insensitive); None if absent."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message)


def split_lines(head: bytes) -> list[bytes]:
    """The head's lines without their endings (CRLF or LF); the final empty line is dropped."""
    if not (head.endswith(b"\n\n") or head.endswith(b"\n\r\n")):
        raise _bad("the request head does not end with an empty line")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        if b"\r" in line:
            raise _bad("a bare CR inside the request head; end lines with CRLF")
    return lines


def parse_request_head(head: bytes) -> RequestHead:
    """Parse the bytes from the request line up to and including the empty line ending the headers."""
    if len(head) > MAX_HEAD_BYTES:
        raise _bad(f"the request head is over {MAX_HEAD_BYTES // 1024} KiB")
    lines = split_lines(head)
    if not lines:
        raise _bad("an empty request")
    method, target, version = _request_line(lines[0])
    if len(lines) - 1 > MAX_HEADERS:
        raise _bad(f"more than {MAX_HEADERS} headers")
    headers = tuple(_header(line) for line in lines[1:])
    names = [name for name, _ in headers]
    if "transfer-encoding" in names:
        if "content-length" in names:
            raise _bad("both Content-Length and Transfer-Encoding: send Content-Length only")
        raise _bad("Transfer-Encoding (chunked bodies) is not accepted; send Content-Length")
    lengths = [value for name, value in headers if name == "content-length"]
    if len(lengths) > 1:
        raise _bad("two Content-Length headers: send exactly one")
    content_length = 0
    if lengths:
        text = lengths[0]
        if not (text.isascii() and text.isdigit()) or len(text) > MAX_CONTENT_LENGTH_DIGITS:
            raise _bad(f"Content-Length {text[:30]!r} is not a byte count")
        content_length = int(text)
    connection = {token.strip().lower() for name, value in headers if name == "connection" for token in value.split(",")}
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    expects = [value.strip().lower() for name, value in headers if name == "expect"]
    if any(value != "100-continue" for value in expects):
        raise _bad("the only Expect understood is 100-continue")
    return RequestHead(method, target, version, headers, content_length, keep_alive,
                       expect_continue=bool(expects) and version == "HTTP/1.1")


def _request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise _bad("the request line must be 'METHOD /path HTTP/1.1'")
    method, target, version = parts
    if _TOKEN.fullmatch(method) is None:
        raise _bad(f"method {method[:20]!r} is not a token")
    if _TARGET.fullmatch(target) is None:
        raise _bad("the request target has spaces or control characters")
    if version not in _VERSIONS:
        raise _bad(f"{version[:20].decode('latin-1')!r}: the bridge speaks HTTP/1.1 (and 1.0)")
    return method.decode("ascii"), target.decode("ascii"), _VERSIONS[version]


def _header(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise _bad("a folded header line (obsolete line folding) is not accepted")
    name, colon, value = line.partition(b":")
    if not colon or _TOKEN.fullmatch(name) is None:
        raise _bad(f"header line {line[:40].decode('latin-1')!r} is not 'Name: value'")
    value = value.strip(b" \t")
    if _VALUE.fullmatch(value) is None:
        raise _bad(f"header {name.decode('ascii')} has control characters in its value")
    return name.decode("ascii").lower(), value.decode("latin-1")
