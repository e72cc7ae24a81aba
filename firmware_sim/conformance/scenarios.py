"""The scenarios of the conformance kit: what the operator is told, what the kit does as cashier and
patient, what it checks itself, and what it asks the operator to confirm.

Each scenario returns a `ScenarioReport` of named checks. A check the kit can observe (an envelope
HIS sent, a GET it made, an instruction it should not have sent) is decided by the kit; what only
HIS can see (what it booked, the alert it raised) is asked of the operator. A scenario the bridge
cannot play yet is reported as skipped with the reason, never as passed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import requests

from protocol.amount import Amount, format_amount, parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, MsgType, open_envelope, parse_envelope, seal
from protocol.errors import ProtocolError
from protocol.messages import Cancel, Instruction, decode_cancel, decode_instruction
from protocol.strictjson import dumps_compact, loads_object

from firmware_sim.conformance.operator import Operator
from firmware_sim.conformance.proxy import ConformanceProxy, Exchange

SCREEN_POLL_S = 0.1  # the kit polls the simulator's screen while it waits to act as the cashier
# The expiry scenario asks HIS for an instruction that expires this long after it is sent: short,
# so the kit need not wait out the bridge's 10-minute default; long enough for HIS to send it.
EXPIRY_S = 20
RESEND_GRACE_S = 3.0  # how long after step 6 failed the kit watches for a new + for the same order


@dataclass(frozen=True)
class Demo:
    """What the kit needs of the running system (.run/demo.json of `make run HEADLESS=1`)."""

    bridge_url: str
    key: SharedKey
    terminal_id: str
    device_id: str
    sim_url: str
    sandbox_control_url: str
    supervisor_pin: str

    @classmethod
    def load(cls, path: Path) -> "Demo":
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls(d["bridge_url"], SharedKey(d["kid"], d["suite"], bytes.fromhex(d["key_hex"])), d["terminal_id"],
                   d["device_id"], d["sim_url"], d["sandbox_control_url"], d["supervisor_pin"])


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ScenarioReport:
    name: str
    title: str
    checks: list[Check] = field(default_factory=list)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.skipped is None and bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed


class Kit:
    def __init__(self, demo: Demo, operator: Operator, *, timeout_s: float = 120.0, run_id: str | None = None,
                 listen: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.demo = demo
        self.operator = operator
        self.timeout_s = timeout_s
        self.run_id = run_id or os.urandom(3).hex().upper()
        self.http = requests.Session()
        self.proxy = ConformanceProxy(demo.bridge_url, host=listen[0], port=listen[1], msg_id_of=self.msg_id_of)
        self.collected: dict[str, str] = {}  # scenario -> order_no collected there (later scenarios refund it)

    # ------------------------------------------------------------------ what HIS sent

    def instruction_of(self, body: bytes) -> tuple[Envelope, Instruction] | None:
        try:
            envelope = parse_envelope(body, expect=MsgType.INSTRUCTION)
            plaintext = open_envelope(envelope, KeyRing([self.demo.key]))
            return envelope, decode_instruction(plaintext, header_terminal_id=envelope.terminal_id)
        except (ProtocolError, ValueError):
            return None

    def cancel_of(self, body: bytes) -> tuple[Envelope, Cancel] | None:
        try:
            envelope = parse_envelope(body, expect=MsgType.CANCEL)
            plaintext = open_envelope(envelope, KeyRing([self.demo.key]))
            return envelope, decode_cancel(plaintext, header_terminal_id=envelope.terminal_id)
        except (ProtocolError, ValueError):
            return None

    def msg_id_of(self, method: str, path: str, body: bytes) -> str | None:
        """Which instruction an exchange is about: a POST of it, a GET of its result, a withdrawal."""
        if method == "POST" and path == "/v1/instructions":
            found = self.instruction_of(body)
            return found[0].msg_id if found else None
        if method == "GET" and path.startswith("/v1/results/"):
            return path[len("/v1/results/"):]
        if method == "POST" and path.startswith("/v1/instructions/") and path.endswith("/cancel"):
            return path[len("/v1/instructions/"):-len("/cancel")]
        return None

    def await_instruction(self, report: ScenarioReport, order_no: str, amount: str, since: int) -> str | None:
        """The msg_id of the instruction HIS sent for `order_no`, checked against what it was asked."""
        def is_it(x: Exchange) -> bool:
            found = self.instruction_of(x.request_body) if x.status == 0 and x.method == "POST" and x.path == "/v1/instructions" else None
            return found is not None and found[1].order_no == order_no

        seen = self.proxy.recorder.wait_for(is_it, self.timeout_s, since)
        if not report.check("HIS sent the instruction", seen is not None,
                            f"no sealed instruction for order {order_no} reached the kit within {self.timeout_s:g} s"):
            return None
        assert seen is not None
        envelope, instruction = self.instruction_of(seen.request_body)  # type: ignore[misc]  # instruction_of returns a pair once is_it matched the request
        wanted = parse_amount(amount)
        report.check("the instruction says what was asked", instruction.amount == wanted
                     and instruction.terminal_id == self.demo.terminal_id,
                     f"asked {amount} on {self.demo.terminal_id}, HIS sent {instruction.amount} on {instruction.terminal_id}")
        return envelope.msg_id

    def await_result(self, msg_id: str, since: int, *, genuine: bool = True) -> Exchange | None:
        return self.proxy.recorder.wait_for(
            lambda x: x.status == 200 and self.msg_id_of(x.method, x.path, x.request_body) == msg_id
            and (not genuine or not x.tampered), self.timeout_s, since)

    def new_instructions_for(self, order_no: str, since: int, except_msg_id: str, *, within_s: float = 0.0) -> list[str]:
        """New instructions (other msg_ids) HIS sent for `order_no` since `since`; with within_s, wait that
        long for a first one (a careless HIS resends from its alert path, a moment after step 6 failed)."""
        def is_new(x: Exchange) -> bool:
            found = self.instruction_of(x.request_body) if x.status == 0 and x.method == "POST" and x.path == "/v1/instructions" else None
            return bool(found and found[1].order_no == order_no and found[0].msg_id != except_msg_id)
        if within_s:
            self.proxy.recorder.wait_for(is_new, within_s, since)
        found = [self.instruction_of(x.request_body) for x in self.proxy.recorder.since(since) if is_new(x)]
        return [pair[0].msg_id for pair in found if pair is not None]

    def result_of(self, exchange: Exchange) -> dict[str, object]:
        envelope = parse_envelope(exchange.response_body, expect=MsgType.RESULT)
        return loads_object(open_envelope(envelope, KeyRing([self.demo.key])), what="result")

    # ------------------------------------------------------------------ the cashier and the patient

    def code(self, behaviour: str = "success", channel: str = "WECHAT") -> str:
        r = self.http.post(f"{self.demo.sandbox_control_url}/codes", json={"channel": channel, "behaviour": behaviour}, timeout=10)
        r.raise_for_status()
        return str(r.json()["code"])

    def screen(self) -> dict[str, object]:
        return dict(self.http.get(f"{self.demo.sim_url}/v1/screen", timeout=10).json())

    def wait_screen_gone(self, screen: str, order_no: str) -> bool:
        """True if the POS still shows `screen` for `order_no` after a short while (it should not)."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            now = self.screen()
            if not (now.get("screen") == screen and now.get("order_no") == order_no):
                return False
            time.sleep(SCREEN_POLL_S)
        return True

    def wait_screen(self, screen: str, order_no: str | None = None) -> bool:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            now = self.screen()
            if now.get("screen") == screen and (order_no is None or now.get("order_no") == order_no):
                return True
            time.sleep(SCREEN_POLL_S)
        return False

    def scan(self, code: str) -> None:
        self.http.post(f"{self.demo.sim_url}/v1/scan", json={"code": code}, timeout=30).raise_for_status()

    def confirm_refund(self) -> None:
        self.http.post(f"{self.demo.sim_url}/v1/refund/confirm", json={"pin": self.demo.supervisor_pin}, timeout=30).raise_for_status()

    def order(self, tag: str) -> str:
        return f"CONF{self.run_id}{tag}"[:32]

    def send(self, report: ScenarioReport, order_no: str, amount: str, why: str = "", *,
             expires_in: int | None = None) -> str | None:
        since = self.proxy.recorder.mark()
        action: dict[str, object] = {"send": amount, "order_no": order_no, "terminal_id": self.demo.terminal_id}
        if expires_in is not None:
            action["expires_in"] = expires_in
            why = f"Give it \"expires_at\": now + {expires_in} (unix seconds) in the plaintext. {why}".strip()
        self.operator.step(report.name, f"From HIS, send {amount} for order {order_no} on terminal {self.demo.terminal_id} "
                           f"to {self.proxy.url} (the kit, in place of the bridge).{' ' + why if why else ''}", action)
        return self.await_instruction(report, order_no, amount, since)

    def polled_while_waiting(self, msg_id: str, since: int, code: str) -> bool:
        """HIS saw a 202 whose last_event has `code` (it polls while the instruction goes on)."""
        def saw(x: Exchange) -> bool:
            if x.status != 202 or self.msg_id_of(x.method, x.path, x.request_body) != msg_id:
                return False
            try:
                event = json.loads(x.response_body).get("last_event") or {}
            except ValueError:
                return False
            return event.get("code") == code
        return self.proxy.recorder.wait_for(saw, self.timeout_s, since) is not None


