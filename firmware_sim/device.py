"""The virtual POS device: hardware (identity, flash, wire, clock, power switch) around the firmware.

    device = VirtualDevice(DeviceOptions(Path(".run/device"), link=LinkKind.PTY)).start()
    device.bridge_url            # serial:/abs/.run/device/tty (always names the current pty slave)
    device.scan("134567890123456789")        # the cashier's hands (raise SimError on refusal)
    device.inject(parse_fault({"fault": "power_cut", "at": "paying"}))
    device.close()

The storage directory is a device provisioned by `pos-sim init` (identity.json,
device_key, boot/trust.json), configured by flashing a configuration image, exactly as in the field.
Powering on runs firmware_sim.firmware.boot_firmware (bootloader, self-test = the terminal service
starting on `<storage>/app/journal.db`, health confirmation, link endpoint). Wires: a pty pair
(`serial:<storage>/tty`, a symlink to the current /dev/pts/N), TCP on 127.0.0.1
(`socket://127.0.0.1:PORT`), the virtual USB device (`usb://VID:PID/SERIAL` with `usb_backend`) or
an Android POS speaking the accessory protocol (`aoa://VID:PID/SERIAL` with `usb_backend`).

Every change of power or cable runs on one "power" thread, in order: a power cut can be triggered
from inside a journal commit or a byte count (any thread, no locks taken there: the wire is silenced
at once and nothing more commits), and the teardown happens on the power thread. Power listeners
(`add_power_listener`) hear the new TerminalService (or None) after each power-on and power-off:
that is the seam for a screen (the Kivy POS app) around the same service.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from protocol.flash import FlashError
from protocol.link.session import LinkTimers
from protocol.strictjson import ReportJson
from terminal import texts
from terminal.history import HistoryEntry
from terminal.identity import load_identity
from terminal.journal import CommitPoint, PowerLostAtCommit
from terminal.service import ActionReply, PinReply, PinStatus, ScanReply, ScanStatus, TerminalService
from terminal.view import Screen, ScreenView

from firmware_sim.android_usb import VirtualAndroidDevice
from firmware_sim.wires import AndroidUsbWire, PtyWire, UsbWire
from terminal.link.tcp_wire import TcpWire
from terminal.link.wire import Wire
from firmware_sim.faults import (
    ByteFault, ClearFaults, ClockSkew, Fault, FaultyWire, PowerCutFault, PowerOn, Replug, Unplug, describe_fault,
)
from firmware_sim.firmware import Firmware, boot_firmware
from firmware_sim.simerrors import SimCode, SimError
from firmware_sim.usb_backend import VirtualUsbDevice

_R = TypeVar("_R")  # what a call into the terminal service returns

log = logging.getLogger("firmware_sim.device")

PTY_LINK = "tty"
# How long a caller waits for a power operation (boot with recovery, or a graceful stop).
POWER_OP_TIMEOUT_S = 60.0


class LinkKind(str, enum.Enum):
    PTY = "pty"
    TCP = "tcp"
    USB = "usb"
    AOA = "aoa"  # an Android POS: the bridge switches it to accessory mode (aoa://VID:PID/SERIAL)


class Power(str, enum.Enum):
    OFF = "off"
    BOOTING = "booting"
    ON = "on"  # the application (terminal service) runs
    UNCONFIGURED = "unconfigured"  # an image runs but holds no configuration
    RECOVERY = "recovery"  # no bootable image: only flashing works


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    storage: Path
    link: LinkKind = LinkKind.PTY
    tcp_port: int = 0  # TCP only; 0: ephemeral
    baud: int | None = None  # pace the wire like a UART at this rate (115200, 921600); None: unpaced
    timers: LinkTimers = LinkTimers()
    pty_link: Path | None = None  # PTY only; default <storage>/tty


class DeviceClock:
    """The device's real-time clock: the PC's clock plus an offset (the clock_skew fault)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        return time.time() + self.offset_s


@dataclass
class _Op:
    run: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


