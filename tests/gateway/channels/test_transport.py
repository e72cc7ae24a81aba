"""A channel that answers badly (a tiny local HTTP server): every such answer is UNKNOWN, never a decision."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from protocol.messages import PayChannel
from gateway.channels import build_clients, settings_from_sandbox
from terminal.channels.base import PayState, RefundState, ReverseState
from gateway.channels.http import MAX_REPLY_BYTES

ANSWERS = {
    "/500": (500, b"<xml><return_code>SUCCESS</return_code></xml>"),
    "/garbage": (200, b"\x00\xffnot xml, not json"),
    "/huge": (200, b"<xml>" + b" " * (MAX_REPLY_BYTES + 10)),
    "/redirect": (302, b""),
    "/unsigned": (200, b'<xml><return_code>SUCCESS</return_code><result_code>SUCCESS</result_code><total_fee>1</total_fee></xml>'),
    "/json-unsigned": (200, b'{"alipay_trade_pay_response":{"code":"10000","msg":"Success","trade_no":"1","out_trade_no":"ORDER0001","total_amount":"0.01"}}'),
}


class _Bad(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        prefix = "/" + self.path.strip("/").split("/")[0]
        status, body = ANSWERS[prefix]
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def bad_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Bad)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# A reply in the channel's own format whose signature does not check: the channel may have acted
# (issue 17: "we cannot verify the reply" needs a person). Anything else is simply unknown.
# (/json-unsigned is a reply to alipay.trade.pay only: to another method it is malformed.)
UNVERIFIABLE = {("/unsigned", PayChannel.WECHAT, call) for call in ("pay", "query", "reverse", "refund")} | {("/json-unsigned", PayChannel.ALIPAY, "pay")}


@pytest.mark.parametrize("path", sorted(ANSWERS))
def test_bad_answers_are_unknown_or_unverified(sandbox, bad_server, path):
    settings = settings_from_sandbox(sandbox.credentials_path)
    settings["wechat"]["base_url"] = bad_server + path
    settings["alipay"]["gateway"] = bad_server + path + "/gateway.do"
    clients = build_clients(settings)
    for channel in (PayChannel.WECHAT, PayChannel.ALIPAY):
        client = clients[channel]
        def word(call: str) -> str:
            return "unverified" if (path, channel, call) in UNVERIFIABLE else "unknown"
        assert client.pay(out_trade_no="ORDER0001", auth_code="134567890123456789", total_fen=1, subject="x").state is PayState(word("pay"))
        assert client.query("ORDER0001").state is PayState(word("query"))
        assert client.reverse("ORDER0001").state is ReverseState(word("reverse"))
        refund = client.refund(out_trade_no="ORDER0001", out_refund_no="R1", total_fen=1, refund_fen=1, reason="x")
        assert refund.state is RefundState(word("refund"))


def test_nobody_listening_is_unknown(sandbox):
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings_from_sandbox(sandbox.credentials_path, wechat={"base_url": f"http://127.0.0.1:{port}", "connect_timeout_s": 0.5})
    outcome = build_clients(settings)[PayChannel.WECHAT].pay(out_trade_no="ORDER0001", auth_code="134567890123456789", total_fen=1, subject="x")
    assert outcome.state is PayState.UNKNOWN and outcome.channel_code == "http_connection"
