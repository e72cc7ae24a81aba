"""`pos-flash`: signing keys, images, flashing and provisioning for field engineers.

A thin layer over posflash.signing_keys / image_build / flasher / provision: it parses arguments,
renders progress and results, and turns FlashError into a message and an exit status:
0 done, 1 refused or failed (the message says why and what to do), 2 bad usage,
3 flashed but the new image has not confirmed its health yet, 130 interrupted (run it again).
docs/field-engineer.md walks through every command.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable, TextIO

from posflash import flasher, provision
from posflash.hints import advise
from posflash.host_key import HOST_KEY_ENV, create_host_key, load_host_key
from posflash.image_build import build_image
from posflash.signing_keys import format_private, load_public_key, load_signing_key, new_signing_key
from protocol import flash as fc
from protocol.flash import FlashCode, FlashError
from protocol.image import PartKind, describe, parse_image, verify_signature
from protocol.registry import RegistryError, parse_device_csv
from protocol.trust import KeyRole, TrustStore, fingerprint, format_public
from terminal.secure_files import read_text, write_new_file

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNCONFIRMED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEVICES_ENV = "POS_FLASH_DEVICES"


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _size(n: float) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds + 0.5)
    return f"{seconds // 60}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------- progress


class ProgressView:
    """A bar redrawn in place on a terminal; plain lines every 10% (and at phases) otherwise."""

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._last_step = -1
        self._last_phase = ""
        self._drawn = False

    def __call__(self, p: flasher.FlashProgress) -> None:
        if p.phase != "transfer":
            if self._drawn:
                self.stream.write("\n")
                self._drawn = False
            if p.phase != self._last_phase:
                self.stream.write({"reboot": "installed; the device reboots into the new image and runs its self-test...\n",
                                   "done": "the new image confirmed its health\n"}.get(p.phase, ""))
            self._last_phase = p.phase
            self.stream.flush()
            return
        if self._last_phase != "transfer" and p.resumed_from:
            self.stream.write(f"resuming at {_size(p.resumed_from)} of {_size(p.total)} (the device kept the earlier part)\n")
        self._last_phase = "transfer"
        pct = 100 * p.done // p.total if p.total else 100
        line = (f"{pct:3d}% {_size(p.done)} of {_size(p.total)}  {_size(p.rate)}/s  ETA {_duration(p.eta_s)}")
        if self.tty:
            filled = pct * 30 // 100
            self.stream.write(f"\r[{'#' * filled}{'-' * (30 - filled)}] {line}\x1b[K")
            self._drawn = True
        elif pct // 10 != self._last_step:
            self._last_step = pct // 10
            self.stream.write(line + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------- helpers


def _registry(path: str | None) -> Callable[[str], bytes | None]:
    chosen = Path(path or os.environ.get(DEVICES_ENV) or "devices.csv")
    if not chosen.exists():
        raise FlashError(FlashCode.UNKNOWN_DEVICE, f"device records {chosen} not found; the flasher checks the device's key against them")
    try:
        records = parse_device_csv(read_text(chosen, "device records"), source=str(chosen))
    except RegistryError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None
    keys = {r.device_id: r.public_key for r in records if r.public_key}
    return keys.get


def _connect(args: argparse.Namespace) -> flasher.DeviceConnection:
    conn = flasher.DeviceConnection(args.port, public_key_for=_registry(args.devices),
                                    host_key_seed=load_host_key(args.host_key).seed, baud=args.baud)
    ident = conn.connect(args.connect_timeout)
    _err(f"connected to {ident.device_id} (model {ident.model}, serial {ident.serial_no}) on {args.port}")
    return conn


def _app_bytes(path: Path) -> bytes:
    """A file as is; a directory as a deterministic zip, stored uncompressed (the link compresses,
    and the device imports straight from a stored zip)."""
    if path.is_file():
        return path.read_bytes()
    if not path.is_dir():
        raise FlashError(FlashCode.BAD_INPUT, f"application bundle {path} does not exist")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as bundle:
        for file in sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = zipfile.ZipInfo(file.relative_to(path).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            bundle.writestr(info, file.read_bytes())
    return buf.getvalue()


def _write_output(path: Path, data: bytes, *, private: bool, force: bool) -> None:
    if force and path.exists():
        path.unlink()
    write_new_file(path, "", private=private)  # claims the name with the right mode, or refuses
    with open(path, "wb") as f:
        f.write(data)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ----------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    key = new_signing_key(args.key_id, KeyRole(args.role), os.urandom(32))
    base = Path(args.out)
    private, public = base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")
    if private.exists() or public.exists():
        raise FlashError(FlashCode.EXISTS, f"{private} or {public} already exists")
    write_new_file(private, format_private(key), private=True)
    write_new_file(public, format_public(key.trusted()), private=False)
    _out(f"{args.role} key {key.key_id} (fingerprint {fingerprint(key.public)})")
    _out(f"  private: {private} (mode 600: keep it offline; anyone holding it can sign images)")
    _out(f"  public:  {public} (give this to devices at provisioning: pos-sim init --trust {public})")
    return EXIT_OK


def cmd_host_key_new(args: argparse.Namespace) -> int:
    key, private, public = create_host_key(Path(args.out), args.name)
    _out(f"maintenance key {key.name} (fingerprint {key.public_key().fingerprint})")
    _out(f"  private: {private} (mode 600; pos-flash uses it with --host-key or ${HOST_KEY_ENV})")
    _out(f"  public:  {public} (pin it on devices at provisioning: pos-sim init --host-key {public})")
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    key = load_signing_key(Path(args.key))
    parts: dict[PartKind, bytes] = {}
    if args.app:
        parts[PartKind.APP] = _app_bytes(Path(args.app))
    if args.config:
        config = Path(args.config).read_bytes() if Path(args.config).is_file() else None
        if config is None:
            raise FlashError(FlashCode.BAD_INPUT, f"configuration {args.config} does not exist")
        if not (args.device_id and args.records):
            raise FlashError(FlashCode.BAD_INPUT, "a configuration is sealed to one device: give --device-id and "
                             "--records (the device records with its config_key)")
        parts[PartKind.CONFIG] = provision.seal_for(provision.find_record(Path(args.records), args.device_id), config)
    data = build_image(parts, model=args.model, version=args.version, security_counter=args.counter, key=key,
                       build_time=_utc_now(), device_id=args.device_id)
    _write_output(Path(args.out), data, private=PartKind.CONFIG in parts, force=args.force)
    image = parse_image(data)
    _out(f"wrote {args.out}: {_summary(describe(image.header))}")
    if PartKind.CONFIG in parts:
        _out("  it holds shared keys: mode 600; delete it after flashing")
    return EXIT_OK


def _summary(d: dict[str, object]) -> str:
    parts = "+".join(str(p["kind"]) for p in d["parts"])
    bound = f", only for device {d['device_id']}" if d.get("device_id") else ""
    return (f"{parts} {d['version']} for model {d['model']}, security counter {d['security_counter']}, "
            f"{_size(int(d['payload_size']))}, signed by {d['key_id']}{bound}")


def cmd_inspect(args: argparse.Namespace) -> int:
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlashError(FlashCode.BAD_INPUT, f"cannot read {path}: {exc.strerror or exc}") from None
    image = parse_image(data)
    info = describe(image.header)
    signer = None
    if args.trust:
        signer = verify_signature(image.header, TrustStore(tuple(load_public_key(Path(p)) for p in args.trust)))
        info["signature"] = f"valid ({signer.role.value} key {signer.key_id})"
    else:
        info["signature"] = "not checked (give --trust KEY.pub)"
    if args.json:
        _out(json.dumps(info, indent=2))
        return EXIT_OK
    _out(f"{path}: {_summary(info)}")
    for name in ("build_time", "payload_sha256", "image_digest", "signature"):
        _out(f"  {name}: {info[name]}")
    for p in info["parts"]:
        _out(f"  part {p['kind']}: {_size(p['size'])}, sha256 {p['sha256']}")
    return EXIT_OK


def cmd_flash(args: argparse.Namespace) -> int:
    try:
        data = Path(args.image).read_bytes()
    except OSError as exc:
        raise FlashError(FlashCode.BAD_INPUT, f"cannot read {args.image}: {exc.strerror or exc}") from None
    image = parse_image(data)  # refuse a bad file before touching the port
    _err(f"image: {_summary(describe(image.header))}")
    with _connect(args) as conn:
        try:
            outcome = flasher.flash_image(conn, data, chunk_size=args.chunk_size, on_progress=ProgressView(sys.stderr),
                                          wait_confirm_s=0 if args.no_wait else args.confirm_timeout)
        except FlashError as exc:
            if exc.code is FlashCode.TIMEOUT and "did not confirm" in exc.detail:
                _err(f"warning: {advise(exc).message}")
                return EXIT_UNCONFIRMED
            raise
    rate = (outcome.total - outcome.resumed_from) / outcome.transfer_s if outcome.transfer_s > 0 else 0
    ratio = (outcome.total - outcome.resumed_from) / outcome.wire_bytes if outcome.wire_bytes else 1.0
    _out(f"flashed {outcome.version} into slot {outcome.slot}: {_size(outcome.total - outcome.resumed_from)} "
         f"in {outcome.transfer_s:.1f} s ({_size(rate)}/s, compressed {ratio:.2f}:1)"
         + (f", resumed at {_size(outcome.resumed_from)}" if outcome.resumed_from else ""))
    if outcome.confirmed:
        _out(f"the device runs {outcome.version} from slot {outcome.slot}, confirmed healthy")
    elif not args.no_wait:
        _out("the device did not reboot into it (no reboot hook); use `pos-flash reboot`")
    return EXIT_OK


def _slot_line(name: str, slot: dict, status: dict) -> str:
    marks = [m for m, key in (("running", "running"), ("active", "active"), ("trial", "trial")) if status.get(key) == name]
    parts = slot.get("parts") or {}
    minimum = status.get("min_counter") or {}
    text = ", ".join(f"{k} {v['version']} (counter {v['counter']}, key {v['key_id']}{', OVERRIDE' if v['override'] else ''})"
                     for k, v in parts.items())
    stale = any(v["counter"] < minimum.get(k, 0) and not v["override"] for k, v in parts.items())
    note = "  (below the minimum security counter: it will not boot again)" if stale and slot["state"] == "confirmed" else ""
    return f"  slot {name}: {slot['state']}{' [' + ', '.join(marks) + ']' if marks else ''}  {text}{note}".rstrip()


def cmd_info(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        status = flasher.read_status(conn, args.log)
    if args.json:
        _out(json.dumps(status, indent=2, ensure_ascii=False))
        return EXIT_OK
    _out(f"device {status['device_id']} (model {status['model']}), bootloader {status['bootloader']}, "
         f"boot count {status['boot_count']}")
    for name, slot in (status.get("slots") or {}).items():
        _out(_slot_line(name, slot, status))
    if status.get("trial"):
        _out(f"  slot {status['trial']} is on trial: {status['tries_left']} of {status['max_tries']} boots left to confirm its health")
    if status.get("running") is None:
        _out("  NO IMAGE RUNNING: recovery mode; flash an image (docs/field-engineer.md, Recovery)")
    counters = status.get("min_counter") or {}
    _out("minimum security counters: " + (", ".join(f"{k} {v}" for k, v in counters.items()) or "none yet"))
    dl = status.get("download")
    if isinstance(dl, dict):
        _out(f"partial download: {dl['version']} into slot {dl['slot']}, {_size(dl['offset'])} of {_size(dl['total'])} "
             "(run the same flash command to resume)")
    keys = status.get("trusted_keys") or []
    _out("trusted signing keys: " + ", ".join(f"{k['key_id']} ({k['role']}, {k['fingerprint']})" for k in keys))
    log_lines = status.get("log") or []
    if log_lines:
        _out("recent log:")
        for line in log_lines:
            _out(f"  {line}")
    return EXIT_OK


def cmd_simple(kind: type[fc.Reboot] | type[fc.Confirm] | type[fc.Rollback]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with _connect(args) as conn:
            _out(flasher.command(conn, kind))
        return EXIT_OK

    return run


def cmd_add_device(args: argparse.Namespace) -> int:
    source = "standard input" if args.record == "-" else args.record
    text = sys.stdin.read() if args.record == "-" else read_text(Path(args.record), "device record")
    record = provision.add_device(Path(args.records), provision.parse_device_record(text, source))
    _out(f"device {record.device_id} (model {record.model}, serial {record.serial_no}) added to {args.records}")
    _out(f"  device key fingerprint {fingerprint(record.public_key or b'')} (the private key never left the device)")
    _out(f"  next: pos-flash provision export-his --records {args.records} -o his-devices.csv")
    return EXIT_OK


def cmd_export_his(args: argparse.Namespace) -> int:
    text = provision.export_his(Path(args.records))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8", newline="")
        _out(f"wrote {args.out}: {text.count(chr(10)) - 1} devices (device_id,model,serial_no) for HIS")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _read_pin(from_stdin: bool, what: str = "supervisor PIN") -> str:
    """A PIN from the next line of standard input, or typed twice at a prompt (never echoed)."""
    if from_stdin:
        return sys.stdin.readline().strip()
    first = getpass.getpass(f"{what} (4-12 digits): ")
    if getpass.getpass("again: ") != first:
        raise FlashError(FlashCode.BAD_INPUT, f"the two {what}s differ")
    return first


def cmd_hash_pin(args: argparse.Namespace) -> int:
    sys.stdout.write(provision.hash_pin(_read_pin(args.stdin, "PIN"), "PIN") + "\n")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    device = provision.find_record(Path(args.records), args.device_id)
    supervisor = _read_pin(args.pin_stdin)
    admin = _read_pin(args.pin_stdin, "admin PIN") if args.admin_pin else None
    pin_hash, admin_pin_hash = provision.hash_pins(supervisor, admin)
    document = provision.build_config_document(
        device=device, merchant_name=args.merchant_name, merchant_name_en=args.merchant_name_en,
        terminals_csv=read_text(Path(args.terminals), "terminal CSV"), terminals_source=args.terminals,
        keys_text=read_text(Path(args.keys), "key file"), keys_source=args.keys,
        gateway=provision.read_gateway(args.gateway_url, [Path(c) for c in args.gateway_cert or []]), pin_hash=pin_hash,
        admin_pin_hash=admin_pin_hash,
        limit_yuan=provision.limit_from_file(Path(args.limits)) if args.limits else args.limit, config_version=args.config_version, comment=args.comment)
    key = load_signing_key(Path(args.key))
    sealed = provision.seal_for(device, document)  # only this device can read the keys in it
    data = build_image({PartKind.CONFIG: sealed}, model=device.model, version=args.version, security_counter=args.counter,
                       key=key, build_time=_utc_now(), device_id=device.device_id)
    _write_output(Path(args.out), data, private=True, force=args.force)
    terminals = json.loads(document)["terminals"]
    _out(f"wrote {args.out}: configuration {args.version} for {device.device_id}, {len(terminals)} terminal{'s' * (len(terminals) != 1)} "
         f"({', '.join(t['terminal_id'] for t in terminals[:5])}{'...' if len(terminals) > 5 else ''})")
    _out("  admin PIN set: the POS's settings open with it" if admin_pin_hash else
         "  no admin PIN: the POS's settings stay closed (add --admin-pin to set one)")
    _out("  its keys are sealed to this device; the file is still mode 600: flash it, then delete it")
    return EXIT_OK


# ----------------------------------------------------------------------------- parser


EPILOG = """examples:
  pos-flash keygen --role release --key-id release-2026 --out keys/release
  pos-sim init --storage devices/SN0001 --model HP-S1 --serial SN0001 \\
      --trust keys/release.pub --trust keys/override.pub --record-out SN0001.csv      (on the device)
  pos-flash provision add-device --records devices.csv --record SN0001.csv
  pos-flash build --key keys/release.key --model HP-S1 --version 1.4.2 --counter 7 --app build/app -o app.img
  pos-flash flash --port serial:COM3 --devices devices.csv app.img
  pos-flash info --port serial:COM3 --devices devices.csv

