"""Provisioning on the field engineer's PC (step 2): the device records and configuration images.

The device makes its own identity and key (terminal.identity, `pos-sim init` on the simulator) and
hands over only its public record; `add_device` puts that record into the device records CSV
(protocol.registry, with public_key), which the bridge loads and from which `export_his` writes the
copy HIS gets.

A configuration image carries one his-device-config-v1 document (terminal.config) built from the
HIS terminal CSV, a shared-key file (protocol.keyfile), the channel settings JSON, the supervisor
PIN that confirms refunds and, optionally, the admin PIN that opens the POS's settings (only their
salted scrypt hashes, terminal.pin), and limits. It holds shared keys: the file is
written 0600 and must be handled like a key file.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.amount import format_yuan
from protocol.keyfile import KeyFileError, parse_keyfile
from protocol.limits import LimitsError, parse_limits
from protocol.registry import DeviceRecord, RegistryError, format_device_csv, parse_device_csv, parse_terminal_csv
from protocol.sealed_config import seal_config
from protocol.strictjson import loads_object
from terminal import pin as pins
from terminal.config import DeviceConfigError, check_pinned_certificates, parse_config
from terminal.identity import check_model, check_name
from terminal.secure_files import read_text
from local_storage.atomic_file import write_atomically


def limit_from_file(path: Path) -> str:
    """The per-transaction limit (yuan text) of the hospital-limits-v1 file the gateway exported
    (`gateway-admin hospital limits HOSPITAL_ID --out FILE`): the device gets the hospital's setting."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlashError(FlashCode.BAD_INPUT, f"cannot read limits file {path}: {exc.strerror or exc}") from None
    try:
        return format_yuan(parse_limits(data, source=str(path)).per_transaction_fen)
    except LimitsError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None


def read_records(path: Path) -> list[DeviceRecord]:
    """The device records CSV, or [] when the file does not exist yet."""
    if not path.exists():
        return []
    try:
        return parse_device_csv(read_text(path, "device records"), source=str(path))
    except RegistryError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None


def add_device(records: Path, record: DeviceRecord) -> DeviceRecord:
    """Append a device's public record (from the device itself) to the device records CSV.

    Refuses a device_id or serial number that `records` already lists, and a record without its
    public key, so an identity is never silently replaced and every listed device can prove itself."""
    check_name("device_id", record.device_id)
    check_name("serial number", record.serial_no)
    check_model(record.model)
    if not record.public_key:
        raise FlashError(FlashCode.BAD_INPUT, f"the record of {record.device_id} has no public_key; take it from the device (pos-sim init prints it)")
    existing = read_records(records)
    for r in existing:
        if r.device_id == record.device_id or r.serial_no == record.serial_no:
            raise FlashError(FlashCode.EXISTS, f"{records} already lists device {r.device_id} (serial {r.serial_no})")
    _write_records(records, [*existing, record])
    return record


def parse_device_record(text: str, source: str) -> DeviceRecord:
    """One device's public record, as the device prints it (the device records CSV with one row)."""
    try:
        found = parse_device_csv(text, source=source)
    except RegistryError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None
    if len(found) != 1:
        raise FlashError(FlashCode.BAD_INPUT, f"{source} must hold exactly one device record, not {len(found)}")
    return found[0]


def _write_records(path: Path, devices: list[DeviceRecord]) -> None:
    write_atomically(path, format_device_csv(devices))


def export_his(records: Path) -> str:
    """The device CSV for HIS: device_id,model,serial_no,public_key (his-interface 1.1 A: HIS
    verifies every result's `sig` with the device's public key)."""
    devices = read_records(records)
    if not devices:
        raise FlashError(FlashCode.BAD_INPUT, f"{records} lists no devices; add one first (pos-flash provision add-device)")
    return format_device_csv(devices, for_his=True)


def find_record(records: Path, device_id: str) -> DeviceRecord:
    for r in read_records(records):
        if r.device_id == device_id:
            return r
    raise FlashError(FlashCode.BAD_INPUT, f"{records} does not list device {device_id}")


# ----------------------------------------------------------------------------- configuration


def build_config_document(*, device: DeviceRecord, merchant_name: str, terminals_csv: str, keys_text: str,
                          gateway: dict[str, str], pin_hash: str, admin_pin_hash: str | None = None,
                          limit_yuan: str | None = None, polling: dict[str, dict[str, float]] | None = None,
                          config_version: int = 1, comment: str | None = None, merchant_name_en: str | None = None,
                          terminals_source: str = "terminal CSV", keys_source: str = "key file") -> bytes:
    """The his-device-config-v1 document for `device`, validated by terminal.config before use.

    `gateway` is {"url": ..., "pinned_cert": PEM text}: the POS holds no channel secret.

    Terminals bound to another device in the HIS CSV (its device_id column) are left out."""
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
    if admin_pin_hash is not None:
        doc["admin"] = {"pin_hash": admin_pin_hash}
    doc["gateway"] = dict(gateway)
    if polling:
        doc["polling"] = polling
    text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    try:
        parse_config(text, source="configuration")
    except DeviceConfigError as exc:
        raise FlashError(FlashCode.BAD_INPUT, str(exc)) from None
    return text.encode("utf-8")


def read_gateway(url: str, certs: Path | list[Path] | None) -> dict[str, str]:
    """The "gateway" section: its URL and the PEM of the certificates (or provider CAs) the POS pins.

    Several files are pinned side by side: during a rotation, the certificate the gateway serves now
    and its successor (docs/field-engineer.md, "Rotating the gateway's certificate")."""
    gateway = {"url": url}
    files = [certs] if isinstance(certs, Path) else list(certs or [])
    if files:
        pem = "".join(read_text(path, "gateway certificate").strip() + "\n" for path in files)
        try:
            check_pinned_certificates(pem)
        except ValueError as exc:
            raise FlashError(FlashCode.BAD_INPUT, f"--gateway-cert {', '.join(map(str, files))}: {exc}") from None
        gateway["pinned_cert"] = pem
    return gateway


def hash_supervisor_pin(pin: str) -> str:
    return hash_pin(pin, "supervisor PIN")


def hash_pin(pin: str, what: str) -> str:
    """The salted scrypt hash of a PIN for a configuration document (`what` names it in refusals)."""
    try:
        return pins.hash_pin(pin)
    except ValueError as exc:
        raise FlashError(FlashCode.BAD_INPUT, f"{what}: {exc}") from None


def hash_pins(supervisor: str, admin: str | None) -> tuple[str, str | None]:
    """The supervisor's and (if given) the admin's PIN hashes. The two must differ: whoever confirms
    refunds must not thereby hold the settings, nor the other way round."""
    if admin is not None and hmac.compare_digest(admin.encode(), supervisor.encode()):
        raise FlashError(FlashCode.BAD_INPUT, "the admin PIN must differ from the supervisor PIN")
    return hash_pin(supervisor, "supervisor PIN"), None if admin is None else hash_pin(admin, "admin PIN")


def seal_for(device: DeviceRecord, document: bytes) -> bytes:
    """The configuration document sealed to `device`'s config key (protocol.sealed_config): only that
    device can read the shared and channel keys in it, wherever the image file or its bytes go."""
    if device.config_key is None:
        raise FlashError(FlashCode.BAD_KEY, f"the record of device {device.device_id} has no config_key, so its "
                         "configuration cannot be sealed to it; provision it again (pos-sim init) and add the new record")
    return seal_config(document, device_id=device.device_id, device_public=device.config_key, random=os.urandom)
