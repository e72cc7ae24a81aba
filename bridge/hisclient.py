"""HIS reference client: what an HIS does to collect or refund through the bridge (his-interface 1.1).

Read this top to bottom; it is the worked example in docs/his-interface.md. An HIS in Java, .NET or
Delphi does the same six things:

  1. load the shared key (the kid agreed in step 1) and our copy of the device registry (step 2), with
     each device's Ed25519 public key;
  2. make a new msg_id for every new instruction (a retry re-sends the SAME envelope bytes);
  3. seal the instruction: plaintext JSON, AES-256-GCM or SM4-GCM, a fresh random 12-byte nonce,
     associated data = "v|type|suite|kid|msg_id|ts|terminal_id|" (protocol.envelope does this);
  4. POST it to /v1/instructions?wait=N; 200 carries the result, 202 means "not yet": long-poll
     GET /v1/results/{msg_id}?wait=N; on a network error re-POST the identical bytes (never a new msg_id
     for the same payment: the bridge answers a retry from its journal and never charges twice);
  5. an HTTP error is a protocol refusal {"error": {"code", "message"}}: nothing was executed;
  6. verify the result before believing it: decrypt/verify the envelope, its device_id is in our device
     registry and its `sig` verifies with that device's public key (so a holder of the shared key
     cannot forge it), its reply_to is the msg_id we sent, its order_no and amount are ours. Only then
     book it. A result that fails any of these is not booked (raise an alert, ask again with GET).

CLI: his-client pay +12.50 --order MZ1 | refund -5.00 --order MZ1 | status MSG_ID  (--help for options)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import requests

from protocol.amount import Amount, parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, receive_result, seal_instruction
from protocol.errors import ErrorCode, ProtocolError
from protocol.ids import check_order_no
from protocol.keyfile import KeyFileError, parse_keyfile
from protocol.messages import Instruction, Result, encode_result
from protocol.registry import RegistryError, parse_device_csv

MAX_WAIT_PER_REQUEST = 120  # the bridge's limit for ?wait=
POST_RETRIES = 3  # identical re-POSTs after a network error


class ClientError(Exception):
    """The bridge refused (code from the spec), or step 6 failed, or the bridge was unreachable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass(frozen=True)
class ClientConfig:
    bridge_url: str  # http://127.0.0.1:8765
    key: SharedKey  # the key we seal with (step 1)
    keys: KeyRing  # all our keys: results are verified with the kid they name
    terminal_id: str  # this cashier window's software terminal id (step 2)
    device_keys: Mapping[str, bytes]  # the device registry we received (step 2): device_id -> Ed25519 public key
    http_timeout_s: float = 10.0

    @property
    def device_ids(self) -> frozenset[str]:
        return frozenset(self.device_keys)


@dataclass(frozen=True)
class Outcome:
    msg_id: str
    result: Result | None  # verified (step 6); None while unfinished
    state: str | None  # the bridge's state while unfinished ("queued", "awaiting_scan", ...)
    last_event: dict[str, object] | None = None  # while unfinished: what the HIS operator should know (why it waits)


# ------------------------------------------------------------------ steps 2 and 3


def new_msg_id(terminal_id: str) -> str:
    """Unique per instruction: terminal, time and randomness (<= 64 chars of [A-Za-z0-9_-])."""
    return f"HIS-{terminal_id[:24]}-{time.time_ns() // 1_000_000}-{os.urandom(4).hex()}"


def seal(config: ClientConfig, order_no: str, amount_text: str, msg_id: str) -> Envelope:
    amount = parse_amount(amount_text)  # the one strict parser: "+12.50" or "-5.00", nothing else
    instruction = Instruction(config.terminal_id, check_order_no(order_no), amount)
    return seal_instruction(instruction, key=config.key, msg_id=msg_id, ts=int(time.time()), nonce=os.urandom(12))


# ------------------------------------------------------------------ steps 4 and 5


def _answer(response: requests.Response, config: ClientConfig, sent_msg_id: str, instruction_ts: int | None,
            order_no: str | None, amount: Amount | None) -> Outcome:
    if response.status_code == 200:
        return Outcome(sent_msg_id, verify_result(config, response.content, sent_msg_id, instruction_ts, order_no, amount), None)
    try:
        body = response.json()
    except ValueError:
        raise ClientError("bad_response", f"HTTP {response.status_code} without a JSON body") from None
    if response.status_code == 202:
        return Outcome(body["msg_id"], None, body["state"], body.get("last_event"))
    error = body.get("error", {}) if isinstance(body, dict) else {}
    raise ClientError(error.get("code", f"http_{response.status_code}"), error.get("message", response.reason))