class VirtualDevice:
    def __init__(self, options: DeviceOptions) -> None:
        self.options = options
        try:
            self.identity = load_identity(Path(options.storage))
        except FlashError as exc:
            raise SimError(SimCode.STORAGE, f"{options.storage} is not a provisioned device ({exc.detail}); "
                           "create one with: pos-sim init --storage DIR ...") from None
        self.clock = DeviceClock()
        self.wire = FaultyWire(self._make_wire(), on_budget_spent=self._budget_spent)
        self._lock = threading.Lock()  # guards the fields below; never held while calling the firmware
        self._fw: Firmware | None = None
        self._power = Power.OFF
        self._cable = True
        self._wire_plugged = True
        self._armed_cut: PowerCutFault | None = None
        self._last_cut: dict[str, object] | None = None
        self._listeners: list[Callable[[TerminalService | None], None]] = []
        self._ops: queue.Queue[_Op | None] = queue.Queue()
        self._power_thread = threading.Thread(target=self._power_loop, name="device-power", daemon=True)
        self._closed = False

    def _make_wire(self) -> Wire:
        kind = self.options.link
        if kind is LinkKind.PTY:
            return PtyWire(self.options.pty_link or Path(self.options.storage).resolve() / PTY_LINK)
        if kind is LinkKind.TCP:
            return TcpWire(port=self.options.tcp_port)
        ident = self.identity
        if kind is LinkKind.AOA:
            return AndroidUsbWire(VirtualAndroidDevice(serial_no=ident.usb_serial,
                                                       product=f"Smart POS {ident.model} (simulated Android)"))
        return UsbWire(VirtualUsbDevice(vid=ident.usb_vid, pid=ident.usb_pid, serial_no=ident.usb_serial,
                                        product=f"Smart POS {ident.model} (simulated)"))

    # ================================================================ lifecycle

    def start(self) -> "VirtualDevice":
        """Power on (boot, recovery, health confirmation) and serve the link."""
        self._power_thread.start()
        self._call(self._power_on)
        return self

    def close(self) -> None:
        """Switch off gracefully (journal consistent, link closed) and release the wire."""
        if self._closed:
            return
        self._closed = True
        if self._power_thread.is_alive():
            self._call(lambda: self._power_off(cut=False, why="simulator stopped"))
            self._ops.put(None)
            self._power_thread.join(timeout=POWER_OP_TIMEOUT_S)
        self.wire.close(final=True)

    def __enter__(self) -> "VirtualDevice":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bridge_url(self) -> str:
        """What the bridge (or pos-flash) opens: serial:..., socket://... or usb://VID:PID/SERIAL."""
        return self.wire.bridge_url

    @property
    def usb_backend(self) -> object | None:
        """The pyusb backend object for usb:// (in-process bridges and flashers only)."""
        inner = self.wire.inner
        return inner.backend if isinstance(inner, (UsbWire, AndroidUsbWire)) else None

    @property
    def power(self) -> Power:
        fw = self._fw
        if fw is not None and fw.cut:
            # A cut is instantaneous; the teardown it starts runs on another thread. Until it has run,
            # the device is already off (its service refuses), so say so: callers polling `power` and
            # then the screen must never see ON with a dead service (the flaky e2e power-cut test).
            return Power.OFF
        return self._power

    @property
    def service(self) -> TerminalService | None:
        fw = self._fw
        return None if fw is None else fw.service

    @property
    def link_up(self) -> bool:
        """The application's link to a bridge is up."""
        fw = self._fw
        return bool(fw and fw.endpoint and fw.endpoint.link_up and fw.app_link and fw.app_link.bridge_up)

    def add_power_listener(self, listener: Callable[[TerminalService | None], None]) -> Callable[[], None]:
        """`listener(service)` after every power-on (None after a power-off), on the power thread."""
        with self._lock:
            self._listeners.append(listener)
        fw = self._fw
        if fw is not None and fw.service is not None:
            listener(fw.service)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return remove

    def wait_link_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.link_up:
                return True
            time.sleep(0.02)
        return self.link_up

    # ================================================================ the power thread

    def _power_loop(self) -> None:
        while True:
            op = self._ops.get()
            if op is None:
                return
            try:
                op.result = op.run()
            except BaseException as exc:  # handed to the waiting caller (or logged)
                op.error = exc
                if not isinstance(exc, (SimError, PowerLostAtCommit)):
                    log.exception("power operation failed")
            finally:
                op.done.set()

    def _call(self, run: Callable[[], object], *, wait: bool = True) -> object:
        op = _Op(run)
        if wait and threading.current_thread() is self._power_thread:
            return run()  # already on the power thread (a listener or a nested operation)
        self._ops.put(op)  # never inline when not waiting: the caller may be inside a journal commit
        if not wait:
            return None
        if not op.done.wait(POWER_OP_TIMEOUT_S):
            raise SimError(SimCode.BUSY, f"the device did not finish a power operation within {POWER_OP_TIMEOUT_S:g} s")
        if op.error is not None:
            raise op.error
        return op.result

    def _later(self, seconds: float, run: Callable[[], object]) -> None:
        timer = threading.Timer(seconds, lambda: None if self._closed else self._call(run, wait=False))
        timer.daemon = True
        timer.start()

    def _notify(self, service: TerminalService | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(service)
            except Exception:  # a screen's bug must not stop the device
                log.exception("power listener %r failed", listener)

    def _power_on(self) -> Power:
        if self._fw is not None:
            raise SimError(SimCode.ALREADY_ON, "the device is already on")
        self._power = Power.BOOTING
        if self._cable and not self._wire_plugged:
            self.wire.replug()
            self._wire_plugged = True
        self.wire.unsilence()
        try:
            fw = boot_firmware(self.identity, wire=self.wire, clock=self.clock.now, timers=self.options.timers,
                               baud=self.options.baud, on_commit=self._on_commit, reboot=self._reboot_requested)
        except PowerLostAtCommit:
            self._power = Power.OFF
            self._wire_plugged = False
            log.warning("the power was cut while the device was booting")
            return self._power
        if not self._cable and fw.endpoint is not None:  # booted with the cable out: keep it out
            fw.endpoint.unplug()
        with self._lock:
            self._fw = fw
            self._power = (Power.RECOVERY if fw.boot is None or fw.boot.slot is None
                           else Power.ON if fw.service is not None else Power.UNCONFIGURED)
        self._notify(fw.service)
        return self._power

    def _power_off(self, *, cut: bool, why: str) -> Power:
        with self._lock:
            fw, self._fw = self._fw, None
            self._power = Power.OFF
        if fw is None:
            return Power.OFF
        if cut:
            fw.kill()
        else:
            fw.stop()
        self._wire_plugged = False  # the endpoint's stop detached the wire: the device left the bus
        log.info("device off: %s", why)
        self._notify(None)
        return Power.OFF

    def _reboot_requested(self, reason: str) -> None:
        """BootService hook (endpoint thread): after a flash, REBOOT or ROLLBACK."""
        def reboot() -> None:
            self._power_off(cut=False, why=f"reboot: {reason}")
            self._power_on()
        self._call(reboot, wait=False)

    # ================================================================ power cuts

    def _cut(self, fw: Firmware, fault: PowerCutFault, why: str) -> None:
        """Lock-free: callable inside a journal commit or a wire read/write on any thread."""
        if fw.cut:
            return
        fw.cut = True
        self.wire.silence()  # from this instant nothing reaches the bridge
        fw.storage.arm_power_cut(0)
        self._last_cut = {"when": time.time(), "why": why, "fault": describe_fault(fault)}
        log.warning("POWER CUT: %s", why)
        self._call(lambda: self._power_off(cut=True, why=why), wait=False)
        if fault.off_for_s is not None:
            self._later(fault.off_for_s, self._power_on_if_off)

    def _power_on_if_off(self) -> object:
        return self._power_on() if self._fw is None else self._power

    def _on_commit(self, fw: Firmware, point: CommitPoint) -> None:
        if fw.cut:
            raise PowerLostAtCommit("the device has no power")
        armed = self._armed_cut
        if armed is not None and armed.matches(point):
            self._armed_cut = None
            self._cut(fw, armed, f"at the journal commit {point.label} ({point.phase})")
            raise PowerLostAtCommit(f"power cut at {point.label} ({point.phase})")

    def _budget_spent(self, fault: PowerCutFault) -> None:
        fw = self._fw
        if fw is not None:
            self._cut(fw, fault, f"after {fault.after_bytes} bytes on the link ({fault.direction.value})")

    # ================================================================ faults

    def inject(self, fault: Fault) -> dict[str, object]:
        """Apply one fault (firmware_sim.faults.parse_fault makes them from JSON); returns the status."""
        if isinstance(fault, ByteFault):
            self.wire.add(fault)
        elif isinstance(fault, ClearFaults):
            self.wire.clear()
            self.wire.disarm_budget()
            self._armed_cut = None
        elif isinstance(fault, ClockSkew):
            self.clock.offset_s = fault.seconds
            fw = self._fw
            if fw is not None and fw.service is not None and not fw.cut:
                fw.service.wake()  # as Android's TIME_SET broadcast does: waits on the clock look again
        elif isinstance(fault, Unplug):
            self._call(self._unplug)
            if fault.for_s is not None:
                self._later(fault.for_s, self._replug)
        elif isinstance(fault, Replug):
            self._call(self._replug)
        elif isinstance(fault, PowerOn):
            self._call(self._power_on)
        elif isinstance(fault, PowerCutFault):
            self._power_cut(fault)
        return self.status()

    def _power_cut(self, fault: PowerCutFault) -> None:
        if fault.immediate:
            fw = self._fw
            if fw is None:
                raise SimError(SimCode.POWERED_OFF, "the device is already off")
            self._cut(fw, fault, "cut by hand")
            self._call(lambda: None)  # wait until the power thread has switched it off
        elif fault.after_bytes is not None:
            self.wire.arm_budget(fault)
        else:
            self._armed_cut = fault

    def _unplug(self) -> None:
        self._cable = False
        fw = self._fw
        if fw is not None and fw.endpoint is not None and self._wire_plugged:
            fw.endpoint.unplug()
            self._wire_plugged = False

    def _replug(self) -> None:
        self._cable = True
        fw = self._fw
        if fw is not None and fw.endpoint is not None and not self._wire_plugged:
            fw.endpoint.replug()
            self._wire_plugged = True

    # ================================================================ status

    def status(self) -> ReportJson:
        ident, fw = self.identity, self._fw
        boot = None if fw is None or fw.boot is None else fw.boot
        app_link = None if fw is None else fw.app_link
        endpoint = None if fw is None else fw.endpoint
        host = None
        if endpoint is not None and endpoint.link_up:
            host = "bridge" if app_link is not None and app_link.bridge_up else "maintenance"
        return {
            "device": {"device_id": ident.device_id, "model": ident.model, "serial_no": ident.serial_no,
                       "usb": {"vid": f"{ident.usb_vid:04X}", "pid": f"{ident.usb_pid:04X}", "serial": ident.usb_serial}},
            "power": self._power.value,
            "problem": None if fw is None else fw.problem,
            "boot": None if boot is None else {"slot": boot.slot, "app_version": boot.app_version,
                                               "config_version": boot.config_version, "message": boot.message},
            "link": {"kind": self.options.link.value, "bridge_url": self.bridge_url, "cable": "plugged" if self._cable else "unplugged",
                     "up": endpoint is not None and endpoint.link_up, "host": host, "baud": self.options.baud,
                     "bridge_clock_offset_s": None if app_link is None or app_link.bridge_clock_offset_s is None
                     else round(app_link.bridge_clock_offset_s, 1)},
            "clock": {"offset_s": self.clock.offset_s, "now": int(self.clock.now())},
            "faults": {**self.wire.describe(),
                       "power_cut_at": None if self._armed_cut is None else describe_fault(self._armed_cut),
                       "last_power_cut": self._last_cut},
            "storage": str(Path(self.options.storage).resolve()),
        }

    # ================================================================ the cashier's hands

    def _service(self) -> TerminalService:
        fw = self._fw
        if fw is None or fw.cut:
            raise SimError(SimCode.POWERED_OFF, "the device is off; switch it on: POST /v1/faults {\"fault\": \"power_on\"} "
                           "(pos-sim fault power-on)")
        if fw.service is None or fw.handler is None:
            raise SimError(SimCode.NO_APPLICATION, fw.problem or "the application is not running")
        return fw.service

    def _guarded(self, call: Callable[[TerminalService], _R]) -> _R:
        service = self._service()
        try:
            return call(service)
        except PowerLostAtCommit:
            raise SimError(SimCode.POWERED_OFF, "the device lost power") from None

    def screen(self) -> ScreenView:
        return self._guarded(lambda s: s.view())

    def history(self, *, order_no: str | None = None) -> list[HistoryEntry]:
        return self._guarded(lambda s: s.history(None, order_no))

    def scan(self, code: str) -> ScanReply:
        reply: ScanReply = self._guarded(lambda s: s.scan(code))
        if reply.status is ScanStatus.ACCEPTED:
            return reply
        if reply.status is ScanStatus.REFUSED:
            raise SimError(SimCode.NOT_A_PAYMENT_CODE, reply.message.en, reason=reply.reason, text=_text(reply.message))
        if reply.status is ScanStatus.UNAVAILABLE:
            raise SimError(SimCode.CHANNEL_UNAVAILABLE, reply.message.en, channel=reply.channel.value if reply.channel else None,
                           text=_text(reply.message))
        code_ = SimCode.BUSY if reply.message == texts.BUSY else SimCode.NOTHING_TO_SCAN
        raise SimError(code_, reply.message.en, text=_text(reply.message))

    def cancel(self) -> ActionReply:
        reply: ActionReply = self._guarded(lambda s: s.cancel())
        if not reply.ok:
            code_ = SimCode.NOTHING_TO_CANCEL if reply.message == texts.IDLE else SimCode.BUSY
            raise SimError(code_, "nothing is on screen to cancel" if code_ is SimCode.NOTHING_TO_CANCEL
                           else "cannot cancel now: the channel is at work (wait for the result)", text=_text(reply.message))
        return reply

    def confirm_refund(self, pin: str) -> PinReply:
        reply: PinReply = self._guarded(lambda s: s.confirm_refund(pin))
        if reply.status is PinStatus.ACCEPTED:
            return reply
        if reply.status is PinStatus.WRONG:
            raise SimError(SimCode.WRONG_PIN, reply.message.en, tries_left=reply.tries_left, text=_text(reply.message))
        if reply.status is PinStatus.LOCKED:
            raise SimError(SimCode.PIN_LOCKED, reply.message.en, locked_until=reply.locked_until, text=_text(reply.message))
        raise SimError(SimCode.NOTHING_TO_CONFIRM, "no refund is waiting for the supervisor's PIN", text=_text(reply.message))

    def decline_refund(self) -> ActionReply:
        view = self.screen()
        if view.screen is not Screen.AWAITING_SUPERVISOR:
            raise SimError(SimCode.NOTHING_TO_CONFIRM, "no refund is waiting for the supervisor")
        reply: ActionReply = self._guarded(lambda s: s.decline_refund())
        if not reply.ok:
            raise SimError(SimCode.BUSY, reply.message.en, text=_text(reply.message))
        return reply

    def recheck(self) -> ActionReply:
        """A person fixed what an instruction was handed over for: the POS asks the channel again."""
        reply: ActionReply = self._guarded(lambda s: s.recheck())
        if not reply.ok:
            raise SimError(SimCode.NOTHING_NEEDS_PERSON, reply.message.en, text=_text(reply.message))
        return reply

    def dismiss(self) -> None:
        self._guarded(lambda s: s.dismiss())


def _text(text: texts.Text) -> dict[str, str]:
    return {"zh": text.zh, "en": text.en}