# ---------------------------------------------------------------------- scenarios


def collect(kit: Kit, report: ScenarioReport) -> None:
    order = kit.order("C")
    since = kit.proxy.recorder.mark()
    msg_id = kit.send(report, order, "+12.34")
    if msg_id is None:
        return
    if not report.check("the POS shows the collection", kit.wait_screen("awaiting_scan", order)):
        return
    kit.scan(kit.code())
    delivered = kit.await_result(msg_id, since)
    if report.check("HIS received the result", delivered is not None,
                    f"HIS never fetched the result of {msg_id} (POST ...?wait=N, then GET /v1/results/{msg_id}?wait=N)"):
        kit.collected["collect"] = order
    report.check("HIS booked it", kit.operator.confirm(report.name, "booked",
                 f"Did HIS book order {order} as paid 12.34 (WeChat Pay), exactly once?", {"order_no": order, "amount": "+12.34"}))


def decline_then_another_code(kit: Kit, report: ScenarioReport) -> None:
    order = kit.order("D")
    since = kit.proxy.recorder.mark()
    msg_id = kit.send(report, order, "+20.00", "The patient's first code will be declined; the cashier scans another.")
    if msg_id is None or not report.check("the POS shows the collection", kit.wait_screen("awaiting_scan", order)):
        return
    kit.scan(kit.code("insufficient"))
    report.check("the POS shows the decline", kit.wait_screen("declined", order))
    report.check("HIS learned the decline while it happened (a 202 with last_event insufficient_funds)",
                 kit.polled_while_waiting(msg_id, since, "insufficient_funds"),
                 "HIS did not poll while the instruction waited (GET /v1/results/{msg_id}?wait=N in a loop)")
    kit.scan(kit.code())
    report.check("HIS received the result", kit.await_result(msg_id, since) is not None)
    extra = kit.new_instructions_for(order, since, msg_id)
    report.check("HIS sent no second + while the first was unfinished", not extra, f"new msg_id(s) for {order}: {extra}")
    report.check("HIS booked it", kit.operator.confirm(report.name, "booked",
                 f"Did HIS book order {order} as paid 20.00, exactly once (the declined code booked nothing)?",
                 {"order_no": order, "amount": "+20.00"}))


