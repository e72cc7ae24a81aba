"""The POS app: a thin Kivy App around the view-model, and the `pos-app` command.

Two ways in:
- `PosApp(backend, ...)`: the simulator (or a test) already runs a TerminalService; it wraps it in
  `terminal.ui.adapter.ServiceBackend` and hands it over. `build_app(service, ...)` does both.
- `pos-app --config DEVICE_CONFIG.json --link URL`: a real POS; see terminal/ui/standalone.py.

Kivy is imported only inside functions: `main()` must check for a display (and set Kivy's
environment) before Kivy opens a window as a side effect of being imported.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from terminal.ui import display
from terminal.texts import DEFAULT_LANGUAGE, LANGUAGES
from terminal.ui.fonts import FontMissing, UiFonts, prepare_fonts
from terminal.link.wires import DEVICE_URL_FORMS

if TYPE_CHECKING:
    from terminal.service import TerminalService
    from terminal.ui.camera import CameraSource
    from terminal.ui.model import Backend

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
PORTRAIT = (720, 1280)
LANDSCAPE = (800, 480)
# Keycodes that end a wedge scanner's burst: Enter and keypad Enter (SDL2 numbering in Kivy).
ENTER_KEYS = (13, 271)


def configure_window(size: tuple[int, int]) -> None:
    """Kivy settings that must be in place before the window exists."""
    from kivy.config import Config

    Config.set("graphics", "width", str(size[0]))
    Config.set("graphics", "height", str(size[1]))
    Config.set("graphics", "resizable", "1")
    Config.set("kivy", "exit_on_escape", "0")  # a stray ESC (or a scanner's) must never close the POS
    Config.set("input", "mouse", "mouse,disable_multitouch")
    # No multisampling: the screens are flat rectangles and text, and MSAA multiplies the fill work
    # per frame (2-3x on a software rasteriser); the few curved shapes use Kivy's Smooth* shapes.
    Config.set("graphics", "multisamples", "0")


def register_fonts(fonts: UiFonts) -> None:
    """Our CJK face becomes Kivy's default font, so every Label and TextInput renders Chinese."""
    from kivy.core.text import DEFAULT_FONT, LabelBase

    from terminal.ui.fonts import register_kivy_fonts

    register_kivy_fonts(fonts)
    LabelBase.register(DEFAULT_FONT, fn_regular=str(fonts.regular), fn_bold=str(fonts.bold))


