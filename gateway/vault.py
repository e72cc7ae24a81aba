"""Secrets at rest: merchant credentials and HIS keys are sealed under one master key.

The master key (32 random bytes, 64 hex digits) comes from the environment or from a file that only
its owner can read:

    GATEWAY_MASTER_KEY=<64 hex>            or        GATEWAY_MASTER_KEY_FILE=/etc/gateway/master.key (0600)

A sealed value is  b"GV1" || key_id (4) || nonce (12) || AES-256-GCM(ciphertext || tag)  with the
value's place in the database as associated data (e.g. "merchant|H001|WECHAT|2"), so a sealed blob
copied into another row does not open. `key_id` (the first 4 bytes of SHA-256 of the key) lets a
wrong master key be told apart from a damaged value. Neither the key nor a plaintext is ever
logged or put into an error message.

Rotating the master key: start every gateway with the new key and the previous one
(GATEWAY_PREVIOUS_MASTER_KEY_FILE), run `gateway-admin vault rewrap` (every sealed value is sealed
again under the new key, one audited transaction), then drop the previous key (docs/gateway.md).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import GatewayCode, GatewayError

ENV_KEY = "GATEWAY_MASTER_KEY"
ENV_KEY_FILE = "GATEWAY_MASTER_KEY_FILE"
# During a master-key rotation: the key being replaced, to open what is not rewrapped yet.
ENV_PREVIOUS_KEY_FILE = "GATEWAY_PREVIOUS_MASTER_KEY_FILE"
KEY_SIZE = 32
_MAGIC = b"GV1"
_NONCE_SIZE = 12


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:4]


class Vault:
    """Seals under `master_key`; opens what it or any of the `previous` keys sealed (a master-key
    rotation: `gateway-admin vault rewrap` moves every value to the current key)."""

    def __init__(self, master_key: bytes, *, previous: Sequence[bytes] = ()) -> None:
        for key in (master_key, *previous):
            if len(key) != KEY_SIZE:
                raise GatewayError(GatewayCode.MASTER_KEY, f"a master key must be {KEY_SIZE} bytes ({2 * KEY_SIZE} hex digits)")
        self._key = master_key
        self.key_id = _key_id(master_key)
        self._aead = AESGCM(master_key)
        self._openers = {_key_id(k): AESGCM(k) for k in previous} | {self.key_id: self._aead}

    def __repr__(self) -> str:  # never show the key
        return f"Vault(key_id={self.key_id.hex()}, previous={[k.hex() for k in self._openers if k != self.key_id]})"

    def seal(self, plaintext: bytes, where: str) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return _MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, where.encode("utf-8"))

    def is_current(self, sealed: bytes) -> bool:
        """Whether `sealed` is under the current master key (not a previous one)."""
        return sealed[len(_MAGIC):len(_MAGIC) + 4] == self.key_id

    def open(self, sealed: bytes, where: str) -> bytes:
        head = len(_MAGIC) + 4 + _NONCE_SIZE
        if len(sealed) < head + 16 or not sealed.startswith(_MAGIC):
            raise GatewayError(GatewayCode.MASTER_KEY, f"{where}: the stored value is not a sealed value (damaged?)")
        opener = self._openers.get(sealed[len(_MAGIC):len(_MAGIC) + 4])
        if opener is None:
            raise GatewayError(
                GatewayCode.MASTER_KEY,
                f"{where}: sealed under another master key (id {sealed[3:7].hex()}, this one is {self.key_id.hex()}); "
                f"start the gateway with the master key the database was set up with, or during a rotation give the "
                f"previous one too ({ENV_PREVIOUS_KEY_FILE})",
            )
        nonce = sealed[len(_MAGIC) + 4:head]
        try:
            return opener.decrypt(nonce, sealed[head:], where.encode("utf-8"))
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


def vault_from_env(env: Mapping[str, str] | None = None, *, key_file: Path | None = None,
                   previous_key_file: Path | None = None) -> Vault:
    """The vault from `key_file`, else GATEWAY_MASTER_KEY_FILE, else GATEWAY_MASTER_KEY; during a
    rotation also the previous key (`previous_key_file` or GATEWAY_PREVIOUS_MASTER_KEY_FILE, 0600)."""
    env = os.environ if env is None else env
    if previous_key_file is None and env.get(ENV_PREVIOUS_KEY_FILE):
        previous_key_file = Path(env[ENV_PREVIOUS_KEY_FILE])
    previous = [read_master_key_file(previous_key_file)] if previous_key_file is not None else []
    if key_file is not None:
        return Vault(read_master_key_file(key_file), previous=previous)
    if env.get(ENV_KEY_FILE):
        return Vault(read_master_key_file(Path(env[ENV_KEY_FILE])), previous=previous)
    if env.get(ENV_KEY):
        return Vault(_parse_hex(env[ENV_KEY], ENV_KEY), previous=previous)
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
