"""The simulated camera: read the payment code in a picture (a PNG of the patient's phone screen).

    code = decode_code(png_bytes)        # '134567890123456789'; SimError(qr_unreadable) if none

Decoder: zxing-cpp (`pip install zxing-cpp`, Apache-2.0). It ships prebuilt wheels with no system
library (pyzbar needs libzbar0 from apt and is unmaintained since 2022), reads QR codes and the 1-D
barcodes (Code 128) that WeChat Pay and Alipay show above the QR, and takes a Pillow image
directly. The same library is what the Kivy app's camera uses (terminal/ui/camera.py).

The picture is checked before decoding: at most MAX_IMAGE_BYTES and MAX_PIXELS (a decompression
bomb must not stall the device), and it must be an image Pillow can open. Several codes in one
picture must agree (a phone screen shows one code twice: barcode and QR); otherwise the read is
refused as ambiguous, as a real scanner would beep and read again.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from firmware_sim.simerrors import SimCode, SimError

MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 4096 * 4096


def _unreadable(message: str) -> SimError:
    return SimError(SimCode.QR_UNREADABLE, message)


def decode_code(data: bytes) -> str:
    """The one code shown in the image (QR or 1-D barcode)."""
    if len(data) > MAX_IMAGE_BYTES:
        raise _unreadable(f"the image is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are read")
    try:
        import zxingcpp
    except ImportError:
        raise _unreadable("no barcode decoder is installed (pip install zxing-cpp)") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise _unreadable(f"the image is {image.width}x{image.height} pixels; at most {MAX_PIXELS} pixels are read")
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise _unreadable(f"not an image the camera can read ({type(exc).__name__})") from None
    texts = {result.text for result in zxingcpp.read_barcodes(gray) if result.text}
    if not texts:
        raise _unreadable("no QR code or barcode found in the image")
    if len(texts) > 1:
        raise _unreadable(f"the image shows {len(texts)} different codes; show one code at a time")
    return texts.pop()
