"""The bridge's key files: the shared-key file (format: protocol.keyfile: read it safely, add, list
and retire keys) and the bridge's link identity key (protocol.link.hostkeys: made once by
`his-bridge init`, pinned by every POS at provisioning).

On POSIX a key file that group or others may read is refused, with the command that fixes it; on
Windows the check is skipped (protect the file with NTFS permissions; docs/bridge.md says how).
Writes are atomic (a temporary file created 0600, then renamed) so a crash never leaves half a
key file. Keys are never logged or printed; people compare fingerprints.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from protocol.crypto import SUITES, KeyRing, SharedKey
from protocol.errors import CodedError
from protocol.flash import FlashError
from protocol.link.handshake import HostRole
from protocol.link.hostkeys import HostKey, format_private, format_public, new_host_key, parse_private
from protocol.ids import is_valid_id
from protocol.keyfile import KeyFileError, format_keyfile, parse_keyfile

from bridge.watched import WatchedFile
from local_storage.atomic_file import create_new, write_atomically


class KeyStoreError(CodedError):
    """The key file cannot be used; the message says what to do."""

    code = "key_store"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    kid: str
    suite: str
    fingerprint: str
    created: str | None
    retired: bool


def check_private(path: Path) -> None:
    if os.name != "posix":
        return
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyStoreError(f"cannot read the key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(
            f"the key file {path} can be read by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )


def _read(path: Path) -> tuple[KeyRing, dict[str, str]]:
    check_private(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyStoreError(f"no key file at {path}; create one with: his-bridge keys new --kid K --suite AES-256-GCM") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"cannot read the key file {path}: {exc}") from None
    try:
        ring = parse_keyfile(text, source=str(path))
    except KeyFileError as exc:
        raise KeyStoreError(str(exc)) from None
    created: dict[str, str] = {}
    for entry in json.loads(text).get("keys", []):
        if isinstance(entry.get("created"), str):
            created[entry["kid"]] = entry["created"]
    return ring, created


def load_keyring(path: Path) -> KeyRing:
    return _read(path)[0]


def write_keyfile(path: Path, keys: list[SharedKey] | KeyRing, created: dict[str, str]) -> None:
    write_atomically(path, format_keyfile(list(keys), created), private=True)


def list_keys(path: Path) -> list[KeyInfo]:
    ring, created = _read(path)
    return [KeyInfo(k.kid, k.suite, k.fingerprint, created.get(k.kid), k.retired) for k in ring]


def new_key(path: Path, kid: str, suite: str, *, random: Callable[[int], bytes] = os.urandom) -> SharedKey:
    """Add a fresh random key (creating the file if there is none); returns it (caller shows the fingerprint)."""
    if not is_valid_id(kid):
        raise KeyStoreError(f"kid {kid!r} must match [A-Za-z0-9_-]{{1,64}}")
    if suite not in SUITES:
        raise KeyStoreError(f"suite {suite!r} is not supported; use one of {', '.join(SUITES)}")
    ring, created = _read(path) if path.exists() else (KeyRing(), {})
    if kid in ring:
        raise KeyStoreError(f"kid {kid} already exists in {path}; keys are never replaced, pick a new kid")
    key = SharedKey(kid, suite, random(SUITES[suite].key_size))
    created[kid] = time.strftime("%Y-%m-%d")
    write_keyfile(path, list(ring) + [key], created)
    return key


def retire_key(path: Path, kid: str) -> SharedKey:
    ring, created = _read(path)
    keys = list(ring)
    for index, key in enumerate(keys):
        if key.kid == kid:
            keys[index] = SharedKey(key.kid, key.suite, key.secret, retired=True)
            write_keyfile(path, keys, created)
            return keys[index]
    raise KeyStoreError(f"kid {kid} is not in {path} (his-bridge keys list shows the kids)")


IDENTITY_FILE = "bridge_identity.key"
IDENTITY_PUBLIC_FILE = "bridge_identity.pub"


def new_identity(path: Path, name: str, *, random: Callable[[int], bytes] = os.urandom) -> HostKey:
    """Make the bridge's link identity key (0600) and its public half beside it (.pub, to pin on
    every POS: pos-sim init --host-key / docs/field-engineer.md). Never overwrites."""
    if path.exists():
        raise KeyStoreError(f"{path} already exists; a bridge keeps its identity (every POS pins it)")
    try:
        key = new_host_key(name, HostRole.BRIDGE, random(32))
    except FlashError as exc:
        raise KeyStoreError(exc.detail) from None
    create_new(path, format_private(key), private=True)
    public_path = path.with_suffix(".pub")
    public_path.unlink(missing_ok=True)
    public_path.write_text(format_public(key.public_key()), encoding="utf-8")
    return key


def load_identity(path: Path) -> HostKey:
    """The bridge's link identity key; refused when others can read the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyStoreError(f"no bridge identity key at {path}; create one with: his-bridge identity new") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyStoreError(f"cannot read the bridge identity key {path}: {exc}") from None
    check_private(path)
    try:
        key = parse_private(text, str(path))
    except FlashError as exc:
        raise KeyStoreError(exc.detail) from None
    if key.role is not HostRole.BRIDGE:
        raise KeyStoreError(f"{path} is a {key.role.value} key, not a bridge identity key")
    return key


class WatchedKeyFile(WatchedFile[KeyRing]):
    """The current KeyRing, re-read when the key file changes."""

    def __init__(self, path: Path, on_error: Callable[[str], None] = lambda message: None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(path, load_keyring, on_error, errors=(KeyStoreError,), what="key file", clock=clock)

    def ring(self) -> KeyRing:
        return self.get()
