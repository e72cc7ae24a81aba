"""Provisioning (step 2): device identities and keys, the device records, configuration images.

A provisioned device is a directory the simulator owns (its "secure storage"):

    identity.json    {"format": "his-device-identity-v1", "device_id", "model", "serial_no",
                      "usb": {"vid": "1209", "pid": "7D01", "serial": "<serial_no>"}}
    device_key       {"format": "his-device-key-v1", "seed_hex": "..."}          mode 0600
    boot/trust.json  the image signing keys the bootloader trusts (public keys only)

and a line in the device records CSV (protocol.registry, with public_key), which the bridge loads
and from which `export_his` writes the three-column copy HIS gets.

A configuration image carries one his-device-config-v1 document (terminal.config) built from the
HIS terminal CSV, a shared-key file (protocol.keyfile), the channel settings JSON, the supervisor
PIN (only its salted scrypt hash, terminal.pin) and limits. It holds shared keys: the file is
written 0600 and must be handled like a key file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from protocol import signing
from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.ids import is_valid_id
from protocol.keyfile import KeyFileError, parse_keyfile
from protocol.link.handshake import DeviceIdentity
from protocol.registry import DeviceRecord, RegistryError, format_device_csv, parse_device_csv, parse_terminal_csv
from protocol.strictjson import loads_object

from firmware_sim.signing_keys import TrustStore, format_trust, read_text, write_new_file

IDENTITY_FILE = "identity.json"
DEVICE_KEY_FILE = "device_key"
TRUST_FILE = "boot/trust.json"
IDENTITY_FORMAT = "his-device-identity-v1"
DEVICE_KEY_FORMAT = "his-device-key-v1"
DEFAULT_VID = "1209"
DEFAULT_PID = "7D01"


@dataclass(frozen=True, slots=True)
class ProvisionedDevice:
    """What the simulator needs to be this device."""

    device_id: str
    model: str
    serial_no: str
    usb_vid: int
    usb_pid: int
    usb_serial: str
    device_key_seed: bytes
    directory: Path

    def __repr__(self) -> str:  # never show the key
        return f"ProvisionedDevice(device_id={self.device_id!r}, model={self.model!r}, serial_no={self.serial_no!r})"

    @property
    def public_key(self) -> bytes:
        return signing.public_key(self.device_key_seed)

    def identity(self, firmware: str) -> DeviceIdentity:
        """The HELLO identity, with the version the bootloader reports as running."""
        return DeviceIdentity(self.device_id, self.model, self.serial_no, firmware)

    def record(self) -> DeviceRecord:
        return DeviceRecord(self.device_id, self.model, self.serial_no, self.public_key)


def _check_name(what: str, value: str) -> str:
    if not is_valid_id(value):
        raise FlashError(FlashCode.BAD_INPUT, f"{what} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def _hex4(what: str, value: str) -> str:
    try:
        if len(value) != 4:
            raise ValueError
        int(value, 16)
    except ValueError:
        raise FlashError(FlashCode.BAD_INPUT, f"{what} {value!r} must be 4 hex digits, as in 1209") from None
    return value.upper()


def read_records(path: Path) -> list[DeviceRecord]:
    """The device records CSV, or [] when the file does not exist yet."""
    if not path.exists():
        return []
    try:
        return parse_device_csv(read_text(path, "device records"), source=str(path))
    except RegistryError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None


def new_device(directory: Path, *, model: str, serial_no: str, trust: TrustStore, seed: bytes, records: Path,
               device_id: str | None = None, usb_vid: str = DEFAULT_VID, usb_pid: str = DEFAULT_PID) -> ProvisionedDevice:
    """Create a device identity and key in `directory` and append the device to `records`.

    Refuses to touch a directory that already holds a device, and a device_id or serial number
    that `records` already lists, so an identity is never silently replaced."""
    device_id = _check_name("device_id", device_id or f"D-{serial_no}")
    _check_name("serial number", serial_no)
    if not model or len(model) > 64 or not model.isprintable():
        raise FlashError(FlashCode.BAD_INPUT, "the model must be printable text of 1 to 64 characters")
    if not trust.keys:
        raise FlashError(FlashCode.BAD_INPUT, "give the device at least one trusted signing key (--trust KEY.pub)")
    if (directory / IDENTITY_FILE).exists() or (directory / DEVICE_KEY_FILE).exists():
        raise FlashError(FlashCode.EXISTS, f"{directory} already holds a device")
    existing = read_records(records)
    for r in existing:
        if r.device_id == device_id or r.serial_no == serial_no:
            raise FlashError(FlashCode.EXISTS, f"{records} already lists device {r.device_id} (serial {r.serial_no})")
    vid, pid = _hex4("USB VID", usb_vid), _hex4("USB PID", usb_pid)
    device = ProvisionedDevice(device_id, model, serial_no, int(vid, 16), int(pid, 16), serial_no, seed, directory)
    identity = {"format": IDENTITY_FORMAT, "device_id": device_id, "model": model, "serial_no": serial_no,
                "usb": {"vid": vid, "pid": pid, "serial": serial_no}}
    write_new_file(directory / DEVICE_KEY_FILE, json.dumps({"format": DEVICE_KEY_FORMAT, "seed_hex": seed.hex()}) + "\n", private=True)
    write_new_file(directory / TRUST_FILE, format_trust(trust), private=False)
    write_new_file(directory / IDENTITY_FILE, json.dumps(identity, indent=2) + "\n", private=False)
    _write_records(records, [*existing, device.record()])
    return device


def _write_records(path: Path, devices: list[DeviceRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(format_device_csv(devices), encoding="utf-8", newline="")
    os.replace(tmp, path)


def load_device(directory: Path) -> ProvisionedDevice:
    """Read a provisioned device directory (what `pos-sim` starts from)."""
    try:
        ident = loads_object(read_text(directory / IDENTITY_FILE, "device identity"), what=str(directory / IDENTITY_FILE))
        key = loads_object(read_text(directory / DEVICE_KEY_FILE, "device key"), what=str(directory / DEVICE_KEY_FILE))
    except ProtocolError as exc:
        raise FlashError(FlashCode.BAD_INPUT, exc.message) from None
    if ident.get("format") != IDENTITY_FORMAT or key.get("format") != DEVICE_KEY_FORMAT:
        raise FlashError(FlashCode.BAD_INPUT, f"{directory} does not hold a device provisioned by pos-flash")
    from firmware_sim.signing_keys import check_private_mode

    check_private_mode(directory / DEVICE_KEY_FILE)
    usb = ident.get("usb")
    try:
        seed = bytes.fromhex(str(key.get("seed_hex")))
        if len(seed) != signing.SEED_SIZE or not isinstance(usb, dict):
            raise ValueError
        return ProvisionedDevice(_check_name("device_id", str(ident["device_id"])), str(ident["model"]),
                                 str(ident["serial_no"]), int(_hex4("USB VID", str(usb["vid"])), 16),
                                 int(_hex4("USB PID", str(usb["pid"])), 16), str(usb["serial"]), seed, directory)
    except (KeyError, ValueError):
        raise FlashError(FlashCode.BAD_INPUT, f"{directory}: identity.json or device_key is incomplete") from None


def export_his(records: Path) -> str:
    """The device CSV for HIS: device_id,model,serial_no (no keys)."""
    devices = read_records(records)
    if not devices:
        raise FlashError(FlashCode.BAD_INPUT, f"{records} lists no devices; provision one first (pos-flash provision new-device)")
    return format_device_csv(devices, for_his=True)


def find_record(records: Path, device_id: str) -> DeviceRecord:
    for r in read_records(records):
        if r.device_id == device_id:
            return r
    raise FlashError(FlashCode.BAD_INPUT, f"{records} does not list device {device_id}")


# ----------------------------------------------------------------------------- configuration


def build_config_document(*, device: DeviceRecord, merchant_name: str, terminals_csv: str, keys_text: str,
                          channels: dict[str, object], pin_hash: str, limit_yuan: str | None = None,
                          config_version: int = 1, comment: str | None = None, merchant_name_en: str | None = None,
                          terminals_source: str = "terminal CSV", keys_source: str = "key file") -> bytes:
    """The his-device-config-v1 document for `device`, validated by terminal.config before use.

    Terminals bound to another device in the HIS CSV (its device_id column) are left out."""
    from terminal.config import ConfigError, parse_config

    try:
        terminals = [t for t in parse_terminal_csv(terminals_csv, source=terminals_source)
                     if t.device_id in (None, device.device_id)]
    except RegistryError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None
    if not terminals:
        raise FlashError(FlashCode.BAD_INPUT, f"{terminals_source} lists no terminal for device {device.device_id}")
    try:
        ring = parse_keyfile(keys_text, source=keys_source)
    except KeyFileError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None
    del ring  # parsed only to report a bad key file by its own name; the document embeds the text
    doc: dict[str, object] = {"format": "his-device-config-v1", "config_version": config_version}
    if comment:
        doc["comment"] = comment
    doc["device"] = {"device_id": device.device_id, "model": device.model, "serial_no": device.serial_no}
    doc["merchant"] = {"name": merchant_name, **({"name_en": merchant_name_en} if merchant_name_en else {})}
    doc["keys"] = json.loads(keys_text)
    doc["terminals"] = [{"terminal_id": t.terminal_id, "description": t.description} for t in terminals]
    if limit_yuan is not None:
        doc["limits"] = {"per_transaction": limit_yuan}
    doc["supervisor"] = {"pin_hash": pin_hash}
    doc["channels"] = channels
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    try:
        parse_config(text, source="configuration")
    except ConfigError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None
    return text.encode("utf-8")


def read_channels(path: Path | None) -> dict[str, object]:
    if path is None:
        return {}
    try:
        return loads_object(read_text(path, "channel settings"), what=str(path))
    except ProtocolError as exc:
        raise FlashError(FlashCode.BAD_INPUT, exc.message) from None


def hash_supervisor_pin(pin: str) -> str:
    from terminal import pin as pins

    try:
        return pins.hash_pin(pin)
    except ValueError as exc:
        raise FlashError(FlashCode.BAD_INPUT, f"supervisor PIN: {exc}") from None
