"""Secrets at rest: merchant credentials and HIS keys are sealed under one master key.

The master key (32 random bytes, 64 hex digits) comes from the environment or from a file that only
its owner can read:

    GATEWAY_MASTER_KEY=<64 hex>            or        GATEWAY_MASTER_KEY_FILE=/etc/gateway/master.key (0600)

A sealed value is  b"GV1" || key_id (4) || nonce (12) || AES-256-GCM(ciphertext || tag)  with the
value's place in the database as associated data (e.g. "merchant|H001|WECHAT|2"), so a sealed blob
copied into another row does not open. `key_id` (the first 4 bytes of SHA-256 of the key) lets a
wrong master key be told apart from a damaged value. Neither the key nor a plaintext is ever
logged or put into an error message.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import GatewayCode, GatewayError

ENV_KEY = "GATEWAY_MASTER_KEY"
ENV_KEY_FILE = "GATEWAY_MASTER_KEY_FILE"
KEY_SIZE = 32
_MAGIC = b"GV1"
_NONCE_SIZE = 12


class Vault:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_SIZE:
            raise GatewayError(GatewayCode.MASTER_KEY, f"the master key must be {KEY_SIZE} bytes ({2 * KEY_SIZE} hex digits)")
        self._aead = AESGCM(master_key)
        self.key_id = hashlib.sha256(master_key).digest()[:4]

    def __repr__(self) -> str:  # never show the key
        return f"Vault(key_id={self.key_id.hex()})"

    def seal(self, plaintext: bytes, where: str) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return _MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, where.encode("utf-8"))

    def open(self, sealed: bytes, where: str) -> bytes:
        head = len(_MAGIC) + 4 + _NONCE_SIZE
        if len(sealed) < head + 16 or not sealed.startswith(_MAGIC):
            raise GatewayError(GatewayCode.MASTER_KEY, f"{where}: the stored value is not a sealed value (damaged?)")
        if sealed[len(_MAGIC):len(_MAGIC) + 4] != self.key_id:
            raise GatewayError(
                GatewayCode.MASTER_KEY,
                f"{where}: sealed under another master key (id {sealed[3:7].hex()}, this one is {self.key_id.hex()}); "
                "start the gateway with the master key the database was set up with",
            )
        nonce = sealed[len(_MAGIC) + 4:head]
        try:
            return self._aead.decrypt(nonce, sealed[head:], where.encode("utf-8"))
        except InvalidTag:
            raise GatewayError(GatewayCode.MASTER_KEY, f"{where}: the stored value does not open (altered, or moved from another row)") from None


def _parse_hex(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise GatewayError(GatewayCode.MASTER_KEY, f"{source}: the master key must be {2 * KEY_SIZE} hex digits") from None
    if len(key) != KEY_SIZE:
        raise GatewayError(GatewayCode.MASTER_KEY, f"{source}: the master key must be {2 * KEY_SIZE} hex digits, found {2 * len(key)}")
    return key


def read_master_key_file(path: Path) -> bytes:
    """The key in `path`, refused when group or others can read it (with the chmod that fixes it)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise GatewayError(GatewayCode.MASTER_KEY, f"master key file {path} does not exist; create it with: gateway-admin master-key new {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayError(GatewayCode.MASTER_KEY, f"cannot read master key file {path}: {exc.__class__.__name__}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GatewayError(GatewayCode.MASTER_KEY, f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")
    return _parse_hex(text, str(path))


def vault_from_env(env: Mapping[str, str] | None = None, *, key_file: Path | None = None) -> Vault:
    """The vault from `key_file`, else GATEWAY_MASTER_KEY_FILE, else GATEWAY_MASTER_KEY."""
    env = os.environ if env is None else env
    if key_file is not None:
        return Vault(read_master_key_file(key_file))
    if env.get(ENV_KEY_FILE):
        return Vault(read_master_key_file(Path(env[ENV_KEY_FILE])))
    if env.get(ENV_KEY):
        return Vault(_parse_hex(env[ENV_KEY], ENV_KEY))
    raise GatewayError(GatewayCode.MASTER_KEY, f"no master key: set {ENV_KEY_FILE} to a 0600 file (gateway-admin master-key new FILE) or {ENV_KEY}")


def write_master_key_file(path: Path) -> None:
    """Create `path` (never overwriting) holding a fresh random key, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise GatewayError(GatewayCode.EXISTS, f"{path} already exists; a master key is never overwritten (the database needs it)") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(os.urandom(KEY_SIZE).hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