def submit(config: ClientConfig, envelope: Envelope, order_no: str, wait_s: int,
           session: requests.Session | None = None, *, amount: Amount) -> Outcome:
    """POST the envelope, then long-poll until a result or `wait_s` has passed. `order_no` and
    `amount` are the instruction's: step 6 checks the result against them."""
    http = session or requests.Session()
    body = envelope.to_bytes()
    deadline = time.monotonic() + wait_s
    for attempt in range(POST_RETRIES + 1):
        try:
            response = http.post(f"{config.bridge_url}/v1/instructions", params={"wait": min(wait_s, MAX_WAIT_PER_REQUEST)},
                                 data=body, headers={"Content-Type": "application/json"},
                                 timeout=config.http_timeout_s + min(wait_s, MAX_WAIT_PER_REQUEST))
            break
        except requests.ConnectionError as exc:
            if attempt == POST_RETRIES:
                raise ClientError("bridge_unreachable", f"{config.bridge_url}: {exc}") from None
            time.sleep(0.5 * (attempt + 1))  # then re-send the identical bytes: a safe retry
    outcome = _answer(response, config, envelope.msg_id, envelope.ts, order_no, amount)
    while outcome.result is None and (left := int(deadline - time.monotonic())) > 0:
        outcome = query(config, envelope.msg_id, left, instruction_ts=envelope.ts, order_no=order_no, amount=amount, session=http)
    return outcome


def query(config: ClientConfig, msg_id: str, wait_s: int = 0, *, instruction_ts: int | None = None,
          order_no: str | None = None, amount: Amount | None = None, session: requests.Session | None = None) -> Outcome:
    """GET the result of `msg_id`. Pass the instruction's order_no and amount whenever you have
    them (your HIS always has: it stored the instruction); `status` on the command line has not."""
    http = session or requests.Session()
    wait = min(max(wait_s, 0), MAX_WAIT_PER_REQUEST)
    try:
        response = http.get(f"{config.bridge_url}/v1/results/{msg_id}", params={"wait": wait},
                            timeout=config.http_timeout_s + wait)
    except requests.RequestException as exc:
        raise ClientError("bridge_unreachable", f"{config.bridge_url}: {exc}") from None
    return _answer(response, config, msg_id, instruction_ts, order_no, amount)


# ------------------------------------------------------------------ step 6


def verify_result(config: ClientConfig, body: bytes, sent_msg_id: str, instruction_ts: int | None = None,
                  order_no: str | None = None, amount: Amount | None = None) -> Result:
    try:
        # The tag proves a key holder sealed it; `sig` proves the registered device said it (1.1 A).
        received = receive_result(body, config.keys, now=time.time(), instruction_ts=instruction_ts,
                                  device_keys=config.device_keys.get)
    except ProtocolError as exc:  # decrypt/verify failed: not from a key holder or not signed by the device, or altered
        raise ClientError(exc.code.value, f"result rejected in step 6: {exc.message}") from None
    result, envelope = received.message, received.envelope
    assert isinstance(result, Result)
    if envelope.reply_to != sent_msg_id:
        raise ClientError(ErrorCode.AUTH_FAILED.value, f"result answers {envelope.reply_to}, we asked about {sent_msg_id}")
    if result.device_id not in config.device_ids:
        raise ClientError(ErrorCode.AUTH_FAILED.value, f"device_id {result.device_id} is not in our device registry")
    if order_no is not None and result.order_no != order_no:
        raise ClientError(ErrorCode.AUTH_FAILED.value, f"result is for order {result.order_no}, we sent {order_no}")
    if amount is not None and result.amount != amount:
        raise ClientError(ErrorCode.AUTH_FAILED.value, f"result is for amount {result.amount}, we sent {amount}")
    return result


# ------------------------------------------------------------------ configuration and CLI


def load_config(args: argparse.Namespace) -> ClientConfig:
    if args.demo:
        demo = json.loads(Path(args.demo).read_text(encoding="utf-8"))
        key = SharedKey(demo["kid"], demo["suite"], bytes.fromhex(demo["key_hex"]))
        registry = Path(args.demo).parent / demo["device_registry"] if not Path(demo["device_registry"]).is_absolute() \
            else Path(demo["device_registry"])
        devices = _device_keys(registry.read_text(encoding="utf-8"), str(registry))
        return ClientConfig(args.bridge or demo["bridge_url"], key, KeyRing([key]), args.terminal or demo["terminal_id"],
                            devices)
    if not args.key_file or not args.devices:
        raise ClientError("usage", "give --key-file and --devices (or --demo FILE)")
    ring = parse_keyfile(Path(args.key_file).read_text(encoding="utf-8"), args.key_file)
    active = ring.active()
    if args.kid:
        key = ring.key_for(args.kid, next((k.suite for k in ring if k.kid == args.kid), ""))
    elif len(active) == 1:
        key = active[0]
    else:
        raise ClientError("usage", f"the key file has {len(active)} active keys; choose one with --kid")
    devices = _device_keys(Path(args.devices).read_text(encoding="utf-8"), args.devices)
    return ClientConfig(args.bridge or "http://127.0.0.1:8765", key, ring, args.terminal or "T0001", devices)


