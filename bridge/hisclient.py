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
     book it. A result that fails any of these is not booked: raise an alert, ask again with GET
     (`STEP6_ASK_AGAIN` times; the bridge serves what it verified), and never send a new `+` for
     that order under a new msg_id until the first is settled (docs/his-interface.md §10).

1.1 C: every instruction may carry `expires_at` (`--expires-in`); a 202 says `state`, `since`,
`expires_at` and `last_event` (a declined code, while the cashier may scan another); `410
expired_undelivered` means no POS ever took it (nothing was charged); `cancel` withdraws one.

CLI: his-client pay +12.50 --order MZ1 | refund -5.00 --order MZ1 | status MSG_ID | status --last |
     cancel MSG_ID --order MZ1   (--help for options)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import requests

from protocol.amount import Amount, parse_amount
from protocol.crypto import KeyRing, SharedKey
from protocol.envelope import Envelope, receive_result, seal_cancel, seal_instruction
from protocol.errors import CodedError, ErrorCode, ProtocolError
from protocol.ids import check_order_no
from protocol.keyfile import KeyFileError, parse_keyfile
from protocol.messages import Cancel, Instruction, Result, encode_result
from protocol.registry import RegistryError, parse_device_csv

MAX_WAIT_PER_REQUEST = 120  # the bridge's limit for ?wait=
POST_RETRIES = 3  # identical re-POSTs after a network error
# A 200 whose result fails step 6 is not booked; we ask the bridge again this many times (GET), since
# it serves only what it verified: a failure that persists is an alert for a person, never a re-send.
STEP6_ASK_AGAIN = 2
# `--last` remembers the last instruction sent with --demo here (next to the demo file).
LAST_FILE = "his-client-last.json"


class ClientError(CodedError):
    """The bridge refused (code from the spec), or step 6 failed, or the bridge was unreachable."""

    code = "his_client"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Step6Failure(ClientError):
    """A 200 whose result failed step 6 (sig, device, reply_to, order or amount): do not book it,
    raise an alert; it was asked again (GET) and still failed."""


@dataclass(frozen=True)
class ClientConfig:
    bridge_url: str  # http://127.0.0.1:8765
    key: SharedKey  # the key we seal with (step 1)
    keys: KeyRing  # all our keys: results are verified with the kid they name
    terminal_id: str  # this cashier window's software terminal id (step 2)
    device_keys: Mapping[str, bytes]  # the device registry we received (step 2): device_id -> Ed25519 public key
    http_timeout_s: float = 10.0
    # Called when a result fails step 6 (before asking again): your HIS raises its alert here.
    # Default: an ALERT line on standard error.
    on_alert: Callable[[str, "ClientError"], None] | None = None

    @property
    def device_ids(self) -> frozenset[str]:
        return frozenset(self.device_keys)


@dataclass(frozen=True)
class Outcome:
    msg_id: str
    result: Result | None  # verified (step 6); None while unfinished
    state: str | None  # the bridge's state while unfinished ("queued", "awaiting_scan", ...)
    last_event: dict[str, object] | None = None  # while unfinished: what the HIS operator should know (a decline, why it waits)
    since: int | None = None  # while unfinished: when `state` began (unix s)
    expires_at: int | None = None  # while unfinished: when it expires (1.1 C)


# ------------------------------------------------------------------ steps 2 and 3


def new_msg_id(terminal_id: str) -> str:
    """Unique per instruction: terminal, time and randomness (<= 64 chars of [A-Za-z0-9_-])."""
    return f"HIS-{terminal_id[:24]}-{time.time_ns() // 1_000_000}-{os.urandom(4).hex()}"


def seal(config: ClientConfig, order_no: str, amount: Amount | str, msg_id: str, *, expires_at: int | None = None) -> Envelope:
    """Seal an instruction. `amount` is an `Amount`, or its wire text ("+12.50"), which goes through
    the one strict parser here (a caller that parsed it already passes the `Amount`)."""
    if not isinstance(amount, Amount):
        amount = parse_amount(amount)  # the one strict parser: "+12.50" or "-5.00", nothing else
    instruction = Instruction(config.terminal_id, check_order_no(order_no), amount, expires_at=expires_at)
    return seal_instruction(instruction, key=config.key, msg_id=msg_id, ts=int(time.time()), nonce=os.urandom(12))


