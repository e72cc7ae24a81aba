"""One power-on of the virtual device: bootloader, the application (terminal service) and the link.

`boot_firmware(...)` is what happens between power-on and "ready": open the device's flash
(firmware_sim.storage), let the bootloader pick the slot (A/B, trial, rollback), run the self-test,
which *is* starting the application (the slot's configuration part parsed as his-device-config-v1,
the terminal service opened on the device's journal, recovery run), confirm a trial image that came
up, and start the link endpoint with the HELLO identity of what runs. The result is a `Firmware`;
`Firmware.stop()` shuts it down gracefully (a reboot), `Firmware.kill()` as a power cut does.

On the link:
- production's `terminal.link.app_link.AppLink` is the endpoint's DeviceHandler (only a bridge gets
  results); `Firmware` is the HostedApplication it asks (device_id, handler, problem, cut).
- `BootLink` is the endpoint's boot handler: flash commands go to firmware_sim.bootservice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from protocol.flash import FlashError
from protocol.link.session import LinkTimers
from terminal.config import DeviceConfigError, parse_config
from terminal.factory import open_terminal
from terminal.journal import CommitPoint, PowerLostAtCommit
from terminal.identity import ProvisionedDevice
from terminal.link.app_link import AppLink
from terminal.link.endpoint import DeviceEndpoint
from terminal.link.service_handler import ServiceLinkHandler
from terminal.link.wire import Wire
from terminal.service import TerminalService

from firmware_sim.bootloader import Bootloader, BootResult
from firmware_sim.bootservice import BootService, config_checker, default_self_test, open_config_part, run_boot_sequence
from firmware_sim.storage import DeviceStorage
from firmware_sim.storage import PowerLostMidWrite

log = logging.getLogger("firmware_sim.device")

SIM_VERSION = "1.0"
JOURNAL_FILE = "app/journal.db"
# How long a power cut waits for the application's threads (they die at their next journal access).
KILL_JOIN_S = 0.5


def firmware_text(result: BootResult | None) -> str:
    """The HELLO 'firmware' field (at most 64 characters): simulator and configuration versions."""
    if result is None or result.slot is None:
        return f"pos-sim {SIM_VERSION} recovery"
    return f"pos-sim {SIM_VERSION} cfg {result.config_version or '-'} slot {result.slot}"[:64]


@dataclass
class Firmware:
    device: ProvisionedDevice
    storage: DeviceStorage
    bootloader: Bootloader
    boot: BootResult | None = None
    service: TerminalService | None = None
    handler: ServiceLinkHandler | None = None
    endpoint: DeviceEndpoint | None = None
    app_link: AppLink | None = None
    cut: bool = False  # the power is gone: nothing commits, nothing is written
    problem: str | None = None  # why the application is not running (recovery, unusable configuration)
    started_at: float = field(default_factory=time.time)

    @property
    def device_id(self) -> str:
        return self.device.device_id

    def stop(self) -> None:
        """Graceful: the link first (no new work), then the application, then the journal."""
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.handler is not None:
            self.handler.close()
        if self.service is not None:
            self.service.close()
            self.service.journal.close()

    def kill(self) -> None:
        """A power cut: the journal first (nothing more commits), then threads are abandoned."""
        self.cut = True
        self.storage.arm_power_cut(0)  # a flash write in progress stops here
        if self.service is not None:
            self.service.journal.close()
        if self.handler is not None:
            self.handler.close(KILL_JOIN_S)
        if self.service is not None:
            self.service.close(KILL_JOIN_S)
        if self.endpoint is not None:
            self.endpoint.stop()


class BootLink:
    """Boot handler: flash commands to the bootloader, unless the power is gone."""

    def __init__(self, firmware: Firmware, service: BootService) -> None:
        self.firmware = firmware
        self.service = service

    def on_boot_frame(self, frame_type: int, payload: bytes, endpoint: DeviceEndpoint) -> None:
        if self.firmware.cut:
            return
        try:
            self.service.on_boot_frame(frame_type, payload, endpoint)
        except PowerLostMidWrite:
            log.info("power cut during a flash command")


def start_application(firmware: Firmware, result: BootResult, *, clock: Callable[[], float],
                      on_commit: Callable[[CommitPoint], None]) -> str | None:
    """The self-test of a booted slot: start the terminal service from its configuration part.
    None when the application runs; otherwise why not (the bootloader rolls a trial back)."""
    device = firmware.device
    problem = default_self_test(device.device_id, device.model, device.config_key)(result)
    if problem is not None:
        return problem
    if result.config is None:
        firmware.problem = "the running image holds no configuration; flash a configuration image (pos-flash provision config)"
        return None
    try:
        document = open_config_part(result.config, device_id=device.device_id, config_key=device.config_key)
        config = parse_config(document, source=f"configuration {result.config_version} in slot {result.slot}")
        journal_path = firmware.storage.root / JOURNAL_FILE
        journal_path.parent.mkdir(parents=True, exist_ok=True)
        service = open_terminal(config, journal_path, device_key_seed=device.device_key_seed,
                                firmware=firmware_text(result), clock=clock, on_commit=on_commit, check_permissions=False)
    except (DeviceConfigError, FlashError, OSError, RuntimeError) as exc:
        return f"the application did not start: {exc}"
    firmware.service = service  # before start(): a power cut during recovery must find its journal
    report = service.start()
    firmware.handler = ServiceLinkHandler(service)
    firmware.problem = None
    log.info("application up: %d unfinished instructions (%d resumed), %d results to deliver",
             report.unfinished, report.resumed, report.undelivered)
    return None


def boot_firmware(device: ProvisionedDevice, *, wire: Wire, clock: Callable[[], float], timers: LinkTimers,
                  baud: int | None, on_commit: Callable[[Firmware, CommitPoint], None],
                  reboot: Callable[[str], None]) -> Firmware:
    """Power-on to ready. PowerLostAtCommit (an injected cut during recovery) propagates: the device is off."""
    storage = DeviceStorage(Path(device.directory))
    try:
        bootloader = Bootloader(storage, model=device.model, device_id=device.device_id,
                                check_config=config_checker(device.model, device.device_id, device.config_key), clock=clock)
    except FlashError as exc:
        raise RuntimeError(f"{device.directory}: {exc.message}") from None
    firmware = Firmware(device, storage, bootloader)

    def self_test(result: BootResult) -> str | None:
        return start_application(firmware, result, clock=clock, on_commit=lambda point: on_commit(firmware, point))

    try:
        firmware.boot = run_boot_sequence(bootloader, self_test)
    except PowerLostAtCommit:
        firmware.kill()
        raise
    if firmware.boot.slot is None:
        firmware.problem = "no bootable image (recovery mode): flash a configuration image"
    log.info("%s", firmware.boot.message)
    app_link = AppLink(firmware, clock)
    firmware.app_link = app_link
    firmware.endpoint = DeviceEndpoint(
        wire, app_link, identity=device.identity(firmware_text(firmware.boot)), device_key_seed=device.device_key_seed,
        host_trust=device.host_trust,
        timers=timers, baud=baud, boot_handler=BootLink(firmware, BootService(bootloader, reboot=reboot)),
    ).start()
    return firmware

