"""Put a simulated device into service the way a field engineer does, with pos-flash's library calls.

    key = ensure_signing_key(workdir / "signing")                      # pos-flash keygen --role release
    hosts = ensure_host_keys(workdir / "hosts")                        # his-bridge init + pos-flash host-key new
    device = ensure_device(workdir / "device", records, key, hosts=hosts.pins())
                                                                       # pos-sim init --host-key ... + add-device
    image = configuration_image(device, records, key, terminals_csv=..., keys_text=..., gateway={"url": ...},
                                pin="246810", admin_pin="135790", version=3)  # pos-flash provision config --admin-pin
    flash(device_url, image, records, host_key=hosts.maintenance)      # pos-flash flash --port URL

The headless system (`firmware_sim.system`) and the end-to-end tests run exactly these steps, so the
device under test boots a signed configuration image from its A/B slots like a real POS, and a
mistake in provisioning shows up here first. Nothing here prints; errors are protocol.flash.FlashError.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.keystore import load_identity as load_bridge_identity
from bridge.keystore import new_identity as new_bridge_identity
from posflash import flasher, provision
from posflash.host_key import create_host_key, load_host_key
from posflash.image_build import build_image
from posflash.signing_keys import SigningKey, format_private, load_signing_key, new_signing_key
from protocol.flash import FlashCode, FlashError
from protocol.image import PartKind
from protocol.link.hostkeys import HostPublicKey
from protocol.registry import TerminalRecord, format_terminal_csv
from protocol.trust import KeyRole, TrustStore, format_public
from terminal.identity import IDENTITY_FILE, ProvisionedDevice, create_identity, load_identity
from terminal.secure_files import write_new_file

DEMO_MODEL = "HIS-POS-1"
DEMO_SERIAL = "SIM0001"
DEMO_TERMINAL = TerminalRecord("T0001", "门诊收费1号窗口 (simulated)")
DEMO_PIN = "246810"  # the demo supervisor PIN; a real device gets the hospital's, typed at provisioning
DEMO_ADMIN_PIN = "135790"  # the demo admin PIN (the POS's settings); printed beside the supervisor PIN
DEMO_MERCHANT = ("示例市人民医院", "Example City Hospital")
SIGNING_KEY_ID = "release-demo"
# Every configuration image of the demo has this security counter: configuration changes are not
# security fixes, so they never raise the device's minimum (docs/field-engineer.md, "Keys").
CONFIG_COUNTER = 1


@dataclass(frozen=True, slots=True)
class SigningFiles:
    private: Path
    public: Path

    def key(self) -> SigningKey:
        return load_signing_key(self.private)


def ensure_signing_key(directory: Path, key_id: str = SIGNING_KEY_ID) -> SigningFiles:
    """A release signing key pair in `directory` (created once, kept: images stay verifiable)."""
    files = SigningFiles(directory / f"{key_id}.key", directory / f"{key_id}.pub")
    if not files.private.exists():
        directory.mkdir(parents=True, exist_ok=True)
        key = new_signing_key(key_id, KeyRole.RELEASE, os.urandom(32))
        write_new_file(files.private, format_private(key), private=True)
        write_new_file(files.public, format_public(key.trusted()), private=False)
    return files


@dataclass(frozen=True, slots=True)
class HostKeys:
    """The link identities of the demo's hosts: the bridge's and pos-flash's (private key files)."""

    bridge: Path
    maintenance: Path

    def pins(self) -> tuple[HostPublicKey, ...]:
        """What a device provisioned for these hosts pins."""
        return (load_bridge_identity(self.bridge).public_key(), load_host_key(self.maintenance).public_key())