def seal_withdrawal(config: ClientConfig, msg_id: str, order_no: str) -> Envelope:
    """The sealed `cancel` of instruction `msg_id` (1.1 C): its own new msg_id, reply_to = msg_id."""
    return seal_cancel(Cancel(config.terminal_id, check_order_no(order_no)), key=config.key,
                       msg_id=new_msg_id(config.terminal_id), reply_to=msg_id, ts=int(time.time()), nonce=os.urandom(12))


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
        return Outcome(body["msg_id"], None, body["state"], body.get("last_event"), body.get("since"), body.get("expires_at"))
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
    try:
        outcome = _answer(response, config, envelope.msg_id, envelope.ts, order_no, amount)
    except Step6Failure:
        raise
    except ClientError as exc:
        if response.status_code != 200:
            raise
        outcome = _ask_again(config, envelope.msg_id, exc, envelope.ts, order_no, amount, http)
    while outcome.result is None and (left := int(deadline - time.monotonic())) > 0:
        outcome = query(config, envelope.msg_id, left, instruction_ts=envelope.ts, order_no=order_no, amount=amount, session=http)
    return outcome


def query(config: ClientConfig, msg_id: str, wait_s: int = 0, *, instruction_ts: int | None = None,
          order_no: str | None = None, amount: Amount | None = None, session: requests.Session | None = None) -> Outcome:
    """GET the result of `msg_id`. Pass the instruction's order_no and amount whenever you have
    them (your HIS always has: it stored the instruction); `status` on the command line has not."""
    http = session or requests.Session()
    wait = min(max(wait_s, 0), MAX_WAIT_PER_REQUEST)
    response = _get(config, http, msg_id, wait)
    try:
        return _answer(response, config, msg_id, instruction_ts, order_no, amount)
    except ClientError as exc:
        if response.status_code != 200 or isinstance(exc, Step6Failure):
            raise
        return _ask_again(config, msg_id, exc, instruction_ts, order_no, amount, http)


def _get(config: ClientConfig, http: requests.Session, msg_id: str, wait: int) -> requests.Response:
    try:
        return http.get(f"{config.bridge_url}/v1/results/{msg_id}", params={"wait": wait}, timeout=config.http_timeout_s + wait)
    except requests.RequestException as exc:
        raise ClientError("bridge_unreachable", f"{config.bridge_url}: {exc}") from None


def _ask_again(config: ClientConfig, msg_id: str, failure: ClientError, instruction_ts: int | None, order_no: str | None,
               amount: Amount | None, http: requests.Session) -> Outcome:
    """A result failed step 6: book nothing, alert, and ask the bridge again with GET (what it
    serves, it verified). Still failing: Step6Failure, for a person; the order stays unsettled."""
    if config.on_alert is not None:
        config.on_alert(msg_id, failure)
    else:
        print(f"his-client: ALERT: the result for {msg_id} failed step 6 ({failure.code}: {failure.message}); "
              "not booked; asking the bridge again", file=sys.stderr)
    for _ in range(STEP6_ASK_AGAIN):
        response = _get(config, http, msg_id, 0)
        try:
            return _answer(response, config, msg_id, instruction_ts, order_no, amount)
        except ClientError as exc:
            if response.status_code != 200:
                raise
            failure = exc
    raise Step6Failure("step6_failed", f"the result for {msg_id} fails step 6 ({failure.code}: {failure.message}): "
                       "do not book it, tell IT (a fault or an attack); do not send a new '+' for this order under a "
                       "new msg_id until this instruction is settled")


