"""The POS -> gateway API end to end: a real HTTP server, device-signed requests from the POS's own
client, the real channel sandbox behind it, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from firmware_sim.sandbox.launcher import SandboxProcess
from gateway.api import GatewayHttpServer
from gateway.channel_clients import ChannelFactory
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import PaymentState, RefundState
from gateway.service import GatewayService
from protocol.amount import Amount, Direction
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import seal_instruction
from protocol.messages import Instruction, PayChannel
from protocol.signing import public_key
from terminal.gateway_client import GatewayConnection
from tests.gateway.fleet import ACTOR, make_fleet

FAST = {"query_interval_s": 0.2, "pay_deadline_s": 5.0}
HIS_KEY = SharedKey("k2026a", "AES-256-GCM", bytes(range(32)))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    process = SandboxProcess(str(tmp_path_factory.mktemp("gw-sandbox"))).start()
    yield process
    process.stop()


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


@dataclass
class Gw:
    server: GatewayHttpServer
    fleet: object
    sandbox: SandboxProcess
    device_clock: Clock

    def pos(self, n: int = 1, **kw) -> GatewayConnection:
        device_id = f"H001-POS{n}"
        return GatewayConnection(self.server.url, device_id=device_id, seed=self.fleet.seeds[device_id], firmware="1.4.2",
                                 clock=self.device_clock, **kw)

    def code(self, channel: str = "WECHAT", balance: str = "1000.00") -> str:
        reply = requests.post(self.sandbox.url + "/sandbox/v1/codes", json={"channel": channel, "balance": balance}, timeout=10)
        return reply.json()["code"]


def onboard(fleet, sandbox: SandboxProcess) -> None:
    creds = sandbox.credentials["channels"]
    wechat = creds["wechat"]
    fleet.directory.set_merchant_key("H001", PayChannel.WECHAT, wechat["mch_id"],
                                     {"appid": wechat["appid"], "api_key": wechat["api_key"], "base_url": wechat["base_url"]}, actor=ACTOR)
    alipay = creds["alipay"]
    fleet.directory.set_merchant_key("H001", PayChannel.ALIPAY, alipay["app_id"], {
        "gateway": alipay["gateway"],
        "private_key_pem": Path(alipay["private_key_pem"]).read_text(),
        "alipay_public_key_pem": Path(alipay["alipay_public_key_pem"]).read_text()}, actor=ACTOR)
    fleet.directory.add_his_keys("H001", KeyRing([HIS_KEY]), actor=ACTOR)


@pytest.fixture
def gw(db, sandbox):
    fleet = make_fleet(db, devices=2)
    onboard(fleet, sandbox)
    service = GatewayService(fleet.directory, fleet.ledger, ChannelFactory(fleet.directory, overrides=FAST))
    server = GatewayHttpServer(service).start()
    yield Gw(server, fleet, sandbox, Clock())
    server.stop()


def order() -> str:
    return "MZ" + uuid.uuid4().hex[:16]


def pay_body(order_no: str, code: str, fen: int = 1250, *, key: str | None = None, terminal: str = "T0001", channel: str = "WECHAT") -> dict:
    return {"idempotency_key": key or uuid.uuid4().hex, "terminal_id": terminal, "order_no": order_no,
            "out_trade_no": "P" + uuid.uuid4().hex[:20], "channel": channel, "amount_fen": fen, "auth_code": code}


def instruction(order_no: str, fen: int, *, terminal: str = "T0001", msg_id: str | None = None, his_seed: bytes | None = None) -> dict:
    sealed = seal_instruction(Instruction(terminal, order_no, Amount(Direction.REFUND, fen)), key=HIS_KEY,
                              msg_id=msg_id or uuid.uuid4().hex[:20], ts=1_780_000_000, nonce=os.urandom(12), his_key_seed=his_seed)
    return sealed.to_json_obj()


def refund_body(order_no: str, fen: int, **kw) -> dict:
    return {"idempotency_key": uuid.uuid4().hex, "order_no": order_no, "out_refund_no": "R" + uuid.uuid4().hex[:20],
            "amount_fen": fen, "instruction": kw.pop("instruction", None) or instruction(order_no, fen, **kw)}


def error_code(reply: dict) -> str:
    return reply["error"]["code"]


@pytest.mark.parametrize("channel", ["WECHAT", "ALIPAY"])
def test_a_payment_and_its_refund_through_the_gateway(gw, channel) -> None:
    pos = gw.pos()
    order_no = order()
    status, reply = pos.post("/v1/pay", pay_body(order_no, gw.code(channel), 1250, channel=channel))
    assert (status, reply["state"], reply["paid_fen"]) == (200, "success", 1250)
    ledger = gw.fleet.ledger
    assert ledger.payment(reply["out_trade_no"], hospital_id="H001").state is PaymentState.SUCCEEDED
    status, queried = pos.post("/v1/query", {"out_trade_no": reply["out_trade_no"]})
    assert (status, queried["state"]) == (200, "success")
    body = refund_body(order_no, 500)
    status, refunded = pos.post("/v1/refund", body)
    # WeChat v2 accepts a refund and settles it later (processing); the refund query says success.
    assert (status, refunded["state"]) == (200, "success" if channel == "ALIPAY" else "processing"), refunded
    status, rq = pos.post("/v1/refund-query", {"out_refund_no": body["out_refund_no"]})
    assert (status, rq["state"], rq["refunded_fen"]) == (200, "success", 500)
    assert ledger.refund(body["out_refund_no"], hospital_id="H001").state is RefundState.SUCCEEDED
    device = gw.fleet.directory.device("H001-POS1")
    assert device.firmware_version == "1.4.2" and device.last_seen_at is not None


def test_a_retry_gets_the_first_outcome_and_is_charged_once(gw) -> None:
    pos = gw.pos()
    body = pay_body(order(), gw.code(balance="20.00"), 1250)
    first = pos.post("/v1/pay", body)
    again = pos.post("/v1/pay", body)  # the reply was "lost": the POS sends the same request again
    assert first == again and first[1]["state"] == "success"
    account = requests.get(f"{gw.sandbox.url}/sandbox/v1/accounts/{body['auth_code']}", timeout=10).json()
    assert account["balance"] == "7.50"
    status, reply = pos.post("/v1/pay", dict(body, amount_fen=1))
    assert (status, error_code(reply)) == (409, "idempotency_conflict")


def test_concurrent_retries_charge_once(gw) -> None:
    """Eight copies of one request at once (a POS retrying over a flaky network): one charge, and every
    copy gets the outcome or `in_progress`, never an internal error nor `duplicate_order`."""
    pos = gw.pos()
    body = pay_body(order(), gw.code(balance="20.00"), 1250)
    replies: list[tuple[int, dict]] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        replies.append(pos.post("/v1/pay", body))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r[1].get("state") or error_code(r[1]) for r in replies)
    assert codes.count("success") >= 1 and set(codes) <= {"success", "in_progress"}
    assert "duplicate_order" not in codes
    with gw.fleet.ledger.db.transaction(write=False) as tx:
        assert tx.scalar("SELECT COUNT(*) FROM payments WHERE order_no = ?", (body["order_no"],)) == 1


def test_the_same_order_from_another_window_is_refused(gw) -> None:
    order_no = order()
    assert gw.pos(1).post("/v1/pay", pay_body(order_no, gw.code()))[1]["state"] == "success"
    status, reply = gw.pos(2).post("/v1/pay", pay_body(order_no, gw.code(), terminal="T0002"))
    assert (status, error_code(reply)) == (409, "duplicate_order")


def test_a_device_pays_only_for_its_own_terminal(gw) -> None:
    status, reply = gw.pos(1).post("/v1/pay", pay_body(order(), gw.code(), terminal="T0002"))
    assert (status, error_code(reply)) == (403, "wrong_terminal")


def test_a_device_serving_two_terminals_pays_and_refunds_for_both(gw) -> None:
    """One POS at a window where HIS gives each fee type its own terminal ID: it pays for either,
    refunds what either's HIS instruction says, and still not for another window's terminal."""
    gw.fleet.directory.import_terminals("H001", "terminal_id,description,device_id\r\nT0003,window 1 (inpatient),H001-POS1\r\n",
                                        actor=ACTOR)
    pos = gw.pos()
    for terminal in ("T0003", "T0001"):
        order_no = order()
        status, reply = pos.post("/v1/pay", pay_body(order_no, gw.code(), 1000, terminal=terminal))
        assert (status, reply["state"]) == (200, "success")
        assert gw.fleet.ledger.payment(reply["out_trade_no"], hospital_id="H001").terminal_id == terminal
        status, reply = pos.post("/v1/refund", refund_body(order_no, 400, terminal=terminal))
        assert (status, reply["state"]) in ((200, "success"), (200, "processing"))
    status, reply = pos.post("/v1/pay", pay_body(order(), gw.code(), terminal="T0002"))
    assert (status, error_code(reply)) == (403, "wrong_terminal")
    order_no = order()
    pos.post("/v1/pay", pay_body(order_no, gw.code(), 1000, terminal="T0003"))
    status, reply = pos.post("/v1/refund", refund_body(order_no, 400, terminal="T0002"))
    assert (status, error_code(reply)) == (422, "instruction_mismatch")


def test_a_reversed_payment_frees_its_order(gw) -> None:
    pos = gw.pos()
    order_no = order()
    first = pos.post("/v1/pay", pay_body(order_no, gw.code()))[1]
    status, reply = pos.post("/v1/reverse", {"idempotency_key": uuid.uuid4().hex, "out_trade_no": first["out_trade_no"]})
    assert (status, reply["state"]) == (200, "done")
    assert gw.fleet.ledger.payment(first["out_trade_no"], hospital_id="H001").state is PaymentState.CLOSED
    assert pos.post("/v1/pay", pay_body(order_no, gw.code()))[1]["state"] == "success"


# --- refunds need the HIS instruction -----------------------------------------------------------


def test_refunds_are_checked_against_the_his_instruction(gw) -> None:
    pos = gw.pos()
    order_no = order()
    pos.post("/v1/pay", pay_body(order_no, gw.code(), 1000))
    without = refund_body(order_no, 100)
    without["instruction"] = "none"
    assert error_code(pos.post("/v1/refund", without)[1]) == "bad_instruction"
    wrong_amount = refund_body(order_no, 100, instruction=instruction(order_no, 200))
    status, reply = pos.post("/v1/refund", wrong_amount)
    assert (status, error_code(reply)) == (422, "instruction_mismatch")
    other_order = refund_body(order_no, 100, instruction=instruction("MZOTHER", 100))
    assert error_code(pos.post("/v1/refund", other_order)[1]) == "instruction_mismatch"
    forged = instruction(order_no, 100)
    forged["ct"] = forged["ct"][:-4] + ("AAAA" if forged["ct"][-4:] != "AAAA" else "BBBB")
    assert error_code(pos.post("/v1/refund", refund_body(order_no, 100, instruction=forged))[1]) == "bad_instruction"
    # One instruction, one refund, even under a new refund number.
    used = instruction(order_no, 100, msg_id="HIS-R-1")
    assert pos.post("/v1/refund", refund_body(order_no, 100, instruction=used))[1]["state"] in ("success", "processing")
    assert error_code(pos.post("/v1/refund", refund_body(order_no, 100, instruction=used))[1]) == "instruction_used"
    assert error_code(pos.post("/v1/refund", refund_body(order_no, 901))[1]) == "refund_exceeds_collected"


HIS_SEED = bytes(range(100, 132))  # HIS's own Ed25519 key (HIS interface 1.1 B): only HIS holds it


def require_his_signature(gw, public: bytes | None = None) -> None:
    with gw.fleet.ledger.db.transaction() as tx:
        tx.execute("UPDATE hospitals SET require_his_signature = 1, his_public_key = ? WHERE hospital_id = 'H001'",
                   (public or public_key(HIS_SEED),))


def paid_order(gw, fen: int = 1000) -> str:
    order_no = order()
    assert gw.pos().post("/v1/pay", pay_body(order_no, gw.code(), fen))[1]["state"] == "success"
    return order_no


def test_his_signed_refunds_are_enforced_when_the_hospital_requires_them(gw) -> None:
    """HIS interface 1.1 B: with require_his_signature on, a refund without his_sig is refused: the
    envelope key alone (which every POS of the hospital holds) cannot start a refund."""
    require_his_signature(gw)
    order_no = paid_order(gw)
    status, reply = gw.pos().post("/v1/refund", refund_body(order_no, 100))
    assert (status, error_code(reply)) == (403, "his_signature_required")
    assert gw.fleet.ledger.refundable_fen(order_no, hospital_id="H001") == 1000


def test_a_refund_with_a_valid_his_sig_is_accepted_when_required(gw) -> None:
    require_his_signature(gw)
    order_no = paid_order(gw)
    body = refund_body(order_no, 300, instruction=instruction(order_no, 300, his_seed=HIS_SEED))
    status, reply = gw.pos().post("/v1/refund", body)
    assert (status, reply["state"]) in ((200, "success"), (200, "processing")), reply
    assert gw.fleet.ledger.refundable_fen(order_no, hospital_id="H001") == 700


def test_a_his_sig_a_stolen_pos_made_is_refused(gw) -> None:
    """A thief holds the device key and the envelope keys, not HIS's: signing with another key (here
    the device's own) or altering a signed instruction is refused with bad_his_signature."""
    require_his_signature(gw)
    order_no = paid_order(gw)
    by_device = instruction(order_no, 100, his_seed=gw.fleet.seeds["H001-POS1"])
    status, reply = gw.pos().post("/v1/refund", refund_body(order_no, 100, instruction=by_device))
    assert (status, error_code(reply)) == (403, "bad_his_signature")
    signed = instruction(order_no, 100, his_seed=HIS_SEED)
    other = instruction(order_no, 100)  # the same refund sealed afresh by the thief: HIS's sig is over other bytes
    other["his_sig"] = signed["his_sig"]
    status, reply = gw.pos().post("/v1/refund", refund_body(order_no, 100, instruction=other))
    assert (status, error_code(reply)) == (403, "bad_his_signature")
    assert gw.fleet.ledger.refundable_fen(order_no, hospital_id="H001") == 1000


