"""The device's identity and key, in its own secure storage: made on the device, never copied off it.

A POS's secure storage is a directory (on the simulator, the device directory `pos-sim` runs from;
on a real POS, the app's private storage):

    identity.json    {"format": "his-device-identity-v1", "device_id", "model", "serial_no",
                      "usb": {"vid": "1209", "pid": "7D01", "serial": "<serial_no>"}}
    device_key       {"format": "his-device-key-v1", "seed_hex": "..."}          mode 0600
    config_key       {"format": "his-device-config-key-v1", "private_hex": "..."} mode 0600: the
                     X25519 key configuration images are sealed to (protocol.sealed_config); a key of
                     its own, made beside the Ed25519 device key, never derived from it
    boot/trust.json  the image signing keys the bootloader trusts (public keys only)
    link_hosts.json  the link host keys the device pins (protocol.link.hostkeys): the bridge(s) that
                     get the application, the maintenance tool(s) that get the bootloader only

`create_identity` is the device's provisioning step: it makes the Ed25519 key and the X25519
config key here, from the device's own randomness, and hands back only the public device record (protocol.registry), which
the field engineer adds to the device records (`pos-flash provision add-device`). `load_identity`
is what every power-on reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from protocol import signing
from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.ids import is_valid_id
from protocol.link.handshake import DeviceIdentity, HostTrust
from protocol.link.hostkeys import HostPublicKey, format_pins, host_trust, parse_pins
from protocol.registry import DeviceRecord
from protocol.sealed_config import config_public_key
from protocol.strictjson import loads_object
from protocol.trust import TrustStore, format_trust
from terminal.secure_files import check_private_mode, read_text, write_new_file

IDENTITY_FILE = "identity.json"
DEVICE_KEY_FILE = "device_key"
CONFIG_KEY_FILE = "config_key"
CONFIG_KEY_FORMAT = "his-device-config-key-v1"
TRUST_FILE = "boot/trust.json"
HOSTS_FILE = "link_hosts.json"
IDENTITY_FORMAT = "his-device-identity-v1"
DEVICE_KEY_FORMAT = "his-device-key-v1"
DEFAULT_VID = "1209"
DEFAULT_PID = "7D01"


@dataclass(frozen=True, slots=True)
class ProvisionedDevice:
    """A device's identity and key, as read from its secure storage."""

    device_id: str
    model: str
    serial_no: str
    usb_vid: int
    usb_pid: int
    usb_serial: str
    device_key_seed: bytes
    directory: Path
    host_trust: HostTrust = HostTrust()
    config_key: bytes | None = None  # X25519 private key; None on a device provisioned before it existed

    def __repr__(self) -> str:  # never show the key
        return f"ProvisionedDevice(device_id={self.device_id!r}, model={self.model!r}, serial_no={self.serial_no!r})"

    @property
    def public_key(self) -> bytes:
        return signing.public_key(self.device_key_seed)

    def identity(self, firmware: str) -> DeviceIdentity:
        """The HELLO identity, with the version the device reports as running."""
        return DeviceIdentity(self.device_id, self.model, self.serial_no, firmware)

    def record(self) -> DeviceRecord:
        """The public device record (step 2): what leaves the device."""
        config = config_public_key(self.config_key) if self.config_key else None
        return DeviceRecord(self.device_id, self.model, self.serial_no, self.public_key, config)