exit status: 0 done, 1 refused or failed (the message says what to do), 2 bad usage,
3 installed but not yet confirmed healthy, 130 interrupted (run the same command again)"""


def _port_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="the device: serial:COM3, serial:/dev/ttyUSB0, socket://127.0.0.1:7001 or usb://1209:7D01[/SERIAL]")
    p.add_argument("--devices", help=f"device records CSV with public keys (default: ${DEVICES_ENV} or ./devices.csv)")
    p.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    p.add_argument("--connect-timeout", type=float, default=flasher.CONNECT_TIMEOUT_S, help="seconds to wait for the device")
    p.add_argument("--host-key", help=f"this tool's maintenance key, pinned on the device (default: ${HOST_KEY_ENV} or ./pos-flash-host.key)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pos-flash", description="Sign, flash and provision smart POS devices (docs/field-engineer.md). "
                                     "The flasher needs the port to itself: stop the bridge service (his-bridge) first.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("host-key", help="create this tool's maintenance key pair (devices pin the .pub)")
    host_key = p.add_subparsers(dest="host_key_command", required=True, metavar="COMMAND")
    p = host_key.add_parser("new", help="write OUT.key (private, 600) and OUT.pub")
    p.add_argument("--name", required=True, help="a name for the key, e.g. field-kit-07")
    p.add_argument("--out", required=True, help="path without extension")
    p.set_defaults(func=cmd_host_key_new)

    p = sub.add_parser("keygen", help="create a signing key pair (release or engineer override)")
    p.add_argument("--role", choices=[r.value for r in KeyRole], required=True, help="release: normal images; override: recovery downgrades")
    p.add_argument("--key-id", required=True, help="a name for the key, e.g. release-2026")
    p.add_argument("--out", required=True, help="path without extension: writes OUT.key (private, 600) and OUT.pub")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("build", help="sign an application bundle and/or configuration into an image")
    p.add_argument("--key", required=True, help="private signing key (.key)")
    p.add_argument("--model", required=True, help="the POS model the image is for")
    p.add_argument("--version", required=True, help="the image version, e.g. 1.4.2")
    p.add_argument("--counter", type=int, required=True, help="security counter; raise it when the release fixes a security flaw")
    p.add_argument("--app", help="application bundle: a file, or a directory (zipped)")
    p.add_argument("--config", help="his-device-config-v1 document (JSON)")
    p.add_argument("--device-id", help="bind the image to one device (required with an override key or --config)")
    p.add_argument("--records", help="device records CSV (with --config: the configuration is sealed to the device's config_key)")
    p.add_argument("--out", "-o", required=True, help="image file to write")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect-image", help="show what an image holds and check it")
    p.add_argument("image")
    p.add_argument("--trust", action="append", help="public key(s) to check the signature with")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("flash", help="flash an image (re-run the same command to resume an interrupted flash)")
    p.add_argument("image", help="the .img file (pos-flash build / provision config)")
    _port_args(p)
    p.add_argument("--chunk-size", type=int, default=flasher.DEFAULT_CHUNK, help=f"bytes per chunk (default {flasher.DEFAULT_CHUNK})")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the new image to confirm its health")
    p.add_argument("--confirm-timeout", type=float, default=flasher.CONFIRM_TIMEOUT_S, help="seconds to wait for the health confirmation")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("info", help="show a device's slots, versions, counters and recent log")
    _port_args(p)
    p.add_argument("--log", type=int, default=20, help="log lines to show (default 20)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    for name, kind, text in (("reboot", fc.Reboot, "reboot the device"),
                             ("confirm", fc.Confirm, "mark the running trial image healthy (after checking it works)"),
                             ("rollback", fc.Rollback, "go back to the other slot's image at the next boot")):
        p = sub.add_parser(name, help=text)
        _port_args(p)
        p.set_defaults(func=cmd_simple(kind))

    prov = sub.add_parser("provision", help="device identities, the device CSV for HIS, configuration images")
    psub = prov.add_subparsers(dest="provision_command", required=True, metavar="STEP")
    p = psub.add_parser("add-device", help="add a device's public record (made by the device itself) to the device records",
                        description="The device makes its own identity and key at provisioning and shows only its public "
                                    "record (on the simulator: pos-sim init --storage DIR ... --record-out dev.csv). "
                                    "This adds that record to the device records CSV the bridge and HIS use.")
    p.add_argument("--records", required=True, help="device records CSV to append to (created if missing)")
    p.add_argument("--record", required=True, help="the device's record (device_id,model,serial_no,public_key CSV); - for stdin")
    p.set_defaults(func=cmd_add_device)

    p = psub.add_parser("export-his", help="the device CSV for HIS (device_id,model,serial_no)")
    p.add_argument("--records", required=True)
    p.add_argument("--out", "-o", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_export_his)

    p = psub.add_parser("hash-pin", help="print the salted scrypt hash of a PIN (for a configuration document written by hand)")
    p.add_argument("--stdin", action="store_true", help="read the PIN from standard input (default: prompt twice)")
    p.set_defaults(func=cmd_hash_pin)

    p = psub.add_parser("config", help="build a signed configuration image for one device")
    p.add_argument("--records", required=True, help="device records CSV")
    p.add_argument("--device-id", required=True)
    p.add_argument("--terminals", required=True, help="terminal CSV from HIS (terminal_id,description[,device_id])")
    p.add_argument("--keys", required=True, help="shared-key file (his-keys-v1)")
    p.add_argument("--gateway-url", required=True, help="the provider's gateway, https://... (http:// only on loopback)")
    p.add_argument("--gateway-cert", action="append", metavar="PEM",
                   help="PEM of the gateway certificate or provider CA the POS pins (required for https); give it "
                        "twice during a rotation, the current certificate and its successor")
    p.add_argument("--merchant-name", required=True)
    p.add_argument("--merchant-name-en")
    lim = p.add_mutually_exclusive_group()
    lim.add_argument("--limits", help="the hospital's hospital-limits-v1 file (gateway-admin hospital limits HOSPITAL_ID --out FILE): "
                                      "the per-transaction limit from its one source")
    lim.add_argument("--limit", help="per-transaction limit in yuan, e.g. 5000.00 (prefer --limits: the gateway's setting)")
    p.add_argument("--comment")
    p.add_argument("--config-version", type=int, default=1)
    p.add_argument("--pin-stdin", action="store_true",
                   help="read the supervisor PIN (and with --admin-pin the admin PIN, on the next line) from standard input "
                        "(default: prompt)")
    p.add_argument("--admin-pin", action="store_true",
                   help="also set the admin PIN that opens the POS's settings (language, printer, about); it must differ "
                        "from the supervisor PIN. Without it the settings cannot be opened on the device")
    p.add_argument("--key", required=True, help="private signing key (.key)")
    p.add_argument("--version", required=True, help="image version, e.g. cfg-2026.11.23")
    p.add_argument("--counter", type=int, required=True, help="security counter of the image")
    p.add_argument("--out", "-o", required=True)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FlashError as exc:
        _err(f"pos-flash: {exc.code.value}: {advise(exc).message}")
        return EXIT_FAIL
    except KeyboardInterrupt:
        _err("pos-flash: interrupted; run the same command again (a flash resumes where it stopped)")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