def test_a_present_his_sig_is_checked_even_when_not_required(gw) -> None:
    with gw.fleet.ledger.db.transaction() as tx:
        tx.execute("UPDATE hospitals SET his_public_key = ? WHERE hospital_id = 'H001'", (public_key(HIS_SEED),))
    order_no = paid_order(gw)
    bad = instruction(order_no, 100, his_seed=os.urandom(32))
    assert error_code(gw.pos().post("/v1/refund", refund_body(order_no, 100, instruction=bad))[1]) == "bad_his_signature"
    unsigned = refund_body(order_no, 100)
    assert gw.pos().post("/v1/refund", unsigned)[1]["state"] in ("success", "processing")


# --- device authentication ----------------------------------------------------------------------


def test_requests_are_refused_with_stable_codes(gw) -> None:
    body = pay_body(order(), gw.code())
    stranger = GatewayConnection(gw.server.url, device_id="POS-STRANGER", seed=os.urandom(32))
    assert (lambda r: (r[0], error_code(r[1])))(stranger.post("/v1/pay", body)) == (401, "unknown_device")
    impostor = GatewayConnection(gw.server.url, device_id="H001-POS1", seed=os.urandom(32))
    assert (lambda r: (r[0], error_code(r[1])))(impostor.post("/v1/pay", body)) == (401, "bad_signature")
    raw_pos = gw.pos()
    gw.device_clock.offset = 301
    status, reply, server_time = raw_pos._send("/v1/pay", b"{}")
    assert (status, error_code(reply)) == (401, "clock_skew") and server_time is not None
    gw.device_clock.offset = 0
    raw = requests.post(gw.server.url + "/v1/pay", json=body, timeout=10)
    assert (raw.status_code, raw.json()["error"]["code"]) == (401, "bad_request_auth")
    assert requests.post(gw.server.url + "/v1/pay", data=b"x" * 70_000, timeout=10).status_code == 413


