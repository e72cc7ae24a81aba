"""The seam between the virtual device and the POS screens (terminal/ui, the Kivy app `pos-app`).

`pos-sim run --ui` (and `python -m firmware_sim.system --ui`) calls `run_screen(device, stop, options)` on the
main thread, which Kivy needs: the screens wrap the device's running TerminalService
(terminal.ui.app.build_app), exactly as on a real POS, while the link, the control API and the
fault injection keep running on their own threads. Closing the window stops the simulator; `stop`
being set (SIGINT, SIGTERM) closes the window.

Power cycles: a power cut and power-on replace the TerminalService object (a new one recovers from
the journal). `VirtualDevice.add_power_listener(fn)` reports each new service (None while off), and
the screens follow it with `App.rebind(service)` (terminal/ui/app.py) on Kivy's main thread.

The window has a real device's shape: portrait 720x1280 (scaled down to fit the desktop's display)
or landscape 800x480. Printed receipts are saved as PNG files in `receipts_dir` (the demo's
workdir, .run/receipts), and the result screen says where.
"""

from __future__ import annotations

import logging
import threading

from dataclasses import dataclass
from pathlib import Path

from firmware_sim.device import VirtualDevice
from firmware_sim.simerrors import SimCode, SimError

log = logging.getLogger("firmware_sim.screen")


ORIENTATIONS = ("portrait", "landscape")


@dataclass(frozen=True, slots=True)
class ScreenOptions:
    receipts_dir: Path  # where printed receipts are saved as PNG (there is no printer on a desktop)
    orientation: str = "portrait"  # portrait 720x1280 scaled to fit the display, or landscape 800x480


def prepare_window(orientation: str) -> None:
    """Before Kivy is imported: its clock wakes as soon as the link thread schedules an update, its
    logging stays inside Python's (no duplicated lines, no DEBUG flood in the device log), and the
    window gets the device's shape."""
    from terminal.ui import display

    display.prepare_kivy()
    from terminal.ui.app import LANDSCAPE, PORTRAIT, configure_window

    configure_window(LANDSCAPE if orientation == "landscape" else PORTRAIT)


def screen_app(service: object, options: ScreenOptions) -> object:
    """The POS app around `service`, as the demo shows it (the click test drives this one too)."""
    from terminal.ui.app import build_app

    return build_app(service, camera_index=None, receipts_dir=options.receipts_dir, fit_to_display=True)  # type: ignore[arg-type]  # the simulator hands its TerminalService through as object (kivy is imported lazily)


def run_screen(device: VirtualDevice, stop: threading.Event, options: ScreenOptions) -> None:
    """Show the POS screens for `device` until the window closes or `stop` is set."""
    from terminal.ui import display

    if not display.has_display():
        raise SimError(SimCode.START_FAILED, display.HEADLESS_HINT)
    while device.service is None and not stop.is_set():  # a new device gets its configuration flashed first
        stop.wait(0.2)
    service = device.service
    if service is None:
        return
    prepare_window(options.orientation)
    from kivy.clock import Clock

    app = screen_app(service, options)

    def on_power(new_service: object) -> None:
        if new_service is None or new_service is service:
            return
        rebind = getattr(app, "rebind", None)
        if callable(rebind):
            Clock.schedule_once(lambda dt: rebind(new_service), 0)
        else:
            log.warning("the device powered on with a new terminal service; this screen still shows the old one "
                        "(terminal.ui has no App.rebind yet): reopen the window")

    remove = device.add_power_listener(on_power)
    watch = Clock.schedule_interval(lambda dt: app.stop() if stop.is_set() else None, 0.2)
    try:
        app.run()
    finally:
        watch.cancel()
        remove()