def _app_class() -> type:
    from kivy.app import App
    from kivy.core.window import Window
    from kivy.lang import Builder
    from kivy.metrics import dp
    from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty
    from kivy.uix.screenmanager import NoTransition, ScreenManager

    from terminal.ui import theme

    from terminal.ui import widgets  # noqa: F401  (registers the Python widget classes with the Factory)
    from terminal.ui.screens import build_screens
    from terminal.ui.viewmodel import PosViewModel
    from terminal.ui.wedge import WedgeDecoder

    class CutTransition(NoTransition):
        """Switch within the current frame: the next frame draws the new screen alone. (NoTransition
        still runs a zero-length Animation, so for one frame both screens are drawn, one on top of
        the other: twice the fill work exactly when the cashier is waiting for the amount.)"""

        def start(self, manager: object) -> None:
            super().start(manager)
            self._anim.cancel(self)
            self._on_complete()

    class Screens(ScreenManager):
        """A ScreenManager without its stencil: it clips screens sliding in and out, and we never
        slide; the stencil costs two extra full-window passes and a stencil test on every pixel."""

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.canvas.before.clear()
            self.canvas.after.clear()
            self.bind(size=self.size_all, pos=self.size_all)

        def size_all(self, *args: object) -> None:
            """Keep the screens not on show at the window's size too: each is laid out once, at
            start, instead of from scratch (every label re-measured) when an instruction shows it."""
            for screen in self.screens:
                if screen.parent is None:
                    screen.pos, screen.size = self.pos, self.size

    class PosApp(App):
        vm = ObjectProperty(None)
        u = NumericProperty(7.2)  # 1 % of the window's short side, in pixels
        btn_h = NumericProperty(86)
        landscape = BooleanProperty(False)
        typing = BooleanProperty(False)  # a text field has focus: the wedge scanner stands aside

        def __init__(self, backend: "Backend", *, fonts: UiFonts, camera: "CameraSource | None" = None,
                     lang: str = DEFAULT_LANGUAGE, receipts_dir: Path | None = None, print_command: str = "",
                     clock: "Callable[[], float]" = time.time, fit_to_display: bool = False, **kwargs: object) -> None:
            super().__init__(**kwargs)
            from terminal.ui import receipt_render
            from terminal.ui.camera import NoCamera

            self.title = "HIS POS"
            self.fit_to_display = fit_to_display  # a desktop window: the device's shape, scaled to fit
            self.backend = backend
            self.fonts = fonts
            self.camera = camera or NoCamera("no camera source given")
            self.wedge = WedgeDecoder()
            self.started_at = time.perf_counter()
            self.home_drawn_at: float | None = None
            self.vm = PosViewModel(backend, receipts_dir=receipts_dir, print_command=print_command,
                                   receipt_fonts=receipt_render.load_fonts(fonts.regular_face, fonts.bold_face), lang=lang,
                                   clock=clock)

        def build(self) -> object:
            register_fonts(self.fonts)
            if self.fit_to_display:
                from terminal.ui.window_fit import fit_window

                fit_window(Window)
            kv = str(HERE / "widgets.kv")
            if kv not in Builder.files:
                Builder.load_file(kv)
            self._resized(Window, Window.size)
            Window.bind(size=self._resized, on_key_down=self._on_key_down)
            # The window's clear colour is the screens' background: no full-window rectangle to fill.
            Window.clearcolor = theme.BG
            manager = Screens(transition=CutTransition())
            for screen in build_screens():
                manager.add_widget(screen)
            manager.size_all()
            self.manager = manager
            self.vm.bind(screen=lambda vm, name: setattr(manager, "current", name))
            self.vm.refresh()
            manager.current = self.vm.screen
            return manager

        def on_start(self) -> None:
            from kivy.clock import Clock

            def first_frame(window: object) -> None:  # the first frame is being swapped to the screen
                Window.unbind(on_flip=first_frame)
                self.home_drawn_at = time.perf_counter()
                Clock.schedule_once(self._settled, 0)
            Window.bind(on_flip=first_frame)

        def _settled(self, dt: float) -> None:
            """Everything built at start (Kivy, fonts, every screen) lives as long as the app: move it
            out of the garbage collector's reach, so a full collection (50-60 ms over ~150k objects
            on a 2-core POS) never lands while the cashier waits for an amount."""
            gc.collect()
            gc.freeze()

        def on_stop(self) -> None:
            self.camera.stop()
            self.vm.close()
            close = getattr(self.backend, "close", None)
            if callable(close):
                close()

        def rebind(self, service: "TerminalService") -> None:
            """Follow a new TerminalService (the simulator's power-on recovers a new one from the
            journal); call on the main thread (Clock.schedule_once). Only for an app from build_app."""
            from terminal.ui.adapter import ServiceBackend

            old = self.backend
            backend = ServiceBackend(service, firmware_version=getattr(old, "firmware_version", None),
                                     probe_network=getattr(old, "probe_network", True))
            self.backend = backend
            self.vm.rebind(backend)
            close = getattr(old, "close", None)
            if callable(close):
                close()

        def _resized(self, window: object, size: tuple[int, int]) -> None:
            width, height = size
            self.u = min(width, height) / 100.0
            self.btn_h = max(dp(48), self.u * 12)
            self.landscape = width > height

        def _on_key_down(self, window: object, key: int, scancode: int, codepoint: str | None, modifiers: list[str]) -> bool:
            """The wedge scanner: fast keys ending in Enter, captured for the whole window."""
            if self.typing:
                return False
            now = time.monotonic()
            if key in ENTER_KEYS:
                code = self.wedge.enter(now)
                if code is not None:
                    self.vm.scan(code)
                    return True
                return False
            if codepoint:
                self.wedge.feed(codepoint, now)
            return False

    return PosApp


