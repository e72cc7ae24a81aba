"""The HIS console: play the hospital information system in a terminal, for demos and HIS developers.

    python -m bridge.his_console                # reads .run/demo.json written by `make run`
    python -m bridge.his_console --demo FILE    # another demo file
    python -m bridge.his_console --order MZ1 --amount +12.50   # one instruction, then exit

Type an order number and a signed amount (+12.50 collects, -12.50 refunds); the console seals the
instruction, sends it to the bridge and shows its progress (queued -> awaiting_scan -> paying ...)
until the VERIFIED result arrives: decrypted, from a device in the registry, answering our msg_id
and order (steps 4 to 6 of the HIS interface, done by the reference client bridge/hisclient.py,
which this console only drives). A line-based terminal UI on purpose: it works over SSH, in any
terminal, and what it prints can be pasted into a bug report.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from bridge import hisclient
from protocol.amount import parse_amount
from protocol.errors import ProtocolError
from protocol.ids import check_order_no
from protocol.messages import Result

DEFAULT_DEMO = ".run/demo.json"
# How long to watch one instruction before handing back the prompt (the patient may be slow).
WATCH_S = 180
POLL_S = 2  # long-poll slice: the state line updates at least this often


def new_order_no(now: float | None = None) -> str:
    return "MZ" + time.strftime("%Y%m%d%H%M%S", time.localtime(now or time.time()))


def describe(result: Result) -> list[str]:
    channel = result.pay_channel.value if result.pay_channel else "-"
    lines = [f"VERIFIED RESULT  {result.pay_status.value}  {result.amount}  {channel}",
             f"  order_no      {result.order_no}",
             f"  pay_order_no  {result.pay_order_no or '-'}",
             f"  device_id     {result.device_id} (in the device registry; signed with its key)",
             f"  finished_at   {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(result.finished_at))}"]
    if result.error_code:
        lines.append(f"  error         {result.error_code}: {result.error_message or ''}")
    return lines


def send_and_watch(config: hisclient.ClientConfig, order_no: str, amount_text: str, say: Callable[[str], None],
                   watch_s: float = WATCH_S) -> Result | None:
    """Seal, send, show each new state, and return the verified result (None if still unfinished)."""
    amount = parse_amount(amount_text)  # refuse "12.5" here, with the same message the bridge would give
    check_order_no(order_no)
    msg_id = hisclient.new_msg_id(config.terminal_id)
    envelope = hisclient.seal(config, order_no, amount, msg_id)
    say(f"sent {amount_text} for order {order_no} as {msg_id} to {config.bridge_url}")
    outcome = hisclient.submit(config, envelope, order_no, wait_s=1, amount=amount)
    shown: tuple[object, ...] | None = None
    deadline = time.monotonic() + watch_s
    while outcome.result is None and time.monotonic() < deadline:
        if (outcome.state, outcome.last_event) != shown:
            if outcome.state != (shown or (None,))[0]:
                expires = "" if outcome.expires_at is None else \
                    f" (expires {time.strftime('%H:%M:%S', time.localtime(outcome.expires_at))})"
                say(f"  ... {outcome.state}{expires}")
            if outcome.last_event and outcome.last_event != (shown or (None, None))[1]:
                # 1.1 C: e.g. a declined code while the cashier may scan another: tell the operator now
                say(f"  !!! {outcome.last_event.get('code')}: {outcome.last_event.get('message')}")
            shown = (outcome.state, outcome.last_event)
        outcome = hisclient.query(config, msg_id, POLL_S, instruction_ts=envelope.ts, order_no=order_no, amount=amount)
    if outcome.result is None:
        say(f"not finished after {watch_s:.0f} s (state {outcome.state}); ask later: "
            f"his-client --demo {DEFAULT_DEMO} status {msg_id}")
        return None
    for line in describe(outcome.result):
        say(line)
    return outcome.result


def interactive(config: hisclient.ClientConfig, ask: Callable[[str], str], say: Callable[[str], None]) -> None:
    say(f"HIS console: bridge {config.bridge_url}, terminal {config.terminal_id}. "
        "Amounts: +12.50 collects, -12.50 refunds. Ctrl-D or 'q' quits.")
    last_order = ""
    while True:
        suggestion = last_order or new_order_no()
        order = ask(f"order number [{suggestion}]: ").strip() or suggestion
        if order.lower() in ("q", "quit", "exit"):
            return
        amount = ask("amount (+12.50 / -12.50): ").strip()
        if amount.lower() in ("q", "quit", "exit"):
            return
        try:
            send_and_watch(config, order, amount, say)
            last_order = order  # offer the same order again: a refund usually follows a collection
        except ProtocolError as exc:
            say(f"not sent: {exc.code.value}: {exc.message}")
        except hisclient.ClientError as exc:
            say(f"refused: {exc.code}: {exc.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.his_console", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default=DEFAULT_DEMO, help=f"demo file written by make run (default {DEFAULT_DEMO})")
    parser.add_argument("--bridge", help="bridge URL (default: from the demo file)")
    parser.add_argument("--terminal", help="terminal_id (default: from the demo file)")
    parser.add_argument("--order", help="send one instruction for this order number, then exit")
    parser.add_argument("--amount", help="with --order: +12.50 to collect, -12.50 to refund")
    args = parser.parse_args(argv)
    if not Path(args.demo).is_file():
        print(f"his-console: {args.demo} not found; start the system first with `make run` "
              "(or `make run HEADLESS=1`), or pass --demo FILE", file=sys.stderr)
        return 2
    try:
        config = hisclient.load_config(argparse.Namespace(demo=args.demo, bridge=args.bridge, terminal=args.terminal,
                                                          key_file=None, devices=None, kid=None))
    except (OSError, ValueError, KeyError, hisclient.ClientError) as exc:
        print(f"his-console: cannot use {args.demo}: {exc}", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    if args.order or args.amount:
        if not (args.order and args.amount):
            parser.error("--order and --amount go together")
        try:
            result = send_and_watch(config, args.order, args.amount, say)
        except ProtocolError as exc:
            print(f"his-console: not sent: {exc.code.value}: {exc.message}", file=sys.stderr)
            return 2
        except hisclient.ClientError as exc:
            print(f"his-console: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        return 0 if result is not None else 3
    try:
        interactive(config, input, say)
    except (EOFError, KeyboardInterrupt):
        say("")
    return 0


if __name__ == "__main__":
    sys.exit(main())