def _device_keys(text: str, source: str) -> dict[str, bytes]:
    """device_id -> public key from the device registry of step 2 (1.1: device_id,model,serial_no,public_key)."""
    devices = parse_device_csv(text, source)
    missing = [d.device_id for d in devices if d.public_key is None]
    if missing:
        raise ClientError("usage", f"{source}: no public_key for {', '.join(missing)}; ask for the device registry of "
                                   "his-interface 1.1 (device_id,model,serial_no,public_key)")
    return {d.device_id: d.public_key for d in devices if d.public_key is not None}


def show(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        body: dict[str, object] = {"msg_id": outcome.msg_id}
        if outcome.result is not None:
            body.update(verified=True, result=encode_result(outcome.result))
        else:
            body["state"] = outcome.state
        print(json.dumps(body, ensure_ascii=False))
        return
    if outcome.result is None:
        print(f"{outcome.msg_id}: not finished yet (state {outcome.state}); ask again with: his-client status {outcome.msg_id}")
        return
    r = outcome.result
    print(f"verified result for {outcome.msg_id}: {r.pay_status.value} {r.pay_channel.value if r.pay_channel else '-'} {r.amount}")
    print(f"  order_no      {r.order_no}")
    print(f"  pay_order_no  {r.pay_order_no or '-'}")
    print(f"  device_id     {r.device_id} (in our device registry; signed with its key)")
    print(f"  finished_at   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.finished_at))}")
    if r.error_code:
        print(f"  error         {r.error_code}: {r.error_message or ''}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="his-client", description="HIS reference client for the bridge (step 3 to step 6).")
    _options(parser, argparse.SUPPRESS)
    common = argparse.ArgumentParser(add_help=False)  # the same options, accepted after the command too
    _options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, sign in (("pay", "+"), ("refund", "-")):
        p = sub.add_parser(name, parents=[common],
                           help=f"{'collect' if sign == '+' else 'refund'} an amount such as {sign}12.50")
        p.add_argument("amount", help=f"signed, two decimals: {sign}12.50")
        p.add_argument("--order", required=True, help="HIS order number, [A-Za-z0-9_-]{1,32}")
        p.add_argument("--wait", type=int, default=60, help="seconds to wait for the result (default 60)")
        p.add_argument("--msg-id", help="re-send under this msg_id (default: a new one)")
        p.set_defaults(sign=sign)
    p = sub.add_parser("status", parents=[common], help="fetch and verify the result of MSG_ID")
    p.add_argument("msg_id")
    p.add_argument("--wait", type=int, default=0)
    return parser


def _options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--bridge", default=default, help="bridge URL (default http://127.0.0.1:8765)")
    parser.add_argument("--key-file", default=default, help="shared-key file (his-keys-v1 JSON)")
    parser.add_argument("--kid", default=default, help="which key to seal with (default: the only active one)")
    parser.add_argument("--devices", default=default, help="device registry CSV received in step 2 (device_id,model,serial_no,public_key)")
    parser.add_argument("--terminal", default=default, help="software terminal id of this window (default T0001)")
    parser.add_argument("--demo", default=default, metavar="FILE", help="take all of the above from a demo JSON (.run/demo.json)")
    parser.add_argument("--json", default=default, action="store_true", help="print one JSON object instead of text")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("bridge", "key_file", "kid", "devices", "terminal", "demo"):
        setattr(args, name, getattr(args, name, None))
    args.json = getattr(args, "json", False)
    try:
        config = load_config(args)
        if args.command == "status":
            outcome = query(config, args.msg_id, args.wait)
        else:
            if not args.amount.startswith(args.sign):
                raise ClientError("usage", f"{args.command} takes an amount starting with {args.sign!r}, as in {args.sign}12.50")
            envelope = seal(config, args.order, args.amount, args.msg_id or new_msg_id(config.terminal_id))
            outcome = submit(config, envelope, args.order, max(args.wait, 0), amount=parse_amount(args.amount))
        show(outcome, args.json)
        return 0 if outcome.result is not None else 3
    except ClientError as exc:
        print(f"his-client: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except (ProtocolError, KeyFileError, RegistryError, OSError, KeyError, ValueError) as exc:
        print(f"his-client: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