def create_app(backend: "Backend", **kwargs: object) -> object:
    """A PosApp (Kivy must be importable: call display.prepare_kivy first when there is no display)."""
    return _app_class()(backend, **kwargs)


def build_app(service: "TerminalService", *, fonts: UiFonts | None = None, firmware_version: str | None = None,
              camera_index: int | None = 0, probe_network: bool = True, print_command: str = "",
              **kwargs: object) -> Any:
    """The app around a running service (a Kivy App: Kivy ships no type information, hence Any) (what the simulator calls). Without a `print_command`, the
    receipt printer of the device configuration (`printer.command`) is used, if it has one."""
    from terminal.ui.adapter import ServiceBackend
    from terminal.ui.camera import open_camera

    backend = ServiceBackend(service, firmware_version=firmware_version, probe_network=probe_network)
    return create_app(backend, fonts=fonts or prepare_fonts(), camera=open_camera(camera_index),
                      print_command=print_command or configured_print_command(service.config), **kwargs)


def configured_print_command(config: object) -> str:
    """printer.command of a DeviceConfig, or "" (receipts are saved as images only)."""
    printer = getattr(config, "printer", None)
    return printer.command if printer is not None else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pos-app",
        description="The cashier's screens of the hospital smart POS: collect and refund WeChat Pay / Alipay "
                    "payments that HIS sends over the USB link. Chinese by default; English in the settings.",
        epilog="Without a display: make run HEADLESS=1 runs the system with no screens. "
               "Offscreen rendering: SDL_VIDEODRIVER=offscreen (see docs/pos-app.md).",
    )
    parser.add_argument("--config", required=True, help="the device configuration (his-device-config-v1 JSON)")
    parser.add_argument("--link", required=True,
                        help=f"the device side of the USB link: {DEVICE_URL_FORMS}; aoa is an Android POS opened "
                             "as a USB accessory by the bridge (docs/android-pos.md)")
    parser.add_argument("--device-dir", default=None,
                        help="the device's secure storage (identity and key, made at provisioning); "
                             "default: $POS_DEVICE_DIR")
    parser.add_argument("--state-dir", default="pos-state", help="journal and receipts folder (default: ./pos-state)")
    parser.add_argument("--lang", choices=LANGUAGES, default=DEFAULT_LANGUAGE, help="start language (default: zh)")
    parser.add_argument("--orientation", choices=("portrait", "landscape"), default="portrait",
                        help="window shape on a desktop: portrait 720x1280 or landscape 800x480, each scaled down "
                             "to fit the display")
    parser.add_argument("--print-command", default="",
                        help="receipt printer command, e.g. 'lp -d thermal {png}' ({png} = the receipt file); "
                             "default: printer.command of the device configuration, else receipts are only saved as PNG")
    parser.add_argument("--camera", type=int, default=0, help="camera index; -1 for none (hardware scanner only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not display.has_display():
        print(display.HEADLESS_HINT, file=sys.stderr)
        return 2
    try:
        fonts = prepare_fonts()
    except FontMissing as exc:
        print(f"pos-app: {exc}", file=sys.stderr)
        return 2
    from terminal.ui.standalone import StandaloneError, open_device

    state_dir = Path(args.state_dir)
    try:
        device = open_device(Path(args.config), args.link, state_dir, device_dir=args.device_dir)
    except StandaloneError as exc:
        print(f"pos-app: {exc}", file=sys.stderr)
        return 2
    display.prepare_kivy(kivy_home=str(state_dir / "kivy"))
    configure_window(LANDSCAPE if args.orientation == "landscape" else PORTRAIT)
    try:
        app = build_app(device.service, fonts=fonts, camera_index=None if args.camera < 0 else args.camera,
                        lang=args.lang, receipts_dir=state_dir / "receipts", print_command=args.print_command,
                        fit_to_display=True)
        app.run()
    finally:
        device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
