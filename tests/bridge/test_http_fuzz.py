"""HTTP request parsing edge cases (hypothesis): whatever arrives, the answer is HTTP with a JSON body
carrying a stable code, and the bridge keeps serving."""

from __future__ import annotations

import json
import socket

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import HTTP_STATUS, ErrorCode

from tests.bridge.conftest import World
from tests.budget import examples

PATHS = st.one_of(
    st.sampled_from(["/v1/instructions", "/v1/health", "/v1/results/M1", "/v1/results/", "/", "/v1/results/%00",
                     "/v1//health", "/v1/instructions/", "*", "http://x/v1/health", "/v1/results/" + "A" * 70]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30).map(lambda t: "/" + t),
)
QUERIES = st.one_of(st.just(""), st.sampled_from(["?wait=0", "?wait=120", "?wait=-1", "?wait=", "?wait=9999999", "?=",
                                                  "?wait=1&x", "?%zz", "?wait=%31"]),
                    st.text(alphabet="=&wait0123456789%ab", max_size=12).map(lambda t: "?" + t))
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "P0ST"])
HEADERS = st.lists(st.sampled_from([
    "Content-Type: application/json", "Content-Type: text/plain", "Expect: 100-continue", "Connection: close",
    "X-Long: " + "x" * 5000, "Content-Length: 5", "Content-Length: abc", "Content-Length: 1, 2", "Transfer-Encoding: gzip",
    "Host:", ": empty-name", "Bad Header Line",
]), max_size=4)
BODIES = st.one_of(st.binary(max_size=300), st.sampled_from([b"{}", b'{"v":1}', b"null", b'"x"', b"\xff\xfe", b"[" * 5000]))

KNOWN = {code.value for code in ErrorCode}


def exchange(address: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


@settings(max_examples=examples(120), suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(method=METHODS, path=PATHS, query=QUERIES, headers=HEADERS, body=BODIES)
def test_any_request_gets_json_with_a_stable_code(world: World, method: str, path: str, query: str,
                                                  headers: list[str], body: bytes) -> None:
    if not hasattr(world, "fuzz_bridge"):
        world.fuzz_bridge = world.bridge(["socket://127.0.0.1:9"], http={"request_timeout_s": 2.0})  # type: ignore[attr-defined]  # one bridge for all hypothesis examples, cached on the fixture object
    bridge = world.fuzz_bridge  # type: ignore[attr-defined]  # one bridge for all hypothesis examples, cached on the fixture object
    declared = [h for h in headers if h.lower().startswith(("content-length", "transfer-encoding"))]
    lines = [f"{method} {path}{query} HTTP/1.1", "Host: 127.0.0.1"] + headers
    if not declared:
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body
    answer = exchange(bridge.http.server_address[:2], request)
    if not answer:
        # Only a request that never completed (a declared length larger than what we sent) may go unanswered.
        assert declared, request[:200]
        return
    head, _, payload = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0].decode()
    assert status_line.startswith("HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    if status == 100:  # Expect: 100-continue, then the real answer
        head, _, payload = payload.partition(b"\r\n\r\n")
        status = int(head.split(b"\r\n")[0].split()[1])
    obj = json.loads(payload[: int(next(h.split(b":")[1] for h in head.split(b"\r\n")
                                         if h.lower().startswith(b"content-length")))])
    if status >= 400:
        assert obj["error"]["code"] in KNOWN and HTTP_STATUS[ErrorCode(obj["error"]["code"])] == status
    else:
        assert status in (200, 202)
    assert requests.get(bridge.url + "/v1/health", timeout=10).status_code == 200
