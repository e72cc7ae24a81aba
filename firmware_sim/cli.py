"""`pos-sim`: run the virtual POS device, and play the cashier and the bench technician against it.

    pos-sim run --storage .run/device [--pty | --tcp PORT | --usb | --aoa] [--control-port N] [--baud 115200]
    pos-sim scan 134567890123456789           pos-sim scan --qr code.png
    pos-sim screen | status | history | cancel | confirm-refund 246810 | decline-refund | dismiss | recheck
    pos-sim fault unplug --for 2 | replug | drop --probability 0.01 | corrupt --next 40 | duplicate ...
                  | delay --ms 50 | clear | power-cut [--at paying] | power-on | skew 3600

The commands after `run` talk to a running simulator's control API (firmware_sim.control_api),
found through <storage>/sim.json (--storage, $POS_SIM_STORAGE, default .run/device: what
`make run HEADLESS=1` uses) or given with --url. Exit status: 0 done, 1 refused (the message says
why, with the API's stable code), 2 bad usage, 3 no simulator running there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import requests

from protocol.link.session import LinkTimers

from firmware_sim.simerrors import SimCode, SimError
STATE_FILE = "sim.json"  # written by firmware_sim.simrun
STORAGE_ENV = "POS_SIM_STORAGE"
DEFAULT_STORAGE = os.path.join(".run", "device")
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
HTTP_TIMEOUT_S = 30.0
_TIMERS = LinkTimers()  # the defaults (a slots dataclass has no class-level defaults to read)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# ----------------------------------------------------------------------------- finding the simulator


def read_state(storage: Path) -> dict[str, object]:
    """The state file a running `pos-sim run` keeps in its storage directory."""
    path = storage / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimError(SimCode.NOT_RUNNING, f"no simulator runs on {storage} ({path} is missing); start one with "
                       f"`pos-sim run --storage {storage}` or `make run HEADLESS=1`") from None
    except (OSError, ValueError) as exc:
        raise SimError(SimCode.NOT_RUNNING, f"{path} is unreadable ({exc}); is the simulator still starting?") from None
    if not isinstance(state, dict) or not isinstance(state.get("control_url"), str):
        raise SimError(SimCode.NOT_RUNNING, f"{path} names no control_url")
    return state


def control_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    return str(read_state(Path(args.storage))["control_url"]).rstrip("/")


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    url = control_url(args) + path
    try:
        response = requests.request(method, url, json=body, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise SimError(SimCode.NOT_RUNNING, f"no simulator answers at {url} ({type(exc).__name__}); "
                       "did it stop? (a stale sim.json is left by a killed simulator)") from None
    try:
        answer = response.json()
    except ValueError:
        raise SimError(SimCode.NOT_RUNNING, f"{url} answered HTTP {response.status_code} without JSON; is that a simulator?") from None
    if response.status_code >= 400:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        try:
            code = SimCode(error.get("code"))
        except ValueError:
            code = SimCode.BAD_REQUEST
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        raise SimError(code, str(error.get("message", response.reason)), **details)
    return answer  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- rendering


def _money_line(screen: dict[str, object]) -> str:
    parts = [str(screen.get("screen"))]
    if screen.get("amount"):
        parts.append(str(screen["amount"]))
    if screen.get("order_no"):
        parts.append(f"order {screen['order_no']} (terminal {screen.get('terminal_id')})")
    if screen.get("channel"):
        parts.append(str(screen["channel"]))
    return "  ".join(parts)


def render_screen(screen: dict[str, object]) -> list[str]:
    lines = [_money_line(screen)]
    message = screen.get("message")
    if isinstance(message, dict):
        lines.append(f"  {message['zh']} / {message['en']}")
    notice = screen.get("notice")
    if isinstance(notice, dict):
        lines.append(f"  ! {notice['zh']} / {notice['en']}")
    if screen.get("countdown_s") is not None:
        lines.append(f"  countdown {screen['countdown_s']} s")
    if screen.get("pin_tries_left") is not None:
        lines.append(f"  supervisor PIN: {screen['pin_tries_left']} tries left")
    if screen.get("queued"):
        lines.append(f"  {screen['queued']} more instruction(s) queued")
    last = screen.get("last_result")
    if isinstance(last, dict):
        lines.append(f"  last result: {last['pay_status']} {last['channel'] or '-'} {last['amount']} order {last['order_no']}"
                     f"{' (' + str(last['error_code']) + ')' if last.get('error_code') else ''}")
    if screen.get("power") == "on" and not screen.get("link_up"):
        lines.append("  (no bridge connected)")
    return lines


def _print(args: argparse.Namespace, answer: dict[str, object], lines: list[str]) -> int:
    if args.json:
        _out(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        for line in lines:
            _out(line)
    return EXIT_OK


# ----------------------------------------------------------------------------- commands


def cmd_screen(args: argparse.Namespace) -> int:
    answer = call(args, "GET", "/v1/screen")
    return _print(args, answer, render_screen(answer))


def cmd_status(args: argparse.Namespace) -> int:
    s = call(args, "GET", "/v1/status")
    dev, link, boot = s["device"], s["link"], s.get("boot") or {}  # type: ignore[union-attr]
    lines = [f"device {dev['device_id']} (model {dev['model']}, serial {dev['serial_no']}, "  # type: ignore[index]
             f"USB {dev['usb']['vid']}:{dev['usb']['pid']}/{dev['usb']['serial']})",  # type: ignore[index]
             f"power {s['power']}; {boot.get('message') or s.get('problem') or ''}".rstrip("; "),  # type: ignore[union-attr]
             f"link {link['bridge_url']}: {'up to a ' + str(link['host']) if link['up'] else 'down'}, cable {link['cable']}"  # type: ignore[index]
             + (f", paced at {link['baud']} baud" if link.get("baud") else ""),  # type: ignore[union-attr]
             f"clock offset {s['clock']['offset_s']:+g} s"]  # type: ignore[index]
    if link.get("bridge_clock_offset_s") is not None:  # type: ignore[union-attr]
        lines[-1] += f"; {link['bridge_clock_offset_s']:+g} s from the bridge's clock"  # type: ignore[index]
    return _print(args, s, lines)


def cmd_history(args: argparse.Namespace) -> int:
    path = "/v1/history" + (f"?order_no={requests.utils.quote(args.order)}" if args.order else "")
    answer = call(args, "GET", path)
    lines = [f"{time.strftime('%H:%M:%S', time.localtime(e['finished_at']))}  {e['amount']:>10}  {e['pay_status']:<13} "
             f"{e['channel'] or '-':<7} {e['order_no']}  {'delivered' if e['delivered'] else 'NOT YET DELIVERED'}"
             f"{'  ' + str(e['error_code']) if e['error_code'] else ''}"
             for e in answer["entries"]]  # type: ignore[union-attr]
    return _print(args, answer, lines or ["no finished instructions today"])


def new_sandbox_code(demo: str, channel: str, balance: str, behaviour: str) -> str:
    """A fresh patient code from the channel sandbox named in the demo file (make run writes it)."""
    try:
        sandbox_url = json.loads(Path(demo).read_text(encoding="utf-8"))["sandbox_url"]
    except (OSError, ValueError, KeyError) as exc:
        raise SimError(SimCode.BAD_REQUEST, f"--new-code needs the demo file {demo} with its sandbox_url "
                       f"(start the system with make run): {exc}") from None
    try:
        response = requests.post(f"{sandbox_url}/sandbox/v1/codes", timeout=HTTP_TIMEOUT_S,
                                 json={"channel": channel, "balance": balance, "behaviour": behaviour})
        response.raise_for_status()
        return str(response.json()["code"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise SimError(SimCode.NOT_RUNNING, f"the channel sandbox at {sandbox_url} gave no code: {exc}") from None


def cmd_scan(args: argparse.Namespace) -> int:
    if sum(x is not None for x in (args.code, args.qr, args.new_code)) != 1:
        raise SimError(SimCode.BAD_REQUEST, "give a CODE, --qr FILE or --new-code CHANNEL (one of them)")
    if args.new_code is not None:
        args.code = new_sandbox_code(args.demo, args.new_code, args.balance, args.behaviour)
    body = {"code": args.code} if args.code is not None else {"qr_png": str(Path(args.qr).resolve())}
    answer = call(args, "POST", "/v1/scan", body)
    message = answer["message"]
    return _print(args, answer, [f"{answer['source']} read {answer['code_masked']}: {answer['channel']}, "
                                 f"{message['zh']} / {message['en']}"])  # type: ignore[index]


def _action(path: str, done: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        body = {"pin": args.pin if args.pin is not None else sys.stdin.readline().strip()} if hasattr(args, "pin") else None
        answer = call(args, "POST", path, body)
        return _print(args, answer, [done, *render_screen(answer["screen"])])  # type: ignore[arg-type]
    return run


def cmd_fault(args: argparse.Namespace) -> int:
    fault: dict[str, object] = {"fault": args.fault_name.replace("-", "_")}
    if args.fault_name == "skew":
        fault = {"fault": "clock_skew", "seconds": args.seconds}
    elif args.fault_name == "unplug" and args.for_s is not None:
        fault["for_s"] = args.for_s
    elif args.fault_name in ("drop", "corrupt", "duplicate", "delay"):
        for key, value in (("direction", args.direction), ("probability", args.probability), ("next_bytes", args.next),
                           ("seed", args.seed), ("ms", getattr(args, "ms", None))):
            if value is not None:
                fault[key] = value
    elif args.fault_name == "power-cut":
        for key, value in (("at", args.at), ("phase", args.phase), ("after_bytes", args.after_bytes),
                           ("direction", args.direction), ("off_for_s", args.off_for)):
            if value is not None:
                fault[key] = value
    answer = call(args, "POST", "/v1/faults", fault)
    status = answer["status"]
    link = status["link"]  # type: ignore[index]
    return _print(args, answer, [f"applied {json.dumps(fault)}",
                                 f"power {status['power']}, link {'up' if link['up'] else 'down'}, cable {link['cable']}, "  # type: ignore[index]
                                 f"clock offset {status['clock']['offset_s']:+g} s"])  # type: ignore[index]


# ----------------------------------------------------------------------------- init (the device's provisioning)


def cmd_init(args: argparse.Namespace) -> int:
    """The device's side of step 2: it makes its identity and key in its own storage and shows only
    its public record, which the field engineer adds with `pos-flash provision add-device`."""
    from protocol.flash import FlashError
    from protocol.registry import format_device_csv
    from protocol.link.hostkeys import parse_public as parse_host_public
    from protocol.trust import TrustStore, parse_public
    from terminal.identity import create_identity
    from terminal.secure_files import read_text

    try:
        trust = TrustStore(tuple(parse_public(read_text(Path(p), "public key"), p) for p in args.trust))
        hosts = tuple(parse_host_public(read_text(Path(p), "host key"), p) for p in args.host_key or ())
        record = create_identity(Path(args.storage), model=args.model, serial_no=args.serial, trust=trust,
                                 device_id=args.device_id, usb_vid=args.usb_vid, usb_pid=args.usb_pid, hosts=hosts)
    except FlashError as exc:
        raise SimError(SimCode.STORAGE, exc.message) from None
    text = format_device_csv([record])
    if args.record_out:
        Path(args.record_out).write_text(text, encoding="utf-8", newline="")
        _err(f"device {record.device_id}: identity and key made in {args.storage} (the key never leaves it); "
             f"public record written to {args.record_out}")
        _err(f"next: pos-flash provision add-device --records devices.csv --record {args.record_out}")
    else:
        sys.stdout.write(text)
    return 0


# ----------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from firmware_sim.simrun import run_simulator

    link = "tcp" if args.tcp is not None else "usb" if args.usb else "aoa" if args.aoa else "pty"
    timers = LinkTimers(rto_base_s=args.rto, keepalive_s=args.keepalive, dead_after_s=args.dead_after)
    return run_simulator(Path(args.storage), link=link, tcp_port=args.tcp or 0, control_host=args.control_host,
                         control_port=args.control_port, baud=args.baud, timers=timers, pty_link=args.pty_link,
                         exit_with_parent=args.exit_with_parent, ui=args.ui, log_level=args.log_level,
                         ui_receipts=Path(args.receipts_dir) if args.receipts_dir else None, ui_orientation=args.orientation)


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE),
                   help=f"the simulated device's storage directory (default ${STORAGE_ENV} or {DEFAULT_STORAGE})")
    p.add_argument("--url", help="the control API URL instead (e.g. http://127.0.0.1:40123)")
    p.add_argument("--json", action="store_true", help="print the API's JSON answer")


def _byte_fault(sub: argparse._SubParsersAction, name: str, text: str) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser(name, help=text)
    _target(p)
    p.add_argument("--direction", choices=["to_bridge", "to_device", "both"], help="which way (default both)")
    which = p.add_mutually_exclusive_group(required=name != "delay")
    which.add_argument("--probability", type=float, help="per byte (per chunk for delay), 0..1")
    which.add_argument("--next", type=int, metavar="N", help="exactly the next N bytes")
    p.add_argument("--seed", type=int, help="random seed, for a reproducible run")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos-sim",
        description="The virtual smart POS: a provisioned device (identity, key, A/B flash) running the real terminal "
                    "service, on a pty, TCP or virtual USB link, with a control API that plays the cashier's hands "
                    "and injects faults. HIS vendors integrate against it before they have hardware.",
        epilog="Start everything at once with `make run HEADLESS=1` (python -m firmware_sim.system). docs/simulator.md "
               "has the control API with curl examples and the fault catalogue.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="provision a new device: it makes its identity and key in STORAGE",
                       description="The device's provisioning step (step 2): make the device's identity and Ed25519 key "
                                   "in its own storage (the private key never leaves it) and print its public record "
                                   "(device_id,model,serial_no,public_key) for `pos-flash provision add-device`.")
    p.add_argument("--storage", required=True, help="the new device's storage directory (must not hold a device yet)")
    p.add_argument("--model", required=True)
    p.add_argument("--serial", required=True, help="serial number (also the USB iSerialNumber)")
    p.add_argument("--device-id", help="default: D-<serial>")
    p.add_argument("--trust", action="append", required=True, help="image signing public key(s) the device will trust (.pub)")
    p.add_argument("--host-key", action="append", help="link host key(s) the device pins: the bridge's "
                   "bridge_identity.pub (his-bridge init) and pos-flash's maintenance .pub (pos-flash host-key new)")
    p.add_argument("--usb-vid", default="1209", help="USB vendor ID, 4 hex digits (default 1209)")
    p.add_argument("--usb-pid", default="7D01", help="USB product ID, 4 hex digits (default 7D01)")
    p.add_argument("--record-out", help="write the public record to this file (default: standard output)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run a provisioned device until Ctrl-C / SIGTERM",
                       description="Power on the device in STORAGE (provisioned with `pos-sim init`; "
                                   "flash a configuration image onto it with `pos-flash flash --port <bridge_url>`), serve "
                                   "its link and the control API. Prints one JSON ready line on stdout.")
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV, DEFAULT_STORAGE),
                   help=f"the device's storage directory (default ${STORAGE_ENV} or {DEFAULT_STORAGE})")
    p.add_argument("--device-dir", dest="storage", help=argparse.SUPPRESS)  # pos-flash's docs call it that
    link = p.add_mutually_exclusive_group()
    link.add_argument("--pty", action="store_true", help="a pty pair: the bridge opens serial:<storage>/tty (default)")
    link.add_argument("--tcp", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT (0: ephemeral); the bridge opens socket://...")
    link.add_argument("--usb", action="store_true",
                      help="the virtual USB device (usb://); a bridge in another process uses the usb_cable address "
                           "of the ready line (python -m firmware_sim.usb_cable)")
    link.add_argument("--aoa", action="store_true",
                      help="an Android POS: the bridge switches it to accessory mode (aoa://); reached as --usb is")
    p.add_argument("--pty-link", type=Path, help="the symlink naming the current pty (default <storage>/tty)")
    p.add_argument("--baud", type=int, choices=[9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600],
                   help="pace the link like a UART at this rate (default: unpaced)")
    p.add_argument("--control-host", default="127.0.0.1", help="control API address (loopback only)")
    p.add_argument("--control-port", type=int, default=0, help="control API port (default 0: ephemeral, in the ready line)")
    p.add_argument("--rto", type=float, default=_TIMERS.rto_base_s, help=argparse.SUPPRESS)
    p.add_argument("--keepalive", type=float, default=_TIMERS.keepalive_s, help=argparse.SUPPRESS)
    p.add_argument("--dead-after", type=float, default=_TIMERS.dead_after_s, help=argparse.SUPPRESS)
    p.add_argument("--exit-with-parent", action="store_true", help="stop when the process that started this one exits (launchers)")
    p.add_argument("--ui", action="store_true", help="also show the POS screens (Kivy, needs a display): see firmware_sim/screen.py")
    p.add_argument("--orientation", choices=("portrait", "landscape"), default="portrait",
                   help="with --ui: the window's shape, portrait 720x1280 (scaled to fit the display) or landscape 800x480")
    p.add_argument("--receipts-dir", help="with --ui: where printed receipts are saved as PNG (default <storage>/receipts)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="identity, power, boot slot, link, clock")
    _target(p)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("screen", help="what the POS shows now")
    _target(p)
    p.set_defaults(func=cmd_screen)
    p = sub.add_parser("history", help="today's finished instructions")
    _target(p)
    p.add_argument("--order", help="only orders whose number contains this")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser("scan", help="the scanner reads CODE (or the camera reads --qr FILE)")
    _target(p)
    p.add_argument("code", nargs="?", help="a WeChat Pay / Alipay payment code (e.g. from channel-sandbox)")
    p.add_argument("--qr", metavar="FILE", help="an image (PNG) of the code: decoded as the camera would")
    p.add_argument("--new-code", choices=["WECHAT", "ALIPAY"], metavar="CHANNEL",
                   help="ask the channel sandbox of --demo for a new patient code (WECHAT or ALIPAY) and scan it")
    p.add_argument("--balance", default="100.00", help="with --new-code: the patient's balance (default 100.00)")
    p.add_argument("--behaviour", default="success",
                   help="with --new-code: success, insufficient, userpaying:S, ... (docs/simulator.md)")
    p.add_argument("--demo", default=os.path.join(".run", "demo.json"), help="with --new-code: the demo file (default .run/demo.json)")
    p.set_defaults(func=cmd_scan)
    for name, path, done, text in (("cancel", "/v1/cancel", "cancelled", "cancel the instruction on screen"),
                                   ("decline-refund", "/v1/refund/decline", "refund declined", "the supervisor declines the refund"),
                                   ("dismiss", "/v1/dismiss", "dismissed", "hide the result screen"),
                                   ("recheck", "/v1/recheck", "asking the channel again",
                                    "a person fixed what a needs-person payment or refund waits for: check again")):
        p = sub.add_parser(name, help=text)
        _target(p)
        p.set_defaults(func=_action(path, done))
    p = sub.add_parser("confirm-refund", help="the supervisor confirms the refund with the PIN")
    _target(p)
    p.add_argument("pin", nargs="?", help="the supervisor PIN (default: read a line from standard input)")
    p.set_defaults(func=_action("/v1/refund/confirm", "refund confirmed"))

    fault = sub.add_parser("fault", help="inject a fault: unplug, replug, drop, corrupt, duplicate, delay, clear, "
                                         "power-cut, power-on, skew")
    fsub = fault.add_subparsers(dest="fault_name", required=True, metavar="FAULT")
    p = fsub.add_parser("unplug", help="pull the cable")
    _target(p)
    p.add_argument("--for", dest="for_s", type=float, metavar="S", help="plug it back after S seconds")
    for name, text in (("replug", "plug the cable back"), ("clear", "remove byte faults and armed power cuts"),
                       ("power-on", "switch the device on after a power cut (it recovers from its journal)")):
        p = fsub.add_parser(name, help=text)
        _target(p)
    for name, text in (("drop", "lose bytes"), ("corrupt", "flip bits in bytes"), ("duplicate", "repeat bytes")):
        _byte_fault(fsub, name, text)
    p = _byte_fault(fsub, "delay", "hold each chunk back (latency)")
    p.add_argument("--ms", type=int, required=True, help="milliseconds per chunk")
    p = fsub.add_parser("power-cut", help="cut the power now, at a journal state, or after N link bytes")
    _target(p)
    when = p.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="STATE|LABEL", help="when the journal commits this state (paying, refunding, finished...) "
                                                          "or this commit label (collect:awaiting_scan->paying)")
    when.add_argument("--after-bytes", type=int, metavar="N", help="after N more bytes on the link")
    p.add_argument("--phase", choices=["before", "after"], help="with --at: before the commit is durable, or after (default)")
    p.add_argument("--direction", choices=["to_bridge", "to_device", "both"], help="with --after-bytes: count this way")
    p.add_argument("--off-for", type=float, metavar="S", help="switch on again by itself after S seconds")
    p = fsub.add_parser("skew", help="set the device clock's offset from the PC's (seconds; negative: behind)")
    _target(p)
    p.add_argument("seconds", type=float)
    fault.set_defaults(func=cmd_fault)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SimError as exc:
        _err(f"pos-sim: {exc.code.value}: {exc.message}")
        return EXIT_NOT_RUNNING if exc.code is SimCode.NOT_RUNNING else EXIT_REFUSED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