def test_a_pos_with_a_wrong_clock_learns_the_gateways_time(gw) -> None:
    """A POS without network time is ten minutes ahead: refused once with clock_skew (nothing is acted
    on), it signs again with the gateway's time from the reply, and the payment goes through once."""
    gw.device_clock.offset = 600
    body = pay_body(order(), gw.code(balance="20.00"))
    status, reply = gw.pos().post("/v1/pay", body)
    assert (status, reply["state"]) == (200, "success")
    with gw.fleet.ledger.db.transaction(write=False) as tx:
        assert tx.scalar("SELECT COUNT(*) FROM payments WHERE order_no = ?", (body["order_no"],)) == 1


def test_a_replayed_request_is_refused(gw) -> None:
    captured: list = []

    class Recorder(requests.Session):
        def post(self, url, **kw):
            captured.append((url, kw))
            return super().post(url, **kw)

    pos = gw.pos(session=Recorder())
    assert pos.post("/v1/query", {"out_trade_no": "NOPE"})[0] == 422
    url, kw = captured[0]
    replay = requests.post(url, data=kw["data"], headers=kw["headers"], timeout=10)
    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "replay")


def test_a_disabled_device_is_refused_from_its_next_request(gw) -> None:
    pos = gw.pos()
    assert pos.post("/v1/pay", pay_body(order(), gw.code()))[1]["state"] == "success"
    gw.fleet.directory.disable_device("H001-POS1", reason="stolen", actor=ACTOR)
    status, reply = pos.post("/v1/pay", pay_body(order(), gw.code()))
    assert (status, error_code(reply)) == (403, "device_disabled")


def test_plain_http_only_on_loopback(gw) -> None:
    with pytest.raises(GatewayError) as info:
        GatewayHttpServer(gw.server.service, host="0.0.0.0")
    assert info.value.code is GatewayCode.BAD_CONFIG
