"""The step-2 registries on disk: device records (with public keys) and the HIS terminal list.

    devices.csv    device_id,model,serial_no,public_key   our records; `export --for-his` is HIS's copy (with
                                                           the keys: HIS verifies every result's `sig`, 1.1 A)
    terminals.csv  terminal_id,description,device_id        from HIS, plus our bindings

Parsing is protocol.registry's. The running bridge re-reads a file when it changes (so
`his-bridge terminals bind` takes effect without a restart); a file that no longer parses is
ignored with an error in the log and the previous contents stay in force.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from protocol.errors import CodedError
from protocol.registry import (
    DeviceRecord, RegistryError, TerminalRecord, format_device_csv, format_terminal_csv, parse_device_csv,
    parse_terminal_csv,
)

from bridge.watched import WatchedFile
from local_storage.atomic_file import write_atomically


class RegistryFileError(CodedError):
    """A registry file cannot be used; the message names the file (and line) and the fix."""

    code = "registry_file"


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryFileError(f"no {what} at {path}; create it with his-bridge init, or import one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryFileError(f"cannot read the {what} {path}: {exc}") from None


def read_devices(path: Path) -> list[DeviceRecord]:
    try:
        return parse_device_csv(_read_text(path, "device registry"), source=str(path))
    except RegistryError as exc:
        raise RegistryFileError(str(exc)) from None


def read_terminals(path: Path) -> list[TerminalRecord]:
    try:
        return parse_terminal_csv(_read_text(path, "terminal registry"), source=str(path))
    except RegistryError as exc:
        raise RegistryFileError(str(exc)) from None


# ------------------------------------------------------------------ admin operations (CLI)


def import_devices(registry: Path, source: Path) -> tuple[int, int]:
    """Merge device records (with public keys) into the registry; returns (added, updated)."""
    incoming = read_devices(source)
    missing = [d.device_id for d in incoming if d.public_key is None]
    if missing:
        raise RegistryFileError(f"{source}: no public_key for {', '.join(missing)}; the bridge cannot verify those devices")
    current = {d.device_id: d for d in (read_devices(registry) if registry.exists() else [])}
    added = sum(1 for d in incoming if d.device_id not in current)
    for d in incoming:
        current[d.device_id] = d
    write_atomically(registry, format_device_csv(list(current.values())))
    return added, len(incoming) - added


def export_devices_for_his(registry: Path, out: Path) -> int:
    devices = read_devices(registry)
    try:
        text = format_device_csv(devices, for_his=True)
    except ValueError as exc:
        raise RegistryFileError(f"{registry}: {exc}; import the device records from provisioning again") from None
    write_atomically(out, text)
    return len(devices)


def import_terminals(registry: Path, source: Path, devices: Path) -> tuple[int, int]:
    """Merge HIS's terminal list; a row without device_id keeps the binding it already had."""
    incoming = read_terminals(source)
    known = {d.device_id for d in read_devices(devices)} if devices.exists() else set()
    unknown = sorted({t.device_id for t in incoming if t.device_id and t.device_id not in known})
    if unknown:
        raise RegistryFileError(f"{source}: device_id {', '.join(unknown)} not in the device registry {devices}")
    current = {t.terminal_id: t for t in (read_terminals(registry) if registry.exists() else [])}
    added = sum(1 for t in incoming if t.terminal_id not in current)
    for t in incoming:
        old = current.get(t.terminal_id)
        current[t.terminal_id] = t if t.device_id or old is None else replace(t, device_id=old.device_id)
    write_atomically(registry, format_terminal_csv(list(current.values())))
    return added, len(incoming) - added


def bind_terminal(registry: Path, terminal_id: str, device_id: str, devices: Path) -> TerminalRecord:
    if device_id not in {d.device_id for d in read_devices(devices)}:
        raise RegistryFileError(f"device {device_id} is not in the device registry {devices}; import it first")
    terminals = read_terminals(registry)
    for index, t in enumerate(terminals):
        if t.terminal_id == terminal_id:
            terminals[index] = replace(t, device_id=device_id)
            write_atomically(registry, format_terminal_csv(terminals))
            return terminals[index]
    raise RegistryFileError(f"terminal {terminal_id} is not in {registry}; import HIS's terminal list first")


# ------------------------------------------------------------------ the running bridge's view


class Registries:
    """Lookups for the bridge: device public keys and records, terminal records and bindings."""

    def __init__(self, devices: Path, terminals: Path, on_error: Callable[[str], None] = lambda m: None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._devices = WatchedFile(devices, lambda p: {d.device_id: d for d in read_devices(p)}, on_error,
                                    errors=(RegistryFileError,), what="device registry", clock=clock)
        self._terminals = WatchedFile(terminals, lambda p: {t.terminal_id: t for t in read_terminals(p)}, on_error,
                                      errors=(RegistryFileError,), what="terminal registry", clock=clock)

    def device(self, device_id: str) -> DeviceRecord | None:
        return self._devices.get().get(device_id)

    def public_key_for(self, device_id: str) -> bytes | None:
        record = self.device(device_id)
        return record.public_key if record is not None else None

    def terminal(self, terminal_id: str) -> TerminalRecord | None:
        return self._terminals.get().get(terminal_id)

    def terminals_of(self, device_id: str) -> list[str]:
        return sorted(t.terminal_id for t in self._terminals.get().values() if t.device_id == device_id)
