"""Step 2 registries as text: the device CSV (we give HIS) and the terminal CSV (HIS gives us).

Device CSV, header required:
    device_id,model,serial_no[,public_key[,config_key]]
`public_key` is the standard base64 (padded) of the raw 32-byte Ed25519 device public key
(his-interface 1.1 A). HIS verifies every result's `sig` with it, so the copy handed to HIS carries
it too (`format_device_csv(..., for_his=True)` refuses a device without one). Older records wrote
the key as 64 hex digits; those are still read (the two forms cannot be confused: 44 vs 64 chars).
`config_key` (base64 of the device's 32-byte X25519 public key, a separate key made beside the
Ed25519 one) is what configuration images are sealed to (protocol.sealed_config); it is in our own
records and the bridge's, not in the copy for HIS.

Terminal CSV, header required:
    terminal_id,description[,device_id]

Both are UTF-8 (a leading BOM, as Excel writes, is accepted). Every problem raises RegistryError
naming the line and the field. Pure functions over text; reading and writing files is the caller's.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from protocol.errors import CodedError
from protocol.ids import is_valid_id
from protocol.signing import PUBLIC_KEY_SIZE, decode_public_key, encode_public_key


class RegistryError(CodedError, ValueError):
    code = "bad_registry"

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}, line {line}: {message}")
        self.source = source
        self.line = line


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    model: str
    serial_no: str
    public_key: bytes | None = None  # Ed25519, 32 bytes
    config_key: bytes | None = None  # X25519, 32 bytes: configuration secrets are encrypted to it


@dataclass(frozen=True, slots=True)
class TerminalRecord:
    terminal_id: str
    description: str
    device_id: str | None = None


def _rows(text: str, source: str, required: tuple[str, ...], optional: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise RegistryError(source, 1, f"empty file; the first line must be the header {','.join(required)}") from None
    except csv.Error as exc:
        raise RegistryError(source, 1, f"not valid CSV: {exc}") from None
    header = [h.strip() for h in header]
    allowed = required + optional
    if header[: len(required)] != list(required) or any(h not in allowed for h in header) or len(set(header)) != len(header):
        raise RegistryError(source, 1, f"header must be {','.join(required)}[,{','.join(optional)}], found {','.join(header)}")
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if len(record) != len(header):
                raise RegistryError(source, line, f"expected {len(header)} fields, found {len(record)}")
            rows.append((line, {name: cell.strip() for name, cell in zip(header, record)}))
    except csv.Error as exc:
        raise RegistryError(source, reader.line_num, f"not valid CSV: {exc}") from None
    return rows


def _check_id(source: str, line: int, field: str, value: str) -> str:
    if not is_valid_id(value):
        raise RegistryError(source, line, f"{field} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def _check_text(source: str, line: int, field: str, value: str, max_len: int = 128) -> str:
    if len(value) > max_len or not value.isprintable():
        raise RegistryError(source, line, f"{field} must be printable text of at most {max_len} characters")
    return value


def parse_device_csv(text: str, source: str = "device CSV") -> list[DeviceRecord]:
    devices: list[DeviceRecord] = []
    seen: set[str] = set()
    for line, row in _rows(text, source, ("device_id", "model", "serial_no"), ("public_key", "config_key")):
        device_id = _check_id(source, line, "device_id", row["device_id"])
        if device_id in seen:
            raise RegistryError(source, line, f"device_id {device_id} appears twice")
        seen.add(device_id)
        public_key = _public_key(source, line, row["public_key"]) if row.get("public_key") else None
        config_key = _public_key(source, line, row["config_key"], "config_key") if row.get("config_key") else None
        model = _check_text(source, line, "model", row["model"])
        serial_no = _check_text(source, line, "serial_no", row["serial_no"])
        devices.append(DeviceRecord(device_id, model, serial_no, public_key, config_key))
    return devices


def _public_key(source: str, line: int, text: str, field: str = "public_key") -> bytes:
    if len(text) == 2 * PUBLIC_KEY_SIZE:  # the older hex form of our own records
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise RegistryError(source, line, f"{field} must be base64 (or, in older records, 64 hex digits)") from None
    try:
        return decode_public_key(text)
    except ValueError as exc:
        raise RegistryError(source, line, f"{str(exc).replace('public_key', field)} ({PUBLIC_KEY_SIZE} bytes: 44 characters ending in '=')") from None


def format_device_csv(devices: list[DeviceRecord] | tuple[DeviceRecord, ...], *, for_his: bool = False) -> str:
    """The device CSV with `public_key` in base64. `for_his`: the copy handed to HIS in step 2,
    which must carry every device's key (HIS verifies results with it): ValueError if one has none."""
    if for_his:
        missing = [d.device_id for d in devices if d.public_key is None]
        if missing:
            raise ValueError(f"no public_key for {', '.join(missing)}: HIS could not verify their results")
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    with_config_keys = not for_his and any(d.config_key for d in devices)
    writer.writerow(["device_id", "model", "serial_no", "public_key"] + (["config_key"] if with_config_keys else []))
    for d in devices:
        row = [d.device_id, d.model, d.serial_no, encode_public_key(d.public_key) if d.public_key else ""]
        if with_config_keys:
            row.append(encode_public_key(d.config_key) if d.config_key else "")
        writer.writerow(row)
    return out.getvalue()


def parse_terminal_csv(text: str, source: str = "terminal CSV") -> list[TerminalRecord]:
    terminals: list[TerminalRecord] = []
    seen: set[str] = set()
    for line, row in _rows(text, source, ("terminal_id", "description"), ("device_id",)):
        terminal_id = _check_id(source, line, "terminal_id", row["terminal_id"])
        if terminal_id in seen:
            raise RegistryError(source, line, f"terminal_id {terminal_id} appears twice")
        seen.add(terminal_id)
        device_id = row.get("device_id") or None
        if device_id is not None:
            _check_id(source, line, "device_id", device_id)
        terminals.append(TerminalRecord(terminal_id, _check_text(source, line, "description", row["description"]), device_id))
    return terminals


def format_terminal_csv(terminals: list[TerminalRecord] | tuple[TerminalRecord, ...]) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["terminal_id", "description", "device_id"])
    for t in terminals:
        writer.writerow([t.terminal_id, t.description, t.device_id or ""])
    return out.getvalue()
