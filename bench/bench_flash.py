"""Flash throughput over a paced link, as a ratio to the wire rate (docs/field-engineer.md).

A provisioned simulated device runs the real endpoint (TcpWire) paced at 115200 and 921600 baud
(8N1: bytes/s = baud / 10, both directions) with the real bootloader; pos-flash's library flashes
it over `socket://`. Two images: incompressible (os.urandom) and a typical application bundle (a
stored zip of Python source: our own packages, then the standard library). The figure is payload
bytes / transfer time (BEGIN_OK to END_OK) / wire rate; the confirmation after the reboot is not
included (it does not depend on the link). A chunk-size sweep at 921600 shows why the default is
what it is. Targets: >= 0.9x the wire rate for incompressible data, >= 1.5x for compressible.
"""

from __future__ import annotations

import io
import os
import sysconfig
import tempfile
import zlib
import zipfile
from pathlib import Path

from protocol.crypto import KeyRing

from firmware_sim.demo_setup import ensure_host_keys, provision_device
from posflash.host_key import load_host_key
from posflash import flasher, provision
from firmware_sim.bootloader import Bootloader
from firmware_sim.bootservice import BootService, default_self_test, run_boot_sequence
from terminal.link.endpoint import DeviceEndpoint
from terminal.link.tcp_wire import TcpWire
from protocol.image import PartKind
from posflash.image_build import build_image
from firmware_sim.responder import Responder
from protocol.trust import KeyRole, TrustStore
from posflash.signing_keys import new_signing_key
from firmware_sim.storage import DeviceStorage

MODEL = "HP-S1"
KEY = new_signing_key("bench", KeyRole.RELEASE, os.urandom(32))
REPO = Path(__file__).resolve().parent.parent


def python_bundle(size: int) -> bytes:
    """A stored zip of Python source, about `size` bytes: what `pos-flash build --app DIR` makes."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [(p, p.relative_to(REPO)) for pkg in ("protocol", "bridge", "terminal", "firmware_sim", "reconcile")
               for p in sorted((REPO / pkg).rglob("*.py"))]
    sources += [(p, Path("stdlib") / p.name) for p in sorted(stdlib.glob("*.py"))]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as bundle:
        for path, name in sources:
            if buf.tell() >= size:
                break
            bundle.writestr(zipfile.ZipInfo(name.as_posix(), (1980, 1, 1, 0, 0, 0)), path.read_bytes()[: size - buf.tell()])
    return buf.getvalue()


def noise_bundle(size: int) -> bytes:
    """The same container around random bytes: nothing to compress (media, already-packed assets)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as bundle:
        bundle.writestr(zipfile.ZipInfo("assets.bin", (1980, 1, 1, 0, 0, 0)), os.urandom(size))
    return buf.getvalue()


class _Device:
    def __init__(self, root: Path, baud: int) -> None:
        records = root / "devices.csv"
        self.hosts = ensure_host_keys(root / "hosts")
        self.info = provision_device(root / "dev", records, model=MODEL, serial_no="BENCH1",
                                       trust=TrustStore((KEY.trusted(),)), hosts=self.hosts.pins())
        boot = Bootloader(DeviceStorage(self.info.directory), model=MODEL, device_id=self.info.device_id)
        test = default_self_test(self.info.device_id, MODEL, self.info.config_key)
        run_boot_sequence(boot, test)
        self.endpoint = DeviceEndpoint(TcpWire(), Responder(KeyRing([]), self.info.device_id, device_key_seed=self.info.device_key_seed),
                                       identity=self.info.identity("bench"), device_key_seed=self.info.device_key_seed,
                                       host_trust=self.info.host_trust, boot_handler=BootService(boot, reboot=lambda why: run_boot_sequence(boot, test)),
                                       baud=baud).start()

    def flash(self, image: bytes, chunk_size: int) -> flasher.FlashOutcome:
        registry = {self.info.device_id: self.info.public_key}.get
        with flasher.DeviceConnection(self.endpoint.bridge_url, public_key_for=registry,
                                      host_key_seed=load_host_key(self.hosts.maintenance).seed) as conn:
            conn.connect()
            return flasher.flash_image(conn, image, chunk_size=chunk_size)


def _measure(baud: int, payload: bytes, version: str, chunk_size: int = flasher.DEFAULT_CHUNK) -> tuple[float, float]:
    """(ratio of effective payload rate to the wire rate, compression ratio) for one flash."""
    image = build_image({PartKind.APP: payload}, model=MODEL, version=version, security_counter=1, key=KEY,
                        build_time="2026-01-01T00:00:00Z")
    with tempfile.TemporaryDirectory() as tmp:
        device = _Device(Path(tmp), baud)
        try:
            outcome = device.flash(image, chunk_size)
        finally:
            device.endpoint.stop()
    wire_rate = baud / 10
    return outcome.total / outcome.transfer_s / wire_rate, outcome.total / outcome.wire_bytes


def run(quick: bool) -> dict:
    sizes = {115_200: 64 * 1024, 921_600: 256 * 1024} if quick else {115_200: 256 * 1024, 921_600: 1024 * 1024}
    figures: dict[str, float] = {}
    targets: dict[str, str] = {}
    baseline: dict[str, float] = {}
    met: dict[str, bool] = {}
    for baud, size in sizes.items():
        baseline[f"wire_rate_{baud}_bytes_per_s"] = baud / 10
        for kind, payload in (("incompressible", noise_bundle(size)), ("compressible", python_bundle(size))):
            ratio, packed = _measure(baud, payload, f"{kind}-{baud}")
            name = f"{kind}_{baud}_x_wire"
            figures[name] = round(ratio, 3)
            figures[f"{kind}_{baud}_compression"] = round(packed, 2)
            figures[f"{kind}_{baud}_image_kib"] = size // 1024
            goal = 0.9 if kind == "incompressible" else 1.5
            targets[name] = f">= {goal}"
            met[name] = ratio >= goal
            if kind == "compressible":
                # The baseline: the whole image deflated at once at level 9 (no chunking, no resume).
                whole = len(payload) / len(zlib.compress(payload, 9))
                baseline[f"{kind}_{baud}_whole_image_compression"] = round(whole, 2)
                share = f"{kind}_{baud}_compression_of_whole_image"
                figures[share] = round(packed / whole, 3)
                targets[share] = ">= 0.95"
                met[share] = packed / whole >= 0.95
    if not quick:
        bundle = python_bundle(256 * 1024)
        for chunk in (2048, 4096, 8192, 16384, 32768):
            ratio, _ = _measure(921_600, bundle, f"sweep-{chunk}", chunk)
            figures[f"chunk_sweep_921600_compressible_{chunk // 1024}k_x_wire"] = round(ratio, 3)
        figures["default_chunk_bytes"] = flasher.DEFAULT_CHUNK
    return {"figures": figures, "targets": targets, "baseline": baseline, "met": met}
