"""The bootloader on the link, and the power-on sequence: how the simulator runs firmware_sim.bootloader.

`BootService` is the endpoint's boot handler (terminal.link.endpoint.BootHandler): reliable frames
0x80-0xBF come in through `on_boot_frame`, are decoded (protocol.flash), executed by the
`Bootloader`, and answered with `endpoint.send_boot`. The endpoint sends a frame's link ACK only
after `on_boot_frame` returns, so an ACKed CHUNK is on the device's flash. After END, REBOOT and
ROLLBACK the service calls `reboot(reason)`, the simulator's hook: it restarts the application,
which means `run_boot_sequence` again (the link may stay up or drop, as the simulator prefers;
pos-flash copes with both).

`run_boot_sequence(bootloader, self_test)` is power-on: boot the slot the bootloader picks, run the
self-test on what booted, confirm a trial image that passes, reboot one that fails (so the
bootloader rolls back once its tries are used up). `default_self_test` is the check a simulator
without its own uses: the application bundle must be an intact zip, the configuration a valid
his-device-config-v1 document for this very device.
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from dataclasses import replace
from typing import Callable, Protocol

from protocol import flash as fc
from protocol.flash import FlashCode, FlashError
from protocol.link.session import LinkNotUp
from protocol.sealed_config import open_config

from firmware_sim.bootloader import Bootloader, BootResult
from firmware_sim.storage import PowerLostMidWrite

log = logging.getLogger("firmware_sim.bootservice")


class BootEndpoint(Protocol):
    def send_boot(self, frame_type: int, payload: bytes, tag: object = None) -> None: ...


class BootService:
    def __init__(self, bootloader: Bootloader, *, reboot: Callable[[str], None] | None = None,
                 power_cut: Callable[[PowerLostMidWrite], None] | None = None) -> None:
        self.bootloader = bootloader
        self.reboot = reboot  # the simulator restarts the application (run_boot_sequence)
        self.power_cut = power_cut  # the simulator powers the device off (fault injection); None: raise

    def on_boot_frame(self, frame_type: int, payload: bytes, endpoint: BootEndpoint) -> None:
        try:
            replies, reboot_reason = self.handle(frame_type, payload)
        except PowerLostMidWrite as cut:
            if self.power_cut is None:
                raise
            self.power_cut(cut)  # no reply: a device without power says nothing
            return
        for reply in replies:
            try:
                endpoint.send_boot(*fc.encode(reply))
            except LinkNotUp:
                log.info("reply to 0x%02x not sent: the link went down (the host asks again)", frame_type)
        if reboot_reason is not None and self.reboot is not None:
            self.reboot(reboot_reason)

    def handle(self, frame_type: int, payload: bytes) -> tuple[list[fc.Reply], str | None]:
        """Run one flash command: (replies to send, reboot reason or None). PowerLostMidWrite propagates."""
        try:
            msg = fc.decode(frame_type, payload)
        except FlashError as exc:
            return [fc.error_reply(exc, op=frame_type)], None
        req = getattr(msg, "req", 0)
        session = getattr(msg, "session", fc.NO_SESSION)
        boot = self.bootloader
        try:
            if isinstance(msg, fc.Chunk):
                boot.chunk(msg)
                return [], None
            if isinstance(msg, fc.Begin):
                return [boot.begin(msg)], None
            if isinstance(msg, fc.End):
                done = boot.end(msg)
                if self.reboot is None:
                    done = fc.EndOk(done.req, done.session, done.slot, done.version, False)
                return [done], "new image installed"
            if isinstance(msg, fc.Info):
                return [fc.InfoOk(req, boot.status(msg.log_lines))], None
            if isinstance(msg, fc.Abort):
                return [fc.Done(req, frame_type, boot.abort(msg))], None
            if isinstance(msg, fc.Confirm):
                return [fc.Done(req, frame_type, boot.confirm())], None
            if isinstance(msg, fc.Rollback):
                return [fc.Done(req, frame_type, boot.rollback())], "rollback requested by the host"
            if isinstance(msg, fc.Reboot):
                return [fc.Done(req, frame_type, "rebooting")], "reboot requested by the host"
            raise FlashError(FlashCode.BAD_MESSAGE, f"{type(msg).__name__} is a device reply, not a command")
        except FlashError as exc:
            return [fc.error_reply(exc, req=req, op=frame_type, session=session)], None
        except PowerLostMidWrite:
            raise
        except OSError as exc:
            log.error("flash memory error: %s", exc)
            err = FlashError(FlashCode.STORAGE, f"flash memory write failed ({exc.strerror or exc})")
            return [fc.error_reply(err, req=req, op=frame_type, session=session)], None


# ----------------------------------------------------------------------------- power-on


SelfTest = Callable[[BootResult], str | None]  # None: healthy; otherwise why not


def run_boot_sequence(bootloader: Bootloader, self_test: SelfTest, *,
                      on_boot: Callable[[BootResult], None] | None = None) -> BootResult:
    """Boot; confirm a trial image that passes `self_test`; reboot one that fails until the
    bootloader rolls back. Returns what runs in the end (slot None: recovery mode)."""
    result = bootloader.boot()
    for _ in range(bootloader.max_tries + 2):
        if on_boot is not None:
            on_boot(result)
        if result.slot is None:
            return result
        problem = self_test(result)
        if problem is None:
            if result.trial:
                result = replace(result, trial=False, message=bootloader.confirm())
            return result
        bootloader.health_failed(problem)
        if not result.trial:
            return result  # a confirmed image that fails stays up, so an engineer can inspect it
        result = bootloader.boot()
    return result


def open_config_part(data: bytes, *, device_id: str, config_key: bytes | None) -> bytes:
    """The configuration document of a config part: sealed to this device (protocol.sealed_config),
    opened with its config key. A device without a config key (provisioned before they existed)
    cannot open one: it is provisioned again."""
    if config_key is None:
        raise FlashError(FlashCode.BAD_PART, f"device {device_id} has no config key to open a configuration with; "
                         "provision it again (pos-sim init) so that configurations can be sealed to it")
    return open_config(data, device_id=device_id, device_private=config_key)


def check_config_part(data: bytes, *, device_id: str, model: str, config_key: bytes | None) -> None:
    """A configuration part must be a his-device-config-v1 document for this device, sealed to it,
    keys embedded."""
    from terminal.config import DeviceConfigError, parse_config

    plaintext = open_config_part(data, device_id=device_id, config_key=config_key)
    try:
        config = parse_config(plaintext, source="configuration part")
    except DeviceConfigError as exc:
        raise FlashError(FlashCode.BAD_PART, str(exc)) from None
    if config.keys_file is not None:
        raise FlashError(FlashCode.BAD_PART, "a configuration image must embed its keys, not reference a keys_file")
    if config.device.device_id != device_id:
        raise FlashError(FlashCode.WRONG_DEVICE, f"the configuration is for device {config.device.device_id}; this is {device_id}")
    if config.device.model != model:
        raise FlashError(FlashCode.WRONG_MODEL, f"the configuration is for model {config.device.model}; this device is a {model}")


def config_checker(bootloader_model: str, device_id: str, config_key: bytes | None) -> Callable[[bytes], None]:
    """The `check_config` hook for a Bootloader of this device."""
    return lambda data: check_config_part(data, device_id=device_id, model=bootloader_model, config_key=config_key)


def default_self_test(device_id: str, model: str, config_key: bytes | None) -> SelfTest:
    """The health check when the simulator has no application of its own to start."""

    def test(result: BootResult) -> str | None:
        if result.app is not None:
            try:
                with zipfile.ZipFile(io.BytesIO(result.app)) as bundle:
                    bad = bundle.testzip()
            except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError, zlib.error) as exc:
                return f"the application bundle does not open as a zip ({exc})"
            if bad is not None:
                return f"the application bundle is damaged ({bad} fails its CRC)"
        if result.config is not None:
            try:
                check_config_part(result.config, device_id=device_id, model=model, config_key=config_key)
            except FlashError as exc:
                return f"the configuration is unusable: {exc.detail}"
        return None

    return test