def partial_refunds(kit: Kit, report: ScenarioReport) -> None:
    order = kit.collected.get("collect")
    if order is None:
        report.skipped = "needs the order collected in scenario 'collect'"
        return
    for amount, left in (("-5.00", "7.34"), ("-3.00", "4.34")):
        since = kit.proxy.recorder.mark()
        msg_id = kit.send(report, order, amount, "A partial refund; the supervisor confirms it on the POS.")
        if msg_id is None or not report.check(f"the POS asks the supervisor ({amount})", kit.wait_screen("awaiting_supervisor", order)):
            return
        kit.confirm_refund()
        report.check(f"HIS received the refund result ({amount})", kit.await_result(msg_id, since) is not None)
        report.check(f"HIS booked the refund ({amount})", kit.operator.confirm(
            report.name, "booked", f"Did HIS book a refund of {amount[1:]} on order {order}, leaving {left} refundable?",
            {"order_no": order, "amount": amount}))


def duplicate_plus(kit: Kit, report: ScenarioReport) -> None:
    order = kit.collected.get("collect")
    if order is None:
        report.skipped = "needs the order collected in scenario 'collect'"
        return
    since = kit.proxy.recorder.mark()
    msg_id = kit.send(report, order, "+12.34", "This order is already paid: send it as a NEW instruction (a new msg_id).")
    if msg_id is None:
        return
    delivered = kit.await_result(msg_id, since)
    if report.check("HIS received the result", delivered is not None):
        assert delivered is not None
        result = kit.result_of(delivered)
        report.check("the answer is duplicate_order", result.get("error_code") == "duplicate_order", json.dumps(result))
    report.check("HIS booked no second payment", kit.operator.confirm(
        report.name, "not_booked", f"Did HIS book NOTHING new for order {order} and show it as already paid?",
        {"order_no": order, "amount": "+12.34", "msg_id": msg_id}))


