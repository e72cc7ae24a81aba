"""Channel clients: what signing and verifying cost, and a payment round trip against the sandbox.

The terminal's budget per payment (issue 4: p99 <= 20 ms of its own overhead, channel time
excluded) includes building, signing, parsing and verifying the channel messages, so those are
measured alone; the round trip against the loopback sandbox is compared with a bare HTTP request to
the same server (the transport's floor).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid

import requests

from firmware_sim.sandbox.launcher import SandboxProcess
from protocol.messages import PayChannel
from gateway.channels import build_clients, settings_from_sandbox
from gateway.channels.alipay_codec import load_private_key, parse_reply, rsa2_sign, rsa2_verify
from gateway.channels.wechat_codec import parse_xml, sign, to_xml, verify


def _us(samples: list[int]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return round(statistics.median(ordered) / 1000, 1), round(p99 / 1000, 1)


def _time(fn, n: int) -> list[int]:
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - started)
    return samples


def run(quick: bool) -> dict:
    n_codec, n_pay = (50, 20) if quick else (1000, 200)
    figures: dict[str, float] = {}
    fields = {"return_code": "SUCCESS", "appid": "wx0123456789abcdef", "mch_id": "1900000109", "result_code": "SUCCESS",
              "transaction_id": "4200000000000000000000000000", "out_trade_no": "H2024050100012", "total_fee": "1250", "nonce_str": "n" * 32}
    key = "k" * 32
    wire = to_xml({**fields, "sign": sign(fields, key)})
    figures["wechat_reply_parse_verify_p50_us"], figures["wechat_reply_parse_verify_p99_us"] = _us(
        _time(lambda: verify(parse_xml(wire), key), n_codec))
    with tempfile.TemporaryDirectory() as directory, SandboxProcess(directory) as sandbox:
        creds = sandbox.credentials["channels"]["alipay"]  # type: ignore[index]  # the sandbox's credentials JSON
        private = load_private_key(open(creds["private_key_pem"]).read())
        public = private.public_key()  # the reply is signed with the same key here: only the cost matters
        node = '{"code":"10000","msg":"Success","trade_no":"2024","out_trade_no":"H2024050100012","total_amount":"12.50"}'
        body = ('{"alipay_trade_pay_response":' + node + ',"sign":"' + rsa2_sign(node, private) + '"}').encode()
        figures["alipay_request_sign_p50_us"], figures["alipay_request_sign_p99_us"] = _us(_time(lambda: rsa2_sign(node, private), n_codec))

        def parse_and_verify() -> None:
            reply = parse_reply(body, "alipay.trade.pay")
            assert rsa2_verify(reply.raw_node.encode(), reply.sign or "", public)

        figures["alipay_reply_parse_verify_p50_us"], figures["alipay_reply_parse_verify_p99_us"] = _us(_time(parse_and_verify, n_codec))
        session = requests.Session()
        figures["http_floor_p50_us"], figures["http_floor_p99_us"] = _us(
            _time(lambda: session.get(sandbox.url + "/sandbox/v1/health", timeout=10).raise_for_status(), n_pay))
        clients = build_clients(settings_from_sandbox(sandbox.credentials_path))
        for channel in (PayChannel.WECHAT, PayChannel.ALIPAY):
            client = clients[channel]
            codes = [str(sandbox.issue_code(channel.value, "10000.00")["code"]) for _ in range(n_pay)]
            it = iter(codes)
            samples = _time(lambda: client.pay(out_trade_no="P" + uuid.uuid4().hex[:20], auth_code=next(it), total_fen=1, subject="bench"), n_pay)
            name = channel.value.lower()
            figures[f"{name}_pay_round_trip_p50_us"], figures[f"{name}_pay_round_trip_p99_us"] = _us(samples)
    targets = {
        "wechat_reply_parse_verify_p99_us": "<= 500 us",
        "alipay_request_sign_p99_us": "<= 5000 us",
        "alipay_reply_parse_verify_p99_us": "<= 1000 us",
        "wechat_pay_round_trip_p99_us": "<= 50000 us on loopback",
        "alipay_pay_round_trip_p99_us": "<= 50000 us on loopback",
    }
    limits = {"wechat_reply_parse_verify_p99_us": 500, "alipay_request_sign_p99_us": 5000, "alipay_reply_parse_verify_p99_us": 1000,
              "wechat_pay_round_trip_p99_us": 50000, "alipay_pay_round_trip_p99_us": 50000}
    return {
        "figures": figures,
        "targets": targets,
        "baseline": {"http_floor_p50_us": figures["http_floor_p50_us"], "http_floor_p99_us": figures["http_floor_p99_us"]},
        "met": {name: figures[name] <= limit for name, limit in limits.items()},
    }
