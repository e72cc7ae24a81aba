"""The Android Open Accessory protocol (AOA 1.0 / 2.0): its numbers and our accessory's identity.

Pure: both ends of the cable read these. The PC (the bridge, through pyusb) asks an Android device
for its AOA version (control request 51), sends the identifying strings (52), starts accessory mode
(53); the device leaves the bus and comes back as Google's 18D1:2D00 (accessory) or 18D1:2D01
(accessory + ADB), interface 0 holding one bulk IN and one bulk OUT endpoint. Android starts the app
whose accessory filter (res/xml/accessory_filter.xml, docs/pos-app.md) matches the manufacturer and
model strings; that app opens the accessory with UsbManager.openAccessory.

Reference: https://source.android.com/docs/core/interaction/accessories/aoa and aoa2.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.errors import CodedError

GOOGLE_VID = 0x18D1
# Accessory-mode product IDs. We never ask for audio (AOA 2.0 request 58), so only the first two
# should appear; the audio ones are still accessory mode and are accepted.
ACCESSORY_PIDS = (0x2D00, 0x2D01, 0x2D04, 0x2D05)
ACCESSORY_PID = 0x2D00  # accessory only
ACCESSORY_ADB_PID = 0x2D01  # accessory + ADB (USB debugging on)

# bmRequestType: vendor request to the device; IN reads from it, OUT writes to it.
REQUEST_TYPE_VENDOR_IN = 0xC0
REQUEST_TYPE_VENDOR_OUT = 0x40
VENDOR_REQUEST_MASK = 0x60  # bits 5-6 of bmRequestType: 0x40 means "vendor"


class AoaRequest(enum.IntEnum):
    GET_PROTOCOL = 51
    SEND_STRING = 52
    START = 53


class StringIndex(enum.IntEnum):
    """wIndex of ACCESSORY_SEND_STRING: which identifying string follows."""

    MANUFACTURER = 0
    MODEL = 1
    DESCRIPTION = 2
    VERSION = 3
    URI = 4
    SERIAL = 5


@dataclass(frozen=True, slots=True)
class AccessoryIdentity:
    """What the bridge says it is; the POS app's accessory filter matches manufacturer and model."""

    manufacturer: str
    model: str
    description: str
    version: str
    uri: str
    serial: str

    def strings(self) -> list[tuple[StringIndex, bytes]]:
        """The SEND_STRING payloads in order: UTF-8, NUL-terminated, as the device expects."""
        values = (self.manufacturer, self.model, self.description, self.version, self.uri, self.serial)
        return [(StringIndex(i), value.encode("utf-8") + b"\0") for i, value in enumerate(values)]

    def matches(self, manufacturer: str | None, model: str | None) -> bool:
        """The app's filter: the same manufacturer and model (Android compares them exactly)."""
        return manufacturer == self.manufacturer and model == self.model


# The bridge as an accessory. Changing manufacturer or model breaks every installed POS app's filter.
BRIDGE_ACCESSORY = AccessoryIdentity(
    manufacturer="his-smartpos",
    model="his-bridge",
    description="HIS bridge on the cashier's PC",
    version="1",
    uri="",  # shown by Android when no app matches; the POS app is installed by the field engineer
    serial="",
)


class AoaVersionError(CodedError, ValueError):
    """The answer to GET_PROTOCOL is not a usable version."""

    code = "aoa_version"


def parse_protocol_version(answer: bytes) -> int:
    """The 2-byte little-endian answer to ACCESSORY_GET_PROTOCOL; 0 (or a short answer) means no AOA."""
    if len(answer) != 2:
        raise AoaVersionError(f"GET_PROTOCOL answered {len(answer)} bytes, not 2")
    version = int.from_bytes(answer, "little")
    if version < 1:
        raise AoaVersionError("GET_PROTOCOL answered version 0: the device does not support accessory mode")
    return version


def is_accessory_mode(vid: int, pid: int) -> bool:
    return vid == GOOGLE_VID and pid in ACCESSORY_PIDS


def is_vendor_request(bm_request_type: int) -> bool:
    return bm_request_type & VENDOR_REQUEST_MASK == 0x40