def _flip_ct(body: bytes) -> bytes:
    envelope = parse_envelope(body)
    ct = bytearray(envelope.ct)
    ct[0] ^= 0x01
    return replace(envelope, ct=bytes(ct)).to_bytes()


def _forge_amount(key: SharedKey) -> Callable[[bytes], bytes]:
    """A correctly sealed result (the shared key is enough for that) whose amount is not the instruction's."""
    def forge(body: bytes) -> bytes:
        envelope = parse_envelope(body, expect=MsgType.RESULT)
        result = loads_object(open_envelope(envelope, KeyRing([key])), what="result")
        amount = parse_amount(str(result["amount"]))
        result["amount"] = format_amount(Amount(amount.direction, amount.fen * 2))
        forged = seal(msg_type=MsgType.RESULT, key=key, msg_id=envelope.msg_id, ts=envelope.ts, party_id=envelope.party_id,
                      reply_to=envelope.reply_to, plaintext=dumps_compact(result), nonce=os.urandom(12))
        obj = forged.to_json_obj()
        original = json.loads(body)
        if "sig" in original:
            obj["sig"] = original["sig"]  # the device's signature, now over other bytes
        return json.dumps(obj).encode()
    return forge


def _refused_then_asked_again(kit: Kit, report: ScenarioReport, tag: str, amount: str, tamper: Callable[[bytes], bytes],
                              what: str) -> None:
    order = kit.order(tag)
    since = kit.proxy.recorder.mark()
    msg_id = kit.send(report, order, amount)
    if msg_id is None or not report.check("the POS shows the collection", kit.wait_screen("awaiting_scan", order)):
        return
    kit.proxy.arm_tamper(msg_id, tamper)
    kit.scan(kit.code())
    bad = kit.proxy.recorder.wait_for(lambda x: x.tampered, kit.timeout_s, since)
    if not report.check(f"HIS was handed {what}", bad is not None, "HIS never fetched the result"):
        return
    assert bad is not None
    genuine = kit.await_result(msg_id, kit.proxy.recorder.after(bad))  # HIS may ask again at once
    report.check("HIS asked again for the same msg_id (GET /v1/results or the identical POST)", genuine is not None,
                 f"after the altered answer HIS did not ask again for {msg_id}")
    report.check("HIS refused the altered answer and alerted", kit.operator.confirm(
        report.name, "alerted", f"Did HIS refuse the first answer for order {order} (step 6) and raise an alert, "
                                f"without booking it?", {"order_no": order, "amount": amount, "msg_id": msg_id}))
    report.check("HIS booked the genuine answer once", kit.operator.confirm(
        report.name, "booked", f"Did HIS then book order {order} as paid {amount[1:]}, exactly once?",
        {"order_no": order, "amount": amount}))
    # Checked last, after a grace period: a careless HIS resends from its alert path, which may run
    # after it has already asked again for the genuine answer.
    extra = kit.new_instructions_for(order, since, msg_id, within_s=RESEND_GRACE_S)
    report.check("HIS sent no new + for the order", not extra, f"new msg_id(s) for {order}: {extra}")