def withdraw(config: ClientConfig, msg_id: str, order_no: str, wait_s: int = 10, *, amount: Amount | None = None,
             instruction_ts: int | None = None, session: requests.Session | None = None) -> Outcome:
    """POST a sealed `cancel` for `msg_id`; the answer is the instruction's result (200, verified)
    or its state (202) while a payment under way settles. A collection that already succeeded stays
    SUCCESS: refund it with a '-' instruction if it must be undone."""
    http = session or requests.Session()
    envelope = seal_withdrawal(config, msg_id, order_no)
    wait = min(max(wait_s, 0), MAX_WAIT_PER_REQUEST)
    try:
        response = http.post(f"{config.bridge_url}/v1/instructions/{msg_id}/cancel", params={"wait": wait},
                             data=envelope.to_bytes(), headers={"Content-Type": "application/json"},
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


def show(outcome: Outcome, as_json: bool, again: str = "his-client") -> None:
    """Print an outcome; `again` is the command line that asks again (with the options given)."""
    if as_json:
        body: dict[str, object] = {"msg_id": outcome.msg_id}
        if outcome.result is not None:
            body.update(verified=True, result=encode_result(outcome.result))
        else:
            body.update(state=outcome.state, since=outcome.since, expires_at=outcome.expires_at, last_event=outcome.last_event)
        print(json.dumps(body, ensure_ascii=False))
        return
    if outcome.result is None:
        expires = "" if outcome.expires_at is None else f", expires {time.strftime('%H:%M:%S', time.localtime(outcome.expires_at))}"
        print(f"{outcome.msg_id}: not finished yet (state {outcome.state}{expires})")
        if outcome.last_event:
            print(f"  last event    {outcome.last_event.get('code')}: {outcome.last_event.get('message')}")
        print(f"  ask again:    {again} status {outcome.msg_id} --wait 30")
        return
    r = outcome.result
    print(f"verified result for {outcome.msg_id}: {r.pay_status.value} {r.pay_channel.value if r.pay_channel else '-'} {r.amount}")
    print(f"  order_no      {r.order_no}")
    print(f"  pay_order_no  {r.pay_order_no or '-'}")
    print(f"  device_id     {r.device_id} (in our device registry; signed with its key)")
    print(f"  finished_at   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.finished_at))}")
    if r.error_code:
        print(f"  error         {r.error_code}: {r.error_message or ''}")


def _again(args: argparse.Namespace) -> str:
    """The command line that asks again, with the options that chose bridge, keys and registry."""
    words = ["his-client"]
    for name in ("demo", "bridge", "key_file", "kid", "devices", "terminal"):
        value = getattr(args, name, None)
        if value:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return " ".join(words)


def _remember(args: argparse.Namespace, envelope: Envelope, order_no: str, amount: str) -> None:
    """With --demo, the last instruction sent (for `status --last`, `cancel --last`): msg_id and
    what step 6 checks the result against. A real HIS keeps every envelope it sent, in its database."""
    if args.demo:
        record = {"msg_id": envelope.msg_id, "order_no": order_no, "amount": amount, "ts": envelope.ts}
        (Path(args.demo).parent / LAST_FILE).write_text(json.dumps(record), encoding="utf-8")


def _last(args: argparse.Namespace) -> dict[str, object]:
    if not args.demo:
        raise ClientError("usage", "--last works with --demo (it remembers the last instruction next to the demo file)")
    path = Path(args.demo).parent / LAST_FILE
    if not path.exists():
        raise ClientError("usage", f"no instruction was sent with --demo {args.demo} yet")
    return dict(json.loads(path.read_text(encoding="utf-8")))


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
        p.add_argument("--expires-in", type=int, metavar="S",
                       help="expires_at = now + S (1.1 C; default: the bridge's, 10 minutes)")
    p = sub.add_parser("status", parents=[common], help="fetch and verify the result of MSG_ID (or --last)")
    p.add_argument("msg_id", nargs="?")
    p.add_argument("--last", action="store_true", help="the last instruction this client sent with --demo")
    p.add_argument("--wait", type=int, default=0)
    p = sub.add_parser("cancel", parents=[common], help="withdraw instruction MSG_ID (or --last) of --order (1.1 C)")
    p.add_argument("msg_id", nargs="?")
    p.add_argument("--last", action="store_true", help="the last instruction this client sent with --demo")
    p.add_argument("--order", help="the instruction's order number (default with --last: its own)")
    p.add_argument("--wait", type=int, default=10)
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
        if args.command in ("status", "cancel"):
            last = _last(args) if args.last else {}
            msg_id = args.msg_id or last.get("msg_id")
            if not msg_id:
                raise ClientError("usage", f"{args.command} needs a MSG_ID (or --last after a pay/refund with --demo)")
            order_no = getattr(args, "order", None) or (last.get("order_no") if last.get("msg_id") == msg_id else None)
            amount = parse_amount(last["amount"]) if last.get("msg_id") == msg_id else None
            ts = last.get("ts") if last.get("msg_id") == msg_id else None
            if args.command == "status":
                outcome = query(config, msg_id, args.wait, instruction_ts=ts, order_no=order_no, amount=amount)
            else:
                if not order_no:
                    raise ClientError("usage", "cancel needs --order (the withdrawn instruction's order number)")
                outcome = withdraw(config, msg_id, order_no, args.wait, amount=amount, instruction_ts=ts)
        else:
            if not args.amount.startswith(args.sign):
                raise ClientError("usage", f"{args.command} takes an amount starting with {args.sign!r}, as in {args.sign}12.50")
            expires_at = None if args.expires_in is None else int(time.time()) + args.expires_in
            amount = parse_amount(args.amount)  # once: the envelope and the step 6 check use this value
            envelope = seal(config, args.order, amount, args.msg_id or new_msg_id(config.terminal_id), expires_at=expires_at)
            _remember(args, envelope, args.order, args.amount)
            outcome = submit(config, envelope, args.order, max(args.wait, 0), amount=amount)
        show(outcome, args.json, _again(args))
        return 0 if outcome.result is not None else 3
    except ClientError as exc:
        print(f"his-client: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except (ProtocolError, KeyFileError, RegistryError, OSError, KeyError, ValueError) as exc:
        print(f"his-client: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
