"""The UI's pure parts: the wedge scanner, screen routing, the catalogue and the .kv files, the
font, receipts and printing, and the no-display message of pos-app."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from protocol.amount import Direction
from protocol.messages import BillItem, PayChannel, PayStatus
from terminal.receipt import Receipt
from terminal.texts import Text
from terminal import texts as catalogue  # the one string catalogue
from terminal.ui import display, fonts
from terminal.texts import display_yuan
from terminal.ui.receipt_render import PrintError, load_fonts, print_png, render_receipt, save_receipt
from terminal.ui.screens import kv_files
from terminal.ui.wedge import MAX_KEY_GAP_S, WedgeDecoder

UI = Path(__file__).resolve().parents[3] / "terminal" / "ui"


# --- wedge scanner --------------------------------------------------------------------------------

def burst(decoder: WedgeDecoder, text: str, gap: float, start: float = 100.0) -> str | None:
    t = start
    for ch in text:
        decoder.feed(ch, t)
        t += gap
    return decoder.enter(t)


@given(st.text(alphabet="0123456789", min_size=6, max_size=40), st.floats(0.0, MAX_KEY_GAP_S * 0.9))
def test_a_fast_burst_is_a_code(code: str, gap: float) -> None:
    assert burst(WedgeDecoder(), code, gap) == code


@given(st.text(alphabet="0123456789", min_size=6, max_size=40), st.floats(MAX_KEY_GAP_S * 1.1, 2.0))
def test_slow_keys_are_never_a_code(code: str, gap: float) -> None:
    assert burst(WedgeDecoder(), code, gap) is None


def test_slow_prefix_is_dropped_and_the_fast_rest_counts() -> None:
    decoder = WedgeDecoder()
    decoder.feed("9", 0.0)  # someone pressed a key a while ago
    assert burst(decoder, "134567890123456789", 0.005, start=5.0) == "134567890123456789"


def test_short_bursts_and_control_chars_are_ignored() -> None:
    assert burst(WedgeDecoder(), "12345", 0.001) is None
    decoder = WedgeDecoder()
    decoder.feed("1", 0.0)
    decoder.feed("\x1b", 0.001)
    assert decoder.pending == 0


# --- amounts (routing of screens: tests/terminal/test_view.py) --------------------------------------

def test_display_yuan_groups_thousands() -> None:
    assert display_yuan(1) == "0.01"
    assert display_yuan(12_345_678_90) == "12,345,678.90"


# --- catalogue and .kv ----------------------------------------------------------------------------

def test_every_entry_has_both_languages_and_the_same_fields() -> None:
    for key, text in catalogue.STRINGS.items():
        assert text.zh and text.en, key
        assert set(re.findall(r"{(\w+)}", text.zh)) == set(re.findall(r"{(\w+)}", text.en)), key


def test_the_catalogue_holds_each_sentence_once_and_the_service_speaks_from_it() -> None:
    """Issue 11 item 3: one catalogue, no entry twice; the service's named messages are entries
    (they carry their key), so the screens and the service say the same thing the same way."""
    seen: dict[str, str] = {}
    for key, text in catalogue.STRINGS.items():
        assert text.key == key
        if text.zh in seen and len(text.zh) >= 6:  # a sentence; short labels may recur in other places
            raise AssertionError(f"{key} repeats {seen[text.zh]}: {text.zh}")
        seen.setdefault(text.zh, key)
    named = [v for v in vars(catalogue).values() if isinstance(v, catalogue.Text)]
    assert len(named) > 20 and all(catalogue.STRINGS[t.key] is t for t in named)
    assert catalogue.reason_text("no_such_code") == catalogue.Text("未完成（no_such_code）", "Not completed (no_such_code)")


def test_kv_files_hold_no_text_and_use_known_keys() -> None:
    files = [UI / "widgets.kv", *kv_files()]
    for path in files:
        lines = path.read_text(encoding="utf-8").splitlines()
        source = "\n".join(line for line in lines if not line.lstrip().startswith("#"))  # comments may be prose
        for key in re.findall(r"T\('([^']+)'\s*[,)]", source):  # whole keys (prefixes like 'dir.' + x aside)
            assert key in catalogue.STRINGS, f"{path.name}: unknown key {key}"
        for literal in re.findall(r"'([^']*)'", source):
            assert re.fullmatch(r"[A-Za-z0-9_.]*|\s*", literal) and " " not in literal.strip(), f"{path.name}: text literal {literal!r} belongs in the catalogue"
    assert catalogue.tr("nope") == "[nope]"


def test_every_catalogue_string_has_glyphs() -> None:
    ui_fonts = fonts.prepare_fonts()
    cover = fonts.coverage(ui_fonts.regular_face)
    for key, text in catalogue.STRINGS.items():
        assert cover.missing(text.zh + text.en) == [], key
    assert cover.missing("\u2713\u21a9") == ["\u21a9", "\u2713"] or cover.missing("\u21a9") == ["\u21a9"]


# --- font -----------------------------------------------------------------------------------------

def test_the_simplified_chinese_face_is_extracted_and_usable(tmp_path: Path) -> None:
    path = fonts.find_font_file()
    face = fonts.find_face(path)
    assert face.family == "Noto Sans CJK SC"
    out = fonts.extract_face(face, tmp_path)
    assert fonts.faces(out) == [fonts.Face(out, 0, "Noto Sans CJK SC")]
    assert fonts.extract_face(face, tmp_path) == out  # cached
    from PIL import ImageFont

    assert ImageFont.truetype(str(out), 20).getname() == ("Noto Sans CJK SC", "Regular")


def test_a_missing_font_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fonts, "SEARCH_DIRS", (str(tmp_path),))
    with pytest.raises(fonts.FontMissing, match="apt-get install fonts-noto-cjk"):
        fonts.find_font_file()


# --- receipts ---------------------------------------------------------------------------------------

def receipt(direction: Direction = Direction.COLLECT) -> Receipt:
    status = PayStatus.SUCCESS if direction is Direction.COLLECT else PayStatus.REFUNDED
    return Receipt("示例市人民医院", "Example City Hospital", "D-SN-000123", "T0001", "MZ20261123000123", direction, 71_80,
                   status, PayChannel.WECHAT, "4200001234202611230000012345", "OT1", 1795400132, "张*明",
                   (BillItem("阿莫西林胶囊", "2", 36_80), BillItem("血常规", "1", 35_00)), None)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_receipt_is_384_dots_wide_with_a_qr_code(tmp_path: Path, lang: str) -> None:
    ui_fonts = fonts.prepare_fonts()
    image = render_receipt(receipt(), load_fonts(ui_fonts.regular_face, ui_fonts.bold_face), lang)
    assert image.width == 384 and image.mode == "1" and 600 < image.height < 2000
    path = save_receipt(image, tmp_path, receipt())
    assert Image.open(path).size == image.size
    # the QR code's finder pattern: a black 7-module square in the lower part of the receipt
    pixels = image.convert("L")
    dark_rows = [y for y in range(image.height // 2, image.height) if sum(pixels.getpixel((x, y)) == 0 for x in range(384)) > 100]
    assert dark_rows, "no QR code found"


def test_refund_receipt_carries_a_minus_sign() -> None:
    assert receipt(Direction.REFUND).amount_text == "-¥71.80"


def test_receipt_amounts_group_thousands_as_the_screens_do() -> None:
    """One display formatter: the receipt data, the printed receipt (which draws `amount_text`) and
    the screens group thousands alike (the receipt data used to say "¥1212.50")."""
    big = dataclasses.replace(receipt(Direction.REFUND), amount_fen=121_250)
    assert big.amount_text == "-¥1,212.50" == "-¥" + display_yuan(121_250)
    assert dataclasses.replace(receipt(), amount_fen=12_345_650).amount_text == "¥123,456.50"


def test_print_command_runs_without_a_shell(tmp_path: Path) -> None:
    png = tmp_path / "r.png"
    png.write_bytes(b"x")
    target = tmp_path / "out dir"
    target.mkdir()
    print_png(png, f"cp {{png}} '{target}/copy.png'")
    assert (target / "copy.png").read_bytes() == b"x"
    with pytest.raises(PrintError, match="command not found"):
        print_png(png, "no-such-printer-command {png}")
    with pytest.raises(PrintError, match="exited with 1"):
        print_png(png, f"{sys.executable} -c 'import sys; sys.exit(1)'")
    with pytest.raises(PrintError, match="cannot be read"):
        print_png(png, "lp 'unclosed")


def test_the_configured_printer_is_the_default_print_command() -> None:
    import dataclasses

    from terminal.config import parse_print_command
    from terminal.ui.app import configured_print_command
    from tests.terminal.helpers import make_config

    config = make_config()
    assert configured_print_command(config) == ""  # no printer: receipts are saved as images
    with_printer = dataclasses.replace(config, printer=parse_print_command("lp -d thermal {png}"))
    assert configured_print_command(with_printer) == "lp -d thermal {png}"
    help_text = subprocess.run([sys.executable, "-m", "terminal.ui.app", "--help"], capture_output=True, text=True,
                               timeout=60).stdout
    assert "printer.command" in help_text


# --- display detection ------------------------------------------------------------------------------

def test_display_detection() -> None:
    assert not display.has_display({}, "linux")
    assert display.has_display({"DISPLAY": ":0"}, "linux")
    assert display.has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert display.has_display({"SDL_VIDEODRIVER": "offscreen"}, "linux")
    assert display.has_display({}, "win32")


def test_pos_app_without_a_display_points_to_headless(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "terminal.ui.app", "--config", "x.json", "--link", "serial:/dev/ttyGS0"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "make run HEADLESS=1" in done.stderr
    assert not (tmp_path / ".kivy").exists()  # Kivy was never imported


def test_pos_app_help() -> None:
    done = subprocess.run([sys.executable, "-m", "terminal.ui.app", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--link" in done.stdout and "HEADLESS=1" in done.stdout


def failed(direction: Direction = Direction.COLLECT) -> Receipt:
    status = PayStatus.FAILED if direction is Direction.COLLECT else PayStatus.REFUND_FAILED
    return Receipt("示例市人民医院", "Example City Hospital", "D-SN-000123", "T0001", "MZ20261123000124", direction, 1_280_00,
                   status, PayChannel.ALIPAY, "", "OT2", 1795400132, "张*明", (), "insufficient_funds")


@pytest.mark.parametrize("direction", [Direction.COLLECT, Direction.REFUND])
def test_a_failed_payment_never_prints_a_slip_that_looks_paid(direction: Direction) -> None:
    """Finding 4 of issue 16: a failure's slip was titled 收款凭条 with a big bold amount and a small
    未收款. Now its heading says it failed, in the large type, and the amount is body text."""
    ui_fonts = fonts.prepare_fonts()
    loaded = load_fonts(ui_fonts.regular_face, ui_fonts.bold_face)
    drawn: list[tuple[str, int]] = []
    render_receipt(failed(direction), loaded, "zh", drawn)
    texts = dict(drawn)
    heading = "交易失败" if direction is Direction.COLLECT else "退款未成功"
    assert (heading, loaded.title.size) in drawn
    assert "收款凭条" not in texts and "退款凭条" not in texts
    amount = [size for text, size in drawn if "1,280.00" in text]
    assert amount == [loaded.body.size], drawn  # never the paid slip's big bold amount
    assert "本单未收款，不作付款凭证" in texts
    paid: list[tuple[str, int]] = []
    render_receipt(receipt(), loaded, "zh", paid)
    assert dict(paid)["收款凭条"] == loaded.body.size and ("¥71.80", loaded.amount.size) in paid


def test_a_transaction_number_on_a_receipt_is_never_cut() -> None:
    ui_fonts = fonts.prepare_fonts()
    loaded = load_fonts(ui_fonts.regular_face, ui_fonts.bold_face)
    long_number = "50312345678901234567890123456"  # a WeChat refund id: 29 digits
    drawn: list[tuple[str, int]] = []
    render_receipt(dataclasses.replace(receipt(Direction.REFUND), channel_txn_no=long_number), loaded, "en", drawn)
    assert long_number in dict(drawn), drawn


# --- the window on a desktop --------------------------------------------------------------------------

@given(st.integers(200, 4000), st.integers(200, 4000), st.sampled_from([(720, 1280), (800, 480)]))
def test_the_window_keeps_its_shape_fits_the_display_and_never_grows(width: int, height: int, size: tuple[int, int]) -> None:
    from terminal.ui.window_fit import DECORATION_PX, fitted_size, placed

    w, h = fitted_size(size, (width, height))
    assert w <= size[0] and h <= size[1]
    assert w <= max(1, width - DECORATION_PX[0]) and h <= max(1, height - DECORATION_PX[1])
    assert abs(w * size[1] - h * size[0]) <= size[0] + size[1]  # the same shape, to a pixel of rounding
    if width - DECORATION_PX[0] >= size[0] and height - DECORATION_PX[1] >= size[1]:
        assert (w, h) == size
    x, y = placed((w, h), (0, 0, width, height))
    assert 0 <= x and x + w <= width and 0 <= y and y + h <= height


def test_a_portrait_device_on_a_1080p_desktop() -> None:
    from terminal.ui.window_fit import fitted_size

    assert fitted_size((720, 1280), (1920, 1040)) == (558, 992)
    assert fitted_size((800, 480), (1920, 1040)) == (800, 480)