def tampered_result(kit: Kit, report: ScenarioReport) -> None:
    _refused_then_asked_again(kit, report, "T", "+1.00", _flip_ct, "a result altered on the way (one bit of its ciphertext)")


def forged_amount(kit: Kit, report: ScenarioReport) -> None:
    _refused_then_asked_again(kit, report, "F", "+2.00", _forge_amount(kit.demo.key),
                              "a result sealed with the shared key but for a different amount")


def _part_c(kit: Kit, report: ScenarioReport) -> bool:
    """Whether the bridge offers 1.1 part C (an older one answers 404 for the cancel endpoint)."""
    probe = kit.http.post(f"{kit.demo.bridge_url}/v1/instructions/CONF-PROBE/cancel", data=b"{}", timeout=10)
    if probe.status_code == 405 or (probe.status_code == 404 and "no such endpoint" in probe.text):
        report.skipped = ("this bridge does not offer instruction expiry and withdrawal yet (HIS interface 1.1 part C): "
                          "nothing to check; HIS must not rely on them against it")
        return False
    return True


def expiry(kit: Kit, report: ScenarioReport) -> None:
    if not _part_c(kit, report):
        return
    order = kit.order("E")
    since = kit.proxy.recorder.mark()
    sent_at = time.time()
    msg_id = kit.send(report, order, "+4.00", "Nobody will scan: it must end by itself.", expires_in=EXPIRY_S)
    if msg_id is None:
        return
    sent = kit.proxy.recorder.wait_for(lambda x: kit.msg_id_of(x.method, x.path, x.request_body) == msg_id
                                       and x.method == "POST", 1.0, since)
    found = kit.instruction_of(sent.request_body) if sent is not None else None
    expires_at = found[1].expires_at if found else None
    report.check("the instruction carries expires_at", expires_at is not None
                 and sent_at + EXPIRY_S - 60 <= expires_at <= sent_at + EXPIRY_S + 60,
                 f"expires_at {expires_at}, asked for about {int(sent_at) + EXPIRY_S}")
    if not report.check("the POS shows the collection", kit.wait_screen("awaiting_scan", order)):
        return
    delivered = kit.await_result(msg_id, since)  # the cashier does nothing: the POS ends it at expires_at
    if report.check("HIS received the result (it did not wait forever)", delivered is not None,
                    f"HIS never fetched the result of {msg_id}: keep polling GET /v1/results/{msg_id}?wait=N"):
        assert delivered is not None
        result = kit.result_of(delivered)
        report.check("the answer is CLOSED, expired", (result.get("pay_status"), result.get("error_code")) == ("CLOSED", "expired"),
                     json.dumps(result))
    extra = kit.new_instructions_for(order, since, msg_id)
    report.check("HIS sent no second + while the first was unfinished", not extra, f"new msg_id(s) for {order}: {extra}")
    report.check("HIS booked nothing and shows the order unpaid", kit.operator.confirm(
        report.name, "nothing_booked", f"Did HIS book NOTHING for order {order} and show that the instruction expired "
                                       "(nothing was collected)?", {"order_no": order, "amount": "+4.00", "msg_id": msg_id}))


