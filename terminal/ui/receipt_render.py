"""Receipts for a 58 mm thermal printer: a 384-pixel-wide 1-bit PNG with a QR code for lookup.

58 mm paper has 48 mm printable at 8 dots/mm = 384 dots, the width every ESC/POS 58 mm printer and
the `lp` raster drivers for them expect. The QR code holds the service's lookup text
(`terminal.receipt.Receipt.lookup_text()`: device, order and channel transaction numbers), enough
for the cashier or finance staff to find the payment again (history search, reconciliation, the
channel's own portal):

    his-receipt:v1:D-SN-000123:MZ20261122000123:4200001234202611220000012345

The data comes from the service (`TerminalService.receipt(msg_id)`); this module only draws it.

Printing is optional: `print_png(path, command)` runs a configured command such as
`lp -d thermal {png}` (split like a shell would, run without a shell, `{png}` replaced by the file).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont

from protocol.amount import Direction
from protocol.errors import CodedError
from protocol.messages import PayStatus
from terminal.receipt import Receipt
from terminal.texts import Text, pick, tr
from terminal.ui.fonts import Face
from terminal.texts import display_yuan

WIDTH = 384  # dots: 48 mm printable at 8 dots/mm
MARGIN = 8
PRINT_TIMEOUT_S = 30


class PrintError(CodedError, RuntimeError):
    """The print command failed; the message is shown on the result screen."""

    code = "print_failed"


@dataclass(frozen=True, slots=True)
class ReceiptFonts:
    body: ImageFont.FreeTypeFont
    small: ImageFont.FreeTypeFont
    title: ImageFont.FreeTypeFont
    amount: ImageFont.FreeTypeFont


def load_fonts(regular: Face, bold: Face) -> ReceiptFonts:
    def font(face: Face, size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(face.path), size, index=face.index)

    return ReceiptFonts(font(regular, 22), font(regular, 18), font(bold, 28), font(bold, 44))


def _status_key(receipt: Receipt) -> str:
    return f"status.{receipt.pay_status.value}"


def money_moved(receipt: Receipt) -> bool:
    """Only a payment or refund that went through gets a slip that looks like a receipt."""
    return receipt.pay_status in (PayStatus.SUCCESS, PayStatus.REFUNDED) and receipt.error_code is None


def render_receipt(receipt: Receipt, fonts: ReceiptFonts, lang: str = "zh",
                   drawn: list[tuple[str, int]] | None = None) -> Image.Image:
    """The receipt as a 1-bit image 384 dots wide, as long as its content. A payment that did not go
    through gets a "交易失败 / 未收款" slip instead: that heading large, the amount in body type, no
    transaction number, never the paid slip's big bold amount. `drawn` (tests) collects each text
    drawn, with its font size."""
    canvas = Image.new("L", (WIDTH, 4000), 255)
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    moved = money_moved(receipt)

    def text_width(text: str, font: ImageFont.FreeTypeFont) -> int:
        return int(draw.textlength(text, font=font))

    def put(xy: tuple[int, int], text: str, font: ImageFont.FreeTypeFont) -> None:
        draw.text(xy, text, font=font, fill=0)
        if drawn is not None:
            drawn.append((text, font.size))

    def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
        lines, line = [], ""
        for ch in text:  # character wrapping: Chinese has no spaces, order numbers are one "word"
            if text_width(line + ch, font) > width and line:
                lines.append(line)
                line = ""
            line += ch
        return lines + [line] if line else lines

    def centred(text: str, font: ImageFont.FreeTypeFont, gap: int = 6) -> None:
        nonlocal y
        for line in wrap(text, font, WIDTH - 2 * MARGIN):
            put(((WIDTH - text_width(line, font)) // 2, y), line, font)
            y += font.size + gap

    def field(label: str, value: str) -> None:
        """The label on the left, the value on the right; a value too long for that (a transaction
        number) goes whole on the next line, in the small type if need be, never cut."""
        nonlocal y
        font = fonts.body
        label_w = text_width(label, font) + 12
        put((MARGIN, y), label, font)
        if text_width(value, font) > WIDTH - 2 * MARGIN - label_w:
            y += font.size + 4
            if text_width(value, font) > WIDTH - 2 * MARGIN:
                font = fonts.small
        lines = wrap(value, font, WIDTH - 2 * MARGIN) or [""]
        for line in lines:
            put((WIDTH - MARGIN - text_width(line, font), y), line, font)
            y += font.size + 8

    def rule() -> None:
        nonlocal y
        y += 4
        for x in range(MARGIN, WIDTH - MARGIN, 8):  # dashed, like a printed receipt
            draw.line((x, y, x + 4, y), fill=0, width=2)
        y += 12

    merchant = Text(receipt.merchant_name, receipt.merchant_name_en or receipt.merchant_name)
    centred(pick(merchant, lang), fonts.title)
    refund = receipt.direction is Direction.REFUND
    if moved:
        centred(tr("receipt.title.refund" if refund else "receipt.title.collect", lang), fonts.body)
    else:
        centred(tr("receipt.title.refund_failed" if refund else "receipt.title.failed", lang), fonts.title)
        centred(tr("receipt.not_proof", lang), fonts.body)
    rule()
    field(tr("receipt.order_no", lang), receipt.order_no)
    if receipt.channel_txn_no and moved:
        field(tr("receipt.pay_order_no", lang), receipt.channel_txn_no)
    if receipt.channel_name is not None:
        field(tr("receipt.channel", lang), pick(receipt.channel_name, lang))
    if receipt.patient:
        field(tr("receipt.patient", lang), receipt.patient)
    if receipt.items:
        rule()
        for item in receipt.items:
            field(f"{item.name} ×{item.qty}", display_yuan(item.amount_fen))
    rule()
    amount = receipt.amount_text
    if moved:
        put((MARGIN, y + 10), tr("receipt.amount", lang), fonts.body)
        put((WIDTH - MARGIN - text_width(amount, fonts.amount), y), amount, fonts.amount)
        y += fonts.amount.size + 14
    else:
        field(tr("receipt.amount", lang), amount)
    field(tr("receipt.status", lang), tr(_status_key(receipt), lang))
    if receipt.error_code is not None:
        centred(pick(receipt.title, lang), fonts.small)  # the reason, in plain words
    field(tr("receipt.time", lang), receipt.time_text())
    field(tr("receipt.device", lang), receipt.device_id)
    rule()
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=1)
    qr.add_data(receipt.lookup_text())
    qr.make(fit=True)
    modules = qr.make_image(fill_color="black", back_color="white").get_image().convert("L")
    scale = max(1, min(6, (WIDTH - 2 * MARGIN) // modules.width))  # whole dots per module: crisp
    code = modules.resize((modules.width * scale, modules.height * scale), Image.NEAREST)
    canvas.paste(code, ((WIDTH - code.width) // 2, y))
    y += code.height + 6
    centred(tr("receipt.lookup", lang), fonts.small)
    centred(tr("receipt.keep", lang), fonts.small)
    y += 40  # room to tear off below the last line
    return canvas.crop((0, 0, WIDTH, y)).point(lambda v: 0 if v < 160 else 255, mode="1")


def save_receipt(image: Image.Image, folder: Path, receipt: Receipt) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(receipt.finished_at))
    kind = "refund" if receipt.direction is Direction.REFUND else "collect"
    path = folder / f"receipt-{receipt.order_no}-{kind}-{stamp}.png"
    image.save(path, format="PNG")
    return path


def print_png(path: Path, command: str) -> None:
    """Run the configured print command for `path`; raises PrintError with the printer's words."""
    try:
        template = shlex.split(command)
    except ValueError as exc:
        raise PrintError(f"print_command {command!r} cannot be read: {exc}") from None
    if not template:
        raise PrintError("print_command is empty")
    args = [part.replace("{png}", str(path)) for part in template]
    if not any("{png}" in part for part in template):
        args.append(str(path))  # "lp -d thermal" means: print this file
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=PRINT_TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise PrintError(f"{args[0]}: command not found") from None
    except subprocess.TimeoutExpired:
        raise PrintError(f"{args[0]} did not finish within {PRINT_TIMEOUT_S} s") from None
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()
        raise PrintError(f"{args[0]} exited with {done.returncode}: {words[-1] if words else 'no message'}")