def check_name(what: str, value: str) -> str:
    if not is_valid_id(value):
        raise FlashError(FlashCode.BAD_INPUT, f"{what} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def check_hex4(what: str, value: str) -> str:
    try:
        if len(value) != 4:
            raise ValueError
        int(value, 16)
    except ValueError:
        raise FlashError(FlashCode.BAD_INPUT, f"{what} {value!r} must be 4 hex digits, as in 1209") from None
    return value.upper()


def check_model(model: str) -> str:
    if not model or len(model) > 64 or not model.isprintable():
        raise FlashError(FlashCode.BAD_INPUT, "the model must be printable text of 1 to 64 characters")
    return model


def create_identity(directory: Path, *, model: str, serial_no: str, trust: TrustStore, device_id: str | None = None,
                    usb_vid: str = DEFAULT_VID, usb_pid: str = DEFAULT_PID, hosts: tuple[HostPublicKey, ...] = (),
                    rng: Callable[[int], bytes] = os.urandom) -> DeviceRecord:
    """Provision this device: write its identity and trust anchors, pin the link hosts (`hosts`: the
    bridge's key, the maintenance tool's), and make its key in `directory`.

    Returns the public device record only. Refuses a directory that already holds a device, so an
    identity is never silently replaced."""
    device_id = check_name("device_id", device_id or f"D-{serial_no}")
    check_name("serial number", serial_no)
    check_model(model)
    if not trust.keys:
        raise FlashError(FlashCode.BAD_INPUT, "give the device at least one trusted signing key (--trust KEY.pub)")
    if (directory / IDENTITY_FILE).exists() or (directory / DEVICE_KEY_FILE).exists():
        raise FlashError(FlashCode.EXISTS, f"{directory} already holds a device")
    vid, pid = check_hex4("USB VID", usb_vid), check_hex4("USB PID", usb_pid)
    seed, config_key = rng(signing.SEED_SIZE), rng(32)
    if len(seed) != signing.SEED_SIZE or len(config_key) != 32:
        raise FlashError(FlashCode.BAD_KEY, "the device's random source gave a short seed")
    identity = {"format": IDENTITY_FORMAT, "device_id": device_id, "model": model, "serial_no": serial_no,
                "usb": {"vid": vid, "pid": pid, "serial": serial_no}}
    if os.name == "posix":
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)  # the device's secure storage: keys, journal, images
    write_new_file(directory / DEVICE_KEY_FILE, json.dumps({"format": DEVICE_KEY_FORMAT, "seed_hex": seed.hex()}) + "\n", private=True)
    write_new_file(directory / CONFIG_KEY_FILE,
                   json.dumps({"format": CONFIG_KEY_FORMAT, "private_hex": config_key.hex()}) + "\n", private=True)
    write_new_file(directory / TRUST_FILE, format_trust(trust), private=False)
    write_new_file(directory / HOSTS_FILE, format_pins(list(hosts)), private=False)
    write_new_file(directory / IDENTITY_FILE, json.dumps(identity, indent=2) + "\n", private=False)
    return DeviceRecord(device_id, model, serial_no, signing.public_key(seed), config_public_key(config_key))


def load_identity(directory: Path) -> ProvisionedDevice:
    """Read the device's identity and key from its secure storage (every power-on)."""
    try:
        ident = loads_object(read_text(directory / IDENTITY_FILE, "device identity"), what=str(directory / IDENTITY_FILE))
        key = loads_object(read_text(directory / DEVICE_KEY_FILE, "device key"), what=str(directory / DEVICE_KEY_FILE))
    except ProtocolError as exc:
        raise FlashError(FlashCode.BAD_INPUT, exc.message) from None
    if ident.get("format") != IDENTITY_FORMAT or key.get("format") != DEVICE_KEY_FORMAT:
        raise FlashError(FlashCode.BAD_INPUT, f"{directory} does not hold a provisioned device")
    check_private_mode(directory / DEVICE_KEY_FILE)
    config_key = _load_config_key(directory / CONFIG_KEY_FILE)
    pins = directory / HOSTS_FILE
    hosts = host_trust(parse_pins(read_text(pins, "pinned link hosts"), str(pins))) if pins.exists() else HostTrust()
    usb = ident.get("usb")
    try:
        seed = bytes.fromhex(str(key.get("seed_hex")))
        if len(seed) != signing.SEED_SIZE or not isinstance(usb, dict):
            raise ValueError
        return ProvisionedDevice(check_name("device_id", str(ident["device_id"])), str(ident["model"]),
                                 str(ident["serial_no"]), int(check_hex4("USB VID", str(usb["vid"])), 16),
                                 int(check_hex4("USB PID", str(usb["pid"])), 16), str(usb["serial"]), seed, directory, hosts, config_key)
    except (KeyError, ValueError):
        raise FlashError(FlashCode.BAD_INPUT, f"{directory}: identity.json or device_key is incomplete") from None


def _load_config_key(path: Path) -> bytes | None:
    if not path.exists():
        return None
    check_private_mode(path)
    try:
        obj = loads_object(read_text(path, "device config key"), what=str(path))
        key = bytes.fromhex(str(obj.get("private_hex")))
    except (ProtocolError, ValueError):
        key = b""
    if len(key) != 32:
        raise FlashError(FlashCode.BAD_INPUT, f"{path} is not a device config key")
    return key