def withdrawal(kit: Kit, report: ScenarioReport) -> None:
    if not _part_c(kit, report):
        return
    order = kit.order("W")
    since = kit.proxy.recorder.mark()
    msg_id = kit.send(report, order, "+5.00", "The patient will leave the window before paying.")
    if msg_id is None or not report.check("the POS shows the collection", kit.wait_screen("awaiting_scan", order)):
        return
    mark = kit.proxy.recorder.mark()
    kit.operator.step(report.name, f"The patient left. From HIS, withdraw instruction {msg_id} (order {order}): POST a "
                      f"sealed \"cancel\" envelope to {kit.proxy.url}/v1/instructions/{msg_id}/cancel",
                      {"withdraw": msg_id, "order_no": order, "terminal_id": kit.demo.terminal_id})
    path = f"/v1/instructions/{msg_id}/cancel"
    posted = kit.proxy.recorder.wait_for(lambda x: x.method == "POST" and x.path == path and x.status != 0,
                                         kit.timeout_s, mark)
    if not report.check("HIS sent a withdrawal", posted is not None, f"no POST {path} within {kit.timeout_s:g} s"):
        return
    assert posted is not None
    found = kit.cancel_of(posted.request_body)
    report.check("the withdrawal is a sealed cancel of that instruction and order",
                 found is not None and found[0].reply_to == msg_id and found[1].order_no == order
                 and found[1].terminal_id == kit.demo.terminal_id,
                 "the body must be a cancel envelope (type cancel, reply_to = the msg_id) sealed with the shared key, "
                 f"plaintext {{\"terminal_id\", \"order_no\": {order!r}}}; the bridge answered {posted.status}")
    delivered = kit.await_result(msg_id, since)
    if report.check("HIS received the result", delivered is not None):
        assert delivered is not None
        result = kit.result_of(delivered)
        report.check("the answer is CLOSED, withdrawn", (result.get("pay_status"), result.get("error_code")) == ("CLOSED", "withdrawn"),
                     json.dumps(result))
    report.check("the POS no longer asks for a code", not kit.wait_screen_gone("awaiting_scan", order))
    report.check("HIS booked nothing", kit.operator.confirm(
        report.name, "nothing_booked", f"Did HIS book NOTHING for order {order} and show it withdrawn?",
        {"order_no": order, "amount": "+5.00", "msg_id": msg_id}))


SCENARIOS: dict[str, tuple[str, Callable[[Kit, ScenarioReport], None]]] = {
    "collect": ("a collection, one scan", collect),
    "decline": ("a declined code, then another code", decline_then_another_code),
    "partial-refunds": ("two partial refunds of the collected order", partial_refunds),
    "duplicate-plus": ("a second + for an order already paid", duplicate_plus),
    "tampered-result": ("a result altered on the way", tampered_result),
    "forged-amount": ("a step-6 failure: a sealed result for another amount", forged_amount),
    "expiry": ("an instruction nobody scans ends by itself (HIS interface 1.1 part C)", expiry),
    "withdrawal": ("HIS withdraws an instruction (HIS interface 1.1 part C)", withdrawal),
}


def run(kit: Kit, names: list[str] | None = None) -> list[ScenarioReport]:
    reports = []
    for name in names or list(SCENARIOS):
        title, play = SCENARIOS[name]
        report = ScenarioReport(name, title)
        try:
            play(kit, report)
        except (requests.RequestException, ProtocolError, ValueError, KeyError) as exc:
            report.check("the scenario ran", False, f"{type(exc).__name__}: {exc}")
        reports.append(report)
        kit.http.post(f"{kit.demo.sim_url}/v1/dismiss", timeout=10)
    return reports