def ensure_host_keys(directory: Path, *, bridge_key: Path | None = None) -> HostKeys:
    """A bridge identity (`his-bridge identity new`; or `bridge_key`, one `his-bridge init` made) and a
    pos-flash maintenance key (`pos-flash host-key new`) in `directory`, created once and kept."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = HostKeys(bridge_key or directory / "bridge_identity.key", directory / "pos-flash-host.key")
    if not keys.bridge.exists():
        new_bridge_identity(keys.bridge, "bridge-demo")
    if not keys.maintenance.exists():
        create_host_key(directory / "pos-flash-host", "pos-flash-demo")
    return keys


def ensure_device(directory: Path, records: Path, signing: SigningFiles, *, hosts: tuple[HostPublicKey, ...],
                  model: str = DEMO_MODEL, serial_no: str = DEMO_SERIAL) -> ProvisionedDevice:
    """The device in `directory`: provisioned now (pinning `hosts`) if the directory holds none yet."""
    if (directory / IDENTITY_FILE).exists():
        device = load_identity(directory)
        if device.config_key is None or not (device.host_trust.bridges or device.host_trust.maintenance):
            raise FlashError(FlashCode.BAD_INPUT, f"{directory} was provisioned before link pinning and sealed "
                             "configurations: it pins no host and cannot open a configuration; provision it again "
                             "(python -m firmware_sim.system --fresh)")
        return device
    return provision_device(directory, records, model=model, serial_no=serial_no,
                            trust=TrustStore((signing.key().trusted(),)), hosts=hosts)


def provision_device(directory: Path, records: Path, *, model: str, serial_no: str, trust: TrustStore,
                     device_id: str | None = None, usb_vid: str | None = None, usb_pid: str | None = None,
                     hosts: tuple[HostPublicKey, ...] = ()) -> ProvisionedDevice:
    """Step 2 for a simulated device: the device makes its identity and key in its own storage and
    pins the link hosts' keys (`pos-sim init --host-key`), and only its public record goes into the
    device records (`pos-flash provision add-device`)."""
    usb = {k: v for k, v in (("usb_vid", usb_vid), ("usb_pid", usb_pid)) if v is not None}
    record = create_identity(directory, model=model, serial_no=serial_no, trust=trust, device_id=device_id,
                             hosts=hosts, **usb)
    try:
        provision.add_device(records, record)
    except BaseException:
        # The records refused it (a duplicate): the new storage must not stay behind half-enrolled.
        for name in ("device_key", IDENTITY_FILE, "boot/trust.json", "link_hosts.json", "config_key"):
            (directory / name).unlink(missing_ok=True)
        raise
    return load_identity(directory)


def terminals_csv(terminals: tuple[TerminalRecord, ...], device_id: str) -> str:
    """HIS's terminal list (terminal_id,description,device_id), each terminal bound to `device_id`."""
    return format_terminal_csv([TerminalRecord(t.terminal_id, t.description, device_id) for t in terminals])


def configuration_image(device: ProvisionedDevice, records: Path, signing: SigningFiles, *, terminals_csv: str,
                        keys_text: str, gateway: dict[str, str], pin: str = DEMO_PIN,
                        admin_pin: str | None = DEMO_ADMIN_PIN, version: int = 1, limit_yuan: str | None = None,
                        polling: dict[str, dict[str, float]] | None = None) -> bytes:
    """A signed configuration image for `device` (terminals, shared keys, the gateway, PIN hashes)."""
    record = provision.find_record(records, device.device_id)
    pin_hash, admin_pin_hash = provision.hash_pins(pin, admin_pin)
    document = provision.build_config_document(
        device=record, merchant_name=DEMO_MERCHANT[0], merchant_name_en=DEMO_MERCHANT[1], terminals_csv=terminals_csv,
        keys_text=keys_text, gateway=gateway, pin_hash=pin_hash, admin_pin_hash=admin_pin_hash, limit_yuan=limit_yuan,
        polling=polling,
        config_version=version, comment="simulated device (firmware_sim.demo_setup)")
    return build_image({PartKind.CONFIG: provision.seal_for(record, document)}, model=device.model, version=f"cfg-{version}",
                       security_counter=CONFIG_COUNTER, key=signing.key(),
                       build_time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), device_id=device.device_id)


def flash(url: str, image: bytes, records: Path, *, host_key: Path, usb_backend: object = None,
          confirm_timeout_s: float = flasher.CONFIRM_TIMEOUT_S) -> flasher.FlashOutcome:
    """Flash over the link, as `pos-flash flash --port URL` does, and wait for the health confirmation."""
    keys = {r.device_id: r.public_key for r in provision.read_records(records) if r.public_key}
    with flasher.DeviceConnection(url, public_key_for=keys.get, host_key_seed=load_host_key(host_key).seed,
                                  usb_backend=usb_backend) as conn:
        conn.connect()
        return flasher.flash_image(conn, image, wait_confirm_s=confirm_timeout_s)
