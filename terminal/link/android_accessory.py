"""The Android-only part of `aoa`: find the bridge's accessory with UsbManager and open it.

    wire = AccessoryWire(open_android_accessory)        # terminal.link.wires does this for `aoa`

`open_android_accessory()` runs inside the python-for-android app (pyjnius is imported there and
only there: it exists on the POS, not on the PC). It asks UsbManager for the attached accessories,
takes the one whose manufacturer and model match protocol.aoa.BRIDGE_ACCESSORY (the same strings as
res/xml/accessory_filter.xml, docs/pos-app.md), asks for permission when Android has not granted it
(an app started by USB_ACCESSORY_ATTACHED has it), opens it and detaches the file descriptor from
its ParcelFileDescriptor. The streams are Python's own file objects over that descriptor
(`FdAccessory`): unbuffered, so every read is one read(2) of the accessory driver, and no Java
stream objects cross pyjnius per chunk. Everything else (threads, timeouts, reopening) is
terminal.link.accessory_wire, tested on the PC.

Not tried on a real POS from this repository's CI: docs/android-pos.md lists what was and was not.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from protocol.aoa import BRIDGE_ACCESSORY, AccessoryIdentity

log = logging.getLogger("terminal.link.android")

ACTION_USB_PERMISSION = "his.smartpos.USB_ACCESSORY_PERMISSION"
PENDING_INTENT_FLAG_IMMUTABLE = 0x04000000  # required on Android 12+ (API 31)


class FdAccessory:
    """An opened accessory as two unbuffered Python streams over file descriptors (the accessory's
    one descriptor, read through one and written through a duplicate; tests pass socket or pipe fds)."""

    def __init__(self, read_fd: int, write_fd: int | None = None) -> None:
        self.input = os.fdopen(read_fd, "rb", buffering=0)
        self.output = os.fdopen(os.dup(read_fd) if write_fd is None else write_fd, "wb", buffering=0)

    def close(self) -> None:
        for stream in (self.output, self.input):
            try:
                stream.close()
            except OSError:
                pass


def _context() -> Any:  # a jnius proxy of an Android Context: pyjnius has no types
    from jnius import autoclass  # Android only (python-for-android ships pyjnius)

    activity = autoclass("org.kivy.android.PythonActivity").mActivity
    if activity is not None:
        return activity
    return autoclass("org.kivy.android.PythonService").mService


def open_android_accessory(identity: AccessoryIdentity = BRIDGE_ACCESSORY) -> FdAccessory | None:
    """The bridge's accessory, opened; None while it is not attached or permission is pending."""
    from jnius import autoclass, cast  # Android only

    context = _context()
    Context = autoclass("android.content.Context")
    manager = cast("android.hardware.usb.UsbManager", context.getSystemService(Context.USB_SERVICE))
    accessories = manager.getAccessoryList()
    if not accessories:
        return None
    for accessory in accessories:
        if not identity.matches(accessory.getManufacturer(), accessory.getModel()):
            continue
        if not manager.hasPermission(accessory):
            Intent = autoclass("android.content.Intent")
            PendingIntent = autoclass("android.app.PendingIntent")
            pending = PendingIntent.getBroadcast(context, 0, Intent(ACTION_USB_PERMISSION),
                                                 PENDING_INTENT_FLAG_IMMUTABLE)
            manager.requestPermission(accessory, pending)
            log.info("asked the cashier to allow the USB accessory %s", accessory.getModel())
            return None
        pfd = manager.openAccessory(accessory)
        if pfd is None:  # another app (or an earlier run of this one) still holds it
            return None
        return FdAccessory(pfd.detachFd())
    return None
