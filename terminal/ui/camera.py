"""The camera as a pluggable source of decoded codes, with an honest "no camera" state.

A `CameraSource` starts and stops a preview and calls `on_code(text)` (from the Kivy main thread)
when its decoder reads a code in a frame. Which source runs is chosen once by `open_camera()`:

- `KivyCamera`: Kivy's camera provider (V4L2 through OpenCV or GStreamer on Linux, the Android
  camera through Kivy's android provider) and a decoder for the frames. The decoder is pluggable
  (`Decoder`); `zxing_decoder()` uses zxing-cpp when it is installed (`pip install zxing-cpp`:
  QR and the 1-D codes WeChat Pay / Alipay print), otherwise the preview says no decoder is there.
- `NoCamera`: nothing to show; the screen says so and points at the hardware scanner.

The camera never types a code into anything: a decoded code goes to the same `scan()` as the
keyboard-wedge scanner, and the service routes (or refuses) it.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Callable, Protocol

log = logging.getLogger(__name__)

# Decode at most this often: a POS CPU decoding every frame at 30 fps would starve the UI.
DECODE_INTERVAL_S = 0.2
# Ignore the same code again for this long (a held-up code is read on every frame).
REPEAT_HOLD_S = 3.0


class CameraStatus(enum.Enum):
    LIVE = "live"  # preview running and a decoder is reading the frames
    NO_CAMERA = "no_camera"
    NO_DECODER = "no_decoder"  # preview running, but nothing can read codes in it


class Decoder(Protocol):
    def __call__(self, rgba: bytes, width: int, height: int) -> str | None: ...


def zxing_decoder() -> Decoder | None:
    try:
        import zxingcpp
    except ImportError:
        return None
    from PIL import Image

    def decode(rgba: bytes, width: int, height: int) -> str | None:
        image = Image.frombytes("RGBA", (width, height), rgba).convert("L")
        results = zxingcpp.read_barcodes(image)
        return results[0].text if results else None

    return decode


@dataclass(frozen=True, slots=True)
class CameraInfo:
    status: CameraStatus
    detail: str = ""  # for the log and the settings screen: which provider, or why none


class CameraSource(Protocol):
    info: CameraInfo

    def widget(self) -> object | None: ...  # the Kivy widget showing the preview, if any
    def start(self, on_code: Callable[[str], None]) -> None: ...
    def stop(self) -> None: ...


class NoCamera:
    def __init__(self, detail: str) -> None:
        self.info = CameraInfo(CameraStatus.NO_CAMERA, detail)

    def widget(self) -> None:
        return None

    def start(self, on_code: Callable[[str], None]) -> None:
        pass

    def stop(self) -> None:
        pass


class KivyCamera:
    """Kivy's Camera widget plus a throttled decoder on its texture."""

    def __init__(self, index: int, decoder: Decoder | None, resolution: tuple[int, int] = (640, 480)) -> None:
        from kivy.uix.camera import Camera

        self._camera = Camera(index=index, resolution=resolution, play=False)
        if self._camera._camera is None:  # Kivy found no provider or no device at this index
            raise RuntimeError(f"no camera at index {index}")
        self._decoder = decoder
        self._event = None
        self._last: tuple[str, float] | None = None
        status = CameraStatus.LIVE if decoder else CameraStatus.NO_DECODER
        self.info = CameraInfo(status, f"kivy camera {index} ({type(self._camera._camera).__name__})")

    def widget(self) -> object:
        return self._camera

    def start(self, on_code: Callable[[str], None]) -> None:
        from kivy.clock import Clock

        self._camera.play = True
        if self._decoder is not None and self._event is None:
            self._event = Clock.schedule_interval(lambda dt: self._decode(on_code), DECODE_INTERVAL_S)

    def stop(self) -> None:
        self._camera.play = False
        if self._event is not None:
            self._event.cancel()
            self._event = None

    def _decode(self, on_code: Callable[[str], None]) -> None:
        import time

        texture = self._camera.texture
        if texture is None or self._decoder is None:
            return
        code = self._decoder(texture.pixels, texture.width, texture.height)
        if not code:
            return
        now = time.monotonic()
        if self._last and self._last[0] == code and now - self._last[1] < REPEAT_HOLD_S:
            return
        self._last = (code, now)
        on_code(code)


def open_camera(index: int | None = 0, decoder: Decoder | None = None) -> CameraSource:
    """The best source available; never raises. `index=None` disables the camera."""
    if index is None:
        return NoCamera("camera disabled in the settings")
    try:
        return KivyCamera(index, decoder if decoder is not None else zxing_decoder())
    except Exception as exc:  # any provider failure means "no camera" for the cashier; logged for the engineer
        log.info("no camera: %s", exc)
        return NoCamera(str(exc) or type(exc).__name__)
