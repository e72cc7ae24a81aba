"""The shared-key file format (text in, KeyRing out), used by the bridge, the device and HIS tools.

    {"format": "his-keys-v1",
     "keys": [{"kid": "k2026a", "suite": "AES-256-GCM", "key_hex": "<64 hex digits>",
               "created": "2026-11-23", "retired": false}]}

Files holding keys must be readable by their owner only; enforcing that is the I/O layer's job
(see bridge/keystore.py). This module never logs or formats a key except into the file text itself.
"""

from __future__ import annotations

import json

from protocol.crypto import SUITES, KeyRing, SharedKey
from protocol.errors import CodedError, ProtocolError
from protocol.ids import is_valid_id
from protocol.strictjson import Fields, loads_object

FORMAT = "his-keys-v1"


class KeyFileError(CodedError, ValueError):
    """The key file is malformed; the message names the entry and field, never the key."""

    code = "key_file"


def parse_keyfile(text: str, source: str = "key file") -> KeyRing:
    try:
        f = Fields(loads_object(text, what=source), where="keys")
        if f.req_str("format", max_len=32) != FORMAT:
            raise KeyFileError(f"{source}: format must be {FORMAT!r}")
        entries = f.list("keys", max_items=256)
    except ProtocolError as exc:
        raise KeyFileError(f"{source}: {exc.message}") from None
    keys: list[SharedKey] = []
    for index, raw in enumerate(entries):
        where = f"{source}: keys[{index}]"
        if not isinstance(raw, dict):
            raise KeyFileError(f"{where} must be an object")
        e = Fields(raw, where=f"keys[{index}]")
        try:
            kid = e.req_str("kid", max_len=64)
            suite = e.req_str("suite", max_len=32)
            key_hex = e.req_str("key_hex", max_len=128)
            retired = e.raw("retired") if e.has("retired") else False
        except ProtocolError as exc:
            raise KeyFileError(f"{source}: {exc.message}") from None
        if not is_valid_id(kid):
            raise KeyFileError(f"{where}.kid {kid!r} must match [A-Za-z0-9_-]{{1,64}}")
        if suite not in SUITES:
            raise KeyFileError(f"{where}.suite {suite!r} must be one of {', '.join(SUITES)}")
        if not isinstance(retired, bool):
            raise KeyFileError(f"{where}.retired must be true or false")
        try:
            secret = bytes.fromhex(key_hex)
        except ValueError:
            raise KeyFileError(f"{where}.key_hex is not hex") from None
        if len(secret) != SUITES[suite].key_size:
            raise KeyFileError(f"{where}.key_hex must be {SUITES[suite].key_size} bytes for {suite}, found {len(secret)}")
        keys.append(SharedKey(kid, suite, secret, retired))
    try:
        return KeyRing(keys)
    except ValueError as exc:
        raise KeyFileError(f"{source}: {exc}") from None


def format_keyfile(keys: list[SharedKey] | tuple[SharedKey, ...] | KeyRing, created: dict[str, str] | None = None) -> str:
    entries = []
    for key in keys:
        entry: dict[str, object] = {"kid": key.kid, "suite": key.suite, "key_hex": key.secret.hex()}
        if created and key.kid in created:
            entry["created"] = created[key.kid]
        entry["retired"] = key.retired
        entries.append(entry)
    return json.dumps({"format": FORMAT, "keys": entries}, indent=2) + "\n"
